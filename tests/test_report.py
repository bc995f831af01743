"""The report: its table is computed from the histories, its text from the table's numbers."""

import json
import math

import pytest

from experiments import report as report_cli
from vgjax.report import runs as report


def write_run(root, method, rows, summary=None, config=None):
    d = root / method
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"method": method, "batch_size": 32, "train_limit": None,
                                               "seed": 0, "depth": 7, **(config or {})}))
    (d / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "summary.json").write_text(json.dumps({"method": method, "status": "finished",
                                                "epochs_planned": len(rows), **(summary or {})}))
    return d


def rows_of(val_acc, loss, g1, gout):
    return [{"epoch": i + 1, "loss": l, "accuracy": a, "val_loss": l, "val_accuracy": a,
             "grad_norm/hidden_1": g1, "grad_norm/output": gout, "epoch_time_s": 1.5}
            for i, (a, l) in enumerate(zip(val_acc, loss))]


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path, "baseline_7", rows_of([0.1, 0.1, 0.1], [2.31, 2.305, 2.304], 2e-6, 1.0),
              summary={"wall_time_s": 30.0})
    # summary.json deliberately disagrees with the history: the table must come from the history
    write_run(tmp_path, "relu", rows_of([0.7, 0.82, 0.81], [0.9, 0.6, 0.5], 0.4, 1.0),
              summary={"wall_time_s": 12.0, "final": {"val_accuracy": 0.123}, "best_val_accuracy": 0.5})
    write_run(tmp_path, "weight_std_10", rows_of([0.1], [float("nan")], float("nan"), float("nan")),
              summary={"status": "diverged", "diverged_epoch": 1}, config={"activation": "linear", "init_std": 10.0})
    (tmp_path / "logs").mkdir()  # not a run: ignored
    return tmp_path


def test_rows_come_from_the_history(runs):
    rows = {r.method: r for r in report.collect(runs)}
    assert list(rows) == ["baseline_7", "weight_std_10", "relu"]  # the study's method order
    relu = rows["relu"]
    hist = [json.loads(line) for line in (runs / "relu" / "history.jsonl").read_text().splitlines()]
    assert relu.final_val_accuracy == hist[-1]["val_accuracy"] == 0.81
    assert relu.best_val_accuracy == 0.82 and relu.best_epoch == 2
    assert relu.final_loss == 0.5 and relu.reached_epoch == 2
    assert relu.grad_ratio_e1 == pytest.approx(0.4) and relu.wall_time_s == 12.0
    assert rows["baseline_7"].reached_epoch is None and rows["baseline_7"].grad_ratio_e1 == pytest.approx(2e-6)
    assert rows["weight_std_10"].status == "diverged" and math.isnan(rows["weight_std_10"].final_loss)


def test_report_text_is_generated_from_the_numbers(runs):
    path = report.write_report(runs)
    text = path.read_text()
    assert path == runs / "report.md"
    assert "| relu | finished | 3 | 0.8100 | 0.8200 (2) | 0.5000 | 2 | 0.4× | 1.50 | 12.0 s |" in text
    assert "| baseline_7 | finished | 3 | 0.1000 | 0.1000 (1) | 2.3040 | never | 2e-06× | 1.50 | 30.0 s |" in text
    assert ("It reached 0.8 validation accuracy at epoch 2 while baseline_7 never did in its 3 epochs."
            in text)
    assert "first-layer gradient at epoch 1 was 0.4× the output layer's, vs 2e-06× for baseline_7" in text
    assert "It diverged (loss NaN/Inf) at epoch 1." in text
    assert "**weight_std_10** (remedy 1b: kernel init Normal(0, 10.0)) with activation=linear." in text
    assert "| weight_std_10 | diverged | 1 | 0.1000 | 0.1000 (1) | – | never | – |" in text
    assert "(Budgets differ: 1 vs 3 epochs.)" in text
    assert "Neither it (1 epoch) nor baseline_7 (3 epochs)" in text
    for fig in ("compare_val_accuracy.png", "compare_first_layer_grad.png"):
        assert (runs / "figures" / fig).exists() and f"figures/{fig}" in text


def test_without_the_reference_it_says_so(tmp_path):
    write_run(tmp_path, "tanh", rows_of([0.5, 0.85], [1.0, 0.4], 0.2, 1.0))
    text = report.render(report.collect(tmp_path), [], tmp_path)
    assert "reached 0.8 validation accuracy at epoch 2" in text and "baseline_7 is not among these runs" in text


