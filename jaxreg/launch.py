"""`python -m jaxreg.launch -n 2 script.py [args]`: run a script as N JAX processes here.

Picks a free port on 127.0.0.1 for the coordinator, starts N copies of
`python script.py args` with `JAXREG_COORDINATOR`, `JAXREG_NUM_PROCESSES` and
`JAXREG_PROCESS_ID` set (what `jaxreg.distributed.initialize()` reads), forwards SIGINT and
SIGTERM to them, and exits with the status of the first process that fails (0 when all
succeed), stopping the others. `--timeout S` stops everything after S seconds (status 124).

On several machines, run the script yourself on each with the three variables set (one
coordinator address, reachable by all; process ids 0..N-1).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from jaxreg import distributed

__all__ = ["free_port", "main"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxreg.launch", description=__doc__)
    parser.add_argument("-n", "--num-processes", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=None, help="seconds, then stop all")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    if opts.num_processes < 1:
        parser.error("-n must be at least 1")
    address = f"127.0.0.1:{free_port()}"
    procs = []
    for i in range(opts.num_processes):
        env = {
            **os.environ,
            distributed.ENV_COORDINATOR: address,
            distributed.ENV_NUM_PROCESSES: str(opts.num_processes),
            distributed.ENV_PROCESS_ID: str(i),
        }
        procs.append(subprocess.Popen([sys.executable, opts.script, *opts.args], env=env))

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _wait(procs, opts.timeout)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _wait(procs: list[subprocess.Popen], timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    status = 0
    while [p.poll() for p in procs].count(None):  # poll every process, each round
        failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
        if failed and not status:
            status = failed[0]
            _stop(procs)
        if deadline is not None and time.monotonic() > deadline:
            print(f"jaxreg.launch: stopped after --timeout {timeout:g} s", file=sys.stderr)
            _stop(procs)
            return 124
        time.sleep(0.05)
    if not status:
        status = next((p.returncode for p in procs if p.returncode), 0)
    return status if status >= 0 else 128 - status  # killed by signal s: 128 + s


def _stop(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """Terminate the processes still running; kill those still there after `grace` s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    end = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=grace)


if __name__ == "__main__":
    sys.exit(main())
