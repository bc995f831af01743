"""docs/results/course/: figures.csv is what `experiments.course collect` makes of the committed
sweeps and Keras CSVs, report.md what `report` makes of figures.csv, byte for byte; the verdict
names the protocols that fit every course figure, and only those."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vgjax.analysis import course

ROOT = Path(__file__).resolve().parents[1]
DIR = ROOT / "docs" / "results" / "course"


def test_the_committed_report_regenerates_byte_identical_from_its_csv():
    text = course.report(course.read_rows(DIR / course.FIGURES_CSV), course.read_escape(DIR / course.ESCAPE_CSV))
    assert text == (DIR / "report.md").read_text()


def test_the_csvs_are_what_collect_makes_of_the_committed_sweeps(tmp_path):
    course.write_rows(tmp_path / "figures.csv", course.collect(DIR))
    assert (tmp_path / "figures.csv").read_text() == (DIR / course.FIGURES_CSV).read_text()
    course.write_rows(tmp_path / "escape.csv", course.escape_rows(ROOT / course.ESCAPE_SWEEP), course.ESCAPE_COLUMNS)
    assert (tmp_path / "escape.csv").read_text() == (DIR / course.ESCAPE_CSV).read_text()


def test_the_report_command_writes_the_report(tmp_path):
    for name in (course.FIGURES_CSV, course.ESCAPE_CSV):
        shutil.copy(DIR / name, tmp_path / name)
    r = subprocess.run([sys.executable, "-m", "experiments.course", "report", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "report.md").read_text() == (DIR / "report.md").read_text()
    r = subprocess.run([sys.executable, "-m", "experiments.course", "report", "--out", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def row(figure: str, batch: int, pixels: str, mean: float, std: float, epoch: int | None = None,
        framework: str = "vgjax") -> dict:
    planned = course.BY_KEY[figure].epoch
    return {"figure": figure, "framework": framework, "batch_size": batch, "pixels": pixels,
            "epoch": planned if epoch is None else epoch, "planned_epoch": planned, "seeds": 4, "mean": mean,
            "std": std}


def exact_rows(batch: int, pixels: str, shift: float = 0.0) -> list[dict]:
    """One protocol whose means sit ``shift`` away from every course value, with std 0.01."""
    return [row(f.key, batch, pixels, f.value + shift, 0.01) for f in course.FIGURES]


def test_inside_the_spread_is_two_std_plus_the_floor():
    assert course.inside(1.0, 1.0 + 2 * 0.01 + 0.002 - 1e-9, 0.01)
    assert not course.inside(1.0, 1.0 + 2 * 0.01 + 0.002 + 1e-6, 0.01)
    assert course.inside(0.1, 0.1015, math.nan) and not course.inside(0.1, 0.103, math.nan)


def test_the_verdict_names_the_one_protocol_that_fits_every_figure():
    rows = exact_rows(512, "raw") + exact_rows(32, "scaled", shift=0.1)
    text = "\n".join(course.verdict(rows))
    assert "**The course's protocol: batch 512, raw 0-255.**" in text and "inside no other" in text
    assert "batch 32" not in text.split("\n")[0]
    assert course.candidate_protocols(rows) == [(512, "raw")]
    assert text.endswith("3 of the 3 inside the spread of batch 512, raw 0-255, no other protocol measured does as well.")


def test_no_protocol_fits_when_each_misses_one_figure_and_the_figures_say_which_fits():
    a = exact_rows(512, "raw")
    a[0] = row("std1", 512, "raw", 0.2, 0.01)  # misses std 1.0
    b = exact_rows(128, "scaled")
    b[1] = row("adam", 128, "scaled", 0.5, 0.01)  # misses Adam
    lines = course.verdict(a + b)
    assert lines[0].startswith("**No protocol fits every course figure**")
    by_fig = {f.key: line for f, line in zip(course.FIGURES, lines[1:])}
    assert "inside the spread of batch 128, x / 255 (1 of the 2" in by_fig["std1"]
    assert "inside the spread of batch 512, raw 0-255 (1 of the 2" in by_fig["adam"]
    assert course.candidate_protocols(a + b) == [(512, "raw")]  # it fits all three epoch-1 figures, b two
    c = [row("adam", 64, "raw", 0.5, 0.01), row("batchnorm", 64, "raw", 1.7638, 0.01),
         row("skip", 64, "raw", 2.2641, 0.01), row("skip", 32, "raw", 2.2641, 0.01)]
    assert course.candidate_protocols(b[1:] + c) == [(128, "scaled"), (64, "raw")]  # two figures each, the most


def test_a_cut_run_and_an_unmeasured_figure_never_count_as_a_fit():
    rows = exact_rows(512, "raw")
    rows[0] = row("std1", 512, "raw", 0.6084, 0.01, epoch=100)  # the right value, at the wrong epoch
    assert not course.fits(rows[0])
    assert course.verdict(rows)[0].startswith("**No protocol fits")
    assert "(epoch 100, cut)" in course.report(rows)
    partial = exact_rows(512, "raw")[1:]  # std 1.0 not measured
    assert course.verdict(partial)[0] == ("**No protocol fits every course figure** (none was measured for all "
                                          "of them); by figure:")
    keras_only = [row("adam", 512, "raw", 0.1971, 0.01, framework="keras")]
    assert course.candidate_protocols(keras_only) == []
