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

Rank is judged at the precision of the data, not of the float64 arithmetic: singular
values of A below `eps(x.dtype) * max(n, in + 1) * s_max` are treated as zero (NumPy's
and LAPACK's convention, with the eps of x's dtype). float32 columns that are exactly
collinear in the float32 numbers (Celsius and Fahrenheit, `F = C * 9/5 + 32` rounded to
float32) are collinear only to float32's 1e-7 once widened to float64; judging them with
float64's eps would treat that rounding noise as signal and return huge, cancelling
weights (~1e4 here) instead of the minimum-norm solution. A rank-deficient A is
reported with `RankDeficientWarning`. Columns on very different scales (1e-4 next to
1e4 in float32) can look rank-deficient too: standardize them first.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxreg import _checks
from jaxreg.linear import Params


class RankDeficientWarning(UserWarning):
    """The design matrix (x, with the ones column when `bias`) is rank-deficient at the
    precision of x's dtype: the minimizers form a line or plane, and the minimum-norm
    one is returned. Usually collinear columns (one a linear function of others)."""


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
      (float32 for integer x). `jaxreg.linear.predict(params, x)` is (n, out). When the
      minimizers are not unique, the one of minimum norm `|weight|^2 + |bias|^2` (where
      gradient descent from zero parameters converges).

    Raises:
      ValueError: x not 2-D, y not 1-D or 2-D, differing row counts, empty, NaN or inf.
      TypeError: complex data.

    Warns:
      RankDeficientWarning: the design matrix is rank-deficient at x's precision (see
        the module docstring).
    """
    a, y2, dtype, eps = _prepare(x, y, bias=bias, fn="least_squares")
    coef = _lstsq(a, y2, eps, fn="least_squares")  # (in [+ 1], out)
    k = a.shape[1] - int(bias)
    weight = coef[:k].T.astype(dtype)
    return Params(weight, coef[k].astype(dtype) if bias else None)


def mse_at_optimum(x: Any, y: Any, *, bias: bool = True) -> float:
    """The smallest reachable `mse`: `mean((pred - y)**2)` at `least_squares(x, y)`.

    The floor a training curve approaches; `loss - mse_at_optimum(x, y)` is the
    optimization gap. The mean runs over all `n * out` elements, like `F.mse_loss`.
    Computed in float64 from the float64 solution (not rounded to x's dtype first).

    Args, raises and warns: as `least_squares`.
    """
    a, y2, _, eps = _prepare(x, y, bias=bias, fn="mse_at_optimum")
    coef = _lstsq(a, y2, eps, fn="mse_at_optimum")
    return float(np.mean((a @ coef - y2) ** 2))


def _lstsq(a: np.ndarray, y2: np.ndarray, eps: float, *, fn: str) -> np.ndarray:
    """The minimum-norm least-squares solution (k, out) of float64 `a` (n, k), singular
    values below `eps * max(n, k)` of the largest counted as zero (warned about)."""
    rcond = eps * max(a.shape)
    coef, _, rank, sv = np.linalg.lstsq(a, y2, rcond=rcond)
    if rank < a.shape[1]:
        relative = sv / sv[0] if sv[0] > 0 else sv
        warnings.warn(
            f"{fn}: the design matrix ({a.shape[0]} x {a.shape[1]}: x, and a column of "
            f"ones when bias=True) has rank {rank} < {a.shape[1]} at the precision of x "
            f"(relative singular values {', '.join(f'{v:.1e}' for v in relative)}; "
            f"cut-off {rcond:.1e}): some columns are collinear. Returning the "
            "minimum-norm solution.",
            RankDeficientWarning,
            stacklevel=3,
        )
    return coef


def _prepare(
    x: Any, y: Any, *, bias: bool, fn: str
) -> tuple[np.ndarray, np.ndarray, np.dtype, float]:
    """(A as float64 (n, in [+ 1]), y as float64 (n, out), the result dtype, the relative
    precision of x's values: its float dtype's eps, float64's for integers, which are
    exact in the float64 arithmetic)."""
    x, y = np.asarray(_checks.as_array("x", x)), np.asarray(_checks.as_array("y", y))
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
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    dtype = x.dtype if floating else np.dtype(np.float32)
    eps = float(jnp.finfo(x.dtype if floating else np.float64).eps)
    a = x.astype(np.float64)
    if bias:
        a = np.concatenate([a, np.ones((a.shape[0], 1))], axis=1)
    return a, y.astype(np.float64).reshape(y.shape[0], -1), dtype, eps
