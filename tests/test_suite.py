"""The suite runner: parallel workers, a failing method that does not stop the others, --resume."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import suite
from vgjax.run import jobs

ROOT = Path(__file__).resolve().parents[1]


def tiny(data_dir: Path) -> list[str]:
    """Every run tiny: 1 epoch of 256 images through a 1-hidden-layer net of 8 units."""
    return ["--epochs", "1", "--train-limit", "256", "--data-dir", str(data_dir), "--poll", "0.2",
            "--no-diagnostics", "--", "--depth", "1", "--width", "8", "--no-best-checkpoint"]


def run_suite(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "experiments.suite", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_two_workers_a_failing_method_and_resume(tmp_path, fashion_mnist_dir):
    tiny_args = tiny(fashion_mnist_dir)
    runs = tmp_path / "runs"
    # relu is given an invalid override on purpose: its run exits 2 before training
    first = run_suite("--methods", "baseline_3,relu", "--workers", "2", "--runs-dir", str(runs),
                      "--method-args", "relu=--activation nope", *tiny_args)
    assert first.returncode == 1, first.stderr
    record = json.loads((runs / "suite.json").read_text())
    assert record["workers"] == 2 and record["status"] == "finished"
    b3, relu = record["methods"]["baseline_3"], record["methods"]["relu"]
    assert b3["status"] == "finished" and b3["exit_code"] == 0 and b3["wall_time_s"] > 0
    assert relu["status"] == "failed" and relu["exit_code"] == 2 and "unknown activation" in relu["error"]
    assert "[suite] relu: failed (exit 2)" in first.stderr
    assert "baseline_3" in first.stdout and "failed" in first.stdout  # the summary table
    assert (runs / "report.md").exists() and "| baseline_3 | finished | 1 |" in (runs / "report.md").read_text()
    b3_history = (runs / "baseline_3" / "history.jsonl").read_text()
    assert len(b3_history.splitlines()) == 1

    # without --resume, existing runs are not touched
    with pytest.raises(SystemExit) as e:
        suite.main(["--methods", "baseline_3,relu", "--runs-dir", str(runs), *tiny_args])
    assert e.value.code == 2
    assert (runs / "baseline_3" / "history.jsonl").read_text() == b3_history

    # --resume skips the finished method and runs the failed one again (now without the bad flag)
    second = run_suite("--methods", "baseline_3,relu", "--workers", "2", "--runs-dir", str(runs), "--resume", *tiny_args)
    assert second.returncode == 0, second.stderr
    record = json.loads((runs / "suite.json").read_text())
    assert record["methods"]["baseline_3"]["action"] == "skip"
    assert record["methods"]["baseline_3"]["status"] == "finished"
    assert record["methods"]["relu"]["status"] == "finished" and record["methods"]["relu"]["exit_code"] == 0
    assert "[suite] skip baseline_3: already finished" in second.stderr
    assert (runs / "baseline_3" / "history.jsonl").read_text() == b3_history  # not re-run
    assert "| relu | finished | 1 |" in (runs / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--methods", "nope"], "unknown method"),
    (["--methods", "relu", "--method-args", "tanh=--lr 1"], "not among"),
    (["--methods", "relu", "--method-args", "relu"], "must look like"),
    (["--resume", "--overwrite"], "exclude each other"),
    (["--workers", "0"], "--workers"),
    (["--epochs", "x"], "invalid int value"),
])
def test_usage_errors_are_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        suite.main([*args, "--runs-dir", str(tmp_path / "r")])
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_existing_runs_need_resume_or_overwrite(tmp_path, capsys):
    (tmp_path / "relu").mkdir()
    (tmp_path / "relu" / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as e:
        suite.main(["--methods", "relu,tanh", "--runs-dir", str(tmp_path)])
    assert e.value.code == 2 and "already holds runs of relu; use --resume" in capsys.readouterr().err
    assert not (tmp_path / "tanh").exists()


def args_ns(*argv):
    return suite.build_parser().parse_args(list(argv))


def test_staged_methods_get_the_epochs_as_a_scale():
    assert suite.run_flags("relu", args_ns("--epochs", "30", "--train-limit", "500")) == \
        ["--epochs", "30", "--train-limit", "500"]
    assert suite.run_flags("freeze", args_ns("--epochs", "30")) == ["--epochs-scale", "0.1"]
    assert suite.run_flags("freeze", args_ns("--epochs", "30", "--epochs-scale", "0.5")) == ["--epochs-scale", "0.5"]


def test_every_config_field_given_to_the_suite_reaches_each_run_as_run_parses_it():
    """The suite's flags are built from the Config fields, like experiments.run's: what the suite
    passes on parses, in experiments.run, to the same values."""
    from experiments import run as run_cli

    argv = ["--momentum", "0.5", "--no-diagnostics", "--skips", "1-3,4-7", "--weight-decay", "0.01",
            "--early-stop", "val_loss", "--restore-best", "--data-dir", "/data"]
    flags = suite.run_flags("relu", args_ns(*argv))
    parsed = run_cli.build_parser().parse_args(flags)
    assert (parsed.momentum, parsed.diagnostics, parsed.skips, parsed.weight_decay) == (0.5, False, ((1, 3), (4, 7)), 0.01)
    assert (parsed.early_stop, parsed.restore_best, parsed.data_dir) == ("val_loss", True, "/data")


def test_default_methods_are_spec_3_and_4():
    methods = suite.default_methods(False)
    assert methods[:3] == ["baseline_3", "baseline_5", "baseline_7"] and "freeze" in methods and "relu" in methods
    assert not any(m.startswith("optimizers_") for m in methods)
    assert "optimizers_adopt" in suite.default_methods(True)


def test_a_diverged_exit_is_reported_from_the_run_files(tmp_path):
    """Exit status 3 with summary status 'diverged' is 'diverged'; a crash without one is 'failed'."""
    out = tmp_path / "weight_std_10"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"method": "weight_std_10", "epochs": 5}))
    (out / "summary.json").write_text(json.dumps({"status": "diverged", "diverged_epoch": 1}))
    (out / "history.jsonl").write_text(json.dumps({"epoch": 1, "loss": float("nan"), "val_accuracy": 0.1,
                                                   "epoch_time_s": 0.5}) + "\n")
    job = jobs.Job("weight_std_10", out, [sys.executable, "-c", "raise SystemExit(3)"], "run",
                   tmp_path / "logs" / "w.log", suite.COMPLETED_EXIT_CODES)
    jobs.start(job, ROOT)
    job.proc.wait(timeout=60)
    jobs.finish(job)
    assert job.status == "diverged" and job.exit_code == 3 and job.epoch == 1 and job.planned == 5
    crash = jobs.Job("relu", tmp_path / "relu", [sys.executable, "-c", "raise RuntimeError('boom')"], "run",
                     tmp_path / "logs" / "r.log", suite.COMPLETED_EXIT_CODES)
    jobs.start(crash, ROOT)
    crash.proc.wait(timeout=60)
    time.sleep(0.05)
    jobs.finish(crash)
    assert crash.status == "failed" and crash.exit_code == 1 and "RuntimeError: boom" in jobs.last_error(crash)


def test_the_most_expensive_methods_start_first():
    """Cost = epochs x (hidden layers + 3) summed over stages; the order is longest first, stable."""
    def cost(method, *argv):
        return jobs.estimated_cost(method, jobs.method_overrides(method, suite.given_settings(args_ns(*argv))))

    assert cost("baseline_3") == 300 * 6
    assert cost("baseline_7") == 300 * 10
    # freeze: 100 epochs at 2, 4 (twice), 6 (twice), 7 hidden layers, then 300 at 7
    assert cost("freeze") == 100 * (5 + 7 + 7 + 9 + 9 + 10) + 300 * 10
    assert cost("freeze", "--epochs", "30") == 10 * (5 + 7 + 7 + 9 + 9 + 10) + 30 * 10
    assert cost("relu", "--epochs", "30") == 30 * 10
    methods = ["baseline_3", "optimizers_sgd", "baseline_7", "freeze", "relu"]
    planned = [jobs.Job(m, Path(m), [], "run", Path(m + ".log")) for m in methods]
    jobs.order_jobs(planned, {})
    assert [j.method for j in planned] == ["freeze", "baseline_7", "relu", "optimizers_sgd", "baseline_3"]


def test_an_interrupted_scheduler_stops_its_running_jobs_and_starts_no_more(tmp_path):
    """Ctrl-C during run_jobs: the running child gets SIGTERM and is finished; queued jobs stay queued."""

    class Interrupting:
        def __init__(self):
            self.events, self.ticks = [], 0

        def event(self, job, what):
            self.events.append((job.method, what))

        def update(self):
            self.ticks += 1
            if self.ticks == 3:
                raise KeyboardInterrupt

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    planned = [jobs.Job(m, tmp_path / m, sleeper, "run", tmp_path / "logs" / f"{m}.log") for m in ("a", "b")]
    progress = Interrupting()
    t0 = time.perf_counter()
    assert jobs.run_jobs(planned, 1, 0.05, progress, ROOT) is False
    assert time.perf_counter() - t0 < 30
    a, b = planned
    assert a.proc.returncode is not None and a.status == "failed" and b.status == "queued" and b.proc is None
    assert progress.events == [("a", "start")]
