"""Faults that lose data or give silently wrong results: no command deletes or overwrites what it
did not write (vgjax.owned; docs/design.md, "What a command may delete"), sweep directories are
locked like run directories, a finite loss that explodes is a divergence, every flag is checked
before the first write, and accuracy is counted in integers.

Every refusal is one line, exit status 2, and leaves the directory byte-identical (``snapshot``).
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import escape as escape_cli
from experiments import report as report_cli
from experiments import run_args
from experiments import suite as suite_cli
from experiments import sweep as sweep_cli
from tests.test_faults import (BASE, ROOT, TINY, _restore_process_state, assert_one_error, call,  # noqa: F401
                               copy_of, finished, run, snapshot)
from vgjax import owned, sweep
from vgjax.run import lock as runlock
from vgjax.run.jobs import is_staged
from vgjax.run.rundir import RUN_ENTRIES, RunDir
from vgjax.train.engine import DIVERGED_LOSS, exact_ratios

SWEEP = ["--method", "baseline_3", "--seeds", "1", "--epochs", "1", "--train-limit", "64", "--workers", "0"]
ESCAPE_SWEEP = ROOT / "docs" / "results" / "escape" / "cpu_budget" / "sweep"


def foreign_folder(path: Path) -> Path:
    """Someone's folder that happens to hold a config.json (and a figures/ folder)."""
    (path / "figures").mkdir(parents=True)
    (path / "config.json").write_text('{"lr": 1}')
    (path / "figures" / "mine.png").write_bytes(b"\x89PNG mine")
    (path / "thesis.tex").write_text("\\chapter{mine}")
    return path


@contextlib.contextmanager
def held_lock(directory: Path):
    """Another live process holding ``directory``'s lock (vgjax.run.lock) for the block."""
    directory.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; from vgjax.run.lock import RunLock; "
                               f"RunLock({str(directory)!r}).acquire(); print('locked', flush=True); time.sleep(120)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------------------
# data loss: --overwrite removes only what the command itself wrote


def test_the_owned_rule_removes_listed_entries_only_and_refuses_foreign_names(tmp_path):
    d = tmp_path / "d"
    owned.claim(d, "sweep", ["metrics.csv", "chunks"])
    (d / "metrics.csv").write_text("a")
    (d / "chunks").mkdir()
    (d / "chunks" / "0-0-1.npz").write_bytes(b"x")
    (d / "notes.txt").write_text("mine")
    assert owned.foreign(d, "sweep") == ["notes.txt"]
    assert owned.write_problem(d, "sweep", ["metrics.csv", "chunks"], "x") is None
    problem = owned.write_problem(d, "sweep", ["notes.txt"], "experiments.sweep")
    assert "notes.txt" in problem and "not written by experiments.sweep" in problem
    assert owned.write_problem(d, "run", ["metrics.csv"], "experiments.run")  # another kind's entry
    with pytest.raises(ValueError):
        owned.claim(d, "sweep", ["notes.txt"])
    with pytest.raises(ValueError):
        owned.claim(d, "sweep", ["../escape"])
    assert sorted(owned.remove(d, "sweep")) == ["chunks", "metrics.csv"]
    assert owned.present(d) == ["notes.txt"] and (d / "notes.txt").read_text() == "mine"
    assert set(RUN_ENTRIES) == set(owned.RUN_ENTRIES)  # a run's entries, named in one place each


def test_sweep_overwrite_refuses_a_finished_run_directory(finished, copy_of, capsys):
    d = copy_of(finished)
    before = snapshot(d)
    code, _, err = call(sweep_cli.main, [*SWEEP, "--out", d, "--overwrite"], capsys)
    assert_one_error(code, err, 2, "vgjax run", "nothing there is replaced")
    assert snapshot(d) == before


