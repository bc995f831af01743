"""A whole run on disk: the runner (``runner``), the run directory and its files (``rundir``), its lock
(``lock``), checkpoints (``checkpoint``), per-epoch callbacks (``callbacks``), child processes (``pool``,
``jobs``). The library raises and reports through callbacks; the command lines print."""
