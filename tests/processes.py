"""Child processes for the multi-device tests: simulated CPU devices, two launched
processes, and the float64 bound that a data-parallel SGD trajectory must stay within."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from jaxreg import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a start of JAX in each process plus a compile, on a busy 2-core machine; a hang fails
# the test instead of the session
TIMEOUT_S = 600


def run_on_devices(source: str, devices: int, directory: Path, *args: str) -> list[dict]:
    """Run `source` as a script (command-line `args`) with `devices` simulated CPU devices
    (XLA_FLAGS set before jax is imported, as only a fresh process can); it prints one JSON
    object a line and "DONE" last. The objects, in order."""
    script = directory / "child.py"
    script.write_text(source)
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    env.pop("JAX_PLATFORMS", None)
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr[-4000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def launch_two(worker: str, directory: Path, *args: str) -> None:
    """`python -m jaxreg.launch -n 2 worker.py *args` (the worker's source written to
    `directory`), one device a process; fails the test on a nonzero exit."""
    (directory / "worker.py").write_text(worker)
    cmd = [sys.executable, "-m", "jaxreg.launch", "-n", "2", "--timeout", "240"]
    cmd += [str(directory / "worker.py"), *args]
    env = {**os.environ, "XLA_FLAGS": "", "PYTHONPATH": ROOT}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]


def regression(n: int, d: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """A float64 least-squares problem: columns of unequal scale around a mean of 1, targets
    linear in them plus noise (seeded: the same data in every test)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d) + 1.0
    y = x @ rng.normal(size=(d, out)) + 0.3 * rng.normal(size=(n, out))
    return x, y


def sgd_mse_trajectory_bound(x, y, thetas: list[np.ndarray], lr: float) -> float:
    """||theta_T (rows split over processes) - theta_T (one process)|| for plain SGD on mse
    in float64 with lr = 1 / lambda_max (tests/test_distributed.py's derivation), given the
    one-process trajectory `thetas` (T + 1 flat (weight, bias) vectors): each step's
    gradient differs by at most `sum_error_bound` per component (two orders of the row
    sum), the update's own rounding adds 4u |theta_t+1|, and an earlier difference does
    not grow."""
    u = np.finfo(np.float64).eps / 2
    n, out = y.shape
    d = x.shape[1]
    total = 0.0
    for t in range(len(thetas) - 1):
        w, b = thetas[t][: out * d].reshape(out, d), thetas[t][out * d :]
        r = np.abs(x @ w.T + b - y)
        bw = distributed.sum_error_bound(n, 2 / (n * out) * (r.T @ np.abs(x)), np.float64)
        bb = distributed.sum_error_bound(n, 2 / (n * out) * r.sum(0), np.float64)
        total += lr * np.linalg.norm(np.concatenate([bw.ravel(), bb]))
        total += 4 * u * np.linalg.norm(thetas[t + 1])
    return total


def trajectory(p0, history) -> list[np.ndarray]:
    """A fit's parameters before each step and after the last, as flat vectors."""
    thetas = [np.concatenate([np.ravel(np.asarray(a)) for a in p0])]
    steps = len(np.asarray(history[0]))
    thetas += [np.concatenate([np.ravel(np.asarray(h)[t]) for h in history]) for t in range(steps)]
    return thetas