def test_sweep_overwrite_refuses_a_foreign_folder_with_a_config_json(tmp_path, capsys):
    d = foreign_folder(tmp_path / "mydata")
    before = snapshot(d)
    for extra in (["--overwrite"], []):
        code, _, err = call(sweep_cli.main, [*SWEEP, "--out", d, *extra], capsys)
        assert_one_error(code, err, 2, "not a sweep directory", "nothing there is replaced")
    assert snapshot(d) == before


def test_sweep_overwrite_replaces_its_own_sweep_and_keeps_a_users_file(tmp_path, fashion_mnist_dir, capsys):
    out = tmp_path / "sw"
    args = [*SWEEP, "--out", out, "--data-dir", fashion_mnist_dir]
    code, _, err = call(sweep_cli.main, args, capsys)
    assert code == 0, err
    assert owned.owners(out)["metrics.csv"] == "sweep"
    (out / "notes.txt").write_text("mine")
    code, _, err = call(sweep_cli.main, [*args, "--overwrite"], capsys)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "summary.json").exists()


def test_run_overwrite_refuses_a_foreign_config_json_that_parses_as_a_config(tmp_path, capsys):
    d = foreign_folder(tmp_path / "mine")
    before = snapshot(d)
    for extra in (["--overwrite"], [], ["--resume"]):
        code, _, err = run([*BASE, "--out", d, *extra], capsys)
        assert_one_error(code, err, 2, "not a vgjax run")
    assert snapshot(d) == before


def test_escape_report_default_is_inside_the_sweep_and_never_replaces_a_foreign_report(tmp_path, monkeypatch,
                                                                                      capsys):
    checkout = tmp_path / "checkout"  # a checkout, or a user's project: its docs/ must stay as it is
    (checkout / "docs" / "results" / "escape").mkdir(parents=True)
    (checkout / "docs" / "results" / "escape" / "report.md").write_text("the committed report")
    before = snapshot(checkout)
    sw = tmp_path / "sweep"
    shutil.copytree(ESCAPE_SWEEP, sw)
    monkeypatch.chdir(checkout)
    code, out, err = call(escape_cli.main, ["report", sw, "--no-theory", "--no-figures"], capsys)
    assert code == 0, err
    assert snapshot(checkout) == before
    assert (sw / "report" / "report.md").exists() and Path(out.strip()) == sw / "report" / "report.md"
    code, _, err = call(escape_cli.main, ["report", sw, "--no-theory", "--no-figures"], capsys)
    assert code == 0, err  # its own report: replaced
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "report.md").write_text("mine")
    code, _, err = call(escape_cli.main, ["report", sw, "--out", theirs, "--no-theory", "--no-figures"], capsys)
    assert_one_error(code, err, 2, "report.md", "not written by experiments.escape report")
    assert (theirs / "report.md").read_text() == "mine" and owned.present(theirs) == ["report.md"]


def test_report_never_replaces_a_report_or_figures_it_did_not_write(finished, copy_of, capsys):
    runs = copy_of(finished, "runs/baseline_3").parent
    (runs / "report.md").write_text("my notes")
    before = snapshot(runs)
    for extra in ([], ["--no-figures"]):
        code, _, err = call(report_cli.main, [runs, *extra], capsys)
        assert_one_error(code, err, 2, "report.md", "not written by experiments.report", "nothing there is replaced")
        assert snapshot(runs) == before
    (runs / "report.md").unlink()
    (runs / "figures").mkdir()
    (runs / "figures" / "mine.png").write_bytes(b"\x89PNG mine")
    before = snapshot(runs)
    code, _, err = call(report_cli.main, [runs], capsys)
    assert_one_error(code, err, 2, "figures", "not written by experiments.report")
    assert snapshot(runs) == before
    code, _, err = call(report_cli.main, [runs, "--no-figures"], capsys)  # writes report.md only
    assert code == 0, err
    assert (runs / "figures" / "mine.png").read_bytes() == b"\x89PNG mine"
    shutil.rmtree(runs / "figures")
    for _ in range(2):  # a re-run replaces its own report and figures
        code, _, err = call(report_cli.main, [runs], capsys)
        assert code == 0, err
    assert owned.owners(runs) == {"report.md": "report", "figures": "report"}
    with held_lock(runs) as holder:  # a live suite writing there
        before = snapshot(runs)
        code, _, err = call(report_cli.main, [runs], capsys)
        assert_one_error(code, err, 2, "in use by a live command", f"pid {holder.pid}")
        assert snapshot(runs) == before


