"""Sweeps that survive an interruption, and the train limit applied by the library.

A sweep interrupted after its first chunks and continued with ``--resume`` ends with the files of
an uninterrupted one (metrics.csv and summary.csv byte for byte, summary.json but for its
wall-clock times); a damaged chunk file is trained again; a resume with other settings is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from experiments import cli
from experiments import sweep as sweep_main
from tests.test_sweep import ROOT, assert_histories_close
from vgjax import data as data_lib
from vgjax import runtime, sweep
from vgjax.methods import get_config
from vgjax.sweep.files import read_metrics

LIMIT = 200
FLAGS = ["--method", "baseline_3", "--depth", "2", "--width", "8", "--seeds", "3", "--epochs", "2",
         "--train-limit", str(LIMIT), "--chunk", "1", "--workers", "0"]
TIMES = ("wall_time_s", "first_epoch_s")


@pytest.fixture
def in_process(monkeypatch):
    """experiments.sweep.main in this process, leaving its CPU affinity and signals alone."""
    monkeypatch.setattr(runtime, "pin_cpu_threads", lambda *a, **k: None)
    monkeypatch.setattr(cli, "sigterm_as_interrupt", lambda: None)


def without_times(path):
    summary = json.loads((path / "summary.json").read_text())
    for d in (summary, *summary["runs"]):
        for k in TIMES:
            d.pop(k, None)
    return summary


def interrupt_after(monkeypatch, n: int) -> list:
    """Make the sweep stop (as on Ctrl-C), once, when ``n`` chunks are saved; returns the saved ranges."""
    saved, save, stopped = [], sweep.ChunkStore.save, []

    def save_then_stop(self, program, members, start, stop, history):
        save(self, program, members, start, stop, history)
        saved.append((program, start, stop))
        if len(saved) == n and not stopped:
            stopped.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep.ChunkStore, "save", save_then_stop)
    return saved


def test_an_interrupted_sweep_resumes_to_the_uninterrupted_files(tmp_path, fashion_mnist_dir, in_process,
                                                                  monkeypatch, capsys):
    common = [*FLAGS, "--data-dir", str(fashion_mnist_dir)]
    full, part = tmp_path / "full", tmp_path / "part"
    assert sweep_main.main([*common, "--out", str(full)]) == 0
    saved = interrupt_after(monkeypatch, 2)
    assert sweep_main.main([*common, "--out", str(part)]) == cli.EXIT_INTERRUPTED
    assert saved == [(0, 0, 1), (0, 1, 2)]
    summary = json.loads((part / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["device"]["platform"] == "cpu"  # where it ran
    assert not (part / "metrics.csv").exists()
    damaged = part / "chunks" / "0-1-2.npz"
    damaged.write_bytes(damaged.read_bytes()[:-40] + bytes(40))  # the second chunk's tail overwritten
    saved.clear()
    capsys.readouterr()
    assert sweep_main.main([*common, "--out", str(part), "--resume"]) == 0
    assert saved == [(0, 1, 2), (0, 2, 3)]  # the first chunk came from its file
    assert "chunk 0-1-2.npz is damaged" in capsys.readouterr().err
    for name in ("metrics.csv", "summary.csv"):
        assert (part / name).read_bytes() == (full / name).read_bytes(), name
    assert without_times(part) == without_times(full)
    assert not (part / "chunks").exists()  # the outputs hold the chunks' numbers now
    # the command line's train limit is the library's: a library sweep gives the same numbers
    arrays = data_lib.load(str(fashion_mnist_dir))
    config = get_config("baseline_3", depth=2, width=8, epochs=2, train_limit=LIMIT, diagnostics=False)
    lib = sweep.run_sweep(sweep.SweepSpec(config, seeds=(0, 1, 2)), arrays, chunk=1)
    members, history = read_metrics(full)
    assert list(members["seed"]) == [0, 1, 2]
    for m in sweep.METRICS:
        np.testing.assert_array_equal(history[m].astype(np.float32), lib.history[m], err_msg=m)


def test_resume_is_refused_with_other_settings_or_nothing_to_resume(tmp_path, fashion_mnist_dir, in_process,
                                                                    monkeypatch, capsys):
    common = [*FLAGS, "--data-dir", str(fashion_mnist_dir), "--out", str(tmp_path / "sw")]
    cases = [([*common, "--resume"], "holds no sweep to resume")]
    interrupt_after(monkeypatch, 1)
    assert sweep_main.main(common) == cli.EXIT_INTERRUPTED
    cases += [([*common, "--resume", "--lr", "0.5"], "other settings (differs in sweep.lr)"),
              ([*common, "--resume", "--overwrite"], "give one of them"),
              (common, "--resume to continue it")]
    (tmp_path / "sw" / "config.json").rename(tmp_path / "config.json")
    for i, (args, message) in enumerate(cases):
        if i == 1:
            (tmp_path / "config.json").rename(tmp_path / "sw" / "config.json")
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            sweep_main.main(args)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "sw" / "summary.json").write_text('{"status": "finished"}')
    with pytest.raises(SystemExit):
        sweep_main.main([*common, "--resume"])
    assert "nothing to resume" in capsys.readouterr().err


def test_library_train_limit_is_experiments_run(tmp_path, fashion_mnist_dir):
    """run_sweep keeps the first train_limit images, as ``experiments.run --train-limit`` does."""
    arrays = data_lib.load(str(fashion_mnist_dir))
    config = get_config("baseline_3", depth=2, width=8, epochs=2, train_limit=LIMIT, diagnostics=False)
    lib = sweep.run_sweep(sweep.SweepSpec(config, seeds=(1,)), arrays)
    run = subprocess.run([sys.executable, "-m", "experiments.run", "--method", "baseline_3", "--depth", "2",
                          "--width", "8", "--epochs", "2", "--train-limit", str(LIMIT), "--seed", "1",
                          "--no-diagnostics", "--data-dir", str(fashion_mnist_dir), "--out", str(tmp_path / "run")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    single = {m: np.asarray([r[m] for r in rows])[None] for m in sweep.METRICS}
    assert_histories_close(lib.history, single, 10000, LIMIT)
    full = sweep.run_sweep(sweep.SweepSpec(config.replace(train_limit=None, epochs=1), seeds=(1,)), arrays)
    assert full.history["loss"][0, 0] != lib.history["loss"][0, 0]


def test_worker_processes_skip_finished_chunks_and_report_new_ones():
    """Through worker processes: the chunks trained are reported to this process as they finish,
    and a second sweep given some of them trains only the others, to the same history."""
    from tests.test_sweep import CONFIG, synthetic

    spec = sweep.SweepSpec(CONFIG, seeds=(0, 1, 2, 3))
    first, again = {}, {}
    res = sweep.run_sweep(spec, synthetic(), workers=2, chunk=1,
                          on_chunk=lambda a, b, h: first.__setitem__((a, b), h))
    assert sorted(first) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    done = {k: first[k] for k in ((0, 1), (2, 3))}
    res2 = sweep.run_sweep(spec, synthetic(), workers=2, chunk=1, done=done,
                           on_chunk=lambda a, b, h: again.__setitem__((a, b), h))
    assert sorted(again) == [(1, 2), (3, 4)]
    for m in sweep.METRICS:
        np.testing.assert_array_equal(res2.history[m], res.history[m], err_msg=m)
        np.testing.assert_array_equal(np.concatenate([first[k][m] for k in sorted(first)]), res.history[m])
