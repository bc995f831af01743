"""Faults from outside the program: a repeated Ctrl-C, a full disk, kill -9 of a sweep's parent,
an interrupt while figures are drawn, a torn metrics.csv, the wrong folder given to a command, and
a fresh machine with only the dev extra installed. Each ends with one true line, the right exit
status and no traceback, and leaves nothing half-written that looks complete.

Signals and kill -9 are sent to real processes; a full disk is a small tmpfs where one can be
mounted (root), and otherwise, and also in-process, a write that fails with ENOSPC (``os.fsync``
patched for the files of one directory, as a disk that fills up reports it).
"""

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from experiments import escape as escape_cli
from experiments import plot as plot_cli
from experiments import run as run_cli
from experiments import sweep as sweep_cli
from tests.test_faults import BASE, ROOT, TINY, call, rows_of
from vgjax.report import plots
from vgjax.run.rundir import read_history

LIVE = ["--method", "baseline_3", "--epochs", "2000", "--checkpoint-every", "1", *TINY]
SWEEP = ["--method", "baseline_3", "--init-std", "0.5,1", "--seeds", "2", "--epochs", "2", "--train-limit", "300",
         "--workers", "0"]


@pytest.fixture(autouse=True)
def _restore_process_state():
    """The commands install signal handlers and one-line warnings: undo them after each test."""
    import warnings
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    fmt = warnings.formatwarning
    yield
    for s, h in handlers.items():
        signal.signal(s, h)
    warnings.formatwarning = fmt


def lines_besides_epochs(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not re.match(r"\S+( stage \d+)? epoch \d+/", line)]


