"""Faults and bad inputs: every one ends with one line and the right exit status, no traceback,
and leaves what was on disk as it was.

Most cases call ``experiments.run.main`` in this process (fast); the concurrent-process, kill -9,
signal and damaged-checkpoint cases run the command line in subprocesses, as a user would.
"""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from experiments import evaluate as evaluate_cli
from experiments import report as report_cli
from experiments import run as run_cli
from experiments import run_args
from vgjax.run import lock as runlock
from vgjax.run.rundir import MARKER_NAME, RunDir, read_history

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--train-limit", "500", "--no-diagnostics", "--threads", "0"]
BASE = ["--method", "baseline_3", "--epochs", "3", "--checkpoint-every", "1", *TINY]


# ------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True)
def _restore_process_state():
    """main() installs a SIGTERM handler and one-line warnings: undo both after each test."""
    handler, fmt = signal.getsignal(signal.SIGTERM), warnings.formatwarning
    yield
    signal.signal(signal.SIGTERM, handler)
    warnings.formatwarning = fmt


def call(main, args, capsys):
    """(exit status, stdout, stderr lines) of an in-process CLI call."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def run(args, capsys):
    return call(run_cli.main, args, capsys)


def sub(*args, module="experiments.run", timeout=240):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def snapshot(path: Path) -> dict:
    """Every file under ``path`` with its bytes (absent: {})."""
    path = Path(path)
    if not path.exists():
        return {}
    if path.is_file():
        return {".": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_one_error(code, err, status, *needles):
    assert code == status, err
    assert len(err) == 1, err
    assert err[0].startswith("error:") and "Traceback" not in err[0], err
    for n in needles:
        assert n in err[0], err


def rows_of(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def strip_times(rows):
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]


# ------------------------------------------------------------------------------------------------
# shared runs (trained once per module)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-epoch run with checkpoints 2 and 3 (and a best checkpoint)."""
    out = tmp_path_factory.mktemp("runs") / "finished"
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert run_cli.main([*BASE, "--out", str(out)]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    return out


@pytest.fixture
def copy_of(tmp_path):
    def make(src: Path, name: str = "copy") -> Path:
        dst = tmp_path / name
        shutil.copytree(src, dst, symlinks=True)
        return dst
    return make


def as_killed(run_dir: Path) -> None:
    """Make a finished copy look like kill -9 hit it after its last checkpoint."""
    (run_dir / "summary.json").write_text(json.dumps({"method": "baseline_3", "status": "running"}))
    (run_dir / "history.csv").unlink()


def damage_checkpoint(step_dir: Path) -> None:
    """Truncate every data file of one orbax checkpoint (as a full disk or a crash would)."""
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0 and "ocdbt" in str(p)]
    files = files or [p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0]
    for p in files:
        with open(p, "r+b") as f:
            f.truncate(max(p.stat().st_size // 3, 1))


# ------------------------------------------------------------------------------------------------
# 1. flags and inputs: refused before anything is written (the run directory is never created)


BAD_FLAGS = [
    (["--method", "freeze", "--epochs-scale", "inf"], "not a finite number"),
    (["--method", "freeze", "--epochs-scale", "nan"], "not a finite number"),
    (["--lr", "inf", "--epochs", "1"], "not a finite number"),
    (["--method", "freeze", "--skips", "1-3"], "staged training"),
    (["--method", "skip", "--stages", "1-1"], "staged training"),
    (["--method", "freeze", "--depth", "3"], "--depth 3 does not match"),
    (["--epochs", "1", "--epochs-scale", "0.5"], "--epochs-scale applies to staged training"),
    (["--epochs", "1000000000"], "epochs"),
    (["--method", "freeze", "--epochs-scale", "1e300"], "epochs"),
    (["--epochs", "1", "--train-limit", "100000"], "--train-limit 100000 is more than the 60000"),
    (["--epochs", "1", "--threads", "-1"], "--threads"),
    (["--epochs", "1", "--patience", "-1"], "--patience"),
    (["--epochs", "1", "--resume", "--overwrite"], "exclude each other"),
    (["--epochs", "1", "--min-delta", "nan"], "not a finite number"),
    (["--epochs", "1", "--seed", str(2 ** 32)], "--seed"),
    (["--epochs", "1", "--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("args, needle", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_is_one_line_and_writes_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "never"
    code, _, err = run([*args, "--out", out, "--threads", "0"], capsys)
    assert_one_error(code, err, 2, needle)
    assert not out.exists()


STAGE_FILES = [
    ('{"sizes": [1, 1], "stages": [{"stacked": [1], "epochs": 1e999}]}', "out of range"),
    (b'{"sizes": [1, 1], "stages": [{"stacked": [1], "epochs": 1}]}\xff\xfe', "not UTF-8"),
    ('{"sizes": [2.9, 1], "stages": [{"stacked": [1], "epochs": 1}]}', "sizes[0] must be a whole number, got 2.9"),
    ('{"sizes": [1, 1], "stages": [{"stacked": [1], "epochs": true}]}', "stages[0].epochs must be a whole number, got true"),
    ('{"sizes": [1, 1], "stages": [{"stacked": [1], "epochs": NaN}]}', "NaN is not a number"),
    ('{"sizes": [1, 1], "stages": [{"stacked": [1], "epochs": 1, "frozn": [1]}]}', "optionally 'frozen'"),
    ('[1, 2]', "exactly the keys"),
    ('{"sizes": [1, 1], "stages": [{"stacked": [1], "epochs": 1}', "not valid JSON"),
    ('{"sizes": [1, 1], "stages": [{"stacked": [2], "epochs": 1}]}', "prefix"),
]


@pytest.mark.parametrize("content, needle", STAGE_FILES, ids=[n for _, n in STAGE_FILES])
def test_bad_json_stage_table_is_one_line_naming_the_file(tmp_path, capsys, content, needle):
    table = tmp_path / "table.json"
    table.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "never"
    code, _, err = run(["--method", "freeze", "--stages", table, "--out", out, *TINY], capsys)
    assert_one_error(code, err, 2, needle)
    assert "table.json" in err[0] or "stage table" in err[0]
    assert not out.exists()


def test_missing_stage_file_is_one_line(tmp_path, capsys):
    code, _, err = run(["--method", "freeze", "--stages", tmp_path / "nope.json", "--out", tmp_path / "x", *TINY],
                       capsys)
    assert_one_error(code, err, 2, "nope.json")


def test_staged_depth_is_the_tables_and_a_json_table_is_recorded_by_content(tmp_path):
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"sizes": [2, 1], "stages": [{"stacked": [1], "epochs": 3},
                                                             {"stacked": [1, 2], "frozen": [1], "epochs": 4}]}))
    args = run_cli.build_parser().parse_args(["--method", "freeze", "--stages", str(table)])
    config = run_args.config_from_args(args)
    assert config.depth == 3  # not the method's 7
    assert config.stages == "2-1 | 1:3 | 1+2:4:1"  # the table itself, not the path
    from vgjax.train import stages
    assert stages.load_table(config.stages) == stages.from_dict(json.loads(table.read_text()))


# ------------------------------------------------------------------------------------------------
# 2. what is on disk already: a finished run stays byte-identical after every refusal


def test_overwrite_with_a_bad_flag_keeps_the_finished_run(finished, capsys):
    before = snapshot(finished)
    for bad in (["--patience", "-1"], ["--early-stop", "val_los"], ["--monitor", "acc"]):
        code, _, err = run([*BASE, "--out", finished, "--overwrite", *bad], capsys)
        assert_one_error(code, err, 2, bad[0])
    assert snapshot(finished) == before


def test_finished_run_is_not_replaced_without_overwrite(finished, capsys):
    before = snapshot(finished)
    code, _, err = run([*BASE, "--out", finished], capsys)
    assert_one_error(code, err, 2, "finished run", "--overwrite")
    assert snapshot(finished) == before


def test_resume_of_a_finished_run_says_so_and_changes_nothing(finished, capsys):
    before = snapshot(finished)
    code, out, err = run([*BASE, "--out", finished, "--resume"], capsys)
    assert code == 0 and "nothing to resume" in out and err == []
    assert snapshot(finished) == before


def test_resume_with_other_settings_names_them(finished, copy_of, capsys):
    d = copy_of(finished)
    as_killed(d)
    before = snapshot(d)
    code, _, err = run([*BASE, "--out", d, "--resume", "--lr", "0.1"], capsys)
    assert_one_error(code, err, 2, "other settings", "lr 0.01 -> 0.1")
    assert snapshot(d) == before


def test_resume_with_a_damaged_config_json(finished, copy_of, capsys):
    d = copy_of(finished)
    as_killed(d)
    (d / MARKER_NAME).exists()
    (d / "config.json").write_bytes(b'{"method": "baseline_3", "depth": 3, "lr": 0.0')
    before = snapshot(d)
    code, _, err = run([*BASE, "--out", d, "--resume"], capsys)
    assert_one_error(code, err, 2, "config.json")
    assert snapshot(d) == before


def test_resume_after_the_json_stage_file_changed_is_refused(tmp_path, capsys):
    table = tmp_path / "t.json"
    spec = {"sizes": [1, 1], "stages": [{"stacked": [1], "epochs": 1}, {"stacked": [1, 2], "epochs": 1}]}
    table.write_text(json.dumps(spec))
    out = tmp_path / "staged"
    args = ["--method", "freeze", "--stages", table, "--out", out, *TINY]
    code, _, err = run(args, capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["stages"] == "1-1 | 1:1 | 1+2:1"
    as_killed(out)
    spec["stages"][1]["epochs"] = 5
    table.write_text(json.dumps(spec))
    before = snapshot(out)
    code, _, err = run([*args, "--resume"], capsys)
    assert_one_error(code, err, 2, "other settings", "stages")
    assert snapshot(out) == before


def test_overwrite_refuses_a_folder_that_is_not_a_vgjax_run(tmp_path, capsys):
    d = tmp_path / "mine"
    (d / "figures").mkdir(parents=True)
    (d / "config.json").write_text('{"learning_rate": 3, "model": "resnet"}')
    (d / "figures" / "plot.png").write_bytes(b"\x89PNG...")
    before = snapshot(d)
    for extra in (["--overwrite"], [], ["--resume"]):
        code, _, err = run([*BASE, "--out", d, *extra], capsys)
        assert_one_error(code, err, 2, "not a vgjax run")
    assert snapshot(d) == before


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    code, _, err = run([*BASE, "--out", f, "--overwrite"], capsys)
    assert_one_error(code, err, 2, "is a file")
    assert f.read_text() == "keep me"


def test_resume_of_a_directory_that_does_not_exist_or_is_empty(tmp_path, capsys):
    code, _, err = run([*BASE, "--out", tmp_path / "nope", "--resume"], capsys)
    assert_one_error(code, err, 2, "no run to resume", "no such directory")
    assert not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    code, _, err = run([*BASE, "--out", tmp_path / "empty", "--resume"], capsys)
    assert_one_error(code, err, 2, "no run to resume")
    assert list((tmp_path / "empty").iterdir()) == []


def test_resume_when_the_checkpoints_were_deleted(finished, copy_of, capsys):
    d = copy_of(finished)
    as_killed(d)
    shutil.rmtree(d / "checkpoints")
    before = snapshot(d)
    code, _, err = run([*BASE, "--out", d, "--resume"], capsys)
    assert_one_error(code, err, 2, "holds no checkpoint", "epoch 3")
    assert snapshot(d) == before


def test_default_run_directory_names_the_seed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["--method", "baseline_3", "--seed", "1", "--resume", *TINY], capsys)
    assert_one_error(code, err, 2, str(Path("runs") / "baseline_3-seed1"))


def test_unfinished_run_needs_resume_or_overwrite(finished, copy_of, capsys):
    d = copy_of(finished)
    as_killed(d)
    before = snapshot(d)
    code, _, err = run([*BASE, "--out", d], capsys)
    assert_one_error(code, err, 2, "unfinished run", "--resume")
    assert snapshot(d) == before


# ------------------------------------------------------------------------------------------------
# 3. locks


def test_a_live_lock_refuses_every_writer(finished, copy_of, capsys):
    d = copy_of(finished)
    as_killed(d)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (d / runlock.LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid,
                                                       "start": runlock._start_time(holder.pid),
                                                       "since": "now", "token": "x"}))
        before = snapshot(d)
        for extra in (["--resume"], ["--overwrite"], []):
            code, _, err = run([*BASE, "--out", d, *extra], capsys)
            assert_one_error(code, err, 2, "in use by a live run", f"pid {holder.pid}")
        assert snapshot(d) == before
    finally:
        holder.kill()
        holder.wait()


