"""End to end through the command line: run files, usage errors, divergence, kill + resume."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, check=False, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def strip_times(rows):
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]


def read_rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.slow
def test_baseline_3_end_to_end_writes_every_run_file(tmp_path):
    out = tmp_path / "b3"
    proc = cli("--method", "baseline_3", "--epochs", "2", "--train-limit", "5000", "--out", str(out), check=True)
    assert "baseline_3: finished after 2 epochs" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["depth"] == 3 and config["batch_size"] == 32 and config["lr"] == 0.01
    assert config["train_limit"] == 5000
    rows = read_rows(out / "history.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert 2.0 < r["loss"] < 2.4 and 0.0 <= r["accuracy"] <= 1.0  # sigmoid net, epoch 1-2
        assert 0.05 <= r["val_accuracy"] <= 1.0 and r["epoch_time_s"] > 0
        assert {f"grad_norm/hidden_{i}" for i in (1, 2, 3)} | {"grad_norm/output"} <= set(r)
        assert r["grad_norm/hidden_1"] < r["grad_norm/output"]  # vanishing, even at depth 3
    csv_lines = (out / "history.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("epoch,")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_run"] == 2
    assert summary["final"]["val_accuracy"] == rows[-1]["val_accuracy"]
    # a finished run is not overwritten without --overwrite
    again = cli("--method", "baseline_3", "--epochs", "2", "--train-limit", "5000", "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--method", "nope"], "unknown method"),
    (["--epochs", "zero"], "invalid int value"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--activation", "softmax"], "unknown activation"),
    (["--optimizer", "lbfgs"], "unknown optimizer"),
    (["--skips", "3-1"], "skip path 3->1"),
    (["--method", "freeze", "--stages", "2-2 | 1:10 | 1:10:2"], "does not stack"),
    (["--bogus-flag"], "unrecognized arguments"),
    (["--data-dir", "/nonexistent/fmnist"], "/nonexistent/fmnist"),
    (["--early-stop", "val_los"], "choose from"),
    (["--method", "freeze", "--epochs", "3"], "--epochs-scale"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, message):
    quick = [] if "--epochs" in args or "freeze" in args else ["--epochs", "1"]
    proc = cli(*args, *quick, "--out", str(tmp_path / "x"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_list_shows_every_method_with_a_description():
    from vgjax.methods import METHODS
    proc = cli("--list", check=True)
    for name in METHODS:
        assert any(line.split()[0] == name and len(line.split()) > 2 for line in proc.stdout.splitlines())


def test_diverged_run_is_reported_and_exits_3(tmp_path):
    out = tmp_path / "div"
    proc = cli("--method", "baseline_3", "--activation", "linear", "--init-std", "10", "--lr", "1",
               "--epochs", "5", "--train-limit", "500", "--out", str(out))
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()  # progress lines, then one error line
    assert [l for l in lines if l.startswith("error:")] == lines[-1:] and "diverged at epoch 1" in lines[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_epoch"] == 1


@pytest.mark.slow
def test_killed_staged_run_resumes_to_the_uninterrupted_result(tmp_path):
    common = ["--method", "freeze", "--stages", "1-1 | 1:3 | 1+2:3:1 | 1+2:3", "--train-limit", "10000",
              "--checkpoint-every", "1", "--optimizer", "adam", "--lr", "0.001"]
    cli(*common, "--out", str(tmp_path / "full"), check=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *common, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill in the middle of stage 2
        hist = out / "history.jsonl"
        if hist.exists() and len(hist.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = read_rows(out / "history.jsonl")
    assert 5 <= len(rows) < 9, "the kill must land before the run ends"
    assert json.loads((out / "summary.json").read_text())["status"] == "running"
    refused = cli(*common, "--out", str(out))
    assert refused.returncode == 2 and "--resume" in refused.stderr
    cli(*common, "--out", str(out), "--resume", check=True)
    full_rows, resumed_rows = read_rows(tmp_path / "full" / "history.jsonl"), read_rows(out / "history.jsonl")
    assert strip_times(resumed_rows) == strip_times(full_rows)
    s_full = json.loads((tmp_path / "full" / "summary.json").read_text())
    s_res = json.loads((out / "summary.json").read_text())
    assert s_res["status"] == "finished" and s_res["stages"] == s_full["stages"]
    from vgjax.run.runner import load_saved_state
    _, _, a, info_a = load_saved_state(tmp_path / "full", "latest")
    _, _, b, info_b = load_saved_state(out, "latest")
    assert info_a["epoch"] == info_b["epoch"] == 9
    import jax
    jax.tree_util.tree_map(np.testing.assert_array_equal, a.params, b.params)


def test_resume_of_a_finished_run_is_a_no_op_and_overwrite_keeps_foreign_files(tmp_path):
    out = tmp_path / "r"
    args = ["--method", "baseline_3", "--epochs", "2", "--train-limit", "500", "--out", str(out)]
    cli(*args, "--early-stop", "val_loss", "--patience", "0", "--min-delta", "10", "--restore-best", check=True)
    before = (out / "history.jsonl").read_text()
    again = cli(*args, "--early-stop", "val_loss", "--patience", "0", "--min-delta", "10", "--restore-best",
                "--resume", check=True)
    assert "nothing to resume" in again.stdout
    assert (out / "history.jsonl").read_text() == before  # no epoch trained again or duplicated
    (out / "notes.txt").write_text("mine")
    cli(*args, "--overwrite", check=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert [json.loads(l)["epoch"] for l in (out / "history.jsonl").read_text().splitlines()] == [1, 2]


def test_init_from_a_run_without_checkpoint_is_one_line_and_touches_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"method": "baseline_3", "depth": 3}))
    proc = cli("--method", "baseline_3", "--epochs", "1", "--init-from", str(src), "--out", str(tmp_path / "d"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith("it holds no checkpoint")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in src.iterdir()) == ["config.json"] and not (tmp_path / "d").exists()


# ----------------------------------------------------------------------------- one tool: help, defaults, vgjax

COMMAND_NAMES = ("run", "suite", "sweep", "escape", "report", "plot", "evaluate", "theory", "optimizers", "sweep_hosts")
# every command answers --help before the library loads (escape's defaults: vgjax.analysis.grids)
LIBRARY_BEFORE_PARSING: set[str] = set()
HEAVY = ("jax", "flax", "optax", "orbax", "matplotlib", "tensorflow")


def parsers():
    """Every command's parser (escape: each of its steps), by name; sweep_hosts' flags are sweep's."""
    import importlib
    out = {}
    for name in COMMAND_NAMES[:-1]:
        module = importlib.import_module(f"experiments.{name}")
        if name == "escape":
            out.update({f"escape {step}".strip(): module.build_parser(step or None) for step in ("", "train", "report")})
        else:
            out[name] = module.build_parser()
    return out


