"""python -m experiments.theory [--out DIR] [--seeds 8] [--quick]

Predicts the per-layer kernel-gradient norms at initialisation from the mean-field theory
(vgjax.analysis.theory) and measures them with the project's own ``kernel_grad_norms`` on the first
minibatch of each seed's run, for sigmoid, tanh and relu at init std 0.05, 0.5, 1, 10 and at the
He / Glorot scales; plus chi at the fixed point versus init std, with the critical std marked;
plus the measured trainability -- val accuracy after a fixed budget (--trainability-epochs on
--trainability-train-limit images, --trainability-seeds seeds; vgjax.sweep) of the 7-layer sigmoid
and tanh nets over a log grid of init stds that includes each one's critical std (skip with
--no-trainability).

Writes to ``--out`` (default runs/theory/): theory.csv (one row per case and layer),
theory.json (everything, with the cases outside the factor-1.5 band and why), profiles.png,
chi_vs_std.png, trainability.csv (one row per activation and std), trainability.png. Every file
is written atomically. Exit status: 0 done, 2 usage or data error.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from experiments import cli
from vgjax import runtime

# loaded when first used, after the arguments are parsed (cli.lazy: --help answers without jax)
figures, tc = cli.lazy("vgjax.report.figures"), cli.lazy("vgjax.analysis.theory_check")
from vgjax.files import atomic_write_json, atomic_write_text


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.theory", description=__doc__.split("\n\n")[1])
    p.add_argument("--out", default="runs/theory", help="output directory")
    p.add_argument("--seeds", type=int, default=8, help="measurement seeds (one first minibatch each)")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch size (the protocol's 32)")
    p.add_argument("--per-class", type=int, default=None,
                   help="examples per class in the theory's data sample (default 6; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smaller data sample for the theory (~4x faster)")
    p.add_argument("--depth", type=int, default=7, help="hidden layers")
    p.add_argument("--width", type=int, default=128, help="units per hidden layer")
    p.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST IDX files")
    p.add_argument("--data-source", choices=("idx", "tfds"), default="idx", help="where the arrays come from")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for JAX (0: all)")
    p.add_argument("--no-figures", "--no-plots", dest="no_plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-trainability", action="store_true",
                   help="skip the trainability sweep (val accuracy after a fixed budget vs init std)")
    p.add_argument("--trainability-epochs", type=int, default=None,
                   help="epochs of the trainability budget (default 3; 1 with --quick)")
    p.add_argument("--trainability-train-limit", type=int, default=None,
                   help="training images of the trainability budget (default 10000; 5000 with --quick)")
    p.add_argument("--trainability-seeds", type=int, default=None,
                   help="seeds per init std in the trainability sweep (default 2)")
    p.add_argument("--trainability-workers", type=int, default=0,
                   help="worker processes for the trainability sweep (0: vmapped in this process)")
    return p


def check_args(args) -> None:
    if args.seeds < 1:
        cli.fail(f"--seeds must be >= 1, got {args.seeds}")
    if args.batch_size < 1:
        cli.fail(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.per_class is None:
        args.per_class = 3 if args.quick else 6
    if args.per_class < 2:
        cli.fail(f"--per-class must be >= 2, got {args.per_class}")
    if args.depth < 1 or args.width < 1:
        cli.fail("--depth and --width must be >= 1")
    defaults = {"trainability_epochs": (3, 1), "trainability_train_limit": (10000, 5000),
                "trainability_seeds": (2, 2)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < 1:
            cli.fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.trainability_workers < 0:
        cli.fail(f"--trainability-workers must be >= 0, got {args.trainability_workers}")


def run_trainability(args, arrays, log) -> tuple[dict | None, str]:
    """The trainability sweep with the command line's budget, or why it was skipped."""
    if args.no_trainability:
        return None, "skipped (--no-trainability)"
    return tc.trainability(arrays, depth=args.depth, width=args.width, batch_size=args.batch_size,
                           epochs=args.trainability_epochs, train_limit=args.trainability_train_limit,
                           seeds=args.trainability_seeds, workers=args.trainability_workers, log=log)