def test_lock_unit_stale_live_reused_pid_and_release(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_file = tmp_path / runlock.LOCK_NAME
    lock_file.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "start": "1"}))
    assert runlock.live_holder(tmp_path) is None  # stale: its process is gone
    with runlock.RunLock(tmp_path) as lock:
        assert lock.took_over["pid"] == dead.pid
        assert runlock.read_lock(tmp_path)["pid"] == os.getpid()
        with pytest.raises(runlock.LockedError):  # a second holder in this process is refused too
            other = runlock.RunLock(tmp_path)
            other.record = None
            rec = dict(runlock.read_lock(tmp_path), pid=os.getppid(), start=runlock._start_time(os.getppid()))
            lock_file.write_text(json.dumps(rec))
            other.acquire()
    assert lock_file.exists()  # not ours any more: release left it alone
    lock_file.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "start": "0"}))
    assert runlock.live_holder(tmp_path) is None  # same pid, other start time: a reused pid
    lock_file.write_text(json.dumps({"host": "elsewhere.example", "pid": 1}))
    assert "elsewhere.example" in runlock.live_holder(tmp_path)  # cannot check another host: live
    lock_file.write_text("")
    os.utime(lock_file, (time.time() - 60, time.time() - 60))
    assert runlock.live_holder(tmp_path) is None  # an old unreadable lock is stale


