"""The one-read floor: how long one pass over X takes on this machine.

A full-batch gradient step must read X (n, d) at least once. The fastest read we can
measure is a large NumPy GEMV `X @ w` (BLAS, all cores) or a plain `X.sum()`; the faster
of the two, bytes of X divided by its median time, is the machine's read bandwidth, and
`bytes / bandwidth` the floor a step cannot beat. Measure it before any JAX work on large
arrays in the same process: a `jnp.asarray` of a large array copies asynchronously, and
competing work made the GEMV look 3x slower (shared/PERF-NOTES.md).
"""

from __future__ import annotations

import numpy as np

from benchmarks.timing import Timing, measure, no_sync


def read_floor(x: np.ndarray, *, repeats: int = 15) -> dict:
    """Median times of a GEMV and a sum over `x`, and the read bandwidth they imply."""
    x = np.ascontiguousarray(x)
    w = np.ones(x.shape[1], x.dtype)
    out = np.empty(x.shape[0], x.dtype)
    gemv: Timing = measure(lambda: np.dot(x, w, out=out), sync=no_sync, repeats=repeats)
    total: Timing = measure(lambda: x.sum(), sync=no_sync, repeats=repeats)
    best = min(gemv.median, total.median)
    return {
        "bytes": int(x.nbytes),
        "gemv_s": gemv.as_dict(),
        "sum_s": total.as_dict(),
        "floor_s": best,
        "bandwidth_gb_s": x.nbytes / best / 1e9,
    }
