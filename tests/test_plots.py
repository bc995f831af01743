"""Figures from saved run files: valid PNGs, and the arrays drawn equal the history / histograms."""

import json

import numpy as np
import pytest

from experiments import plot as plot_cli
from tests.conftest import synthetic
from tests.test_diagnostics import tiny_run
from vgjax.train import diagnostics as D
from vgjax.report import plots
from vgjax.config import Config
from vgjax.run import rundir as runlog
from vgjax.run.rundir import read_history

RUN_FIGURES = {"curves.png", "grad_flow_heatmap.png", "grad_flow_layers.png", "layer_diagnostics.png",
               "weight_histograms.png", "grad_histograms.png"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A real staged run (3 epochs on tiny data; stage 2 starts at epoch 2) and a second run for the
    comparison figures: the first two epochs of its files under another method's name."""
    root = tmp_path_factory.mktemp("runs")
    tiny_run(root / "freeze", Config(method="freeze", depth=2, width=8, batch_size=8, lr=0.1,
                                     stages="1-1 | 1:1 | 1+2:2:1"), synthetic(n=24, n_test=24))
    other = root / "baseline_7"
    other.mkdir()
    config = json.loads((root / "freeze" / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "method": "baseline_7", "stages": None}))
    for name in (".vgjax-run", ".vgjax-owned.json"):  # a vgjax run's marker and manifest
        if (root / "freeze" / name).exists():
            (other / name).write_bytes((root / "freeze" / name).read_bytes())
    rows = [{k: v for k, v in r.items() if k not in ("stage", "stage_epoch")}
            for r in read_history(root / "freeze" / "history.jsonl")[:2]]
    (other / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def drawn(runs):
    return {p.path.name: p for p in plots.draw_run(runs / "freeze")}


def assert_png(path, min_w=300, min_h=200):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = plots.png_size(path)
    assert w >= min_w and h >= min_h
    assert path.stat().st_size > 5000  # something was drawn


def test_every_run_figure_is_a_png(runs, drawn):
    assert set(drawn) == RUN_FIGURES
    for p in drawn.values():
        assert p.path.parent == runs / "freeze" / "figures"
        assert_png(p.path)


def test_the_drawn_arrays_are_the_history(runs, drawn):
    history = read_history(runs / "freeze" / "history.jsonl")
    drawn = {name: p.data for name, p in drawn.items()}
    curves = drawn["curves.png"]
    np.testing.assert_array_equal(curves["epoch"], [1, 2, 3])
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_array_equal(curves[key], [r[key] for r in history])
    assert curves["stage_starts"] == [2]  # stage 2 begins at epoch 2: a dashed boundary there
    heat = drawn["grad_flow_heatmap.png"]
    assert heat["layers"] == ["hidden_1", "hidden_2", "output"]
    for i, layer in enumerate(heat["layers"]):
        expected = [r.get(f"grad_norm/{layer}", np.nan) for r in history]
        np.testing.assert_array_equal(heat["matrix"][i], expected)
    assert np.isnan(heat["matrix"][1, 0])  # hidden_2 does not exist in stage 1
    prof = drawn["grad_flow_layers.png"]
    assert prof["epochs"] == [1, 2, 3]
    np.testing.assert_array_equal(prof["lines"][3], [history[2][f"grad_norm/{n}"] for n in heat["layers"]])
    diag = drawn["layer_diagnostics.png"]
    np.testing.assert_array_equal(diag["update_ratio"]["hidden_2"][1:],
                                  [r["update_ratio/hidden_2"] for r in history[1:]])
    np.testing.assert_array_equal(diag["saturation"]["hidden_1"], [r["saturation/hidden_1"] for r in history])


def test_histogram_figures_show_the_saved_files(runs, drawn):
    weights, grads = drawn["weight_histograms.png"].data, drawn["grad_histograms.png"].data
    saved = {h["epoch"]: h for h in map(D.load_histograms, sorted((runs / "freeze" / "histograms").glob("*.npz")))}
    assert sorted(saved) == [0, 1, 3] and sorted(grads) == [0, 1, 3]
    counts, edges = weights["hidden_2"][3]
    np.testing.assert_array_equal(counts, saved[3]["hidden_2"]["weight_counts"])
    np.testing.assert_array_equal(edges, saved[3]["hidden_2"]["weight_edges"])
    assert 1 not in weights["hidden_2"]  # hidden_2 was not stacked at epoch 1
    for frac in grads[3].values():
        assert frac.sum() == pytest.approx(1.0)


def test_comparison_puts_every_run_on_one_axis(runs):
    out = runs / "figures"
    drawn = plots.draw_comparison(runlog.find_run_dirs(runs), out)
    assert [p.path.name for p in drawn] == ["compare_val_accuracy.png", "compare_first_layer_grad.png"]
    for p in drawn:
        assert_png(p.path)
    acc, grad = drawn[0].data, drawn[1].data
    assert set(acc) == {"freeze", "baseline_7"}
    np.testing.assert_array_equal(acc["freeze"][0], [1, 2, 3])
    base = read_history(runs / "baseline_7" / "history.jsonl")
    np.testing.assert_array_equal(acc["baseline_7"][1], [r["val_accuracy"] for r in base])
    np.testing.assert_array_equal(grad["baseline_7"][1], [r["grad_norm/hidden_1"] for r in base])


def test_explainers(tmp_path):
    drawn = plots.draw_explainers(tmp_path)
    assert [p.path.name for p in drawn] == ["normal_densities.png", "activations.png"]
    for p in drawn:
        assert_png(p.path, min_w=1000)
    dens = drawn[0].data
    for std in (0.05, 1.0, 10.0):
        x, y = dens[std]
        assert np.trapezoid(y, x) == pytest.approx(1.0, abs=1e-3)  # +-4 std hold 99.99%
    act = drawn[1].data
    assert act["sigmoid"][1].max() == pytest.approx(0.25)
    assert act["tanh"][1].max() == pytest.approx(1.0) and act["relu"][1].max() == 1.0
    assert act["chain_sigmoid"][6] == pytest.approx(0.25 ** 7)


def test_history_csv_is_enough(tmp_path, runs):
    d = tmp_path / "csv_only"
    d.mkdir()
    (d / "config.json").write_text((runs / "freeze" / "config.json").read_text())
    (d / "history.csv").write_text((runs / "freeze" / "history.csv").read_text())
    run = plots.load_run(d)
    expected = read_history(runs / "freeze" / "history.jsonl")
    np.testing.assert_allclose(run.column("val_accuracy"), [r["val_accuracy"] for r in expected])
    # counters come back as ints, as in history.jsonl (a staged report prints "stage 2", not "2.0")
    for got, want in zip(run.history, expected):
        assert [(type(got[k]), got[k]) for k in ("epoch", "stage", "stage_epoch")] == \
               [(int, want[k]) for k in ("epoch", "stage", "stage_epoch")]
    p = plots.plot_curves(run)
    assert_png(p.path)


def test_plot_command_redraws_a_runs_root(runs, capsys):
    assert plot_cli.main([str(runs)]) == 0  # plot_run on every run + the comparison figures
    printed = capsys.readouterr().out.split()
    assert str(runs / "figures" / "compare_val_accuracy.png") in printed
    assert {f"{runs}/freeze/figures/{name}" for name in RUN_FIGURES} <= set(printed)
    # a run without diagnostics columns or histograms gets the curves only (+ grad_norm figures)
    assert str(runs / "baseline_7" / "figures" / "curves.png") in printed
    assert str(runs / "baseline_7" / "figures" / "weight_histograms.png") not in printed


def test_plot_command_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        plot_cli.main([str(tmp_path / "missing")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such directory" in err[0]
    with pytest.raises(SystemExit) as e:
        plot_cli.main([str(tmp_path)])
    assert e.value.code == 2 and "neither a run directory" in capsys.readouterr().err


def test_a_run_dir_written_as_json_lines(runs):
    # the files the figures come from are the ones the runner wrote
    first = json.loads((runs / "freeze" / "history.jsonl").read_text().splitlines()[0])
    assert first["stage"] == 1 and "grad_norm/hidden_1" in first


def test_the_plot_command_draws_the_results_pages_density_figure(tmp_path, capsys):
    """docs/results/explainers/normal_densities.png (study.md §7: Normal(0, std) for std 0.05, 1 and
    10) is what ``python -m experiments.plot --explainers --out docs/results/explainers`` draws, and
    the results page shows it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert plot_cli.main(["--explainers", "--out", str(tmp_path)]) == 0
    drawn = tmp_path / "normal_densities.png"
    assert str(drawn) in capsys.readouterr().out.splitlines()
    assert_png(drawn, min_w=1000)
    committed = root / "docs" / "results" / "explainers" / "normal_densities.png"
    assert plots.png_size(committed) == plots.png_size(drawn)
    page = (root / "docs" / "results.md").read_text()
    assert "](results/explainers/normal_densities.png)" in page
    assert "python -m experiments.plot --explainers --out docs/results/explainers" in page