def wait_rows(out: Path, n: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (out / "history.jsonl").exists() and len(read_history(out / "history.jsonl")) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {n} history rows in time (exit {proc.poll()})")


@contextlib.contextmanager
def disk_full_under(root: Path, names: str = ""):
    """Every atomic write (``os.fsync``) of a file under ``root`` whose name contains ``names``
    fails with ENOSPC, as on a full disk."""
    real = os.fsync

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(str(root)) and names in Path(target).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    os.fsync = fsync
    try:
        yield
    finally:
        os.fsync = real


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")


# ------------------------------------------------------------------------------------------------
# Ctrl-C


def test_repeated_ctrl_c_on_a_live_run_ends_with_one_true_line(tmp_path):
    """Ctrl-C pressed again and again while a run stops: one line that says what was saved and how
    to go on, exit 130, no traceback, no false "nothing was written"."""
    out = tmp_path / "live"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *LIVE, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_rows(out, 2, proc)
        sent = 0
        while proc.poll() is None and sent < 2000:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            sent += 1
            time.sleep((0.002, 0.01, 0.02)[sent % 3])  # into every step of the clean-up
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sent >= 2
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = lines_besides_epochs(stderr)
    epochs = len(rows_of(out / "history.jsonl"))
    assert lines == [f"interrupted after {epochs} epochs; continue with --resume"], stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_run"] == epochs >= 2


INTERRUPT_WHILE_DRAWING = """
import os, runpy, signal, sys, time
import vgjax.report.plots as plots
drawn = plots.plot_curves
def plot_curves(*args, **kwargs):  # the first figure is drawn, then Ctrl-C
    result = drawn(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
    return result
plots.plot_curves = plot_curves
sys.argv = ["experiments.run", *sys.argv[1:]]
runpy.run_module("experiments.run", run_name="__main__")
"""


def test_ctrl_c_while_the_figures_are_drawn_leaves_none_and_says_how_to_draw_them(tmp_path, capsys):
    out = tmp_path / "run"
    script = tmp_path / "interrupt_while_drawing.py"
    script.write_text(INTERRUPT_WHILE_DRAWING)
    with_diagnostics = [a for a in BASE if a != "--no-diagnostics"]
    proc = subprocess.run([sys.executable, str(script), *with_diagnostics, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 130, proc.stderr
    lines = lines_besides_epochs(proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "figures" in lines[0] and f"python -m experiments.plot {out}" in lines[0], lines
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"  # the run itself is complete
    figures = out / "figures"
    assert not figures.exists() or not any(figures.iterdir()), list(figures.iterdir())  # none, not some
    assert not (out / ".figures-drawing").exists()  # vgjax.report.plots.DRAWING_DIR
    # the line's command draws them all
    code, stdout, err = call(plot_cli.main, [out], capsys)
    assert code == 0, err
    drawn = sorted(p.name for p in figures.iterdir())
    assert drawn == sorted(Path(line).name for line in stdout.split())
    assert {"curves.png", "grad_flow_heatmap.png", "grad_flow_layers.png"} <= set(drawn)


# ------------------------------------------------------------------------------------------------
# kill -9 of a sweep's parent


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def watching(pid: int) -> bool:
    """The worker's parent-watch thread runs (so its start-up is over: it trains)."""
    try:
        return any((t / "comm").read_text().strip() == "vgjax-watch" for t in Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False


@needs_proc
def test_sweep_workers_end_when_their_parent_is_killed(tmp_path):
    """kill -9 of a sweep with --workers 2 while its workers train: they end within seconds."""
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", "--method", "baseline_3", "--init-std",
                             "0.5,1", "--seeds", "2", "--epochs", "500", "--train-limit", "300", "--workers", "2",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    started_at: dict[int, str | None] = {}
    try:
        deadline, both = time.time() + 240, None
        while time.time() < deadline and proc.poll() is None:
            workers = [c for c in children_of(proc.pid)
                       if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
            if len(workers) == 2:
                both = both or time.time()
                started_at.update({w: start_time(w) for w in workers})
                # past their start-up (a worker still importing ends once it is over: it finds no
                # parent); without the watch thread, 40 s on is past it too
                if all(watching(w) for w in workers) or time.time() - both > 40:
                    break
            time.sleep(0.2)
        assert len(workers) == 2 and proc.poll() is None, f"no two workers in time: {workers}, exit {proc.poll()}"
        proc.kill()
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(alive(w) for w in workers):
            time.sleep(0.1)
        left = [w for w in workers if alive(w)]
        assert not left, f"workers {left} outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        for w, started in started_at.items():  # a failing run of this test leaves no orphans behind
            if alive(w) and start_time(w) == started:  # the same process, not a pid used again
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(w, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------
# a full disk


@pytest.fixture(scope="module")
def sweep_after_a_full_disk(tmp_path_factory, fashion_mnist_dir):
    """A sweep whose figures hit a full disk (the call's exit, stderr and files), then resumed
    with room again: (that, the finished sweep directory)."""
    out = tmp_path_factory.mktemp("sweeps") / "sw"
    argv = [*SWEEP, "--data-dir", str(fashion_mnist_dir), "--out", str(out)]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with disk_full_under(out, ".png"):
            try:
                code = sweep_cli.main(argv)
            except SystemExit as e:
                code = e.code
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        summary_after_failure = (out / "summary.json").exists()
        resumed = sweep_cli.main([*argv, "--resume"])
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    return {"code": code, "files": files, "summary": summary_after_failure, "resumed": resumed}, out


@needs_proc
def test_a_full_disk_in_a_sweep_is_one_line_and_resume_finishes_it(sweep_after_a_full_disk, capfd):
    failed, out = sweep_after_a_full_disk
    assert failed["code"] == 1
    # nothing looks complete: summary.json (written last, "finished") is absent, no temporary file left
    assert not failed["summary"]
    assert "chunks/plan.json" in failed["files"] and not any(".tmp" in f for f in failed["files"])
    assert failed["resumed"] == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


@needs_proc
def test_a_full_disk_in_a_sweep_names_the_file(tmp_path, capsys, fashion_mnist_dir):
    argv = [*SWEEP, "--data-dir", str(fashion_mnist_dir), "--out", str(tmp_path / "sw2")]
    with disk_full_under(tmp_path / "sw2", "config.json"):
        code, _, err = call(sweep_cli.main, argv, capsys)
    assert code == 1
    assert err == [f"error: no space left on device while writing {tmp_path / 'sw2' / 'config.json'}; the chunks "
                   f"finished so far are kept: make room, then run the same command with --resume"], err


@needs_proc
def test_a_full_disk_in_a_run_is_one_line_and_resume_goes_on(tmp_path, capsys):
    """A checkpoint that cannot be completed (its manifest hits a full disk): one line naming the
    file, exit 1, the run marked failed, not finished; with room again --resume finishes it."""
    out = tmp_path / "run"
    base = [*BASE[:BASE.index("--epochs")], "--epochs", "2", *BASE[BASE.index("--epochs") + 2:]]
    with disk_full_under(out / "checkpoints", "vgjax_manifest"):
        code, _, err = call(run_cli.main, [*base, "--out", out], capsys)
    assert code == 1
    lines = lines_besides_epochs("\n".join(err))
    assert len(lines) == 1 and lines[0].startswith("error: baseline_3: no space left on device while writing "
                                                   f"{out / 'checkpoints' / '1'}"), lines
    assert "--resume" in lines[0]
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"
    assert not (out / "checkpoints" / "1" / "vgjax_manifest.json").exists()
    code, _, err = call(run_cli.main, [*base, "--out", out, "--resume"], capsys)
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
    assert [r["epoch"] for r in rows_of(out / "history.jsonl")] == [1, 2]


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a small tmpfs needs root on Linux")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_really_full_disk_under_a_run_is_one_line(tmp_path):
    """A run into a 1 MB tmpfs: orbax's writer fails in its threads; one line, no traceback (orbax
    logs its own), exit 1, and the run is not left looking finished."""
    with tmpfs(tmp_path / "small", "1m") as disk:
        out = disk / "run"
        proc = subprocess.run([sys.executable, "-m", "experiments.run", *BASE, "--out", str(out)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr and "ERROR:absl" not in proc.stderr, proc.stderr[-3000:]
        lines = lines_besides_epochs(proc.stderr)
        assert len(lines) == 1 and "no space left on device while writing " + str(out) in lines[0], lines
        status = json.loads((out / "summary.json").read_text())["status"] if (out / "summary.json").exists() else None
        assert status != "finished"


# ------------------------------------------------------------------------------------------------
# a torn metrics.csv; the wrong folder


def test_escape_report_on_a_torn_metrics_csv_names_the_file(sweep_after_a_full_disk, tmp_path, capsys):
    _, finished = sweep_after_a_full_disk
    sweep_dir = tmp_path / "torn"
    shutil.copytree(finished, sweep_dir)
    metrics = sweep_dir / "metrics.csv"
    data = metrics.read_bytes()
    metrics.write_bytes(data[:-7])  # the last line cut in its last number
    code, _, err = call(escape_cli.main, ["report", sweep_dir, "--out", tmp_path / "rep", "--no-theory"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {metrics} is torn"), err
    assert not (tmp_path / "rep").exists()
    metrics.write_bytes(data[:data.rindex(b"\n", 0, len(data) - 1) + 1])  # the last row lost whole
    code, _, err = call(escape_cli.main, ["report", sweep_dir, "--out", tmp_path / "rep", "--no-theory"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {metrics} is incomplete"), err
    metrics.write_bytes(data.replace(b",", b",,", 1))  # a row that is not one
    code, _, err = call(escape_cli.main, ["report", sweep_dir, "--out", tmp_path / "rep", "--no-theory"], capsys)
    assert code == 2 and len(err) == 1 and f"{metrics}, line " in err[0], err


def test_plot_says_what_a_folder_is_when_it_is_not_a_run(sweep_after_a_full_disk, tmp_path, capsys):
    _, sweep_dir = sweep_after_a_full_disk
    code, _, err = call(plot_cli.main, [sweep_dir], capsys)
    assert code == 2 and len(err) == 1, err
    assert "is a sweep directory" in err[0] and f"python -m experiments.report {sweep_dir}" in err[0], err
    foreign = tmp_path / "mydata"
    (foreign / "figures").mkdir(parents=True)
    (foreign / "config.json").write_text(json.dumps({"lr": 1}))
    (foreign / "figures" / "mine.png").write_bytes(b"mine")
    code, _, err = call(plot_cli.main, [foreign], capsys)
    assert err == [f"error: {foreign} is not a vgjax run directory (its config.json is not a vgjax run's); "
                   f"nothing is drawn"] and code == 2
    code, _, err = call(plot_cli.main, [tmp_path], capsys)  # a folder holding only that one
    assert code == 2 and err == [f"error: {tmp_path} is neither a run directory (no config.json) nor a "
                                 f"directory of vgjax runs"], err
    assert [p.name for p in (foreign / "figures").iterdir()] == ["mine.png"]


# ------------------------------------------------------------------------------------------------
# figures: a one-epoch series is visible


def test_a_one_epoch_series_is_drawn_with_a_marker(tmp_path):
    from matplotlib.image import imread
    from vgjax.run.rundir import RunDir

    runs = []
    for name, acc in (("a", 0.3), ("b", 0.7)):
        rd = RunDir(tmp_path / name)
        rd.create({"method": name})
        rd.append_history({"epoch": 1, "loss": 1.0, "accuracy": acc, "val_loss": 1.0, "val_accuracy": acc,
                           "grad_norm/hidden_1": acc, "epoch_time_s": 0.1})
        runs.append(rd.path)
    (plot,) = [p for p in plots.draw_comparison(runs, tmp_path / "cmp") if p.path.name == "compare_val_accuracy.png"]
    image = imread(plot.path)[..., :3]
    image = image[:, : int(image.shape[1] * 0.6)]  # the axes, not the legend right of them
    for color in plots.run_colors(2):
        near = np.abs(image - np.asarray(color[:3])).max(axis=-1) < 0.08
        assert near.sum() > 20, f"no visible point of colour {color}"


# ------------------------------------------------------------------------------------------------
# a fresh machine: what the tests build with comes with the dev extra


def test_the_dev_extra_brings_what_the_tests_build_vgjax_with():
    """tests/test_notebook.py builds vgjax without build isolation: the build backend must come
    with ``pip install -e '.[dev]'``, not with another extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    name = lambda req: re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower().replace("_", "-")  # noqa: E731
    dev = {name(r): r for r in project["project"]["optional-dependencies"]["dev"]}
    for requirement in project["build-system"]["requires"]:
        assert name(requirement) in dev, f"{requirement} ([build-system] requires) is not in the dev extra"
        assert dev[name(requirement)] == requirement, (dev[name(requirement)], requirement)
