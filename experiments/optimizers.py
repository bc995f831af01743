"""python -m experiments.optimizers [--out DIR] [--epochs 30]

docs/study.md §5, first part: minimise f(w) = 0.1·w1² + 2·w2² from (−5, −2) with the four from-scratch
optimizers (gradient descent, momentum, RMSProp, Adam; one update per epoch). Prints every
intermediate quantity of epochs 1 and 2, then the final point of each optimizer, and writes
``trajectories.csv``, ``trajectories.json`` and ``optimizers_quadratic.png`` into ``--out``
(default ``runs/optimizers_quadratic/``). Exit status 0 done, 2 usage error or unwritable output.
The maths lives in :mod:`vgjax.optim.scratch`, the runs, tables and files in :mod:`vgjax.analysis.quadratic`.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from experiments import cli

# loaded when first used, after the arguments are parsed (cli.lazy: --help answers without jax)
quadratic = cli.lazy("vgjax.analysis.quadratic")

DEFAULT_OUT = Path("runs") / "optimizers_quadratic"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog="python -m experiments.optimizers",
                        description="docs/study.md §5: four from-scratch optimizers on f(w) = 0.1·w1² + 2·w2².")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--epochs", type=positive_int, default=30, help="updates per optimizer")
    return parser



def report(results: dict[str, dict], epochs: int) -> None:
    """Print the epoch-by-epoch tables and the final points to stdout (plain text off a terminal)."""
    console = Console(highlight=False)
    for name, result in results.items():
        console.print(quadratic.detail_table(name, result, min(epochs, quadratic.DETAIL_EPOCHS)))
    console.print(quadratic.summary_table(results, epochs))
    console.print("optax gap: largest |difference| between the float64 numpy reference and the "
                  "float32 optax transform over the whole trajectory.")


# --------------------------------------------------------------------------- saving

def prepare_out(out: Path) -> None:
    """Create ``out`` or end with one line (exit 2) if it cannot hold files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe, name = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(probe)
        os.unlink(name)
    except OSError as e:
        cli.fail(f"cannot write to the output directory {out}: {e.strerror or e}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # a non-UTF-8 terminal gets '?' for α, √, ·
        sys.stdout.reconfigure(errors="replace")
    prepare_out(args.out)
    results = quadratic.compute(args.epochs)
    report(results, args.epochs)
    try:
        quadratic.save(args.out, results, args.epochs)
    except OSError as e:
        cli.fail(f"cannot write to the output directory {args.out}: {e.strerror or e}")
    print(f"wrote trajectories.csv, trajectories.json and optimizers_quadratic.png to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
