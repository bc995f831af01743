#!/usr/bin/env python
"""Mutation testing of vgjax with a hand-written catalogue of semantic mutants.

Usage (from the repository root)::

    python tools/mutate.py                 # every mutant of tools/mutants.toml
    python tools/mutate.py --list          # the catalogue, and which snippets are stale
    python tools/mutate.py --only ID ...   # some mutants (ids or areas, e.g. --only optimizers)
    python tools/mutate.py --jobs 2        # two mutants at a time (one tree copy each)

Each mutant names a file, an exact snippet of it, its replacement and the tests that must fail
under it. The working tree is never modified: the tree (what ``git ls-files -co --exclude-standard``
lists, uncommitted edits included) is copied into a temporary directory, and for each mutant the
snippet is replaced there and ``python -m pytest -x -q <tests>`` runs in the copy with
``PYTHONPATH`` pointing at it, under a per-mutant timeout. Results:

- killed: the tests failed (or timed out, or could not import the mutated code);
- survived: the tests passed -- a bug of that kind would go unnoticed;
- stale: the snippet is not in the file exactly once (the code changed; update the catalogue);
- invalid: the replacement does not compile, or the tests fail/error on the unmutated tree too.

The score is killed / (killed + survived); stale and invalid mutants are listed but not counted.
The exit status is 0 when nothing survived and nothing is stale or invalid, 1 otherwise.
See docs/testing.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "tools" / "mutants.toml"
DEFAULT_TIMEOUT_S = 240


@dataclasses.dataclass(frozen=True)
class Mutant:
    id: str
    area: str
    file: str
    original: str
    replacement: str
    description: str
    tests: tuple[str, ...]
    timeout: float | None = None


@dataclasses.dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | stale | invalid
    detail: str = ""
    seconds: float = 0.0


def load_catalogue(path: Path = CATALOGUE) -> list[Mutant]:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    mutants, seen = [], set()
    for i, entry in enumerate(raw.get("mutant", []), 1):
        missing = {"id", "area", "file", "original", "replacement", "description", "tests"} - set(entry)
        if missing:
            raise SystemExit(f"{path}: mutant #{i} lacks {', '.join(sorted(missing))}")
        if entry["id"] in seen:
            raise SystemExit(f"{path}: mutant id {entry['id']!r} is used twice")
        seen.add(entry["id"])
        tests = entry["tests"]
        mutants.append(Mutant(entry["id"], entry["area"], entry["file"], entry["original"], entry["replacement"],
                              entry["description"].strip(), tuple([tests] if isinstance(tests, str) else tests),
                              entry.get("timeout")))
    return mutants


def stale_reason(m: Mutant, root: Path = ROOT) -> str | None:
    """Why the mutant cannot be applied to the tree at ``root`` (None if it can)."""
    path = root / m.file
    if not path.is_file():
        return f"{m.file} does not exist"
    n = path.read_text().count(m.original)
    if n == 0:
        return f"snippet not found in {m.file}"
    if n > 1:
        return f"snippet found {n} times in {m.file} (make it unique)"
    if m.original == m.replacement:
        return "replacement equals the original"
    return None


def tree_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                         capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p and (root / p).is_file()]


def copy_tree(root: Path, dest: Path) -> Path:
    for rel in tree_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def pytest_env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_pytest(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, str, float]:
    """(return code or None on timeout, last lines of output, seconds)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", "-W",
           "ignore", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=tree, env=pytest_env(tree), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", time.perf_counter() - t0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    failed = [ln.split(" - ")[0] for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    tail = "\n".join(failed[:1] + lines[-3:])
    return proc.returncode, tail, time.perf_counter() - t0


def check_imports_from(tree: Path) -> None:
    """The copy's vgjax is the one imported (not an installed one)."""
    out = subprocess.run([sys.executable, "-c", "import vgjax; print(vgjax.__file__)"], cwd=tree,
                         env=pytest_env(tree), capture_output=True, text=True)
    where = out.stdout.strip()
    if out.returncode or not Path(where).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the copy's vgjax is not the one imported (got {where or out.stderr.strip()})")


def mutate_and_test(m: Mutant, tree: Path, timeout: float) -> Outcome:
    path = tree / m.file
    original_text = path.read_text()
    mutated = original_text.replace(m.original, m.replacement, 1)
    try:
        compile(mutated, str(path), "exec")
    except SyntaxError as e:
        return Outcome(m, "invalid", f"replacement does not compile: {e}")
    path.write_text(mutated)
    try:
        rc, tail, seconds = run_pytest(tree, m.tests, m.timeout or timeout)
    finally:
        path.write_text(original_text)
    if rc is None:
        return Outcome(m, "killed", f"timeout after {m.timeout or timeout:.0f} s", seconds)
    first = tail.splitlines()[0] if tail.startswith(("FAILED ", "ERROR ")) else ""
    if rc == 1:
        return Outcome(m, "killed", first or "tests failed", seconds)
    if rc == 2:
        return Outcome(m, "killed", f"tests could not import or collect the mutated code {first}".strip(), seconds)
    if rc == 0:
        return Outcome(m, "survived", tail.splitlines()[-1] if tail else "", seconds)
    return Outcome(m, "invalid", f"pytest exit status {rc}: {tail}", seconds)