def test_report_of_a_sweep_replaces_only_what_a_manifest_lists(tmp_path, capsys):
    sw = tmp_path / "seeds"
    shutil.copytree(ROOT / "docs" / "results" / "seeds", sw)  # a finished sweep, its report committed
    code, out, err = call(report_cli.main, [sw], capsys)  # the committed manifest: its own report
    assert code == 0 and Path(out.strip()) == sw / "report.md", err
    (sw / owned.MANIFEST).unlink()  # a sweep from before the manifest, or someone's copy of one
    before = snapshot(sw)
    code, _, err = call(report_cli.main, [sw], capsys)
    assert_one_error(code, err, 2, "report.md", "sweep_loss.png", "not written by experiments.report")
    assert snapshot(sw) == before


def test_seeds_suite_overwrite_removes_no_folder_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "suite"
    (out / "thesis").mkdir(parents=True)
    (out / "thesis" / "chapter.tex").write_text("mine")
    (out / "seeds_suite.json").write_text(json.dumps({"programs": [{"name": "thesis"}, {"name": ".."}]}))
    before = snapshot(tmp_path)
    code, _, err = call(suite_cli.main, ["--seeds", "1", "--methods", "relu", "--epochs", "1", "--train-limit", "64",
                                         "--out", out, "--overwrite"], capsys)
    assert_one_error(code, err, 2, "seeds_suite.json", "not written by experiments.suite --seeds")
    assert snapshot(tmp_path) == before


def test_seeds_suite_refuses_a_program_name_held_by_someone_elses_folder(tmp_path, capsys):
    out = tmp_path / "suite"
    (out / "relu").mkdir(parents=True)
    (out / "relu" / "data.csv").write_text("mine")
    before = snapshot(out)
    code, _, err = call(suite_cli.main, ["--seeds", "1", "--methods", "relu", "--epochs", "1", "--train-limit", "64",
                                         "--separate", "--out", out], capsys)
    assert_one_error(code, err, 2, "relu", "not written by experiments.suite --seeds")
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------------------
# sweep directories are locked like run directories


def test_a_live_sweep_holds_its_directory_against_overwrite_resume_and_processes(tmp_path, fashion_mnist_dir,
                                                                                capsys):
    out = tmp_path / "sw"
    code, _, err = call(sweep_cli.main, [*SWEEP, "--out", out, "--data-dir", fashion_mnist_dir], capsys)
    assert code == 0, err
    with held_lock(out) as holder:
        before = snapshot(out)
        for extra in (["--overwrite"], ["--resume"], ["--overwrite", "--processes", "2"]):
            code, _, err = call(sweep_cli.main, [*SWEEP, "--out", out, "--data-dir", fashion_mnist_dir, *extra], capsys)
            assert_one_error(code, err, 2, "in use by a live sweep", f"pid {holder.pid}")
        assert snapshot(out) == before


def test_two_sweeps_started_into_one_new_directory_one_is_refused(tmp_path, fashion_mnist_dir):
    out = tmp_path / "new"
    cmd = [sys.executable, "-m", "experiments.sweep", "--method", "baseline_3", "--seeds", "1", "--epochs", "2",
           "--train-limit", "256", "--workers", "0", "--out", out, "--data-dir", fashion_mnist_dir]
    procs = [subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2).strip().splitlines()
    assert len(err) == 1 and ("in use by a live sweep" in err[0] or "already holds a sweep" in err[0]), err
    assert not (out / runlock.LOCK_NAME).exists()
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


# ------------------------------------------------------------------------------------------------
# silent wrong results


