"""Closed-form least squares: the point gradient descent on `mse` converges to.

For a linear model `pred = x @ weight.T + bias` (torch's `nn.Linear`) write
`A = [x, 1]` (n, in + 1) (just `x` without bias) and `C = [weight.T; bias]` (in + 1, out).
The mean squared error `mean((A @ C - Y)**2)` is a convex quadratic in `C`; its gradient
`2 / (n * out) * A.T @ (A @ C - Y)` vanishes exactly on the normal equations

    A.T @ A @ C = A.T @ Y,    so    C = (A.T @ A)^-1 @ A.T @ Y    when A has full column rank.

This is the fixed point of every gradient-descent run on `jaxreg.losses.mse` (or `sse`,
which only rescales the gradient) with a small enough learning rate, so it is the
reference the tests and `parity` measure training against. When A is rank deficient the
minimizers form a line (or plane); `np.linalg.lstsq` returns the one of minimum norm,
which is also where gradient descent from zero parameters ends.

Computed in float64 NumPy (SVD-based `lstsq`, better conditioned than inverting
`A.T @ A`); logistic regression has no closed form and is not covered here.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxreg import _checks
from jaxreg.linear import Params


def least_squares(x: Any, y: Any, *, bias: bool = True) -> Params:
    """The parameters minimizing `mean((x @ weight.T + bias - y)**2)`.

    Args:
      x: (n, in) inputs, NumPy or jax; integers allowed.
      y: (n,) or (n, out) targets. (n,) is treated as (n, 1), as `nn.Linear(in, 1)` does
        after `y.view(-1, 1)`.
      bias: fit an intercept (torch's `bias=True`); without it the model is `x @ weight.T`,
        e.g. a design matrix that already holds the ones column.

    Returns:
      `Params` of NumPy arrays: weight (out, in), bias (out,) or None, in x's float dtype
      (float32 for integer x). `jaxreg.linear.predict(params, x)` is (n, out).

    Raises:
      ValueError: x not 2-D, y not 1-D or 2-D, differing row counts, empty, NaN or inf.
      TypeError: complex data.
    """
    a, y2, dtype = _prepare(x, y, bias=bias, fn="least_squares")
    coef = np.linalg.lstsq(a, y2, rcond=None)[0]  # (in [+ 1], out)
    k = a.shape[1] - int(bias)
    weight = coef[:k].T.astype(dtype)
    return Params(weight, coef[k].astype(dtype) if bias else None)


def mse_at_optimum(x: Any, y: Any, *, bias: bool = True) -> float:
    """The smallest reachable `mse`: `mean((pred - y)**2)` at `least_squares(x, y)`.

    The floor a training curve approaches; `loss - mse_at_optimum(x, y)` is the
    optimization gap. The mean runs over all `n * out` elements, like `F.mse_loss`.
    Computed in float64 from the float64 solution (not rounded to x's dtype first).

    Args and raises: as `least_squares`.
    """
    a, y2, _ = _prepare(x, y, bias=bias, fn="mse_at_optimum")
    coef = np.linalg.lstsq(a, y2, rcond=None)[0]
    return float(np.mean((a @ coef - y2) ** 2))


def _prepare(x: Any, y: Any, *, bias: bool, fn: str) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """(A as float64 (n, in [+ 1]), y as float64 (n, out), the result dtype)."""
    x, y = np.asarray(x), np.asarray(y)
    for name, v in (("x", x), ("y", y)):
        if not (
            jnp.issubdtype(v.dtype, jnp.floating)
            or jnp.issubdtype(v.dtype, jnp.integer)
            or v.dtype == bool
        ):
            raise TypeError(f"{fn}: {name} must be real numbers, got dtype {v.dtype}")
    if x.ndim != 2:
        hint = " For one feature use x.reshape(-1, 1)." if x.ndim == 1 else ""
        raise ValueError(f"{fn}: x must have shape (n, in_features), got {x.shape}.{hint}")
    if y.ndim not in (1, 2):
        raise ValueError(f"{fn}: y must have shape (n,) or (n, out_features), got {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{fn}: x has {x.shape[0]} rows (shape {x.shape}) but y has {y.shape[0]} "
            f"(shape {y.shape}); they must have one row per sample"
        )
    for name, v in (("x", x), ("y", y)):
        _checks.check_nonempty(name, v)
        _checks.check_finite(name, v)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else np.dtype(np.float32)
    a = x.astype(np.float64)
    if bias:
        a = np.concatenate([a, np.ones((a.shape[0], 1))], axis=1)
    return a, y.astype(np.float64).reshape(y.shape[0], -1), dtype
