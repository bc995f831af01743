"""Shared command-line plumbing: one-line usage errors (exit 2), progress display, data loading."""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
import time
import warnings
from typing import NoReturn

from experiments.tooling import HelpFormatter, help_or_run, lazy, protocol_default, version_line  # noqa: F401
from vgjax import config as config_mod
from vgjax.faults import InterruptOnce, interrupts_once, no_space, one_line, write_failure, written_path  # noqa: F401
from vgjax.train.hooks import Hook

data = lazy("vgjax.data")  # numpy and the loader: loaded when first used

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exits with status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=version_line(),
                          help="print vgjax's version and exit")

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see --help)")


def fail(message: str, status: int = EXIT_USAGE) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def finite_float(text: str) -> float:
    """argparse type: a finite number (no nan, inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def threads_count(text: str) -> int:
    """argparse type of --threads: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} cores: give a number >= 0 (0: all cores)")
    return value


def one_line_warnings() -> None:
    """Show warnings as ``warning: MESSAGE`` lines (no source line, no file position), and
    silence orbax's informational logging."""
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    # orbax logs its notes and a failed background save (with tracebacks) through absl: the CLIs
    # say what matters (vgjax.run.checkpoint raises a failed save again in the caller's thread)
    from absl import logging as absl_logging  # installed with orbax
    absl_logging.set_verbosity(absl_logging.FATAL)


def sigterm_as_interrupt() -> None:
    """Turn SIGTERM into KeyboardInterrupt so a killed run records where it stopped."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _list(kind: type, text: str) -> list:
    values = [t.strip() for t in text.split(",")]
    if not values or any(not v for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list")
    try:
        out = [kind(v) for v in values]
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be {what}") from None
    if kind is float and not all(math.isfinite(v) for v in out):
        raise argparse.ArgumentTypeError(f"{text!r}: values must be finite")
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"{text!r} repeats a value")
    return out


def float_list(text: str) -> list[float]:
    return _list(float, text)


def int_list(text: str) -> list[int]:
    return _list(int, text)


def name_list(text: str) -> list[str]:
    return _list(str, text)


def load_data(data_dir: str | None, source: str):
    """Fashion-MNIST as numpy arrays; a data problem becomes one clear line and exit 2."""
    try:
        return data.load(data_dir, source=source)
    except data.DataError as e:
        fail(str(e))


class EpochPrinter(Hook):
    """Progress for one run: a rich bar on a terminal, a plain line per epoch otherwise."""

    def __init__(self, title: str, total_epochs: int, done: int = 0, every: int = 1):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.title, self.total, self.every = title, total_epochs, max(every, 1)
        self.start, self.start_done = time.perf_counter(), done
        self._progress = None
        if self.console.is_terminal:
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"),
                                      TimeRemainingColumn(), console=self.console)
            self._task = self._progress.add_task(title, total=total_epochs, completed=done, metrics="")
            self._progress.start()

    @staticmethod
    def describe(rec: dict) -> str:
        return (f"loss {rec['loss']:.4f} acc {rec['accuracy']:.4f} "
                f"val_loss {rec['val_loss']:.4f} val_acc {rec['val_accuracy']:.4f}")

    def on_epoch_end(self, rec: dict, *_args) -> None:
        stage = f" stage {rec['stage']}" if "stage" in rec else ""
        if self._progress is not None:
            self._progress.update(self._task, completed=rec["epoch"], metrics=self.describe(rec),
                                  description=f"{self.title}{stage}")
            return
        if rec["epoch"] % self.every == 0 or rec["epoch"] == self.total:
            done = rec["epoch"] - self.start_done
            eta = (time.perf_counter() - self.start) / max(done, 1) * (self.total - rec["epoch"])
            print(f"{self.title}{stage} epoch {rec['epoch']}/{self.total} {self.describe(rec)} "
                  f"({rec['epoch_time_s']:.2f}s/epoch, eta {eta:.0f}s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


# ----------------------------------------------------------------------------- Config flags

_FLAG_TYPES = {"int": int, "float": finite_float, "str": str}


def _skips(text: str):
    try:
        return config_mod.parse_skips(text)
    except config_mod.ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def config_flag(field_name: str) -> str | None:
    """The flag of a Config field (``--field-name``, ``--no-diagnostics``, ...); None: it has none."""
    field = next(f for f in config_mod.fields() if f.name == field_name)
    flag = field.metadata["flag"]
    return None if flag is None else (flag or "--" + field.name.replace("_", "-"))


def add_config_flags(parser: argparse.ArgumentParser, groups=config_mod.GROUPS, exclude=(),
                     note: str = "the method's") -> list[str]:
    """One flag per Config field of ``groups`` (an argument group each), default None (= not
    given); returns the fields that got one. Boolean fields get a switch away from the default."""
    added = []
    for group in groups:
        g = parser.add_argument_group(f"{group} settings")
        for f in config_mod.fields(group):
            flag = config_flag(f.name)
            if flag is None or f.name in exclude:
                continue
            kw = {"dest": f.name, "default": None, "help": f.metadata["help"]}
            if f.type == "bool":
                g.add_argument(flag, action="store_const", const=not f.default, **kw)
            else:
                typ = _skips if f.name == "skips" else _FLAG_TYPES[f.type.replace(" | None", "")]
                shown = protocol_default(f)
                g.add_argument(flag, type=typ, **{**kw, "help": f"{kw['help']} [default: {note}"
                                                  + (f"; seed protocol: {shown}]" if shown else "]")})
            added.append(f.name)
    return added


def config_overrides(args: argparse.Namespace, names=None) -> dict:
    """The Config fields the user gave on the command line (those not None)."""
    flagged = [f.name for f in config_mod.fields() if config_flag(f.name)]
    names = flagged if names is None else [n for n in names if n in flagged]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def run_flag(dest: str, value) -> list[str]:
    """A setting as the command-line words that give it (a Config field's flag, or ``--dest``)."""
    flag = (config_flag(dest) if dest in {f.name for f in config_mod.fields()} else None) or "--" + dest.replace("_", "-")
    if isinstance(value, bool):
        return [flag]
    if dest == "skips":
        return [flag, ",".join(f"{a}-{b}" for a, b in value) or "none"]
    return [flag, str(value)]


def config_error(e: "config_mod.ConfigError", given: dict) -> NoReturn:
    """A ConfigError as one line naming the flag at fault when the user gave it."""
    if e.field in given and config_flag(e.field):
        value = given[e.field]
        shown = "" if isinstance(value, bool) else f" {value}"
        fail(f"{config_flag(e.field)}{shown}: {e}")
    fail(str(e))


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    i = argv.index("--") if "--" in argv else len(argv)
    return argv[:i], argv[i + 1:]


def parse_method_args(items: list[str], methods: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            fail(f"--method-args {item!r} must look like METHOD='--flag value'")
        if name not in methods:
            fail(f"--method-args: {name!r} is not among the suite's methods ({', '.join(methods)})")
        try:
            out.setdefault(name, []).extend(shlex.split(text))
        except ValueError as e:
            fail(f"--method-args {item!r}: {e}")
    return out
