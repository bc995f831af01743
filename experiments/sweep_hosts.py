"""The multi-process side of ``experiments.sweep``: its flags, the local launcher, and joining
JAX's multi-controller runtime (docs/design.md, "Sweeps", "Across hosts"; docs/guide/sweeps.md, "Sweeps across hosts").

``--processes N`` starts N processes of this machine itself (each with the same flags, joined by a
coordinator on a free local port) and ends with the first failing process's status. On a cluster
every host starts one process with ``--coordinator HOST:PORT --num-processes N --process-id I``
(or ``--distributed``, where JAX finds them: ``JAX_COORDINATOR_ADDRESS``, Cloud TPU, Slurm, Open
MPI). Process 0 writes the sweep's files. A usage error found by one process (other flags than
process 0's, other data, an unusable output directory) ends every process with status 2 and one
line from the process that found it; a process that is lost ends the others with status 4 and one
line each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time

from experiments import cli
from vgjax import runtime
from vgjax.files import atomic_write_json

jax, sweep = cli.lazy("jax"), cli.lazy("vgjax.sweep")  # loaded when first used (--help answers without them)

EXIT_LOST = 4  # another process of a multi-process sweep was lost (finished chunks are kept)
GRACE_S = 15.0  # the launcher's wait for the others to stop once one process has failed

# flags that say where a process stands among the others, not what the sweep is
PLACE = ("processes", "coordinator", "num_processes", "process_id", "distributed", "host_timeout")
# flags each process may give its own way: its host's data directory; where process 0 writes
OWN = ("data_dir", "out", "name")


def add_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several processes or hosts (docs: guide/sweeps.md, Sweeps across hosts)")
    g.add_argument("--processes", type=int, default=None,
                   help="start N processes of this machine, the members sharded over all their devices")
    g.add_argument("--coordinator", default=None,
                   help="HOST:PORT of process 0 [default: JAX_COORDINATOR_ADDRESS or the cluster's]")
    g.add_argument("--num-processes", type=int, default=None, help="processes of the sweep, all hosts together")
    g.add_argument("--process-id", type=int, default=None, help="this process: 0 .. N-1 (0 writes the files)")
    g.add_argument("--distributed", action="store_true",
                   help="join the processes JAX finds itself (Cloud TPU, Slurm, Open MPI, JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--host-timeout", type=float, default=300.0,
                   help="seconds for every process to join before this one gives up")


def is_member(args: argparse.Namespace) -> bool:
    """Whether this process is one of several (it joins the others before any JAX computation)."""
    return bool(args.distributed or args.coordinator or args.num_processes is not None
                or args.process_id is not None)


def check(args: argparse.Namespace) -> None:
    """Usage errors of the multi-process flags (before any process is started or joined)."""
    if args.processes is not None and args.processes < 2:
        cli.fail(f"--processes must be >= 2, got {args.processes} (without it the sweep runs in this process)")
    if args.processes is not None and is_member(args):
        cli.fail("--processes starts the processes itself: give it without --coordinator, --num-processes, "
                 "--process-id and --distributed")
    if args.num_processes is not None and args.num_processes < 1:
        cli.fail(f"--num-processes must be >= 1, got {args.num_processes}")
    if args.process_id is not None and (args.process_id < 0 or (args.num_processes is not None
                                                                and args.process_id >= args.num_processes)):
        cli.fail(f"--process-id must be in 0 .. {(args.num_processes or 1) - 1}, got {args.process_id}")
    if (args.processes or is_member(args)) and args.workers:
        cli.fail("a multi-process sweep trains vmapped in every process: --workers must be 0 or left out")
    if args.host_timeout <= 0:
        cli.fail(f"--host-timeout must be > 0, got {args.host_timeout}")


# ----------------------------------------------------------------------------- the launcher

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_processes(argv: list[str]) -> list[str]:
    """``argv`` less ``--processes N`` (or ``--processes=N``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--processes":
            skip = True
        elif not a.startswith("--processes="):
            out.append(a)
    return out


def launch(argv: list[str], n: int) -> int:
    """Run the sweep as ``n`` processes of this machine; their status (the first failure's)."""
    address = f"127.0.0.1:{free_port()}"
    procs = []
    for i in range(n):
        env = dict(os.environ)
        if runtime.configured_platform() == "gpu" and "JAX_LOCAL_DEVICE_IDS" not in env:
            env["JAX_LOCAL_DEVICE_IDS"] = str(i)  # one GPU per process (unverified here: no GPU)
        cmd = [sys.executable, "-m", "experiments.sweep", *without_processes(argv), "--coordinator", address,
               "--num-processes", str(n), "--process-id", str(i)]
        procs.append(subprocess.Popen(cmd, env=env))
    try:
        return wait_all(procs)
    except KeyboardInterrupt:  # the processes got the Ctrl-C too: let them record where they stopped
        return wait_all(procs)


def wait_all(procs: list[subprocess.Popen]) -> int:
    """Wait for every process; once one fails, give the others GRACE_S seconds, then stop them."""
    failed, since = None, None
    while any(p.poll() is None for p in procs):
        if failed is None:
            failed = next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), None)
            since = time.monotonic()
        elif time.monotonic() - since > GRACE_S:
            for i, p in enumerate(procs):
                if p.poll() is None:
                    p.kill()
                    print(f"error: process {i} did not stop within {GRACE_S:.0f} s of process {failed}'s "
                          f"failure; it was killed", file=sys.stderr)
            break
        time.sleep(0.1)
    for p in procs:
        p.wait()
    codes = [p.returncode for p in procs]
    first = failed if failed is not None else next((i for i, c in enumerate(codes) if c), None)
    if first is None:
        return 0
    code = codes[first]
    if code < 0:  # killed by a signal: it said nothing, the others said they lost it
        return EXIT_LOST
    return code


