"""python -m experiments.optimizers: tables on stdout, trajectories and a contour plot on disk."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vgjax.optim import scratch

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(*args, timeout=300):
    # Without a terminal's width or forced colours: the plain 80-column text a pipe gets.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run([sys.executable, "-m", "experiments.optimizers", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def expected_final(name, epochs=30):
    hp = scratch.STUDY_HPARAMS[name]
    start = scratch.QUADRATIC_START
    return scratch.numpy_trajectory(name, scratch.quadratic_grad, start, epochs, **hp).points[-1]


@pytest.fixture(scope="module")
def spec_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("optimizers") / "out"  # not there yet: the CLI creates it
    proc = run_cli("--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return proc, out


def test_prints_epoch_tables_and_final_points(spec_run):
    proc, _ = spec_run
    text = proc.stdout
    assert "Traceback" not in proc.stderr
    assert "\x1b[" not in text  # no terminal escape codes off a TTY
    tables = text[:text.index("wrote trajectories.csv")]
    assert max(map(len, tables.splitlines())) <= 80
    for name in scratch.OPTIMIZERS:
        assert text.count(name) == 2  # its detail table and its summary row
    assert text.count("W new ") == 8  # epochs 1 and 2 of four optimizers
    for quantity in ("dW", "V ", "S ", "V̂", "Ŝ"):
        assert quantity in text
    assert "-4.6" in text and "1.2" in text and "-4.232" in text  # gradient descent, epochs 1-2
    summary = text[text.index("After 30 epochs"):]
    rows = {cells[0]: cells[1:] for cells in map(str.split, summary.splitlines())
            if cells and cells[0] in scratch.OPTIMIZERS}
    assert list(rows) == list(scratch.OPTIMIZERS)
    for name, cells in rows.items():
        np.testing.assert_allclose([float(c) for c in cells[:2]], expected_final(name), rtol=1e-6, atol=1e-12)


def test_writes_csv_and_json_matching_the_numpy_trajectories(spec_run):
    _, out = spec_run
    with open(out / "trajectories.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 31
    for name in scratch.OPTIMIZERS:
        mine = [r for r in rows if r["optimizer"] == name]
        assert [int(r["epoch"]) for r in mine] == list(range(31))
        np.testing.assert_array_equal([float(mine[-1]["w1"]), float(mine[-1]["w2"])], expected_final(name))
    data = json.loads((out / "trajectories.json").read_text())
    assert data["problem"]["start"] == [-5.0, -2.0] and data["problem"]["epochs"] == 30
    for name, r in data["optimizers"].items():
        assert r["hyperparameters"] == dict(scratch.STUDY_HPARAMS[name])
        np.testing.assert_array_equal(r["final"], expected_final(name))
        assert len(r["points"]) == 31 and len(r["steps"]) == 30
        assert r["optax_max_abs_diff"] < 1e-4
    adam_step_1 = data["optimizers"]["scratch_adam"]["steps"][0]
    assert adam_step_1["V_hat"] == pytest.approx([-1, -8]) and adam_step_1["S_hat"] == pytest.approx([1, 64])
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_writes_a_valid_png(spec_run):
    import matplotlib.image as mpimg

    _, out = spec_run
    png = out / "optimizers_quadratic.png"
    assert png.stat().st_size > 0
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    image = mpimg.imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200 and image.shape[2] in (3, 4)


def test_fewer_epochs_in_process(tmp_path, capsys):
    from experiments import optimizers

    assert optimizers.main(["--out", str(tmp_path), "--epochs", "1"]) == 0
    text = capsys.readouterr().out
    assert text.count("W new ") == 4 and "After 1 epoch from" in text
    data = json.loads((tmp_path / "trajectories.json").read_text())
    np.testing.assert_array_equal(data["optimizers"]["scratch_gd"]["final"], [-4.6, 1.2000000000000002])


@pytest.mark.parametrize("flags", [["--bogus"], ["--epochs", "0"], ["--epochs", "x"], ["--out"]])
def test_bad_flags_exit_2_with_one_line(flags):
    proc = run_cli(*flags)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")


def test_unwritable_out_dir_exits_2_with_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = run_cli("--out", str(blocker / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot write to the output directory {blocker / 'out'}: Not a directory"]
    assert "Traceback" not in proc.stderr + proc.stdout
