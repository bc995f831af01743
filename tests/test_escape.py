"""The plateau-escape study (docs/escape.md): the escape definition, the curves, the Wilson
interval and the robustness table on hand-made histories (numbers worked out by hand, not by the
code); the two command-line steps end to end on real data at a tiny budget, with a kill and
``--resume``; and one-line usage errors.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments import cli
from experiments import escape as escape_cli
from vgjax.analysis import escape
from vgjax import runtime
from vgjax.run.rundir import history_csv
from tests.test_sweep import ROOT

NAN = float("nan")
# rows: 0 crosses at 2, falls back at 3, stays from 4 | 1 never | 2 from the start | 3 only in the
# last epoch | 4 exactly at the threshold (not above) | 5 a NaN epoch breaks "staying" | 6 falls
# back in the last epoch
HISTORIES = np.array([[0.1, 0.25, 0.1, 0.3, 0.4, 0.5],
                      [0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
                      [0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
                      [0.1, 0.1, 0.1, 0.1, 0.1, 0.21],
                      [0.1, 0.2, 0.2, 0.2, 0.2, 0.2],
                      [0.1, 0.5, 0.5, NAN, 0.5, 0.5],
                      [0.1, 0.5, 0.5, 0.5, 0.5, 0.19]])


@pytest.mark.fast
def test_escape_epoch_needs_staying_above_the_threshold():
    np.testing.assert_array_equal(escape.escape_epochs(HISTORIES), [4, 0, 1, 6, 0, 5, 0])
    np.testing.assert_array_equal(escape.escape_epochs(HISTORIES, staying=False), [2, 0, 1, 6, 0, 2, 2])
    np.testing.assert_array_equal(escape.escape_epochs(HISTORIES, 0.15), [4, 0, 1, 6, 2, 5, 2])
    np.testing.assert_array_equal(escape.fell_back(HISTORIES), [True, False, False, False, False, True, True])


@pytest.mark.fast
def test_fraction_escaped_by_epoch_and_its_median():
    np.testing.assert_allclose(escape.fraction_escaped(np.array([4, 0, 1, 6, 0, 5, 0]), 6),
                               np.array([1, 1, 1, 2, 3, 4]) / 7)
    np.testing.assert_allclose(escape.fraction_escaped(np.array([2, 0]), 3), [0, 0.5, 0.5])
    assert escape.survival_median(np.array([3, 1, 0, 0]), 5) == 3
    assert escape.survival_median(np.array([3, 0, 0]), 5) is None


@pytest.mark.fast
def test_wilson_interval_matches_hand_computed_values():
    # 5/10 and 1/2: centre 0.5, half-width z/(1+z²/n) sqrt(p(1-p)/n + z²/4n²); 0/n: upper z²/(n+z²)
    for (k, n), (lo, hi) in {(5, 10): (0.23659, 0.76341), (1, 2): (0.09453, 0.90547), (0, 2): (0.0, 0.65762),
                             (0, 16): (0.0, 0.19361), (16, 16): (0.80639, 1.0), (1, 10): (0.01787, 0.40415)}.items():
        np.testing.assert_allclose(escape.wilson(k, n), (lo, hi), atol=2e-5, err_msg=f"{k}/{n}")


# two settings of two seeds: a (0.2: crosses at 2, back at 3, stays from 4), b (never) | c (above
# 0.15 from 2, never above 0.2), d (0.5 from 2, 0.19 in the last epoch)
ROBUST = np.array([[0.1, 0.25, 0.1, 0.3, 0.4, 0.5], [0.1] * 6,
                   [0.1, 0.16, 0.17, 0.18, 0.19, 0.19], [0.1, 0.5, 0.5, 0.5, 0.5, 0.19]])
SETTINGS = [{"method": "baseline_7", "depth": 3, "batch_size": 32, "init_std": 0.05},
            {"method": "baseline_7", "depth": 5, "batch_size": 32, "init_std": 0.05}]
MEMBERS = {"setting": np.array([0, 0, 1, 1]), "seed": np.array([0, 1, 0, 1])}


@pytest.mark.fast
def test_escape_table_per_setting():
    t0, t1 = escape.escape_table(SETTINGS, MEMBERS, ROBUST)
    assert (t0["seeds"], t0["escaped"], t0["probability"], t0["median_epoch_escaped"], t0["survival_median"],
            t0["verdict"]) == (2, 1, 0.5, 4.0, 4, "some")
    np.testing.assert_allclose((t0["ci_low"], t0["ci_high"]), (0.09453, 0.90547), atol=2e-5)
    assert (t1["escaped"], t1["median_epoch_escaped"], t1["survival_median"], t1["verdict"]) == (0, None, None, "never")
    rows = escape.curve_rows(SETTINGS, MEMBERS, ROBUST)
    assert [r["escaped"] for r in rows if r["setting"] == 0] == [0, 0, 0, 1, 1, 1]
    assert [r["epoch"] for r in rows[:6]] == [1, 2, 3, 4, 5, 6]


@pytest.mark.fast
def test_robustness_table_counts_changes_against_the_reference():
    got = {(r["threshold"], r["rule"]): (r["escaped_members"], r["settings_changed"], r["verdicts_changed"],
                                         r["max_probability_change"], r["median_epoch_shift"], r["fell_back"])
           for r in escape.robustness(SETTINGS, MEMBERS, ROBUST)}
    assert got == {(0.15, "staying"): (3, 1, 1, 1.0, 0.0, 1), (0.15, "first crossing"): (3, 1, 1, 1.0, -2.0, 1),
                   (0.2, "staying"): (1, 0, 0, 0.0, 0.0, 2), (0.2, "first crossing"): (2, 1, 1, 0.5, -2.0, 2),
                   (0.3, "staying"): (1, 0, 0, 0.0, 1.0, 1), (0.3, "first crossing"): (2, 1, 1, 0.5, 1.0, 1)}


@pytest.mark.fast
def test_theory_comparison_and_its_answer():
    table = [{"batch_size": b, "probability": p, "survival_median": m, "epochs": 10}
             for b, p, m in ((32, 1.0, 2), (32, 0.5, 6), (32, 0.0, None), (128, 1.0, 3), (128, 0.0, None))]
    predicted = [{"log10_grad_ratio": r, "log10_chi_product": c} for r, c in
                 ((-1, -2), (-2, -4), (-3, -6), (-1.5, -2), (-4, -6))]
    all_, b32, b128 = escape.theory_comparison(table, predicted)
    assert (all_["group"], all_["settings"], b32["group"], b128["settings"]) == ("all", 5, "batch 32", 2)
    assert all_["log10_grad_ratio:time"][0] == pytest.approx(-0.9746794, abs=1e-6)  # ties at 11: ranks 4.5
    assert b32["log10_grad_ratio:time"][0] == pytest.approx(-1.0) and b128["log10_grad_ratio:time"] == (None, None)
    assert escape.theory_answer([all_]).startswith("**Yes**")
    flat = escape.theory_comparison([{**t, "survival_median": None} for t in table], predicted)
    assert escape.theory_answer(flat).startswith("**Cannot tell")


# ----------------------------------------------------------------------------- end to end

FLAGS = ["--depth", "2,3", "--batch-size", "128", "--init-std", "0.05,1", "--seeds", "2", "--epochs", "2",
         "--train-limit", "512", "--workers", "0"]


def command(*args, data_dir, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "experiments.escape", *args, "--data-dir", str(data_dir)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def train_killed_after_first_chunk(out, data_dir) -> None:
    proc = command("train", *FLAGS, "--out", str(out), data_dir=data_dir, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list((out / "chunks").glob("*.npz")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (out / "metrics.csv").exists()  # killed before the end


def escaped_by_hand(path, threshold=0.2) -> dict:
    """{setting: (seeds, escaped)} straight from metrics.csv: above the threshold to the last epoch."""
    runs: dict = {}
    with open(path / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            runs.setdefault((int(r["setting"]), int(r["seed"])), []).append((int(r["epoch"]), float(r["val_accuracy"])))
    out: dict = {}
    for (s, _), hist in runs.items():
        vals = [v for _, v in sorted(hist)]
        stays = any(all(v > threshold for v in vals[e:]) for e in range(len(vals)))
        seeds, esc = out.get(s, (0, 0))
        out[s] = (seeds + 1, esc + stays)
    return out


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, fashion_mnist_dir):
    """The tiny sweep trained without a break, and again killed after its first chunk and resumed
    (the two trainings run side by side)."""
    tmp = tmp_path_factory.mktemp("escape")
    full, part = tmp / "full", tmp / "part"
    whole = command("train", *FLAGS, "--out", str(full), data_dir=fashion_mnist_dir)
    train_killed_after_first_chunk(part, fashion_mnist_dir)
    finish(command("train", *FLAGS, "--out", str(part), "--resume", data_dir=fashion_mnist_dir))
    finish(whole)
    return full, part


@pytest.mark.slow
def test_train_resumes_after_a_kill_to_the_uninterrupted_metrics(sweeps):
    full, part = sweeps
    assert (part / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()
    assert not (part / "chunks").exists()


@pytest.mark.slow
def test_report_end_to_end(sweeps, tmp_path, fashion_mnist_dir):
    full, rep = sweeps[0], tmp_path / "report"
    finish(command("report", str(full), "--out", str(rep), "--theory-per-class", "2", data_dir=fashion_mnist_dir))
    for name in ("report.md", "escape.csv", "curves.csv", "escape_curves.png", "escape_vs_chi.png"):
        assert (rep / name).stat().st_size > 0, name
    rows = read_csv(rep / "escape.csv")
    assert {int(r["setting"]): (int(r["seeds"]), int(r["escaped"])) for r in rows} == escaped_by_hand(full)
    assert [(int(r["depth"]), float(r["init_std"])) for r in rows] == [(2, 0.05), (2, 1.0), (3, 0.05), (3, 1.0)]
    assert all(r["log10_grad_ratio"] and r["log10_chi_product"] for r in rows)
    text = (rep / "report.md").read_text()
    assert f"--train-limit 512 --out {full}" in text and "cpu" in text and "s per member-epoch" in text


CRAFTED = {0: ([0.1, 0.3], [0.3, 0.3]), 1: ([0.3, 0.1], [0.1, 0.1]), 2: ([0.1, 0.3], [0.1, 0.1]),
           3: ([0.3, 0.3], [0.3, 0.3])}  # per setting, seed 0 and seed 1's val accuracy by epoch


@pytest.mark.slow
def test_report_numbers_come_from_metrics_csv(sweeps, tmp_path):
    """A sweep's val accuracies replaced by hand-made ones: the report's tables follow them."""
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(sweeps[0], sweep_dir)
    rows = read_csv(sweep_dir / "metrics.csv")
    for r in rows:
        r["val_accuracy"] = CRAFTED[int(r["setting"])][int(r["seed"])][int(r["epoch"]) - 1]
    with open(sweep_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    assert escape_cli.main(["report", str(sweep_dir), "--out", str(tmp_path / "rep"), "--no-theory"]) == 0
    got = [(int(r["escaped"]), float(r["probability"]), r["median_epoch_escaped"], r["survival_median"], r["verdict"])
           for r in read_csv(tmp_path / "rep" / "escape.csv")]
    assert got == [(2, 1.0, "1.5", "1", "all"), (0, 0.0, "", "", "never"), (1, 0.5, "2.0", "2", "some"),
                   (2, 1.0, "1.0", "1", "all")]
    curves = [(int(r["setting"]), int(r["epoch"]), int(r["escaped"])) for r in read_csv(tmp_path / "rep" / "curves.csv")]
    assert curves == [(0, 1, 1), (0, 2, 2), (1, 1, 0), (1, 2, 0), (2, 1, 0), (2, 2, 1), (3, 1, 2), (3, 2, 2)]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| 0.2 | first crossing | 6 | 1 | 1 | 0.50 | +0 | 1 |" in text
    assert "| 2 | 128 | 0.05 | 2 | 2 | 1.00 [0.34, 1.00] | 1.5 | 1 | all |" in text
    assert "Not computed (`--no-theory`)" in text


# ----------------------------------------------------------------------------- usage errors

@pytest.fixture
def in_process(monkeypatch):
    monkeypatch.setattr(runtime, "pin_cpu_threads", lambda *a, **k: None)
    monkeypatch.setattr(cli, "sigterm_as_interrupt", lambda: None)


@pytest.mark.fast
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, in_process):
    (tmp_path / "empty").mkdir()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text('{"sweep": {}}')
    cases = [(["report", str(tmp_path / "nowhere")], "no such directory"),
             (["report", str(tmp_path / "empty")], "no summary.json"),
             (["report", str(tmp_path / "half"), "--no-theory"], "no summary.json (still running, or it failed)"),
             (["report", str(tmp_path / "empty"), "--theory-per-class", "1"], "--theory-per-class must be >= 2"),
             (["train", "--seeds", "0"], "--seeds must be >= 1"), (["train", "--depth", "3,x"], "every value must be an integer"),
             (["train", "--resume", "--out", str(tmp_path / "empty")], "holds no sweep to resume"),
             (["--bogus"], "unrecognized arguments: --bogus"), (["report"], "SWEEP_DIR"),
             (["predict", str(tmp_path / "empty"), "--made", "2026-13-45", "--out", str(tmp_path / "p.csv")],
              "--made must be a date YYYY-MM-DD"),
             (["predict", str(tmp_path / "empty"), "--made", "2026-12-07", "--out", str(tmp_path / "half" / "config.json")],
              "a dated prediction is never rewritten"),
             (["predict", str(tmp_path / "nowhere"), "--made", "2026-12-07", "--out", str(tmp_path / "p.csv")],
              "no such directory")]
    for argv, message in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            escape_cli.main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)


@pytest.mark.slow
def test_bad_input_from_the_shell_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.escape", "report", str(tmp_path / "nowhere")],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_an_interrupted_sweep_is_reported_from_its_finished_programs(tmp_path):
    """The committed GPU sweep was interrupted in its last program: the report covers the nine
    programs whose every member has an intact chunk and names the one that did not finish; a
    damaged chunk makes its program unfinished too."""
    from vgjax.analysis.escape import load_escape_sweep

    src = Path(__file__).resolve().parents[1] / "docs" / "results" / "escape" / "sweep"
    config, summary, members, history, missing = load_escape_sweep(src)
    assert missing == ["depth=7 batch_size=512"]
    assert len(summary["settings"]) == 27 and summary["members"] == 27 * 16 == len(members["seed"])
    assert history["val_accuracy"].shape == (27 * 16, 300)
    assert sorted(set(members["setting"].tolist())) == list(range(27))
    dst = tmp_path / "sweep"
    shutil.copytree(src, dst)
    (dst / "chunks" / "0-0-48.npz").write_bytes(b"damaged")
    _, summary, _, _, missing = load_escape_sweep(dst)
    assert missing == ["depth=3 batch_size=128", "depth=7 batch_size=512"] and summary["members"] == 24 * 16


# ----------------------------------------------------------------------------- escape in SGD steps

@pytest.mark.fast
def test_steps_per_epoch_counts_the_partial_batch():
    assert [escape.steps_per_epoch(b) for b in (32, 128, 512)] == [1875, 469, 118]
    assert escape.steps_per_epoch(100, 1000) == 10 and escape.steps_per_epoch(128, 10000) == 79


@pytest.mark.fast
def test_step_rows_convert_the_survival_median_to_steps():
    settings = [{**s, "batch_size": b} for s, b in zip(SETTINGS, (128, 512))]
    predicted = [{"log10_grad_ratio": -1.0, "log10_chi_product": -2.0}, {"log10_grad_ratio": -2.0, "log10_chi_product": -4.0}]
    escaped_by_4 = np.array([[0.1, 0.1, 0.1, 0.3, 0.3, 0.3], [0.1] * 6, [0.1] * 6, [0.1] * 6])
    r0, r1 = escape.step_rows(settings, MEMBERS, escaped_by_4, predicted)
    assert (r0["survival_median"], r0["steps_per_epoch"], r0["escape_steps"], r0["budget_steps"]) == (4, 469, 4 * 469, 6 * 469)
    assert (r1["escape_steps"], r1["budget_steps"], r1["lr"]) == (None, 6 * 118, 0.01)
    assert r1["log10_textbook"] == pytest.approx(5 * np.log10(0.25 * 0.05 * np.sqrt(128)))


@pytest.mark.fast
def test_fit_law_recovers_a_known_line():
    x = np.array([-1.0, -2.0, -3.0, -4.0])
    fit = escape.fit_law(x, -1.5 * x + 0.7)
    assert (fit["a"], fit["b"], fit["r2"], fit["n"]) == (pytest.approx(-1.5), pytest.approx(0.7), pytest.approx(1.0), 4)
    # residuals +0.1, -0.1, -0.1, +0.1 are orthogonal to (1, x): same line; SS_tot = 2.25·5 + 0.04
    noisy = escape.fit_law(x, -1.5 * x + 0.7 + np.array([0.1, -0.1, -0.1, 0.1]))
    assert (noisy["a"], noisy["b"]) == (pytest.approx(-1.5), pytest.approx(0.7))
    assert noisy["r2"] == pytest.approx(1 - 0.04 / 11.29) and noisy["resid_std"] == pytest.approx(np.sqrt(0.04 / 2))
    with pytest.raises(ValueError):
        escape.fit_law([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])


@pytest.mark.fast
def test_median_of_resamples_is_the_survival_median():
    e = np.array([5, 3, 0, 9])
    draws = np.array([[0, 1, 2, 3], [2, 2, 2, 0], [1, 1, 0, 0], [3, 2, 2, 1]])
    # medians: sorted 3,5,9,never -> 2nd = 5 | never x3 -> 0 | 3,3,5,5 -> 3 | 3,9,never,never -> 9
    np.testing.assert_array_equal(escape.median_of_resamples(e, draws), [5, 0, 3, 9])
    for epochs in (e, np.array([7, 0, 0, 2])):
        assert escape.median_of_resamples(epochs, np.arange(4)[None]) == (escape.survival_median(epochs, 10) or 0)


def law_data(jitter: bool):
    """Four settings of 4 seeds at batch 100 on 1,000 images (10 steps an epoch), escape epoch
    10^(−x): steps = 10^(1 − x) exactly when every seed agrees (jitter False)."""
    settings = [{"method": "baseline_7", "depth": 3, "batch_size": 100, "init_std": s} for s in (0.1, 0.2, 0.3, 0.4)]
    bases = [10, 20, 50, 100]
    xs = [-float(np.log10(b)) for b in bases]
    n_epochs = 400
    val, members = [], {"setting": np.repeat(np.arange(4), 4), "seed": np.tile(np.arange(4), 4)}
    for i, x in enumerate(xs):
        base = bases[i]
        for k in range(4):
            e = base + (k - 1) * (i + 1) if jitter else base
            val.append([0.1] * (e - 1) + [0.5] * (n_epochs - e + 1))
    predicted = [{"log10_grad_ratio": x, "log10_chi_product": 2 * x} for x in xs]
    rows = escape.step_rows(settings, members, np.array(val), predicted, train_images=1000)
    return settings, members, np.array(val), rows


@pytest.mark.fast
def test_bootstrap_is_deterministic_and_collapses_without_seed_noise():
    settings, members, val, rows = law_data(jitter=False)
    law = escape.law_of(rows)
    assert (law["a"], law["b"]) == (pytest.approx(-1.0), pytest.approx(1.0))
    flat = escape.bootstrap_law(settings, members, val, rows, draws=50, seed=3)
    assert flat["a_ci"] == pytest.approx((-1.0, -1.0)) and flat["b_ci"] == pytest.approx((1.0, 1.0))
    settings, members, val, rows = law_data(jitter=True)
    one, two = (escape.bootstrap_law(settings, members, val, rows, draws=200, seed=7) for _ in range(2))
    np.testing.assert_array_equal(one["a_draws"], two["a_draws"])
    other = escape.bootstrap_law(settings, members, val, rows, draws=200, seed=8)
    assert not np.array_equal(one["a_draws"], other["a_draws"])
    assert one["a_ci"][0] < one["a_ci"][1] and one["fits"] == 200


@pytest.mark.fast
def test_baselines_rank_and_fit_each_predictor():
    _, _, _, rows = law_data(jitter=False)
    got = {b["predictor"]: b for b in escape.baselines(rows)}
    assert got["log10_grad_ratio"]["rho_steps"][0] == pytest.approx(-1.0)
    assert got["log10_grad_ratio"]["r2_steps"] == pytest.approx(1.0)
    assert got["log10_textbook"]["rho_steps"][0] == pytest.approx(1.0)  # one depth: it ranks by std, here backwards


@pytest.mark.fast
def test_predictions_scale_with_lr_and_their_file_round_trips(tmp_path):
    law = {"a": -1.0, "b": 1.0, "resid_std": 0.1}
    assert escape.predict_steps(law, -2.0) == pytest.approx(1000.0)
    assert escape.predict_steps(law, -2.0, lr=0.1) == pytest.approx(100.0)  # steps x lr invariant
    boot = {"a_draws": np.array([-1.0, -1.0]), "b_draws": np.array([1.0, 1.0])}
    settings = [{"depth": 5, "batch_size": 512, "init_std": 0.1, "lr": 0.1},
                {"depth": 7, "batch_size": 32, "init_std": 0.05, "lr": 0.01}]
    rows = escape.predictions(law, boot, settings, [{"log10_grad_ratio": -2.0}, {"log10_grad_ratio": -6.0}], "2026-12-07")
    assert [r["predicted_steps"] for r in rows] == [100, 10 ** 7] and rows[0]["predicted_epoch"] == 1
    assert rows[0]["prediction"] == "escape by epoch 1" and rows[1]["prediction"] == "not in 300 epochs"
    assert rows[1]["predicted_epoch"] == 5334 and rows[0]["hit_within_decades"] == 0.2
    path = tmp_path / "p.csv"
    path.write_text(history_csv(rows))
    assert escape.read_predictions(path) == rows
    path.write_text("made,depth\n2026-12-07,5\n")
    with pytest.raises(ValueError, match="not a predictions file"):
        escape.read_predictions(path)


@pytest.mark.fast
def test_the_committed_predictions_are_the_law_of_the_committed_sweep():
    path = ROOT / "docs" / "results" / "escape" / "predictions_2026-12-07.csv"
    rows = escape.read_predictions(path)
    assert {r["made"] for r in rows} == {"2026-12-07"} and len(rows) == len(escape.prediction_settings())
    for r in rows:
        assert r["steps_per_epoch"] == escape.steps_per_epoch(r["batch_size"])
        assert r["predicted_epoch"] == int(np.ceil(r["predicted_steps"] / r["steps_per_epoch"])) or \
            abs(r["predicted_epoch"] - r["predicted_steps"] / r["steps_per_epoch"]) < 1
        assert (r["prediction"] == "not in 300 epochs") == (r["predicted_epoch"] > 300)
        assert r["band_low_steps"] <= r["predicted_steps"] <= r["band_high_steps"]


@pytest.mark.fast
def test_outcomes_call_hits_and_misses():
    pred = {"made": "x", "depth": 3, "batch_size": 100, "init_std": 0.1, "lr": 0.01, "steps_per_epoch": 10,
            "predicted_steps": 100, "predicted_epoch": 10, "hit_within_decades": 0.3}
    settings = [{"method": "baseline_7", "depth": 3, "batch_size": 100, "init_std": 0.1}]
    members = {"setting": np.zeros(2, int), "seed": np.arange(2)}
    at = lambda e: [0.1] * (e - 1) + [0.5] * (40 - e + 1)  # noqa: E731
    hit, = escape.outcomes([pred], [("run", settings, members, np.array([at(15), at(30)]))])
    assert (hit["measured_epoch"], hit["measured_steps"], hit["outcome"]) == (15, 150, "hit")
    assert hit["error_decades"] == pytest.approx(np.log10(1.5))
    miss, = escape.outcomes([pred], [("run", settings, members, np.array([at(30), at(31)]))])
    assert miss["outcome"] == "miss" and miss["error_decades"] == pytest.approx(np.log10(3.0))
    none, = escape.outcomes([pred], [("run", settings, members, np.array([[0.1] * 40] * 2))])
    assert none["outcome"].startswith("miss (no median")
    other, = escape.outcomes([{**pred, "lr": 0.1}], [("run", settings, members, np.array([at(15), at(30)]))])
    assert other["outcome"] == "not run"


# ----------------------------------------------------------------------------- trainability map

@pytest.mark.fast
def test_trainability_overlay_on_a_tiny_case():
    from vgjax.analysis import trainability as tr

    over = tr.overlay("tanh", [0.05, 1 / np.sqrt(128), 0.5], width=128)
    assert over["critical_stds"] == [pytest.approx(1 / np.sqrt(128), rel=1e-6)]  # tanh'(0) = 1: s² n = 1
    assert over["chi_star"][0] == pytest.approx(0.05 ** 2 * 128, rel=1e-6)  # q* = 0: chi = s² n tanh'(0)²
    assert over["predicted_depth"][0] == pytest.approx(6 / abs(np.log(0.32)), rel=1e-6)
    assert over["xi"][1] > 1e3 and over["chi_c"][0] == pytest.approx(0.32)  # q* = 0: chi_c = chi*
    # chaotic side: chi* = 3.25 explodes the gradient, but the correlations decay (c* = 0, tanh is
    # odd) at chi_c = s² n E[tanh'(u) tanh'(u')] with u, u' independent = s² n E[tanh'(u)]² < 1
    assert over["c_star"][2] == pytest.approx(0.0, abs=1e-9) and over["chi_star"][2] > 3 and 0.6 < over["chi_c"][2] < 0.8
    settings = [{"activation": "tanh", "depth": d, "init_std": s} for d in (2, 4, 8) for s in (0.05, 0.5)]
    members = {"setting": np.repeat(np.arange(6), 2)}
    last = {(2, 0.05): (0.8, 0.7), (2, 0.5): (0.8, 0.1), (4, 0.05): (0.1, 0.1), (4, 0.5): (0.3, 0.3),
            (8, 0.05): (0.5, 0.6), (8, 0.5): (0.3, float("nan"))}
    val = np.array([[0.1, v] for s in settings for v in last[(s["depth"], s["init_std"])]])
    rows = tr.map_rows(settings, members, val)
    assert [r["trainable_seeds"] for r in rows] == [2, 1, 0, 2, 2, 1]
    assert tr.measured_depth(rows, 0.05) == 2 and tr.measured_depth(rows, 0.5) == 8  # 1 of 2 seeds is half
    comp = tr.comparison(rows, tr.overlay("tanh", [0.05, 0.5], width=128))
    # 6ξ_c: 5.27 at 0.05 (chi_c = chi* = 0.32): depth 4 of the grid; at 0.5 chi_c = 0.728: 18.9, depth 8
    assert [c["predicted_grid_depth"] for c in comp] == [4, 8] and [c["agree"] for c in comp] == [False, True]
