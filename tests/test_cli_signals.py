"""`python -m parity -j 2` stopped from outside: its worker processes (about 0.5 GB each)
never outlive it, whether it gets SIGTERM, Ctrl-C (SIGINT to the process group, as a
terminal sends it) or SIGKILL (the workers notice their parent is gone)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxreg import cli

ROOT = Path(__file__).resolve().parents[1]
WORKER_RSS_KB = 200_000  # jax alone takes ~150 MB; a worker running scenarios ~500 MB
START_S = 120  # workers spawned and importing: seconds on a loaded 2-core machine
GONE_S = 30  # the workers gone after the signal (they poll for their parent every 0.5 s)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def is_busy_worker(pid: int) -> bool:
    """A pool worker (not multiprocessing's resource tracker) that has loaded torch or jax
    (over WORKER_RSS_KB): what a parent must not leave behind."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    rss = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), 0)
    return b"spawn_main" in command and int(rss) > WORKER_RSS_KB


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


# `python -m parity` with Python's own Ctrl-C handler, even if the test runner ignores
# SIGINT (a child inherits an ignored signal). Set in the child's own code, not with
# `preexec_fn`: forking a process that has started JAX's threads is unsafe (JAX warns).
PARITY_WITH_SIGINT = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('parity', run_name='__main__', alter_sys=True)"
)


@pytest.mark.parametrize(
    ("signum", "to_group", "status"),
    [
        (signal.SIGTERM, False, 128 + signal.SIGTERM),
        (signal.SIGINT, True, cli.EXIT_INTERRUPTED),
        (signal.SIGKILL, False, -signal.SIGKILL),
    ],
    ids=["SIGTERM", "Ctrl-C", "SIGKILL"],
)
def test_stopping_parity_stops_its_workers(signum, to_group, status):
    proc = subprocess.Popen(
        [sys.executable, "-c", PARITY_WITH_SIGINT, "-j", "2", "--only", "m-*"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        busy = wait_for(lambda: sum(map(is_busy_worker, children(proc.pid))) == 2, START_S)
        assert busy, "two workers did not start"
        workers = children(proc.pid)  # the two workers, and multiprocessing's tracker
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        _, stderr = proc.communicate(timeout=GONE_S)
        assert proc.returncode == status, stderr[-3000:]
        assert wait_for(lambda: not any(alive(w) for w in workers), GONE_S), [
            w for w in workers if alive(w)
        ]
        if signum != signal.SIGKILL:
            assert "Traceback" not in stderr, stderr[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left, workers included
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
