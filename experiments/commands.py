"""vgjax COMMAND [flags]: every command line of the project as one tool.

``vgjax run ...`` is ``python -m experiments.run ...``, and so on for every command below (the
console script that ``pip install`` puts on the PATH; ``python -m experiments COMMAND`` is the
same without it). ``vgjax COMMAND --help`` lists that command's flags.
"""

from __future__ import annotations

import importlib
import sys

from experiments import cli

# command -> (module, one line); the module's main(argv) does the rest
COMMANDS = {
    "run": ("experiments.run", "train one method into a run directory"),
    "suite": ("experiments.suite", "every method of the study (--seeds N: many seeds each, vmapped)"),
    "sweep": ("experiments.sweep", "many seeds and settings as one vmapped program (several processes or hosts too)"),
    "escape": ("experiments.escape", "the plateau-escape study: train and report steps"),
    "report": ("experiments.report", "report.md of a runs folder or a sweep directory"),
    "plot": ("experiments.plot", "redraw the figures of run directories"),
    "evaluate": ("experiments.evaluate", "re-evaluate a run's saved model on the test set"),
    "theory": ("experiments.theory", "signal-propagation predictions against measurements"),
    "optimizers": ("experiments.optimizers", "the from-scratch optimizers on a quadratic"),
}


def build_parser() -> cli.Parser:
    lines = "\n".join(f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items())
    p = cli.Parser(prog="vgjax", description=__doc__.split("\n\n")[1] + "\n\ncommands:\n" + lines,
                   usage="vgjax COMMAND [flags]  (vgjax COMMAND --help: its flags)")
    p.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of the commands above")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):  # vgjax --help, vgjax --version, or nothing: no command
        build_parser().parse_args(argv or ["--help"])
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        build_parser().parse_args([name])  # one line naming the commands, exit 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0
