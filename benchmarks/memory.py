"""Peak memory of one training call, each configuration in a fresh process.

    python -m benchmarks.memory --backend "jaxreg fit" --n 1000000 --d 32 [--batch 256]

prints one JSON line. The child builds the data (float32 X and y, NumPy, no second copy on
the way), hands it to the backend (for JAX: one `jax.device_put`, after which the NumPy X is
dropped, so the process holds X once), and reads its resident set size, `VmRSS` of
/proc/self/status: the *baseline*, a process holding X and the libraries. Before that it ran
the same backend on a tiny problem (1024 rows), so that what any first call leaves in the
process whatever the size (library code paged in, thread pools and their stacks, the JIT
compiler's own state) is in the baseline, not counted as the fit's. Then it runs the
backend's call (`cases.Runner.run`) on X twice and reads the peak of each.

The peak: `VmHWM` of /proc/self/status, the kernel's exact high-water mark of the RSS, reset
to the current RSS before each call by writing "5" to /proc/self/clear_refs (Linux >= 4.0).
`resource.getrusage(RUSAGE_SELF).ru_maxrss` cannot be reset — it would include building the
data and, for JAX, compiling — hence the fresh process per configuration and the reset. Where
clear_refs cannot be written, a thread samples `VmRSS` every millisecond instead (a peak
shorter than that can be missed; `method` says which was used).

Reported (bytes): `first_extra`, the first call's peak over the baseline (for JAX it includes
tracing and compiling); `peak_extra`, the second call's peak over the baseline (the steady
state: what the process holds beyond X at a fit's peak, including what the first call left
behind: compiled code, library pages loaded on first use, memory the allocators keep);
`call_extra`, the second call's peak over the RSS just before it (the call's own working
memory, without that residue).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time

import jax

from benchmarks import cases

_STATUS = "/proc/self/status"
WARM_N = 1024  # rows of the warm-up fit run before the baseline is read


def _status_bytes(field: str) -> int:
    with open(_STATUS) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise OSError(f"no {field} in {_STATUS}")


def rss() -> int:
    """The resident set size now, in bytes."""
    return _status_bytes("VmRSS")


def can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Peak:
    """The peak RSS (bytes) while the `with` block runs: VmHWM after a reset, or sampled."""

    def __init__(self):
        self.method = "VmHWM, reset by /proc/self/clear_refs" if can_reset_peak() else "sampled"
        self.peak = 0
        self._stop = threading.Event()
        self._thread = None

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __enter__(self):
        self.peak = rss()
        if self.method == "sampled":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            can_reset_peak()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak = _status_bytes("VmHWM")
        self.peak = max(self.peak, rss())
        return False


def configurations(mp: cases.MiniBatchProblem, smoke: bool = False) -> list[dict]:
    """What the benchmark measures: the full-batch fits and each mini-batch loop of the
    mini-batch problem (the DataLoader at the smallest batch only: ~5 s an epoch at 1e6);
    `smoke`: one of each kind (each is a process start, seconds)."""
    if smoke:
        b = mp.batch_sizes[0]
        return [
            {"backend": "jaxreg fit"},
            {"backend": "jaxreg fit (epochs=1)", "batch": b},
            {"backend": cases.TORCH_RANDPERM, "batch": b},
        ]
    out = [{"backend": "jaxreg fit"}, {"backend": cases.GRAM_BACKEND}]
    out += [{"backend": "jaxreg fit (epochs=1)", "batch": b} for b in mp.batch_sizes]
    out += [{"backend": "torch eager"}]
    out += [{"backend": cases.TORCH_RANDPERM, "batch": b} for b in mp.batch_sizes]
    out += [{"backend": cases.TORCH_LOADER, "batch": mp.batch_sizes[0]}]
    return out


def _runner(backend: str, n: int, d: int, batch: int | None) -> tuple[cases.Runner, int]:
    data = cases.linear_data(n, d)
    x_bytes = data.x.nbytes
    if not backend.startswith("torch"):
        data.x = jax.block_until_ready(jax.device_put(data.x))  # the NumPy X is freed
        data.y = jax.block_until_ready(jax.device_put(data.y))
    if batch is not None:
        mp = cases.MiniBatchProblem(n, d, (batch,))
        make = cases.MINIBATCH_BACKENDS[backend]
        return make(mp, data, batch, "cpu"), x_bytes
    p = cases.Problem("linear", n, d, "large", steps=10, block=10, lr=0.01)
    if backend == cases.GRAM_BACKEND:
        return cases.gram_fit(p, data, "cpu"), x_bytes
    return cases.BACKENDS[backend](p, data, "cpu"), x_bytes


def measure_child(backend: str, n: int, d: int, batch: int | None) -> dict:
    warm, _ = _runner(backend, WARM_N, d, None if batch is None else min(batch, WARM_N // 4))
    for _ in range(2):
        warm.sync(warm.run())
    del warm
    runner, x_bytes = _runner(backend, n, d, batch)
    gc.collect()
    baseline = rss()
    peaks, before = [], []
    for _ in range(2):
        before.append(rss())
        with Peak() as peak:
            runner.sync(runner.run())
        peaks.append(peak.peak)
    return {
        "backend": backend,
        "batch": batch,
        "n": n,
        "d": d,
        "x_bytes": x_bytes,
        "baseline_bytes": baseline,
        "first_extra": peaks[0] - baseline,
        "peak_extra": peaks[1] - baseline,
        "call_extra": peaks[1] - before[1],
        "method": peak.method,
    }


def measure(config: dict, n: int, d: int, timeout: float = 600) -> dict:
    """Run one configuration in a fresh `python -m benchmarks.memory` process."""
    argv = [sys.executable, "-m", "benchmarks.memory", "--backend", config["backend"]]
    argv += ["--n", str(n), "--d", str(d)]
    if config.get("batch") is not None:
        argv += ["--batch", str(config["batch"])]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    ap.add_argument("--backend", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--d", type=int, required=True)
    ap.add_argument("--batch", type=int)
    args = ap.parse_args(argv)
    print(json.dumps(measure_child(args.backend, args.n, args.d, args.batch)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
