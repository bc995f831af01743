"""Turning ``experiments.run``'s flags into the run's Config: the method's settings, the flags
given (one per Config field), a JSON stage table read strictly, and ``--init-from`` checked
against the model it will initialise. Every problem is one line and exit status 2."""

from __future__ import annotations

from pathlib import Path

import jax

from experiments import cli
from vgjax.train import stages
from vgjax.config import ConfigError
from vgjax.methods import METHODS, get_config
from vgjax.nn.models import build_model, init_variables
from vgjax.run.runner import load_saved_state, saved_model_problem
from vgjax.train.stages import run_table

MAX_EPOCHS = 1_000_000  # more than any run could train: a larger number is a typo


def config_from_args(args):
    """The run's Config from the method and the flags given; a bad combination is one line, exit 2."""
    overrides = cli.config_overrides(args)
    method = METHODS.get(args.method)
    if method is None:
        try:
            return get_config(args.method)  # ConfigError: unknown method
        except ConfigError as e:
            cli.fail(str(e))
    if args.stages is not None or "stages" in method.changes:
        _staged_overrides(args, method, overrides)
    elif args.epochs_scale is not None:
        cli.fail("--epochs-scale applies to staged training only (--stages or --method freeze); use --epochs")
    if args.init_from is not None:
        problem = saved_model_problem(args.init_from)
        if problem:
            cli.fail(f"--init-from {args.init_from}: {problem}")
        overrides["init_from"] = str(Path(args.init_from).resolve())
    try:
        config = get_config(args.method, **overrides)
        total = run_table(config).total_epochs  # validates the table
    except ConfigError as e:
        cli.config_error(e, overrides)
    if total > MAX_EPOCHS:
        cli.fail(f"the run would train {total:.3g} epochs (more than {MAX_EPOCHS:,}); check --epochs / --epochs-scale")
    return config


def _staged_overrides(args, method, overrides: dict) -> None:
    """Staged training: the table sets every stage's epochs and the depth."""
    if args.epochs is not None:
        cli.fail("--epochs does not apply to staged training: its table sets every stage's epochs "
                 "(scale them with --epochs-scale)")
    try:
        if args.stages is not None:
            overrides["stages"] = stages.table_file_text(args.stages)
        table = stages.load_table(overrides.get("stages") or method.changes["stages"])
    except stages.TableFileError as e:
        cli.fail(f"--stages {e}")
    except ConfigError as e:
        cli.fail(str(e))
    if args.depth is not None and args.depth != table.depth:
        cli.fail(f"--depth {args.depth} does not match the stage table, which stacks {table.depth} hidden "
                 f"layers ({'-'.join(str(n) for n in table.sizes)}): the table sets the depth")
    overrides["depth"] = table.depth
    if overrides.get("skips") or method.changes.get("skips"):
        cli.fail("skip paths (--skips) cannot be combined with staged training (--stages): the early "
                 "stages stack fewer layers than the paths join")


def check_init_from(config) -> None:
    """--init-from: the saved model loads, and every layer it shares with this run has its shape."""
    try:
        _, _, state, _ = load_saved_state(config.init_from)
    except Exception as e:  # a damaged run: config, checkpoint files (orbax raises many kinds)
        cli.fail(f"--init-from {config.init_from}: its saved model does not load ({cli.one_line(e)})")
    table = run_table(config)
    model = build_model(config.replace(depth=table.stage_depth(table.stages[0]), init_from=None))
    fresh = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0)))["params"]
    shape = lambda tree: [tuple(x.shape) for x in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    shared = [n for n in state.params if n in fresh]
    bad = [n for n in shared if shape(state.params[n]) != shape(fresh[n])]
    if bad:
        kernel = lambda tree: "×".join(str(d) for d in tree["kernel"].shape) if "kernel" in tree else "?"  # noqa
        cli.fail(f"--init-from {config.init_from}: its layer {bad[0]} is {kernel(state.params[bad[0]])}, this run's "
                 f"is {kernel(fresh[bad[0]])} ({len(bad)} layer(s) differ): use the same --width and model")
    if not shared:
        cli.fail(f"--init-from {config.init_from}: none of its layers is in this run's model")


def check_runs(argvs: dict[str, list[str]], note: str) -> None:
    """Each run's flags (``argvs``: the experiments.run arguments per method) checked as
    experiments.run will check them (exit 2, one line naming the method and ``note``), so that a
    command starting several runs fails on none of them after others have worked for minutes."""
    import contextlib
    import io

    from experiments import run as run_cli
    for method, argv in argvs.items():
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                config_from_args(run_cli.build_parser().parse_args(argv))
        except SystemExit:
            lines = [line for line in said.getvalue().splitlines() if line.strip()]
            why = lines[-1].removeprefix("error: ") if lines else "its flags are refused"
            why = why.split(": error: ", 1)[-1]  # an argparse message: "usage ...: error: ..."
            cli.fail(f"{method}: {why} ({note})")