# ----------------------------------------------------------------------------- a process of several

def count(several: bool) -> int:
    """The processes of a multi-process sweep; 0 when this process is the only one."""
    return jax.process_count() if several else 0


def join(args: argparse.Namespace, record: dict) -> bool:
    """Join the other processes (before any JAX computation; a failure is a usage error), which
    must sweep the same ``record`` with the same flags. Whether this process writes the files."""
    cluster = sweep.hosts.Cluster(args.coordinator, args.num_processes, args.process_id, args.host_timeout)
    where = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or "the cluster's coordinator"

    def timed_out() -> None:
        print(f"error: not every process of the sweep joined {where} within {args.host_timeout:g} s "
              f"(check --num-processes, --process-id and that every process started)", file=sys.stderr)
        sweep.hosts.leave_now(cli.EXIT_USAGE)

    try:
        sweep.hosts.join(cluster, timed_out)
    except sweep.hosts.JoinError as e:
        cli.fail(f"cannot join the sweep's processes: {e}")
    check_same(args, record)
    return sweep.hosts.is_writer()


def settle(problem: str | None, several: bool) -> None:
    """A problem ends this process (every process of a multi-process sweep) as a usage error."""
    if several:
        agree(problem)
    elif problem:
        cli.fail(problem)


def agree(problem: str | None) -> None:
    """Every process ends with status 2 when any has a ``problem`` (a collective); the first process
    with one says it."""
    first = sweep.hosts.first_problem(problem)
    if first is None:
        return
    index, text = first
    if index == jax.process_index():
        print(f"error: {text}", file=sys.stderr)
    raise SystemExit(cli.EXIT_USAGE)


def same_everywhere(mine: str | None, what: str) -> None:
    """Every process ends with status 2 unless all give the same ``mine`` (a collective). None: this
    process failed and said why; otherwise process 0 names the first process that differs."""
    given = sweep.hosts.exchange(json.dumps(mine))
    values = [json.loads(v) for v in given]
    if None in values:
        raise SystemExit(cli.EXIT_USAGE)
    other = next((i for i, v in enumerate(values) if v != values[0]), None)
    if other is not None:
        if sweep.hosts.is_writer():
            print(f"error: process {other} {what} than process 0", file=sys.stderr)
        raise SystemExit(cli.EXIT_USAGE)


def check_same(args: argparse.Namespace, record: dict) -> None:
    """Every process must sweep the same members with the same flags and count the same processes."""
    mine = {k: v for k, v in vars(args).items() if k not in (*PLACE, *OWN)}
    mine["num_processes"] = jax.process_count() if args.num_processes is None else args.num_processes
    same_everywhere(sweep.hosts.digest([record, mine]), "was started with other flags (or --num-processes)")


def load_data(args: argparse.Namespace):
    """This process's copy of the data set; every process must load the same (a collective)."""
    try:
        arrays = cli.load_data(args.data_dir, args.data_source)
    except SystemExit:  # it said why
        arrays = None
    same_everywhere(None if arrays is None else sweep.hosts.data_digest(arrays),
                    "loaded other data (check --data-dir on every host)")
    return arrays


@contextlib.contextmanager
def on_lost_contact(out, writer: bool):
    """A failed collective of a multi-process sweep (another process is gone) ends this process
    with one line and status 4; the writer marks the sweep interrupted first."""
    try:
        yield
    except Exception as e:
        if not sweep.hosts.lost_contact(e):
            raise
        lost(e, out, writer)


def lost(e: BaseException, out, writer: bool) -> None:
    """Say in one line that another process is gone, and end this process."""
    if writer:
        atomic_write_json(out / "summary.json", {"status": "interrupted"})
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    print(f"error: lost contact with another process of the sweep ({first}); finished chunks are kept: "
          f"continue with --resume", file=sys.stderr)
    sweep.hosts.leave_now(EXIT_LOST)


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.sweep_hosts``: --help lists these flags; else experiments.sweep with the flags given."""
    parser = cli.Parser(prog="python -m experiments.sweep_hosts", description=__doc__.strip())
    return cli.help_or_run(argv, parser, add_flags, "experiments.sweep")


if __name__ == "__main__":
    sys.exit(main())
