"""The multi-seed sweep report: every number comes from summary.json, verdicts follow the rules."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import report
from vgjax.report import sweep as sweep_report

ROOT = Path(__file__).resolve().parents[1]


def stat(mean, std):
    return {"mean": mean, "std": std, "min": mean - std, "max": mean + std}


def setting(i, method, batch, final, best, loss, left, seeds=4, exit_epoch=None, diverged=0):
    return {"setting": i, "method": method, "depth": 7, "width": 128, "activation": "sigmoid", "optimizer": "sgd",
            "batch_size": batch, "init_std": 0.05, "lr": 0.01, "beta": 0.05, "seeds": seeds,
            "final_val_accuracy": stat(*final), "best_val_accuracy": stat(*best), "final_loss": stat(*loss),
            "left_plateau": {"threshold": 0.2, "fraction": left / seeds, "epoch_mean": exit_epoch,
                             "epoch_median": exit_epoch},
            "diverged": {"count": diverged, "seeds": [], "epochs": []}}


def write_sweep(root, settings, batches, methods, status="finished", epochs=30):
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({
        "sweep": {"methods": methods, "batch_size": batches, "depth": None, "width": None, "activation": None,
                  "optimizer": None, "init_std": None, "lr": None, "beta": None, "seeds": [0, 1, 2, 3],
                  "epochs": epochs, "train_limit": None, "chunk": None},
        "configs": []}))
    (root / "summary.json").write_text(json.dumps({
        "status": status, "members": 4 * len(settings), "settings": settings, "epochs": epochs,
        "wall_time_s": 600.0, "device": {"platform": "cpu", "device_kind": "cpu", "device_count": 1,
                                         "jax_version": "0.0"}}))
    return root


@pytest.fixture
def batch_sweep(tmp_path):
    # baseline_5 learns at 32, partly at 64 (2 of 4 seeds left, low mean), stays at chance at 128 and 256;
    # relu learns everywhere.
    settings = [
        setting(0, "baseline_5", 32, (0.8123, 0.0125), (0.82, 0.01), (0.52, 0.03), 4, exit_epoch=12),
        setting(1, "baseline_5", 64, (0.3512, 0.2871), (0.36, 0.28), (1.7, 0.5), 2, exit_epoch=21.5),
        setting(2, "baseline_5", 128, (0.1, 0.0), (0.1, 0.0), (2.3026, 0.0001), 0),
        setting(3, "baseline_5", 256, (0.1, 0.0), (0.1, 0.0), (2.3026, 0.0001), 0),
        setting(4, "relu", 32, (0.8812, 0.0021), (0.89, 0.001), (0.21, 0.01), 4, exit_epoch=1),
        setting(5, "relu", 64, (0.8791, 0.0033), (0.885, 0.002), (0.25, 0.01), 4, exit_epoch=1),
        setting(6, "relu", 128, (0.8702, 0.0044), (0.88, 0.002), (0.3, 0.01), 4, exit_epoch=1),
        setting(7, "relu", 256, (0.8604, 0.0051), (0.87, 0.003), (0.35, 0.01), 4, exit_epoch=2),
    ]
    return write_sweep(tmp_path / "batch", settings, [32, 64, 128, 256], ["baseline_5", "relu"])


def test_verdicts_follow_the_stated_rules():
    assert sweep_report.verdict(setting(0, "m", 32, (0.8, 0.01), (0.8, 0), (0.5, 0), 4)) == "learns"
    assert sweep_report.verdict(setting(0, "m", 32, (0.8, 0.01), (0.8, 0), (0.5, 0), 1)) == "partly"  # 1/4 left
    assert sweep_report.verdict(setting(0, "m", 32, (0.3, 0.2), (0.3, 0), (1.5, 0), 3)) == "partly"  # low mean
    assert sweep_report.verdict(setting(0, "m", 32, (0.1, 0.0), (0.1, 0), (2.3, 0), 0)) == "chance"


def test_report_tables_and_sentences_come_from_the_summary(batch_sweep, capsys):
    assert report.main([str(batch_sweep)]) == 0
    assert capsys.readouterr().out.strip() == str(batch_sweep / "report.md")
    text = (batch_sweep / "report.md").read_text()
    # the per-setting table: mean ± std to three decimals, the plateau exits with their median epoch
    assert "| baseline_5 | 64 | 4 | 0.351 ± 0.287 | 0.360 ± 0.280 | 1.700 ± 0.500 | 2/4 (median epoch 21.5) | 0/4 | partly |" in text
    assert "| relu | 256 | 4 | 0.860 ± 0.005 |" in text
    # the pivot over batch size
    assert "| setting | batch_size 32 | batch_size 64 | batch_size 128 | batch_size 256 |" in text
    assert "| baseline_5 | 0.812 ± 0.013 | 0.351 ± 0.287 | 0.100 ± 0.000 | 0.100 ± 0.000 |" in text
    # what depends on the batch size, and what does not
    assert ("- **baseline_5** learns at batch_size 32; partly learns at batch_size 64; stays at chance at "
            "batch_size 128–256 (in 30 epochs): **depends on batch_size**.") in text
    assert "- **relu** learns at every batch_size tried (in 30 epochs): the verdict does not depend on it." in text
    assert "--method baseline_5,relu --batch-size 32,64,128,256 --seeds 4 --epochs 30" in text
    figure = batch_sweep / "final_val_accuracy_vs_batch_size.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](final_val_accuracy_vs_batch_size.png)" in text


def test_a_seed_sweep_of_several_methods_has_no_pivot(tmp_path):
    settings = [setting(0, "baseline_7", 32, (0.1, 0.0), (0.1, 0.0), (2.303, 0.0), 0),
                setting(1, "optimizers_adam", 512, (0.88, 0.002), (0.89, 0.001), (0.2, 0.01), 4, exit_epoch=1)]
    # the methods' own batch sizes differ, but batch size is not a swept axis: no column, no pivot
    root = write_sweep(tmp_path / "seeds", settings, None, ["baseline_7", "optimizers_adam"])
    text = sweep_report.write_sweep_report(root).read_text()
    assert "| method | seeds | final val acc |" in text
    assert "| baseline_7 | 4 | 0.100 ± 0.000 | 0.100 ± 0.000 | 2.303 ± 0.000 | 0/4 | 0/4 | chance |" in text
    assert "by batch_size" not in text and not list(root.glob("final_val_accuracy_vs_*.png"))


def test_an_unfinished_sweep_is_one_line_and_exit_2(tmp_path):
    root = write_sweep(tmp_path / "cut", [], [32], ["baseline_7"], status="interrupted")
    proc = subprocess.run([sys.executable, "-m", "experiments.report", str(root)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {root}: the sweep did not finish (status 'interrupted'); "
                                                f"run it again"]
    assert not (root / "report.md").exists()


def test_ranges_join_neighbours():
    values = [32, 64, 128, 256, 512]
    assert sweep_report._ranges(values, [32, 64, 128]) == "32–128"
    assert sweep_report._ranges(values, [32, 128, 256]) == "32 and 128–256"
    assert sweep_report._ranges(values, [32, 128, 512]) == "32, 128 and 512"


def test_metrics_csv_reads_back_into_members_and_histories(tmp_path):
    lines = ["setting,method,seed,epoch,loss,accuracy,val_loss,val_accuracy"]
    for setting, seed in ((0, 0), (0, 1), (1, 0)):
        for epoch in (1, 2):
            v = setting * 100 + seed * 10 + epoch
            lines.append(f"{setting},m{setting},{seed},{epoch},{v},{v + 0.1},{v + 0.2},{v + 0.3}")
    (tmp_path / "metrics.csv").write_text("\n".join(lines) + "\n")
    members, history = sweep_report.read_metrics(tmp_path)
    assert members["setting"].tolist() == [0, 0, 1] and members["seed"].tolist() == [0, 1, 0]
    assert history["loss"].tolist() == [[1, 2], [11, 12], [101, 102]]
    assert history["val_accuracy"][2].tolist() == pytest.approx([101.3, 102.3])


def test_legends_name_the_method_and_the_axes_that_vary_within_one():
    from vgjax.sweep.settings import legend_columns

    base = {"depth": 7, "width": 128, "activation": "sigmoid", "optimizer": "sgd", "batch_size": 32,
            "init_std": 0.05, "lr": 0.01, "beta": 0.05}
    two_methods = [{**base, "method": "baseline_7"}, {**base, "method": "opt", "depth": 5, "batch_size": 512}]
    assert legend_columns(two_methods) == ["method"]  # depth and batch size come with the method
    grid = [{**base, "method": "relu", "batch_size": b} for b in (32, 512)] + [{**base, "method": "adam"}]
    assert legend_columns(grid) == ["method", "batch_size"]
    one = [{**base, "method": "baseline_7", "init_std": s} for s in (0.05, 1.0)]
    assert legend_columns(one) == ["init_std"]
