"""The command lines' plumbing that loads nothing heavy: the help formatter, --version, modules
loaded on first use, and a command made of another's flags (experiments.sweep_hosts)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Callable


def lazy(name: str):
    """Module ``name``, loaded on its first attribute access (importlib's LazyLoader): a command
    imports jax, orbax and matplotlib only after its arguments are parsed, so ``--help`` and
    usage errors answer at once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:  # as an import would: the package's attribute (``import vgjax.x; vgjax.x.f``)
        setattr(sys.modules[parent], child, module)
    return module


def version_line() -> str:
    import vgjax

    return f"vgjax {vgjax.__version__}"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every flag's default once: ``[default: X]`` added where the help does not say it already
    (a default of None, False or an empty list says nothing, so it is not shown); the description
    keeps its own line breaks (a command's steps, one per line)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        quiet = action.default in (None, False, [], argparse.SUPPRESS) or action.option_strings == []
        if "[default:" in text or quiet or isinstance(action, argparse._HelpAction):
            return text
        value = action.default
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        return f"{text} [default: {shown.replace('%', '%%')}]"  # as the flag takes it: 3,4,5


def protocol_default(field) -> str:
    """A Config field's default as its flag would take it ('' when it has none: None)."""
    value = field.default
    if value is None:
        return ""
    if field.name == "skips":
        return ",".join(f"{a}-{b}" for a, b in value) or "none"
    return str(value)


def help_or_run(argv: list[str] | None, parser: argparse.ArgumentParser, add_flags: Callable, target: str) -> int:
    """A module whose flags belong to the command ``target``: ``--help`` (and ``--version``) answer
    with ``parser`` holding its ``add_flags``; anything else runs ``target``'s main with ``argv``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser.description += f"\n\nThese are flags of {target} (its --help lists the others); this runs it."
    add_flags(parser)
    parser.parse_args([a for a in argv if a in ("-h", "--help", "--version")])
    return importlib.import_module(target).main(argv)
