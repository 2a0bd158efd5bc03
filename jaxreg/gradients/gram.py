"""Full-batch least squares from sufficient statistics ("Gram"): each step in O(d²), not O(n d).

For a declared linear model (`Objective.model == "linear"`, `jaxreg.linear.Params` with
weight (out, d) and bias (out,) or None) and the squared error (`losses.mse` with reduction
"mean" or "sum", `losses.sse`), the loss is a quadratic in the parameters: statistics of
(x, y) computed once give every step's loss and gradient (scikit-learn's `precompute`
Gram idea, for gradient descent). `statistics(x, y, bias=...)` computes them (`Statistics`);
`value_and_grad(objective, params, stats, _)` is the formulation; `FromStatistics(objective)`
is the objective a compiled loop takes with the statistics in place of (x, y).

The form, for each output k, with a reference point (V, c) (the least-squares solution):

    U = W - V,  β = b - c (b = 0 without a bias),  δ = U x̄ + β
    SSE_k = S_k + U_k Gc U_kᵀ + n δ_k² + 2 (U_k·g_k + δ_k s_k)        (exact algebra)
    dSSE/db_k = 2 (s_k + n δ_k),   dSSE/dW_k = 2 (g_k + Gc U_k + (s_k + n δ_k) x̄)

where x̄ is the column mean, Gc = Σ (x - x̄)(x - x̄)ᵀ the centred Gram, and at the reference
point r = x Vᵀ + c - y: S = Σ r², s = Σ r (both summed from the data) and
g = Σ (x - x̄) r = Gc Vᵀ - Σ (x - x̄)(y - ȳ)ᵀ; loss = Σ_k SSE_k / (n out) for "mean",
Σ_k SSE_k for "sum".

Accuracy. The textbook form `w G wᵀ - 2 w Xᵀy + yᵀy` subtracts large terms: its relative
error is ~eps · yᵀy / SSE (from 1e-16 to 1e-6 as a fit gets good), where torch's direct
`mean((x w + b - y)²)` errs by ~eps · sqrt(yᵀy / SSE). Here every term is non-negative
except the small linear one (g ~ 0 at the reference point), the residual scale S is summed
from the data (not from yᵀy), and centring (Chan's pairwise update per block of rows)
keeps large column means out of Gc. What is left: `error_bound(stats)` estimates the
relative error of the loss as `16 eps (d / λ + d m / sqrt(λ) + sqrt(P / S) + 1)`, λ the
smallest eigenvalue of the columns' correlation matrix (collinearity), m the largest
|column mean| / column std (offsets), P / S the squares of predictions and targets over the
least-squares residual (the torch-level rounding of a near-perfect fit, which the plain
path shares). `fit(gram="auto")` uses this path only in float64 and when that estimate is
at most `AUTO_MAX_ERROR` (1e-11); in float32 it is ~1e-6 at best. Measured against exact
sums: tests/test_gram.py.

Cost: the statistics take one blocked pass over the rows (a (d+out)² Gram per block of
rows, so extra memory is O(block d + d²)), a symmetric eigendecomposition of a (d, d)
matrix, and one more pass for the reference residual; then a step is O(out d²).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxreg import _checks, linear, losses
from jaxreg.objective import Objective

__all__ = [
    "AUTO_MAX_ERROR",
    "FromStatistics",
    "Statistics",
    "choose",
    "error_bound",
    "ineligible",
    "statistics",
    "value_and_grad",
]

# `fit(gram="auto")` uses the statistics when `error_bound` is at most this: a tenth of
# the 1e-10 relative agreement with torch the float64 path promises (torch's own rounding
# takes part of it).
AUTO_MAX_ERROR = 1e-11
# ... and when the plain loop would do at least this many multiply-adds (2 n d out a step):
# below, compiling the statistics' and the step's programs costs more than it saves.
AUTO_MIN_WORK = 1 << 30
# Rows per block: blocks of about this many bytes of [x, y] (a few MiB: the block and its
# centred copy stay in cache while its Gram is formed).
_BLOCK_BYTES = 4 << 20
# error_bound's constant: over 216 adversarial cases (collinear, offset, sorted, badly
# scaled columns, near-zero residual; float32 and float64) the largest error measured
# was 0.23 of the estimate (tests/test_gram.py checks a subset).
_BOUND = 16.0


class Statistics(NamedTuple):
    """Sufficient statistics of (x (n, d), y (n, out)) for least squares, in x's dtype.

    Attributes:
      n: () the number of rows.
      x_mean: (d,) column means of x.
      y_mean: (out,) column means of y.
      xx: (d, d) centred Gram `Σ (x - x̄)(x - x̄)ᵀ`.
      xy: (d, out) centred cross products `Σ (x - x̄)(y - ȳ)ᵀ`.
      yy: (out,) centred sums of squares `Σ (y - ȳ)²`.
      ref_weight: (out, d) the reference point's weight V (the least-squares solution).
      ref_bias: (out,) its bias c (zeros when computed for a model without bias).
      ref_sse: (out,) `S = Σ_i r_i²` at the reference point (r = x Vᵀ + c - y), summed
        from the data.
      ref_grad_weight: (out, d) `g = Σ_i (x_i - x̄) r_i` (from the statistics).
      ref_grad_bias: (out,) `s = Σ_i r_i`, summed from the data.
      corr_min_eig: () smallest eigenvalue of the correlation matrix of x's columns
        (`D Gc D`, D = diag(Gc)^-1/2); 0 with a constant column.
      max_offset: () `max_j |x̄_j| / std_j` (inf with a constant non-zero column).
    """

    n: jax.Array
    x_mean: jax.Array
    y_mean: jax.Array
    xx: jax.Array
    xy: jax.Array
    yy: jax.Array
    ref_weight: jax.Array
    ref_bias: jax.Array
    ref_sse: jax.Array
    ref_grad_weight: jax.Array
    ref_grad_bias: jax.Array
    corr_min_eig: jax.Array
    max_offset: jax.Array


def statistics(x: Any, y: Any, *, bias: bool) -> Statistics:
    """The `Statistics` of x (n, d) and y (n, out), float32 or float64 (the same dtype).

    `bias` chooses the reference point: the least-squares solution with an intercept, or
    without one. The loss is exact for either (the form is an identity for any reference
    point); the one of the model trained keeps the terms small. `Dataset.statistics`
    caches the result per dtype and `bias`.
    """
    if jnp.ndim(x) != 2 or jnp.ndim(y) != 2 or jnp.shape(x)[0] != jnp.shape(y)[0]:
        raise ValueError(
            f"statistics: x must be (n, d) and y (n, out), got {jnp.shape(x)} and {jnp.shape(y)}"
        )
    dtype = jnp.result_type(x)
    if dtype not in (jnp.float32, jnp.float64) or jnp.result_type(y) != dtype:
        raise TypeError(
            f"statistics: x and y must both be float32 or both float64, got "
            f"{jnp.result_type(x)} and {jnp.result_type(y)}"
        )
    n, d = jnp.shape(x)
    width = d + jnp.shape(y)[1]
    block = int(min(n, max(1, _BLOCK_BYTES // (width * np.dtype(dtype).itemsize))))
    return _statistics(x, y, bias=bool(bias), block=block)


@functools.partial(jax.jit, static_argnames=("bias", "block"))
def _statistics(x, y, *, bias: bool, block: int) -> Statistics:
    n, d = x.shape
    out = y.shape[1]
    dtype = x.dtype
    mean, gram = _centred_gram(x, y, block)
    x_mean, y_mean = mean[:d], mean[d:]
    xx, xy, yy = gram[:d, :d], gram[:d, d:], jnp.diagonal(gram[d:, d:])
    count = jnp.asarray(n, dtype)
    corr_min_eig, max_offset = _conditioning(xx, x_mean, count)
    if bias:
        sol = _solve_psd(xx, xy)
    else:
        sol = _solve_psd(
            xx + count * jnp.outer(x_mean, x_mean), xy + count * jnp.outer(x_mean, y_mean)
        )
    ref_w = sol.T  # (out, d)
    ref_b = y_mean - ref_w @ x_mean if bias else jnp.zeros((out,), dtype)
    # Σ r² and Σ r at the reference point from the data: from the statistics they would be
    # differences of large terms (the cancellation this form avoids).
    ref_sse, ref_gb = _residual_sums(x, y, ref_w, ref_b, block)
    ref_gw = ref_w @ xx - xy.T  # Σ (x - x̄) r: centred terms, exact algebra
    return Statistics(
        count, x_mean, y_mean, xx, xy, yy, ref_w, ref_b, ref_sse, ref_gw, ref_gb,
        corr_min_eig, max_offset,
    )  # fmt: skip


def _blocks(n: int, block: int):
    """(number of full blocks, rows in the last partial block)."""
    return n // block, n % block


def _centred_gram(x, y, block: int):
    """Column means (d+out,) and centred Gram ((d+out, d+out)) of [x, y], in one pass.

    Each block of rows is centred on its own mean and merged with Chan, Golub and
    LeVeque's pairwise update, so large column means never enter the products.
    """
    n, d = x.shape
    width = d + y.shape[1]
    full, rest = _blocks(n, block)

    def merge(state, a):
        count, mean, gram = state
        m = a.shape[0]
        mean_b = jnp.sum(a, axis=0) / m
        centred = a - mean_b[None, :]
        gram_b = centred.T @ centred
        total = count + m
        delta = mean_b - mean
        mean = mean + delta * (m / total)
        gram = gram + gram_b + (count * m / total) * jnp.outer(delta, delta)
        return total, mean, gram

    def body(i, state):
        start = i * block
        a = jnp.concatenate(
            [lax.dynamic_slice_in_dim(x, start, block), lax.dynamic_slice_in_dim(y, start, block)],
            axis=1,
        )
        return merge(state, a)

    zero = jnp.zeros((), x.dtype)
    state = (zero, jnp.zeros((width,), x.dtype), jnp.zeros((width, width), x.dtype))
    state = lax.fori_loop(0, full, body, state)
    if rest:
        state = merge(state, jnp.concatenate([x[full * block :], y[full * block :]], axis=1))
    _, mean, gram = state
    return mean, gram


def _residual_sums(x, y, w, b, block: int):
    """(Σ_i r_i², Σ_i r_i) per output ((out,), (out,)), r = x wᵀ + b - y, block by block."""
    n = x.shape[0]
    full, rest = _blocks(n, block)

    def sums(xb, yb):
        r = xb @ w.T + b[None, :] - yb
        return jnp.sum(r * r, axis=0), jnp.sum(r, axis=0)

    def body(i, total):
        start = i * block
        xb = lax.dynamic_slice_in_dim(x, start, block)
        yb = lax.dynamic_slice_in_dim(y, start, block)
        sq, lin = sums(xb, yb)
        return total[0] + sq, total[1] + lin

    zeros = jnp.zeros((y.shape[1],), x.dtype)
    total = lax.fori_loop(0, full, body, (zeros, zeros))
    if rest:
        sq, lin = sums(x[full * block :], y[full * block :])
        total = (total[0] + sq, total[1] + lin)
    return total


def _correlation(a):
    """(D a D, D) with D = diag(a)^-1/2 (0 for a zero diagonal entry)."""
    diag = jnp.diagonal(a)
    inv = jnp.where(diag > 0, lax.rsqrt(jnp.where(diag > 0, diag, 1)), 0)
    return a * inv[:, None] * inv[None, :], inv


def _solve_psd(a, rhs):
    """A least-squares solution of `a z = rhs` for a symmetric positive semi-definite `a`:
    the pseudo-inverse of its correlation form (eigenvalues below d·eps of the largest are
    dropped). Only its accuracy depends on this: the loss form is exact for any z."""
    corr, inv = _correlation(a)
    lam, q = jnp.linalg.eigh(corr)
    cut = lam[-1] * a.shape[0] * jnp.finfo(a.dtype).eps
    keep = lam > cut
    inv_lam = jnp.where(keep, 1 / jnp.where(keep, lam, 1), 0)
    z = q @ ((q.T @ (rhs * inv[:, None])) * inv_lam[:, None])
    return z * inv[:, None]


def _conditioning(xx, x_mean, count):
    """(smallest eigenvalue of x's correlation matrix, max |mean| / std over the columns)."""
    corr, inv = _correlation(xx)
    lam = jnp.linalg.eigvalsh(corr)
    lam_min = jnp.where(jnp.all(inv > 0), jnp.maximum(lam[0], 0), 0)
    std_inv = inv * jnp.sqrt(count)  # 1 / sqrt(xx_jj / n)
    ratio = jnp.where(inv > 0, jnp.abs(x_mean) * std_inv, jnp.where(x_mean == 0, 0, jnp.inf))
    return lam_min, jnp.max(ratio)


def error_bound(stats: Statistics) -> float:
    """An estimate of the relative error of the loss computed from `stats` (a float).

    `16 eps (d / λ + d m / sqrt(λ) + sqrt(P / S) + 1)`: eps of the statistics' dtype, d the
    number of features, λ = `stats.corr_min_eig`, m = `stats.max_offset`, P / S the largest
    ratio over the outputs of (Σ predictions² + Σ y²) at the reference point to its Σ
    residual²; inf when λ or S is 0 (a constant or collinear column, a perfect fit). The
    quadratic term's rounding is relative to `|U| |Gc| |U|`, at most d / λ times `U Gc Uᵀ`;
    the offset term's to `|U| |x̄|`, at most d m / sqrt(λ) times `sqrt(U Gc Uᵀ / n)`; the
    linear term's is torch's own rounding of a residual, sqrt(P / S) relative. Not a proof:
    the constant 16 is over four times the largest error measured (see `_BOUND`).
    """
    eps = float(jnp.finfo(stats.xx.dtype).eps)
    d = int(stats.xx.shape[0])
    lam = float(stats.corr_min_eig)
    offset = float(stats.max_offset)
    scale = _fit_scale(stats)
    if not lam > 0 or not math.isfinite(offset) or not math.isfinite(scale):
        return math.inf
    return eps * _BOUND * (d / lam + d * offset / math.sqrt(lam) + math.sqrt(scale) + 1)


def _fit_scale(stats: Statistics) -> float:
    """max over outputs of (Σ pred² + Σ y²) / (the reference point's Σ residual²)."""
    s = jax.tree.map(lambda a: np.asarray(a, np.float64), stats)
    v, c = s.ref_weight, s.ref_bias
    pred = np.einsum("kd,de,ke->k", v, s.xx, v) + s.n * (v @ s.x_mean + c) ** 2
    target = s.yy + s.n * s.y_mean**2
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (pred + target) / s.ref_sse
    return float(np.max(np.where(s.ref_sse > 0, ratio, np.inf)))


def ineligible(objective: Any, params: Any, x: Any, y: Any) -> str | None:
    """Why the statistics path does not apply to this objective and data, or None.

    Static information only (types, shapes, dtypes, the objective's declaration).
    """
    if not isinstance(objective, Objective):
        return (
            "loss_fn is not a jaxreg objective; declare it with "
            "jr.objective(predict, jr.losses.mse, model='linear')"
        )
    if objective.model != "linear":
        return f"the objective's model is {objective.model!r}, not 'linear'"
    separable = objective.separable()
    if separable is None or separable[0].elementwise is not losses.mse:
        return f"the loss is {getattr(objective.loss, '__name__', objective.loss)}, not mse or sse"
    _, kwargs, _ = separable
    if kwargs:
        names = ", ".join(f"{k}=" for k in kwargs)
        return f"the loss takes {names} (per-sample weights are not in the statistics)"
    if not isinstance(params, linear.Params):
        return f"params is a {type(params).__name__}, not jaxreg.linear.Params"
    w, b = params.weight, params.bias
    dtype = jnp.result_type(w)
    if dtype not in (jnp.float32, jnp.float64) or (b is not None and jnp.result_type(b) != dtype):
        return "the parameters are not all float32 or all float64"
    if jnp.ndim(w) != 2 or jnp.ndim(x) != 2 or jnp.ndim(y) != 2:
        return "the weight, x and y must be 2-D ((out, d), (n, d), (n, out))"
    # The plain objective's own shape and dtype errors, at trace cost only.
    jax.eval_shape(objective, params, x, y)
    if jnp.shape(y) != (jnp.shape(x)[0], jnp.shape(w)[0]) or (
        b is not None and jnp.shape(b) != (jnp.shape(w)[0],)
    ):
        return f"y {jnp.shape(y)} and bias do not match the weight {jnp.shape(w)}"
    return None


def choose(
    mode: Any, objective: Any, params: Any, data: Any, dtype: Any, *, full_batch: bool, steps: int
) -> Statistics | None:
    """The statistics `fit` trains from, or None for the plain path (`fit`'s `gram=`).

    Args:
      mode: "auto", True or False (see `jaxreg.fit`).
      objective, params: the fit's objective and initial parameters.
      data: the `Dataset` (its `statistics(dtype, bias=...)` are computed once and cached).
      dtype: the training dtype.
      full_batch: whether every step sees all rows.
      steps: the number of updates.

    Raises:
      ValueError: `gram=True` where the path does not apply, naming why.
    Warns:
      PrecisionWarning: `gram=True` where `error_bound` exceeds `AUTO_MAX_ERROR`.
    """
    if isinstance(mode, (bool, np.bool_)):
        mode = bool(mode)
    elif not (isinstance(mode, str) and mode == "auto"):
        raise ValueError(f"gram must be 'auto', True or False, got {mode!r}")
    if mode is False:
        return None
    x, y = data.arrays(dtype)
    if mode == "auto" and not _pays(x, y, dtype, steps):
        return None  # the cheap refusals first: most fits stop here
    reason = (
        "mini-batches (batch_size=) see other rows each step; the statistics are of all rows"
        if not full_batch
        else ineligible(objective, params, x, y)
    )
    if reason is not None:
        if mode is True:
            raise ValueError(
                f"gram=True: {reason}. The statistics path covers full-batch mse/sse (mean or "
                "sum) of a linear model (jaxreg.linear.Params) without per-sample weights; "
                "pass gram='auto' or gram=False to train this on the plain path."
            )
        return None
    stats = data.statistics(dtype, bias=params.bias is not None)
    bound = error_bound(stats)
    if bound <= AUTO_MAX_ERROR:
        return stats
    if mode == "auto":
        return None
    warnings.warn(
        f"gram=True: the losses come from sufficient statistics in {np.dtype(dtype).name}; "
        f"their estimated relative error is {bound:.1e} (jaxreg.gradients.gram.error_bound: "
        f"smallest correlation eigenvalue {float(stats.corr_min_eig):.2g}, largest column "
        f"|mean|/std {float(stats.max_offset):.2g}, (predictions² + y²) / least-squares "
        f"residual² {_fit_scale(stats):.2g}), above the {AUTO_MAX_ERROR:g} that "
        "gram='auto' accepts, so they may differ from torch's beyond rounding. Pass "
        "gram=False for the directly computed loss.",
        _checks.PrecisionWarning,
        stacklevel=3,
    )
    return stats


def _pays(x, y, dtype, steps: int) -> bool:
    """Whether "auto" may take the statistics: float64, and the plain loop's multiply-adds
    (2 n d out a step) at least `AUTO_MIN_WORK` and twice the statistics path's."""
    if np.dtype(dtype) != np.float64:
        return False
    n = max(1, np.shape(x)[0])
    d, out = np.size(x) // n, np.size(y) // n
    plain_work = 2 * steps * n * d * out
    gram_work = n * (d + out) ** 2 + n * d * out + steps * d * d * out
    return plain_work >= max(AUTO_MIN_WORK, 2 * gram_work)


def value_and_grad(objective: Any, params: Any, stats: Statistics, _: Any = None):
    """The loss and its gradient from `stats`: `jax.value_and_grad(objective)(params, x, y)`
    for the (x, y) the statistics summarise, up to rounding (see the module docstring).

    Args:
      objective: a `FromStatistics`, or the eligible objective it wraps (mse/sse, linear).
      params: `jaxreg.linear.Params`, weight (out, d), bias (out,) or None, of the
        statistics' dtype.
      stats: `Statistics` of the data.
      _: ignored (the place of y).

    Returns:
      (loss (), `linear.Params` of gradients).
    """
    if isinstance(objective, FromStatistics):
        objective = objective.objective
    _, _, reduction = objective.separable()
    w, b = params.weight, params.bias
    if (
        jnp.shape(w) != jnp.shape(stats.ref_weight)
        or jnp.result_type(w) != stats.xx.dtype
        or (b is not None and jnp.result_type(b) != stats.xx.dtype)
    ):
        raise ValueError(
            f"gram: params (weight {jnp.shape(w)} {jnp.result_type(w)}) do not match the "
            f"statistics (weight {jnp.shape(stats.ref_weight)} {stats.xx.dtype})"
        )
    out = w.shape[0]
    n = stats.n
    u = w - stats.ref_weight  # (out, d)
    beta = -stats.ref_bias if b is None else b - stats.ref_bias  # (out,)
    gu = u @ stats.xx  # (out, d), xx symmetric
    delta = u @ stats.x_mean + beta  # (out,)
    quad = jnp.sum(u * gu, axis=1)
    linear_term = jnp.sum(u * stats.ref_grad_weight, axis=1) + delta * stats.ref_grad_bias
    sse = (stats.ref_sse + quad + n * delta * delta) + 2 * linear_term
    total = jnp.sum(sse)
    grad_b = stats.ref_grad_bias + n * delta
    grad_w = stats.ref_grad_weight + gu + grad_b[:, None] * stats.x_mean[None, :]
    if reduction == "mean":
        # A true division, as torch's mean (see losses.mean).
        count = lax.optimization_barrier(n * out)
        value = total / count
        scale = 2 / count
    else:
        value = total
        scale = jnp.asarray(2, total.dtype)
    return value, linear.Params(grad_w * scale, None if b is None else grad_b * scale)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class FromStatistics:
    """`objective` evaluated from `Statistics`: `(params, stats, _) -> loss`.

    What a compiled loop takes in place of the objective when it is given the statistics
    in place of (x, y); `jaxreg.gradients.select` then chooses `value_and_grad` above.
    """

    objective: Any

    def __call__(self, params, stats, y=None):
        return value_and_grad(self.objective, params, stats)[0]

    def tree_flatten(self):
        leaves, treedef = jax.tree_util.tree_flatten(self.objective)
        return leaves, treedef

    @classmethod
    def tree_unflatten(cls, treedef, leaves):
        return cls(jax.tree_util.tree_unflatten(treedef, leaves))