def test_concurrent_processes_kill_9_and_signals(tmp_path):
    """A live run holds its directory; kill -9 leaves a stale lock that resume takes over; SIGINT
    and SIGTERM (also during checkpoint saves: one every epoch) stop with one line and exit 130;
    the resumed history has every epoch once."""
    out = tmp_path / "live"
    # far more epochs than the test lets run: each process is stopped long before its end, however
    # fast the epochs and however slow the second process' start
    args = ["--method", "baseline_3", "--epochs", "2000", "--checkpoint-every", "1", *TINY, "--out", out]

    def start():
        return subprocess.Popen([sys.executable, "-m", "experiments.run", *map(str, args), "--resume"]
                                if (out / "config.json").exists() else
                                [sys.executable, "-m", "experiments.run", *map(str, args)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_rows(n, proc):
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if (out / "history.jsonl").exists() and len(read_history(out / "history.jsonl")) >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"no {n} rows in time")

    first = start()
    try:
        wait_rows(2, first)
        second = sub(*args, "--resume")  # (--overwrite: see test_a_live_lock_refuses_every_writer)
        err = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(err) == 1 and "in use by a live run" in err[0], second.stderr
        first.kill()  # kill -9
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    assert (out / runlock.LOCK_NAME).exists()  # left behind, stale
    for sig in (signal.SIGINT, signal.SIGTERM):
        done = len(read_history(out / "history.jsonl"))
        proc = start()
        wait_rows(done + 2, proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr and "Exception" not in stderr, stderr
        errors = [line for line in stderr.splitlines() if "epoch " not in line or "interrupted" in line]
        # besides the last line: the lock take-over note, and after kill -9 possibly a warning that a
        # checkpoint cut short was skipped
        notes = [line for line in errors if line.startswith(("note:", "warning: checkpoint"))]
        assert [line for line in errors if line not in notes] == [errors[-1]], stderr
        assert "interrupted after" in errors[-1] and "--resume" in errors[-1]
        assert not (out / runlock.LOCK_NAME).exists()  # released
        assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
        epochs = [r["epoch"] for r in rows_of(out / "history.jsonl")]
        assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= done + 2  # every epoch once


# ------------------------------------------------------------------------------------------------
# 4. damaged checkpoints and histories


def test_damaged_latest_checkpoint_falls_back_and_ends_bit_exact(finished, copy_of):
    d = copy_of(finished)
    as_killed(d)
    damage_checkpoint(d / "checkpoints" / "3")
    proc = sub(*BASE, "--out", d, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warn = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warn) == 1 and "checkpoints/3 is damaged" in warn[0] and "resuming from checkpoint 2" in warn[0], proc.stderr
    assert strip_times(rows_of(d / "history.jsonl")) == strip_times(rows_of(finished / "history.jsonl"))


def test_every_checkpoint_damaged_is_one_line_and_keeps_the_history(finished, copy_of, capsys):
    d = copy_of(finished)
    as_killed(d)
    for step in ("2", "3"):
        damage_checkpoint(d / "checkpoints" / step)
    before = {n: (d / n).read_bytes() for n in ("history.jsonl", "summary.json", "config.json")}
    code, _, err = run([*BASE, "--out", d, "--resume"], capsys)
    assert_one_error(code, err, 2, "cannot resume", "no checkpoint restores", "tried 3, 2")
    assert {n: (d / n).read_bytes() for n in before} == before  # the history was not cut back
    assert not (d / runlock.LOCK_NAME).exists()


def test_torn_line_in_the_middle_is_skipped_with_a_warning_not_the_rest(finished, copy_of, capsys):
    d = copy_of(finished)
    lines = (d / "history.jsonl").read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]
    (d / "history.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="line 2 is damaged"):
        rows = read_history(d / "history.jsonl")
    assert [r["epoch"] for r in rows] == [1, 3]
    report_dir = d.parent / "reports"
    report_dir.mkdir()
    shutil.move(str(d), report_dir / "copy")
    with pytest.warns(UserWarning, match="line 2"):
        code, out, err = call(report_cli.main, [report_dir, "--no-figures"], capsys)
    assert code == 0, err
    assert "| baseline_3 | finished | 2/3 |" in (report_dir / "report.md").read_text()  # epochs 1 and 3


def test_a_torn_last_line_is_dropped_before_the_next_row(tmp_path):
    rd = RunDir(tmp_path)
    rd.append_history({"epoch": 1, "loss": 1.0})
    with open(rd.history_path, "ab") as f:
        f.write(b'{"epoch": 2, "lo')  # kill -9 in the middle of a write
    with pytest.warns(UserWarning, match="torn"):
        assert [r["epoch"] for r in rd.history()] == [1]
    rd.append_history({"epoch": 2, "loss": float("nan")})
    assert rd.history_path.read_text().splitlines() == ['{"epoch": 1, "loss": 1.0}', '{"epoch": 2, "loss": null}']
    assert math.isnan(rd.history()[1]["loss"])  # null reads back as NaN


def test_diverged_run_is_strict_json_and_resume_says_it_diverged(tmp_path, capsys):
    out = tmp_path / "div"
    args = ["--method", "baseline_3", "--activation", "linear", "--init-std", "10", "--lr", "1", "--epochs", "3",
            *TINY, "--out", out]
    code, _, err = run(args, capsys)
    assert code == 3 and err[-1].startswith("error:") and "diverged at epoch 1" in err[-1]

    def no_constants(name):
        raise AssertionError(f"bare {name} in strict JSON")
    for name in ("summary.json", "config.json"):
        json.loads((out / name).read_text(), parse_constant=no_constants)
    for line in (out / "history.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=no_constants)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["final"]["loss"] is None
    before = snapshot(out)
    code, _, err = run([*args, "--resume"], capsys)
    assert_one_error(code, err, 3, "diverged at epoch 1", "nothing to resume")
    assert snapshot(out) == before


def test_resume_before_the_first_checkpoint_starts_again_and_says_so(finished, copy_of, capsys):
    d = copy_of(finished)
    as_killed(d)
    shutil.rmtree(d / "checkpoints")
    shutil.rmtree(d / "best")
    config = json.loads((d / "config.json").read_text())
    config["checkpoint_every"] = 10  # so epoch 1 had no checkpoint yet
    (d / "config.json").write_text(json.dumps(config))
    (d / "history.jsonl").write_text((d / "history.jsonl").read_text().splitlines()[0] + "\n")
    code, _, err = run([*BASE[:-len(TINY)], "--checkpoint-every", "10", *TINY, "--out", d, "--resume"], capsys)
    assert code == 0, err
    assert any(line.startswith("note:") and "starts again from epoch 1" in line for line in err)
    assert strip_times(rows_of(d / "history.jsonl")) == strip_times(rows_of(finished / "history.jsonl"))


# ------------------------------------------------------------------------------------------------
# 5. --init-from, evaluate, report, depth 0


def test_init_from_a_damaged_run_is_one_line(finished, copy_of, tmp_path, capsys):
    src = copy_of(finished, "src")
    for step_dir in [*(src / "best").iterdir(), *(src / "checkpoints").iterdir()]:
        if step_dir.is_dir():
            damage_checkpoint(step_dir)
    before = snapshot(src)
    code, _, err = run([*BASE, "--init-from", src, "--out", tmp_path / "new"], capsys)
    assert_one_error(code, err, 2, "--init-from", "does not load")
    assert not (tmp_path / "new").exists() and snapshot(src) == before


def test_init_from_a_run_of_another_width_is_refused(finished, tmp_path, capsys):
    code, _, err = run([*BASE, "--width", "64", "--init-from", finished, "--out", tmp_path / "new"], capsys)
    assert_one_error(code, err, 2, "--init-from", "784×128", "784×64", "--width")
    assert not (tmp_path / "new").exists()


def test_init_from_the_run_directory_itself_is_refused(finished, copy_of, capsys):
    d = copy_of(finished)
    before = snapshot(d)
    code, _, err = run([*BASE, "--init-from", d, "--out", d, "--overwrite"], capsys)
    assert_one_error(code, err, 2, "--init-from", "itself")
    assert snapshot(d) == before


def test_empty_out_is_refused(capsys):
    code, _, err = run([*BASE, "--out", ""], capsys)
    assert_one_error(code, err, 2, "--out")


def test_init_from_a_foreign_config_is_refused(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "checkpoints" / "1").mkdir(parents=True)
    (src / "config.json").write_text('{"model": "resnet"}')
    code, _, err = run([*BASE, "--init-from", src, "--out", tmp_path / "new"], capsys)
    assert_one_error(code, err, 2, "--init-from", "config.json")


@pytest.mark.parametrize("damage, needle", [
    ("checkpoint", "does not load"),
    ("garbage_config", "config.json"),
    ("foreign_config", "config.json"),
    ("missing", "not a run directory"),
])
def test_evaluate_on_a_damaged_run_is_one_line(finished, copy_of, capsys, damage, needle):
    d = copy_of(finished)
    if damage == "checkpoint":
        for p in (d / "best").iterdir():
            if p.is_dir():
                damage_checkpoint(p)
    elif damage == "garbage_config":
        (d / "config.json").write_bytes(b"\x00\xffgarbage")
    elif damage == "foreign_config":
        (d / "config.json").write_text('{"model": "resnet", "layers": 50}')
    else:
        d = d.parent / "missing"
    code, _, err = call(evaluate_cli.main, [d, "--threads", "0"], capsys)
    assert_one_error(code, err, 2, needle)


def test_report_errors_name_the_file_or_say_what_to_give(finished, copy_of, capsys):
    code, _, err = call(report_cli.main, [finished, "--no-figures"], capsys)
    assert_one_error(code, err, 2, "single run directory")
    d = copy_of(finished, "runs/one")
    (d / "summary.json").write_text('{"status": NaN,')
    code, _, err = call(report_cli.main, [d.parent, "--no-figures"], capsys)
    assert_one_error(code, err, 2, str(d / "summary.json"))


def test_depth_0_trains_a_linear_classifier(tmp_path, capsys):
    out = tmp_path / "d0"
    code, _, err = run(["--method", "baseline_3", "--depth", "0", "--epochs", "1", "--train-limit", "500",
                        "--threads", "0", "--out", out], capsys)  # with diagnostics
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