def test_a_finite_loss_that_explodes_is_a_divergence_of_runs_and_sweeps(tmp_path, capsys):
    out = tmp_path / "big_lr"
    code, _, err = run(["--method", "baseline_3", "--lr", "1e6", "--epochs", "3", *TINY, "--out", out], capsys)
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert code == 3 and summary["status"] == "diverged", (err, rows)
    assert "diverged at epoch" in err[-1] and err[-1].startswith("error:")
    last = rows[summary["diverged_epoch"] - 1]
    assert last["loss"] is None or last["loss"] > DIVERGED_LOSS or last["val_loss"] > DIVERGED_LOSS
    # a sweep counts the same member the same way
    history = {"loss": np.array([[2.3, 1.2e6, 3.0], [2.3, 2.2, 2.1]], np.float32),
               "val_loss": np.array([[2.3, 2.4, 2.3], [2.3, 2.2, np.nan]], np.float32)}
    assert sweep.diverged_epochs(history).tolist() == [2, 3]


@pytest.mark.parametrize("flags, needle", [
    (["--b1", "1.0"], "--b1 1.0"), (["--b2", "1"], "--b2"), (["--eps", "0"], "--eps"),
    (["--momentum", "1.5"], "--momentum"), (["--rho", "-0.1"], "--rho"), (["--weight-decay", "-1"], "--weight-decay"),
    (["--early-stop", "val_loss", "--min-delta", "-5"], "--min-delta -5"), (["--bn-eps", "0"], "--bn-eps"),
    (["--beta", "0"], "--beta"),
])
def test_an_optimizer_or_stopping_setting_out_of_range_is_one_line_naming_the_flag(tmp_path, capsys, flags, needle):
    out = tmp_path / "never"
    code, _, err = run([*BASE, *flags, "--out", out], capsys)
    assert_one_error(code, err, 2, needle)
    assert not out.exists()


def test_seeds_suite_refuses_flags_its_programs_would_ignore(tmp_path, capsys):
    for flag in (["--tensorboard"], ["--early-stop", "val_loss"], ["--checkpoint-every", "5"]):
        out = tmp_path / "never"
        code, _, err = call(suite_cli.main, ["--seeds", "1", "--methods", "relu", *flag, "--epochs", "1",
                                             "--train-limit", "64", "--data-dir", tmp_path / "no-data", "--out", out],
                            capsys)
        assert_one_error(code, err, 2, flag[0], "not to --seeds")
        assert not out.exists()


def test_plain_suite_refuses_before_it_creates_anything(tmp_path, capsys):
    runs = tmp_path / "runs"
    RunDir(runs / "relu").create({"method": "relu"})
    before = snapshot(tmp_path)
    code, _, err = call(suite_cli.main, ["--methods", "relu", "--epochs", "1", "--out", runs], capsys)
    assert_one_error(code, err, 2, "already holds runs of relu")
    assert snapshot(tmp_path) == before and not (runs / "logs").exists()
    foreign_folder(runs / "tanh")
    before = snapshot(tmp_path)
    code, _, err = call(suite_cli.main, ["--methods", "tanh", "--epochs", "1", "--out", runs, "--overwrite"], capsys)
    assert_one_error(code, err, 2, "tanh", "not a vgjax run")
    assert snapshot(tmp_path) == before


