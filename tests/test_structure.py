"""The layout rules of docs/maintainers.md ("Layout"), checked on the source: the library never imports the
command lines, its modules import each other without a cycle, no function exceeds 60 lines and
no command-line module 250."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
MAX_COMMAND_LINE_MODULE = 250


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted((ROOT / package).rglob("*.py"))}


def imported(tree: ast.Module) -> set[str]:
    """Every module an ``import`` anywhere in ``tree`` names (``from vgjax import x`` -> vgjax.x)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_the_library_never_imports_the_command_lines():
    bad = {m: sorted(i for i in imported(t) if i.split(".")[0] == "experiments") for m, t in modules("vgjax").items()}
    assert not {m: i for m, i in bad.items() if i}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_no_import_cycle_inside_the_library():
    mods = modules("vgjax")
    # a package's __init__ that re-exports its modules is not a cycle with them
    graph = {m: {i for i in imported(t) if i in mods and i != m and not (m.startswith(i + ".") )}
             for m, t in mods.items()}
    assert find_cycle(graph) is None, find_cycle(graph)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_functions_are_short_and_command_lines_small():
    long = []
    for package in ("vgjax", "experiments"):
        for name, tree in modules(package).items():
            long += [f"{name}.{n.name}: {n.end_lineno - n.lineno + 1} lines" for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    big = [f"{p.name}: {n} lines" for p in sorted((ROOT / "experiments").glob("*.py"))
           if (n := len(p.read_text().splitlines())) > MAX_COMMAND_LINE_MODULE]
    assert not long and not big, long + big


# ---------------------------------------------------------------------------------------------- layout
# The library's folders by role (docs/maintainers.md, "Layout"), from the bottom up: a module imports
# (at module level) only its own folder's modules and those of lower levels.
LEVELS = {"top": 0, "nn": 1, "optim": 1, "train": 2, "run": 3, "sweep": 4, "analysis": 5, "report": 5}
TOP_MODULES = {"config", "data", "methods", "owned", "faults", "runtime", "files"}
# Upward imports allowed, each for one reason
UPWARD = {
    ("vgjax.train.diagnostics", "vgjax.run.rundir"): "histograms are written under the run directory's names",
    ("vgjax.run.runner", "vgjax.report"): "a finished run draws its figures from its saved files",
    ("vgjax.sweep.files", "vgjax.report.figures"): "a finished sweep draws its two curve figures",
    ("vgjax.sweep.seeds", "vgjax.report.sweep"): "the multi-seed suite's report formats as a sweep's",
}


def level_of(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if parts[0] != "vgjax" or len(parts) < 2:
        return None
    group = parts[1] if parts[1] in LEVELS else "top" if parts[1] in TOP_MODULES else None
    return (group, LEVELS[group]) if group else None


def module_level_imports(tree: ast.Module) -> set[str]:
    """The modules imported outside functions (``from vgjax.x import y``: vgjax.x)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = []  # imports inside a function are deferred, not a layer dependency
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def upward_imports(mods: dict[str, ast.Module]) -> list[str]:
    bad = []
    for name, tree in mods.items():
        here = level_of(name)
        for target in module_level_imports(tree):
            there = level_of(target)
            if here and there and there[0] != here[0] and there[1] > here[1] and (name, target) not in UPWARD:
                bad.append(f"{name} ({here[0]}) imports {target} ({there[0]})")
    return sorted(bad)


def test_the_library_has_its_folders_by_role():
    root = ROOT / "vgjax"
    folders = {p.name for p in root.iterdir() if p.is_dir() and p.name != "__pycache__"}
    flat = {p.stem for p in root.glob("*.py")} - {"__init__"}
    assert folders == set(LEVELS) - {"top"} and flat == TOP_MODULES, (folders, flat)
    assert all((root / f / "__init__.py").exists() for f in folders)


def test_modules_import_only_their_own_level_and_below():
    assert upward_imports(modules("vgjax")) == []


def test_the_layer_rule_finds_an_upward_import():
    mods = {"vgjax.nn.models": ast.parse("from vgjax.train.engine import fit\n"),
            "vgjax.train.engine": ast.parse("def f():\n    from vgjax.report import plots\n")}
    assert upward_imports(mods) == ["vgjax.nn.models (nn) imports vgjax.train.engine (train)"]


PRINTING_IMPORTS = ("rich.console", "rich.live", "rich.progress")


def prints(tree: ast.Module) -> list[str]:
    """Terminal output in a module: print(), sys.stdout/stderr.write, rich's consoles and live displays."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            out.append(f"print() at line {node.lineno}")
        elif (isinstance(node, ast.Attribute) and node.attr == "write" and isinstance(node.value, ast.Attribute)
              and node.value.attr in ("stdout", "stderr")):
            out.append(f"sys.{node.value.attr}.write at line {node.lineno}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PRINTING_IMPORTS):
            out.append(f"imports {node.module} at line {node.lineno}")
    return out


def test_the_library_never_prints():
    found = {name: p for name, tree in modules("vgjax").items() if (p := prints(tree))}
    assert found == {}, found


def test_the_print_rule_finds_output():
    tree = ast.parse("import sys\nfrom rich.console import Console\ndef f():\n    print(1)\n    sys.stderr.write('x')\n")
    assert prints(tree) == ["imports rich.console at line 2", "print() at line 4", "sys.stderr.write at line 5"]


def test_the_maintainers_page_lists_every_module_of_the_library():
    text = (ROOT / "docs" / "maintainers.md").read_text()
    block = text[text.index("## Layout"):].split("```")[1]
    missing = [str(p.relative_to(ROOT / "vgjax")) for p in sorted((ROOT / "vgjax").rglob("*.py"))
               if p.stem != "__init__" and p.name not in block]
    assert not missing, missing