@pytest.mark.parametrize("name", [n for n in COMMAND_NAMES if n not in LIBRARY_BEFORE_PARSING])
def test_help_answers_before_the_library_loads(name):
    code = (f"import sys, contextlib, io\nfrom experiments import {name} as m\n"
            "try:\n    with contextlib.redirect_stdout(io.StringIO()) as out:\n        m.main(['--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "loaded = lambda h: type(sys.modules.get(h)).__name__ == 'module'  # not cli.lazy's, not absent\n"
            f"print(sorted(h for h in {HEAVY!r} if loaded(h)), len(out.getvalue().splitlines()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    heavy, lines = proc.stdout.split("] ")
    assert heavy == "[" and int(lines) > 5, proc.stdout


def test_every_flag_has_help_and_its_default_once():
    for name, parser in parsers().items():
        text = parser.format_help()
        assert "(default:" not in text and "default: None" not in text, name
        for action in parser._actions:
            assert action.help and action.help.strip(), f"{name}: {action.option_strings or action.dest} has no help"
            shown = parser._get_formatter()._expand_help(action) if action.help else ""
            assert shown.count("[default:") <= 1, f"{name}: {action.option_strings}: {shown}"
            quiet = action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings
            if not quiet:
                assert "[default:" in shown, f"{name}: {action.option_strings} hides its default {action.default!r}"


def test_config_flags_name_the_seed_protocols_value():
    from vgjax.config import Config
    helps = {a.dest: a.help for a in parsers()["run"]._actions}
    assert helps["init_std"].endswith(f"[default: the method's; seed protocol: {Config().init_std}]")
    assert helps["train_limit"].endswith("[default: the method's]")  # None: no value to name


def test_escape_help_lists_its_steps_and_sweep_hosts_prints():
    escape = parsers()["escape"].format_help()
    assert "\n  train   " in escape and "\n  report  " in escape
    proc = subprocess.run([sys.executable, "-m", "experiments.sweep_hosts", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--coordinator" in proc.stdout and "--num-processes" in proc.stdout


def test_one_vocabulary_and_the_old_spellings_still_parse():
    p = parsers()
    flags = {name: {s for a in parser._actions for s in a.option_strings} for name, parser in p.items()}
    for name in ("run", "suite", "sweep", "escape", "theory", "plot", "optimizers", "escape train", "escape report"):
        assert "--out" in flags[name], name
    for name in ("run", "suite", "sweep", "escape", "theory", "evaluate", "escape train", "escape report"):
        assert "--data-source" in flags[name], name
    for name in ("report", "theory", "escape", "escape report"):
        assert "--no-figures" in flags[name], name
    assert p["suite"].parse_args(["--runs-dir", "x"]).runs_dir == "x"  # the old spelling
    assert p["theory"].parse_args(["--no-plots"]).no_plots and p["theory"].parse_args(["--no-figures"]).no_plots
    assert p["sweep"].parse_args(["--data-source", "tfds"]).data_source == "tfds"


def test_the_vgjax_tool_dispatches_to_the_modules_and_knows_its_version():
    import importlib
    import tomllib

    import vgjax
    from experiments import commands
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["vgjax"].partition(":")
    assert getattr(importlib.import_module(module), function) is commands.main
    for name, (target, _) in commands.COMMANDS.items():
        assert callable(importlib.import_module(target).main), name
    version = subprocess.run([sys.executable, "-m", "experiments", "run", "--version"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == f"vgjax {vgjax.__version__}"
    listed = subprocess.run([sys.executable, "-m", "experiments", "run", "--list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and listed.stdout == cli("--list").stdout  # the same module's output
    unknown = subprocess.run([sys.executable, "-m", "experiments", "trian"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1 and "run" in unknown.stderr
