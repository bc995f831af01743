"""A sweep as cooperating processes (JAX's multi-controller runtime, gloo collectives on a CPU):
2 processes x 2 forced CPU devices against 1 process x 4 devices, the same members in the same
chunks of 4, so that every device computes the same shard of the same program.

Tolerance: none. metrics.csv and summary.csv are compared byte for byte -- the per-device
computation is the same, the processes only exchange the finished per-epoch metrics (an
all-gather moves bytes, it sums nothing), so nothing can round differently.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from experiments import sweep as sweep_main
from tests.test_sweep import ROOT

FLAGS = ["--method", "baseline_3", "--depth", "2", "--width", "8", "--init-std", "0.05,0.5,1,2", "--seeds", "4",
         "--epochs", "2", "--train-limit", "256", "--chunk", "4"]  # 16 members: 4 chunks of 4
FILES = {"config.json", "metrics.csv", "summary.json", "summary.csv", "sweep_val_accuracy.png", "sweep_loss.png",
         ".vgjax-owned.json"}  # with the manifest of the files (vgjax.owned)


def env(devices: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": str(ROOT)}


def sweep(args: list, devices: int, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.sweep", *args], cwd=ROOT, env=env(devices),
                          capture_output=True, text=True, timeout=timeout)


def start(args: list, **kwargs) -> subprocess.Popen:
    """One process of a multi-process sweep started by hand (the manual form), 2 devices."""
    return subprocess.Popen([sys.executable, "-m", "experiments.sweep", *args], cwd=ROOT, env=env(2),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def single(tmp_path_factory, fashion_mnist_dir):
    """The sweep in one process over 4 devices, vmapped (--workers 0): the reference."""
    out = tmp_path_factory.mktemp("single") / "sw"
    proc = sweep([*FLAGS, "--workers", "0", "--data-dir", str(fashion_mnist_dir), "--out", str(out)], 4)
    assert proc.returncode == 0, proc.stderr
    return out


def test_two_processes_equal_one_process_and_a_lost_one_ends_the_other_in_one_line(single, tmp_path,
                                                                                     fashion_mnist_dir):
    """Started by hand, process 1 is killed once process 0 has finished a chunk: process 0 says so
    in one line and exits 4 (no hang, no abort); only process 0 wrote (process 1's --out is never
    created). The sweep resumed by two processes of ``--processes 2`` (so every member was trained
    by two processes) ends with the single process's files, byte for byte, written once."""
    out, elsewhere, address = tmp_path / "sw", tmp_path / "process1", free_address()
    common = [*FLAGS, "--data-dir", str(fashion_mnist_dir), "--coordinator", address, "--num-processes", "2",
              "--host-timeout", "60"]
    writer = start([*common, "--process-id", "0", "--out", str(out)])
    other = start([*common, "--process-id", "1", "--out", str(elsewhere)])
    try:
        seen = []
        for line in writer.stderr:  # the progress of process 0 (not a terminal: a line per finished chunk)
            seen.append(line)
            if "epoch 2/2" in line:
                break
        assert any("chunk 1/4" in line for line in seen), "".join(seen)
        other.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        rest = writer.communicate(timeout=60)[1]
        waited = time.monotonic() - t0
    finally:
        for p in (writer, other):
            p.kill()
            p.wait()
    assert writer.returncode == 4, rest
    assert waited < 30
    assert len(errors(rest)) == 1 and "lost contact with another process" in errors(rest)[0], rest
    assert "Traceback" not in rest and "Check failure" not in rest
    assert not elsewhere.exists()
    assert json.loads((out / "summary.json").read_text()) == {"status": "interrupted"}
    assert (out / "chunks" / "0-0-4.npz").exists()
    resumed = sweep([*FLAGS, "--processes", "2", "--resume", "--data-dir", str(fashion_mnist_dir), "--out", str(out)],
                    2)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    # the members' metrics are the single process's, bit for bit
    assert (out / "metrics.csv").read_bytes() == (single / "metrics.csv").read_bytes()
    assert (out / "summary.csv").read_bytes() == (single / "summary.csv").read_bytes()
    # one process wrote and reported: one table, one closing line, no chunks left
    assert {p.name for p in out.iterdir()} == FILES
    assert resumed.stdout.count("final val_acc") == 1
    assert resumed.stdout.count("settings x 4 seeds") == 1 and "on 4 device(s) of 2 processes" in resumed.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["device"]["device_count"] == 4
    assert summary["runs"][0]["devices"] == 4 and summary["runs"][0]["chunk_size"] == 4


def test_processes_with_other_flags_or_count_are_a_usage_error(tmp_path, fashion_mnist_dir):
    """Process 1 counts 3 processes and sweeps other seeds: both exit 2, one line in all."""
    out = tmp_path / "never"
    common = [*FLAGS, "--data-dir", str(fashion_mnist_dir), "--coordinator", free_address(), "--host-timeout", "60",
              "--out", str(out)]
    first = start([*common, "--num-processes", "2", "--process-id", "0"])
    second = start([*common, "--num-processes", "3", "--process-id", "1", "--seeds", "2"])
    err = "".join(p.communicate(timeout=60)[1] for p in (first, second))
    assert (first.returncode, second.returncode) == (2, 2), err
    assert errors(err) == ["error: process 1 was started with other flags (or --num-processes) than process 0"], err
    assert "Traceback" not in err and not out.exists()


def test_a_process_that_never_comes_is_a_usage_error_after_the_timeout(tmp_path, fashion_mnist_dir):
    t0 = time.monotonic()
    proc = sweep([*FLAGS, "--data-dir", str(fashion_mnist_dir), "--coordinator", free_address(), "--num-processes",
                  "2", "--process-id", "0", "--host-timeout", "2", "--out", str(tmp_path / "sw")], 2, timeout=60)
    assert proc.returncode == 2 and time.monotonic() - t0 < 30
    assert len(errors(proc.stderr)) == 1 and "not every process of the sweep joined" in proc.stderr, proc.stderr
    assert "within 2 s" in errors(proc.stderr)[0]
    assert "Traceback" not in proc.stderr and "Check failure" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--processes", "1"], "--processes must be >= 2"),
    (["--processes", "2", "--process-id", "0"], "--processes starts the processes itself"),
    (["--num-processes", "2", "--process-id", "2"], "--process-id must be in 0 .. 1"),
    (["--num-processes", "0"], "--num-processes must be >= 1"),
    (["--processes", "2", "--workers", "2"], "--workers must be 0 or left out"),
])
def test_inconsistent_process_flags_are_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        sweep_main.main(FLAGS + args + ["--out", "/nonexistent/never-written"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
