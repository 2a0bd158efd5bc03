"""Error bounds in ulps for comparing jaxreg with torch, shared by the model tests.

Sums of k terms in different orders on the two sides (torch: BLAS addmm/mm or a
vectorized cascade; XLA: its own dot and reduce kernels) cannot agree to the last bit.
Higham & Mary (2019): with rounding errors modelled as independent, each side is within
lambda sqrt(k) u of exact, relative to sum |terms|, with probability
>= 1 - 2 exp(-lambda²/2); SUM_LAMBDA = 5 makes that 7e-6. Two sides at u = eps/2 each:
SUM_LAMBDA sqrt(k) ulps. (The worst case, k eps, is 2-4x looser; measured: 0.2-1.3 ulp.)
"""

import math

import numpy as np

SUM_LAMBDA = 5


def sum_ulps(k: int) -> int:
    return math.ceil(SUM_LAMBDA * math.sqrt(k))


def dot_ulps(in_features: int) -> int:
    """x @ W.T + b: in_features + 1 terms, relative to |x| @ |W|.T + |b|."""
    return sum_ulps(in_features + 1)


def assert_within(actual, expected, ulps, scale, *, subnormals_flushed=False):
    """|actual - expected| <= ulps * eps * scale, elementwise, same dtype and shape.

    `subnormals_flushed`: XLA on CPU flushes subnormal results to zero and torch keeps
    them, so differences below the smallest normal number are ignored (for results that
    can underflow, such as a saturated sigmoid).
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    finfo = np.finfo(actual.dtype)
    diff = np.abs(actual.astype(np.float64) - expected)
    floor = 1e-300
    if subnormals_flushed:
        diff = np.maximum(diff - finfo.tiny, 0)
        floor = finfo.tiny
    err = diff / (finfo.eps * np.maximum(scale, floor))
    assert np.max(err) <= ulps, f"{np.max(err):.3g} ulp (allowed {ulps})"