def test_command_line(runs, capsys):
    assert report_cli.main([str(runs), "--no-figures"]) == 0
    assert capsys.readouterr().out.strip() == str(runs / "report.md")
    with pytest.raises(SystemExit) as e:
        report_cli.main([str(runs / "nope")])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    empty = runs / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as e:
        report_cli.main([str(empty)])
    assert e.value.code == 2 and "no run" in capsys.readouterr().err


def test_staged_runs_get_a_per_stage_table_from_the_history(tmp_path):
    rows = rows_of([0.5, 0.6, 0.7, 0.8], [1.0, 0.9, 0.8, 0.7], 0.1, 1.0)
    for r, stage in zip(rows, [1, 1, 2, 2]):
        r["stage"] = stage
    table = {"sizes": [1, 1], "stages": [{"stacked": [1], "frozen": [], "epochs": 2},
                                         {"stacked": [1, 2], "frozen": [1], "epochs": 2}]}
    # the summary's own per-stage numbers are deliberately wrong: the table must come from the history
    write_run(tmp_path, "freeze", rows, summary={"stage_table": table, "stages": [{"val_accuracy": 0.0}] * 2})
    text = (report.write_report(tmp_path, figures=False)).read_text()
    assert "## Staged runs: freeze" in text
    assert "| 1 | 1 | – | 2 | 0.9000 | 0.6000 | 0.9000 | 0.6000 |" in text
    assert "| 2 | 1+2 | 1 | 4 | 0.7000 | 0.8000 | 0.7000 | 0.8000 |" in text


def test_suite_timing_line_comes_from_suite_json(runs):
    (runs / "suite.json").write_text(json.dumps({
        "status": "finished", "workers": 2, "sequential": False, "threads_per_run": 1, "wall_time_s": 1500.0,
        "methods": {"baseline_7": {"action": "run", "wall_time_s": 1200.0},
                    "relu": {"action": "run", "wall_time_s": 1500.0},
                    "weight_std_10": {"action": "skip", "wall_time_s": 99999.0}}}))
    text = report.suite_timing(runs, report.collect(runs))
    assert text.startswith("**Suite timing** (`suite.json`): 2 methods run as 2 parallel workers (1 thread each) "
                           "took 25.0 min of wall time; the methods' own wall times add up to 45.0 min, so the "
                           "workers ran them 1.80× faster")
    report.write_report(runs, figures=False)
    assert text in (runs / "report.md").read_text()
    (runs / "suite.json").write_text(json.dumps({"workers": 1, "sequential": True, "threads_per_run": 1,
                                                 "wall_time_s": 60.0,
                                                 "methods": {"relu": {"action": "run", "wall_time_s": 59.0}}}))
    assert "1 method run as one after another" in report.suite_timing(runs, report.collect(runs))
    assert "faster" not in report.suite_timing(runs, report.collect(runs))


def test_seed_repeats_get_mean_and_std(tmp_path):
    for seed, (acc, loss, reach) in enumerate([(0.80, 0.50, [0.5, 0.8]), (0.84, 0.40, [0.5, 0.84]),
                                               (0.10, 2.30, [0.1, 0.1])]):
        d = write_run(tmp_path, f"freeze_{seed}", rows_of(reach, [2.0, loss], 0.1, 1.0), config={"seed": seed})
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, "method": "freeze"}))
    write_run(tmp_path, "relu", rows_of([0.5, 0.9], [1.0, 0.3], 0.4, 1.0))  # one seed: no group
    rows = report.collect(tmp_path)
    assert [len(g) for g in report.seed_groups(rows)] == [1 + 1 + 1]
    text = "\n".join(report.seeds_markdown(rows))
    # mean and sample std of 0.80, 0.84, 0.10: 0.580 ± 0.416; two of three reached 0.8, both at epoch 2
    assert "| freeze | 2 | 0,1,2 | 0.580 ± 0.416 | 0.580 ± 0.416 | 1.067 ± 1.069 | 2/3 (2) |" in text
    assert "| relu |" not in text
    table = report.table_markdown(rows)
    assert "| freeze (seed 1) | finished |" in table and "| relu | finished |" in table
