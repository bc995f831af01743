"""Analyses around the study: mean-field theory (``theory``, ``theory_check``), the plateau-escape study
(``escape``), the trainability map (``trainability``), the optimizer quadratic (``quadratic``)."""
