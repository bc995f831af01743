"""python -m experiments.evaluate RUN_DIR [--checkpoint best|latest]

Loads a run's saved model (its best-model checkpoint by default, else its latest checkpoint),
evaluates it on the test set and prints the metrics next to the ones the run recorded for that
epoch.
"""

from __future__ import annotations

import json
import sys

from experiments import cli


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.evaluate", description=__doc__.split("\n\n")[1])
    p.add_argument("run_dir", help="a run directory written by experiments.run")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                   help="which saved model: the best epoch's (best/) or the newest checkpoint (checkpoints/)")
    p.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST IDX files")
    p.add_argument("--data-source", choices=("idx", "tfds"), default="idx", help="where the arrays come from")
    p.add_argument("--threads", type=cli.threads_count, default=1,
                   help="CPU cores for XLA (1 is fastest for these small matrices; 0: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.one_line_warnings()
    # the library (jax, orbax) loads here, after the arguments: --help and usage errors answer
    # without it, and orbax's notes are already silenced when it loads
    from vgjax import runtime
    from vgjax.run.rundir import RunDir

    runtime.pin_cpu_threads(args.threads)
    import jax

    from vgjax.run.checkpoint import CheckpointDamaged
    from vgjax.run.runner import load_saved_state
    from vgjax.train.engine import DeviceData

    try:
        config, engine, state, info = load_saved_state(args.run_dir, args.checkpoint)
    except FileNotFoundError as e:
        cli.fail(str(e))
    except CheckpointDamaged as e:
        cli.fail(f"{args.run_dir}: its {args.checkpoint} checkpoint does not load ({e})")
    except (ValueError, TypeError, KeyError, AttributeError) as e:  # config.json / best.json damaged or foreign
        cli.fail(f"{args.run_dir}: its config.json or best/best.json cannot be used ({cli.one_line(e)})")
    except Exception as e:  # the checkpoint's files are damaged (orbax raises many kinds)
        cli.fail(f"{args.run_dir}: its {args.checkpoint} checkpoint does not load ({cli.one_line(e)})")
    arrays = cli.load_data(args.data_dir, args.data_source)
    data = DeviceData.from_numpy(arrays.x_train[:1], arrays.y_train[:1], arrays.x_test, arrays.y_test)
    metrics = jax.device_get(jax.jit(engine.evaluate)(state, data.x_test, data.y_test))
    recorded = {r["epoch"]: r for r in RunDir(args.run_dir).history()}.get(info["epoch"], {})
    result = {"run": args.run_dir, "method": config.method, **info,
              "val_loss": float(metrics["loss"]), "val_accuracy": float(metrics["accuracy"]),
              "recorded_val_loss": recorded.get("val_loss"),
              "recorded_val_accuracy": recorded.get("val_accuracy")}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
