"""Reports and figures from saved files only: the study's figures (``plots``), sweep and theory figures
(``figures``, ``escape_figures``), markdown reports of run directories (``runs``) and sweeps (``sweep``)."""
