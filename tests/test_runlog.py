"""The run directory's names and the best-epoch rule (vgjax.run.rundir)."""

from __future__ import annotations

import math

import pytest

from vgjax.run import rundir as runlog
from vgjax.run.rundir import RunDir, best_epoch

pytestmark = pytest.mark.fast


def test_best_epoch_skips_non_finite_values_and_keeps_the_earliest_tie():
    rows = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": math.nan},
            {"epoch": 3, "val_accuracy": 0.7}, {"epoch": 4, "val_accuracy": 0.7}, {"epoch": 5}]
    assert best_epoch(rows) == (0.7, 3)
    assert best_epoch(rows, "val_accuracy", "min") == (0.5, 1)
    value, epoch = best_epoch([{"epoch": 1, "val_accuracy": math.nan}])
    assert math.isnan(value) and epoch is None
    with pytest.raises(ValueError):
        best_epoch(rows, mode="auto")


def test_run_dir_names_every_file_it_writes(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert rd.config_path.name == "config.json" and rd.summary_path.name == "summary.json"
    assert rd.best_path == tmp_path / "run" / "best" / "best.json"
    assert rd.histogram_path(7) == tmp_path / "run" / "histograms" / "epoch_0007.npz"
    assert not rd.has_checkpoint() and rd.read_summary() == {}
    rd.create({"method": "m"})
    rd.write_csv([{"epoch": 1, "stage": 1, "val_accuracy": 0.25}])
    assert rd.read_rows() == [{"epoch": 1, "stage": 1, "val_accuracy": 0.25}]  # from history.csv
    rd.append_history({"epoch": 1, "val_accuracy": 0.5})
    assert rd.read_rows() == [{"epoch": 1, "val_accuracy": 0.5}]  # history.jsonl first
    (tmp_path / "other").mkdir()
    assert runlog.find_run_dirs(tmp_path) == [tmp_path / "run"]
    assert set(rd.run_files()) == {runlog.MARKER_NAME, "config.json", "history.jsonl", "history.csv"}
