"""Numerical bounds shared by the tests: ulps of jaxreg against torch, finite differences.

Sums of k terms in different orders on the two sides (torch: BLAS addmm/mm or a
vectorized cascade; XLA: its own dot and reduce kernels) cannot agree to the last bit.
Higham & Mary (2019): with rounding errors modelled as independent, each side is within
lambda sqrt(k) u of exact, relative to sum |terms|, with probability
>= 1 - 2 exp(-lambda²/2); SUM_LAMBDA = 5 makes that 7e-6. Two sides at u = eps/2 each:
SUM_LAMBDA sqrt(k) ulps. (The worst case, k eps, is 2-4x looser; measured: 0.2-1.3 ulp.)
"""

import math

import jax
import jax.numpy as jnp
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


# Central differences in float64 with step FD_STEP on O(1) inputs: truncation error
# h²|f'''|/6 ~ 1e-12 |f'''|, rounding error ~ eps |f| / h ~ 2e-10 |f| (measured worst:
# 3.8e-10). FD_RTOL, relative to max(1, |f|, |f'|), is 25x that and still flags any wrong
# factor, sign or missing term.
FD_STEP = 1e-6
FD_RTOL = 1e-8


def assert_directional_derivative(value_and_grad, params, x, y, direction):
    """The gradient along `direction` (a pytree like params) equals a central difference."""
    value, grads = value_and_grad(params, x, y)
    directional = sum(
        float(jnp.vdot(g, d))
        for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
    )
    plus = jax.tree.map(lambda a, d: a + FD_STEP * d, params, direction)
    minus = jax.tree.map(lambda a, d: a - FD_STEP * d, params, direction)
    f_plus = float(value_and_grad(plus, x, y)[0])
    f_minus = float(value_and_grad(minus, x, y)[0])
    fd = (f_plus - f_minus) / (2 * FD_STEP)
    scale = max(1.0, abs(float(value)), abs(directional))
    assert abs(fd - directional) <= FD_RTOL * scale, (fd, directional)
