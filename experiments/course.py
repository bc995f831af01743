"""python -m experiments.course train|collect|report --out DIR

Which protocol did the course use? Its own figures for this study (the quiz:
vgjax.analysis.course.FIGURES) against vgjax over several seeds at every batch size of its BATCHES
and both pixel scalings (``--pixels scaled``, x / 255, and ``raw``, 0-255 as the course's hint code
leaves them).

    train --part epoch1     the cheap epoch-1 figures (Adam, BatchNorm, skip paths): two sweeps
                            (one per pixel scaling) over the batch sizes and seeds, 1 epoch each
    train --part long       the expensive figures (std 1.0 at epoch 300, the staged schedule's run 1
                            at epoch 100) for --candidates (default: the protocols that fit the most
                            epoch-1 figures, every one when some protocol does)
    collect                 every sweep's metrics.csv (and benchmarks/course_keras.py's keras_*.csv)
                            as figures.csv: one row per figure, protocol and framework
                            and the escape sweep's depth-3, 5, 7 rows as original_table.csv
    report                  report.md from figures.csv and original_table.csv (no training)

Every sweep goes to ``DIR/<part>_<...>/`` as ``experiments.sweep`` writes it (config.json,
metrics.csv, summary.*; the figures are removed). "Inside the spread" is
``|course - mean| <= 2 std + 0.002`` (std over seeds, ddof 1; the floor lets runs at chance agree).
Exit status 0, 2 on usage errors. The figures, the fit rule, the verdict and the report's text live in
:mod:`vgjax.analysis.course`; this module parses the arguments and runs the sweeps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from experiments import cli
from vgjax.analysis import course
from vgjax.analysis.course import ESCAPE_CSV, ESCAPE_SWEEP, FIGURES_CSV, PIXELS

DEFAULT_OUT = Path("docs/results/course")


def run_sweep(out: Path, argv: list[str], workers: int) -> None:
    """One ``experiments.sweep`` into ``out`` (continued when interrupted, skipped when finished)."""
    summary = out / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("status") == "finished":
        print(f"{out}: finished, kept", file=sys.stderr)
        return
    resume = ["--resume"] if (out / "chunks").exists() else ["--overwrite"] if out.exists() else []
    cmd = [sys.executable, "-m", "experiments.sweep", *argv, "--workers", str(workers), "--threads", "1",
           "--out", str(out), *resume]
    print(" ".join(cmd[1:]), file=sys.stderr, flush=True)
    if subprocess.run(cmd).returncode != 0:
        cli.fail(f"the sweep into {out} failed (see above)", 1)
    for png in out.glob("*.png"):  # the course report keeps CSV and JSON only
        png.unlink()


def parse_candidates(text: str) -> list[tuple[int, str]]:
    out = []
    for item in text.split(","):
        b, sep, px = item.strip().partition(":")
        if not sep or not b.isdigit() or int(b) < 1 or px not in PIXELS:
            cli.fail(f"--candidates {text!r}: give BATCH:PIXELS items, e.g. 512:raw,128:scaled")
        out.append((int(b), px))
    return out


def long_candidates(out: Path, text: str) -> list[tuple[int, str]]:
    """--candidates as protocols; auto: those inside the spread of the most epoch-1 figures of figures.csv."""
    if text != "auto":
        return parse_candidates(text)
    if not (out / FIGURES_CSV).exists():
        cli.fail(f"--candidates auto needs {out / FIGURES_CSV}: run train --part epoch1 and collect first")
    candidates = course.candidate_protocols(course.read_rows(out / FIGURES_CSV))
    if not candidates:
        cli.fail("no protocol fits any epoch-1 figure: name --candidates BATCH:PIXELS,...")
    return candidates


def train(args) -> int:
    out = Path(args.out)
    if args.part == "epoch1":
        sweeps = course.epoch1_sweeps(args.seeds)
    else:
        sweeps = course.long_sweeps(long_candidates(out, args.candidates), args.seeds, args.std1_epochs)
    for name, argv in sweeps:
        run_sweep(out / name, argv, args.workers)
    return 0


def collect(out: Path, escape: Path) -> int:
    rows = course.collect(out)
    if not rows:
        cli.fail(f"{out} holds no finished sweep of the course's methods")
    course.write_rows(out / FIGURES_CSV, rows)
    print(f"{len(rows)} rows in {out / FIGURES_CSV}")
    if escape.is_dir():
        course.write_rows(out / ESCAPE_CSV, course.escape_rows(escape), course.ESCAPE_COLUMNS)
        print(f"the original's §3 models from {escape} in {out / ESCAPE_CSV}")
    return 0


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.course", description=__doc__.split("\n\n")[1])
    p.add_argument("command", choices=("train", "collect", "report"))
    p.add_argument("--out", default=str(DEFAULT_OUT), help="the course report's directory")
    p.add_argument("--part", choices=("epoch1", "long"), default="epoch1", help="train: which figures")
    p.add_argument("--candidates", default="auto",
                   help="train --part long: BATCH:PIXELS,... (auto: the protocols inside the spread of the most "
                   "epoch-1 figures)")
    p.add_argument("--seeds", type=int, default=4, help="seeds 0 .. N-1 per protocol")
    p.add_argument("--std1-epochs", type=int, default=300, help="train --part long: epochs of std 1.0 (300: the "
                   "course's; fewer is a cut, labelled in the report)")
    p.add_argument("--escape", default=str(ESCAPE_SWEEP), help="collect: the escape sweep whose depth-3, 5 and 7 "
                   "rows the report sets beside the original's §3 table")
    p.add_argument("--workers", type=int, default=0, help="the sweeps' --workers (0: vmapped in one process)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seeds < 1 or args.std1_epochs < 1 or args.workers < 0:
        cli.fail("--seeds and --std1-epochs must be >= 1, --workers >= 0")
    out = Path(args.out)
    if args.command == "train":
        out.mkdir(parents=True, exist_ok=True)
        return train(args)
    if not out.is_dir():
        cli.fail(f"--out {out}: no such directory")
    if args.command == "collect":
        return collect(out, Path(args.escape))
    if not (out / FIGURES_CSV).exists():
        cli.fail(f"{out / FIGURES_CSV} is missing: run collect first")
    print(f"wrote {course.write_report(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