def test_a_live_plain_suite_holds_its_directory_and_a_second_one_is_refused(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    held = []
    monkeypatch.setattr(suite_cli, "run_suite", lambda args, jobs, d: held.append(runlock.read_lock(d)) or 0)
    code, _, err = call(suite_cli.main, ["--methods", "relu", "--epochs", "1", "--out", runs], capsys)
    assert code == 0, err
    assert held[0]["pid"] == os.getpid() and runlock.read_lock(runs) is None  # held while live, released after
    monkeypatch.undo()
    with held_lock(runs) as holder:  # another live suite
        before = snapshot(tmp_path)
        for extra in ([], ["--resume"], ["--overwrite"]):
            code, _, err = call(suite_cli.main, ["--methods", "relu", "--epochs", "1", "--out", runs, *extra], capsys)
            assert_one_error(code, err, 2, "in use by a live suite", f"pid {holder.pid}")
        assert snapshot(tmp_path) == before and not (runs / "logs").exists()
    new = tmp_path / "new"  # refused by a check: nothing created
    code, _, err = call(suite_cli.main, ["--methods", "relu", "--epochs", "1", "--out", new, "--", "--b1", "1.0"], capsys)
    assert_one_error(code, err, 2, "relu", "--b1")
    assert not new.exists()


def test_accuracy_is_an_exact_ratio_of_integer_counts():
    correct = np.arange(0, 2001, dtype=np.int32)
    acc = exact_ratios({"loss": 1.0, "accuracy": None, "correct": correct, "count": np.int32(2000)})
    assert list(acc) == ["loss", "accuracy"] and acc["accuracy"].dtype == np.float32
    assert all(a == np.float32(k / 2000) for a, k in zip(acc["accuracy"], correct.tolist()))  # correctly rounded
    assert acc["accuracy"][190] == np.float32(0.095)


def test_fit_and_sweep_accuracies_are_counts_over_the_images(tmp_path, fashion_mnist_dir, capsys):
    """Every recorded train and val accuracy is k / n for a whole k, correctly rounded, in a single
    run and in every member of a sweep chunked two ways: no layout can move its last bit."""
    out = tmp_path / "r"
    code, _, err = run(["--method", "baseline_3", "--epochs", "1", "--train-limit", "300", "--no-diagnostics",
                        "--threads", "0", "--data-dir", fashion_mnist_dir, "--out", out], capsys)
    assert code == 0, err

    def is_count(acc, n):
        k = round(acc * n)
        return np.float32(acc) == np.float32(k / n)
    for row in RunDir(out).history():
        assert is_count(row["accuracy"], 300) and is_count(row["val_accuracy"], 10000), row
    data = sweep_cli.cli.load_data(str(fashion_mnist_dir), "idx")
    from vgjax.methods import get_config
    spec = sweep.SweepSpec(get_config("baseline_3", epochs=1, train_limit=300, diagnostics=False), (0.05, 1.0), (),
                           (), (0, 1))
    one, two = (sweep.run_sweep(spec, data, chunk=c, workers=0).history for c in (1, 4))
    for m in ("accuracy", "val_accuracy"):
        assert one[m].tobytes() == two[m].tobytes()
        n = 300 if m == "accuracy" else 10000
        assert all(is_count(a, n) for a in one[m].ravel())


# ------------------------------------------------------------------------------------------------
# regression: the suite's flags reach every method as that method's run accepts them


def test_suite_epochs_scale_reaches_only_staged_methods_and_every_run_accepts_its_flags():
    args = suite_cli.build_parser().parse_args(["--epochs", "1", "--epochs-scale", "0.01"])
    for method in suite_cli.default_methods(include_optimizers=True):
        flags = suite_cli.run_flags(method, args)
        parsed = suite_cli_run_parser().parse_args(["--method", method, *flags])
        config = run_args.config_from_args(parsed)  # SystemExit 2 if the run would refuse them
        if is_staged(method):
            assert config.epochs_scale == 0.01 and "--epochs" not in flags
        else:
            assert config.epochs == 1 and "--epochs-scale" not in flags


def test_suite_checks_every_methods_flags_before_the_first_run(tmp_path, capsys):
    out = tmp_path / "runs"
    code, _, err = call(suite_cli.main, ["--methods", "baseline_3,skip", "--stages", "1-1", "--train-limit", "64",
                                         "--out", out], capsys)
    assert_one_error(code, err, 2, "skip:", "staged training")
    assert not out.exists()


def suite_cli_run_parser():
    from experiments import run as run_cli
    return run_cli.build_parser()