def prepare_out(out: Path) -> None:
    """Create ``out`` or end with one line (exit 2) if it cannot hold files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".probe")
        probe.close()
    except OSError as e:
        cli.fail(f"cannot write to the output directory {out}: {e.strerror}")


def summary_of(args, results: list[dict], chi: dict, train: dict | None, train_status: str, runtime_s: dict) -> dict:
    """Everything theory.json holds, with the cases outside the band and why."""
    outside = [{"case": r["case"], "worst_factor": r["worst_factor"], "acceptance_case": r["acceptance_case"],
                "ratio": r["ratio"], "reason": r["reason"]} for r in results if not r["within_band"]]
    return {
        "settings": {"seeds": args.seeds, "batch_size": args.batch_size, "per_class": args.per_class,
                     "depth": args.depth, "width": args.width, "measured": "RMS over seeds of kernel_grad_norms "
                     "on each seed's first minibatch at initialisation", "band": tc.BAND},
        "cases": results, "chi_vs_std": chi, "outside_band": outside,
        "acceptance_met": all(r["within_band"] for r in results if r["acceptance_case"]),
        "trainability": train if train is not None else train_status,
        "runtime_s": runtime_s,
    }


def write_files(out: Path, summary: dict, no_plots: bool) -> None:
    results, chi, train = summary["cases"], summary["chi_vs_std"], summary["trainability"]
    train = train if isinstance(train, dict) else None
    atomic_write_json(out / "theory.json", tc.finite(summary))
    atomic_write_text(out / "theory.csv", tc.csv_text(results))
    if train is not None:
        atomic_write_text(out / "trainability.csv", tc.trainability_csv(train))
    if not no_plots:
        figures.plot_profiles(results, out / "profiles.png")
        figures.plot_chi(chi, results, out / "chi_vs_std.png", train)
        if train is not None:
            figures.plot_trainability(train, out / "trainability.png", chi)


def print_table(results: list[dict]) -> None:
    layers = results[0]["layers"]
    t = Table(title="measured (RMS over seeds) / predicted kernel-gradient norm at init")
    t.add_column("case")
    for n in layers:
        t.add_column(n.replace("hidden_", "h"), justify="right")
    t.add_column("worst", justify="right")
    t.add_column("L1/out pred", justify="right")
    t.add_column("L1/out meas", justify="right")
    for r in results:
        style = None if r["within_band"] else "red"
        t.add_row(r["case"], *[f"{v:.2f}" for v in r["ratio"]], f"{r['worst_factor']:.2f}",
                  f"{r['pred_ratio_to_output'][0]:.3g}", f"{r['meas_ratio_to_output'][0]:.3g}",
                  style=style)
    Console(width=140).print(t)


def print_summary(args, summary: dict, elapsed: float, train_s: float) -> None:
    results, chi, train = summary["cases"], summary["chi_vs_std"], summary["trainability"]
    print_table(results)
    print("critical init std (chi = 1 at q*, width %d): " % args.width
          + ", ".join(f"{a} {', '.join(f'{s:.4g}' for s in c) or 'none'}" for a, c in chi["critical_all"].items()))
    for o in summary["outside_band"]:
        print(f"outside {tc.BAND}x: {o['case']} (worst x{o['worst_factor']:.2f}, measured/predicted per layer "
              f"{' '.join(f'{v:.2f}' for v in o['ratio'])}): {o['reason']}")
    print(tc.trainability_text(train) if isinstance(train, dict) else f"trainability: {train}")
    print(f"acceptance cases within {tc.BAND}x: {'yes' if summary['acceptance_met'] else 'NO'}; "
          f"runtime {elapsed:.0f}s (trainability {train_s:.0f}s); written to {args.out}/")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    runtime.pin_cpu_threads(args.threads or None)
    out = Path(args.out)
    prepare_out(out)
    arrays = cli.load_data(args.data_dir, args.data_source)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        results = tc.run_cases(np.asarray(arrays.x_train), np.asarray(arrays.y_train), per_class=args.per_class,
                               depth=args.depth, width=args.width, batch_size=args.batch_size, seeds=args.seeds,
                               log=log)
        t1 = time.perf_counter()
        chi = tc.chi_curves(args.width)
        t2 = time.perf_counter()
        train, train_status = run_trainability(args, arrays, log)
    except KeyboardInterrupt:
        cli.fail("interrupted; nothing written", cli.EXIT_INTERRUPTED)
    t3 = time.perf_counter()
    summary = summary_of(args, results, chi, train, train_status,
                         {"cases": t1 - t0, "chi_curves": t2 - t1, "trainability": t3 - t2})
    write_files(out, summary, args.no_plots)
    print_summary(args, summary, t3 - t0, t3 - t2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