def select(mutants: list[Mutant], only: list[str]) -> list[Mutant]:
    if not only:
        return mutants
    unknown = set(only) - {m.id for m in mutants} - {m.area for m in mutants}
    if unknown:
        raise SystemExit(f"no mutant or area named {', '.join(sorted(unknown))}")
    return [m for m in mutants if m.id in only or m.area in only]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalogue", type=Path, default=CATALOGUE)
    ap.add_argument("--only", nargs="+", default=[], metavar="ID", help="mutant ids or areas to run")
    ap.add_argument("--list", action="store_true", help="print the catalogue and stale entries, run nothing")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                    help=f"seconds per mutant unless it sets its own (default {DEFAULT_TIMEOUT_S})")
    ap.add_argument("--jobs", type=int, default=1, help="mutants tested at a time (default 1)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip running the selected tests on the unmutated tree first")
    args = ap.parse_args(argv)

    mutants = select(load_catalogue(args.catalogue), args.only)
    areas = sorted({m.area for m in mutants})
    if args.list:
        for m in mutants:
            reason = stale_reason(m)
            print(f"{m.id:36s} {m.area:12s} {m.file:24s} {'STALE: ' + reason if reason else ''}")
            print(f"    {m.description}\n    tests: {' '.join(m.tests)}")
        print(f"{len(mutants)} mutants in {len(areas)} areas: {', '.join(areas)}")
        return 0

    t_start = time.perf_counter()
    outcomes: list[Outcome] = []
    live = []
    for m in mutants:
        reason = stale_reason(m)
        if reason:
            outcomes.append(Outcome(m, "stale", reason))
        else:
            live.append(m)
    jobs = max(1, min(args.jobs, len(live) or 1))
    with tempfile.TemporaryDirectory(prefix="vgjax-mutants-") as tmp:
        trees = [copy_tree(ROOT, Path(tmp) / f"tree{j}") for j in range(jobs)]
        check_imports_from(trees[0])
        print(f"[mutate] {len(mutants)} mutants ({len(live)} applicable) in {len(areas)} areas; "
              f"tree copied to {tmp} ({jobs} cop{'y' if jobs == 1 else 'ies'})", flush=True)
        if not args.no_baseline and live:
            union = tuple(dict.fromkeys(t for m in live for t in m.tests))
            rc, tail, seconds = run_pytest(trees[0], union, args.timeout * 4)
            print(f"[mutate] baseline: the selected tests on the unmutated tree: "
                  f"{'pass' if rc == 0 else 'FAIL'} ({seconds:.0f} s)", flush=True)
            if rc != 0:
                print(tail)
                print("[mutate] the tests must pass on the unmutated tree; nothing was mutated")
                return 1

        free = list(trees)
        lock = threading.Lock()

        def work(m: Mutant) -> Outcome:
            with lock:
                tree = free.pop()
            try:
                return mutate_and_test(m, tree, args.timeout)
            finally:
                with lock:
                    free.append(tree)

        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            for out in pool.map(work, live):
                outcomes.append(out)
                print(f"[mutate] {out.status.upper():8s} {out.mutant.id:36s} {out.seconds:5.0f} s  {out.detail}",
                      flush=True)

    order = {m.id: i for i, m in enumerate(mutants)}
    outcomes.sort(key=lambda o: order[o.mutant.id])
    counts = {s: sum(o.status == s for o in outcomes) for s in ("killed", "survived", "stale", "invalid")}
    print("\n" + "-" * 100)
    for o in outcomes:
        print(f"{o.status:9s} {o.mutant.area:12s} {o.mutant.id:36s} {o.detail}")
        if o.status in ("survived", "stale", "invalid"):
            print(f"          {o.mutant.file}: {o.mutant.description}")
    scored = counts["killed"] + counts["survived"]
    score = 100.0 * counts["killed"] / scored if scored else 0.0
    print("-" * 100)
    print(f"killed {counts['killed']}, survived {counts['survived']}, stale {counts['stale']}, "
          f"invalid {counts['invalid']}; score {score:.1f} % ({counts['killed']}/{scored}) "
          f"in {time.perf_counter() - t_start:.0f} s")
    return 0 if counts["survived"] == counts["stale"] == counts["invalid"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
