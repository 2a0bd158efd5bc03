"""Likelihood losses, prediction and target of one shape: `poisson_nll`, `gaussian_nll`, `kl_div`.

Each is torch's formula (ATen `poisson_nll_loss` and `kl_div`, `F.gaussian_nll_loss`)
written with the same operations in the same order, so JAX's derivative of it is torch's
autograd gradient up to the rounding of each operation.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from jaxreg import _checks
from jaxreg.losses import core
from jaxreg.losses.core import Reduction

KLReduction = Literal["mean", "batchmean", "sum", "none"]


def poisson_nll(
    pred: jax.Array,
    target: jax.Array,
    *,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Poisson negative log likelihood: `F.poisson_nll_loss` / `nn.PoissonNLLLoss`.

    `loss = exp(pred) - target * pred` when `log_input` (pred is the log of the rate,
    e.g. `linear.predict`'s output), else `pred - target * log(pred + eps)`. With `full`,
    the Stirling term `target log(target) - target + 0.5 log(2 pi target)` is added where
    target > 1 (0 elsewhere), as torch does.

    Args:
      pred, target: the same shape, e.g. (n, 1); target counts (non-negative).
      log_input: whether pred is the log-rate (torch's default True).
      full: add the Stirling approximation of `log(target!)`.
      eps: added to pred before its log when not `log_input`.
      reduction: "mean", "sum" or "none".
    """
    fn = "poisson_nll"
    core.check_reduction(reduction, fn)
    _checks.check_flag("log_input", log_input)
    _checks.check_flag("full", full)
    pred, target, _ = core.prepare(fn, pred, target)
    if log_input:
        loss = jnp.exp(pred) - target * pred
    else:
        loss = pred - target * jnp.log(pred + eps)
    if full:
        big = target > 1
        t = jnp.where(big, target, 2)  # keeps log(t <= 0) out of the masked branch's gradient
        stirling = t * jnp.log(t) - t + 0.5 * jnp.log(2 * math.pi * t)
        loss = loss + jnp.where(big, stirling, 0)
    return core.reduce(loss, reduction, fn)


@jax.custom_jvp
def _clamp_min_straight_through(v: jax.Array, low: jax.Array) -> jax.Array:
    """`max(v, low)` whose derivative is 1: torch's `var.clamp_(min=eps)` under no_grad."""
    return jnp.maximum(v, low)


@_clamp_min_straight_through.defjvp
def _clamp_min_straight_through_jvp(primals, tangents):
    (v, low), (dv, _) = primals, tangents
    return jnp.maximum(v, low), dv


def _gaussian_var(var, pred, dtype) -> jax.Array:
    """var as an array that broadcasts to pred, checked as `F.gaussian_nll_loss` does."""
    fn = "gaussian_nll"
    if isinstance(var, (int, float)) and not isinstance(var, bool):
        if var < 0:
            raise ValueError(f"{fn}: var has negative entry/entries: var={var}")
        return jnp.full(jnp.shape(pred), var, dtype)
    var = _checks.as_data("var", var, dtype)
    if _checks.is_concrete(var) and bool(np.any(np.asarray(var) < 0)):
        first = tuple(int(i) for i in np.argwhere(np.asarray(var) < 0)[0])
        raise ValueError(
            f"{fn}: var has negative entry/entries (torch's message), the first "
            f"{np.asarray(var)[first]!r} at index {first}; variances must be >= 0."
        )
    ps, vs = tuple(jnp.shape(pred)), tuple(jnp.shape(var))
    if vs == ps:
        return var
    if ps[:-1] == vs:  # one variance per row of pred: torch unsqueezes it
        return jnp.broadcast_to(var[..., None], ps)
    if len(ps) == len(vs) and sum(v for p, v in zip(ps, vs, strict=True) if p != v) == 1:
        return jnp.broadcast_to(var, ps)  # one mismatched axis, where var has size 1
    raise ValueError(
        f"{fn}: var is of incorrect size (torch's message): var has shape {vs} and pred "
        f"{ps}; give var pred's shape, {ps[:-1]} (one per row), or pred's shape with one "
        "axis of size 1."
    )


def gaussian_nll(
    pred: jax.Array,
    target: jax.Array,
    var: jax.Array | float,
    *,
    full: bool = False,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Gaussian negative log likelihood: `F.gaussian_nll_loss` / `nn.GaussianNLLLoss`.

    `loss = 0.5 (log(v) + (pred - target)² / v)` with `v = max(var, eps)`, plus
    `0.5 log(2 pi)` when `full`. As in torch, the clamp at eps does not stop var's
    gradient (torch clamps under `no_grad`): var's derivative is taken at v and passed on.

    Args:
      pred, target: the same shape, e.g. (n, 1).
      var: variances >= 0: pred's shape (heteroscedastic), pred's shape without its last
        axis (one per row; torch unsqueezes it), pred's shape with one axis of size 1, or
        a number (homoscedastic).
      full: include the constant `0.5 log(2 pi)`.
      eps: the smallest variance used.
      reduction: "mean", "sum" or "none".

    Raises:
      ValueError: a negative variance (on concrete arrays), a var shape torch refuses.
    """
    fn = "gaussian_nll"
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"{fn}: reduction {reduction!r} is not valid (torch's message); use "
            "'mean', 'sum' or 'none'"
        )
    _checks.check_flag("full", full)
    pred, target, _ = core.prepare(fn, pred, target)
    v = _clamp_min_straight_through(
        _gaussian_var(var, pred, pred.dtype), jnp.asarray(eps, pred.dtype)
    )
    loss = 0.5 * (jnp.log(v) + (pred - target) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return core.reduce(loss, reduction, fn)


def kl_div(
    log_pred: jax.Array,
    target: jax.Array,
    *,
    reduction: KLReduction = "mean",
    log_target: bool = False,
) -> jax.Array:
    """Kullback-Leibler divergence: `F.kl_div` / `nn.KLDivLoss`.

    `loss = target (log(target) - log_pred)` elementwise (`xlogy(t, t) - t log_pred`, 0
    where target is 0), or `exp(target) (target - log_pred)` when `log_target`. As in
    torch, "mean" divides by the number of elements, "batchmean" (the KL divergence) by
    the first axis' length (log_pred.shape[0]; a 0-d input is summed).

    Args:
      log_pred: log-probabilities, e.g. `jax.nn.log_softmax(softmax.logits(params, x))`.
      target: the same shape: probabilities (or their logs with `log_target`).
      reduction: "mean", "batchmean", "sum" or "none".
      log_target: whether target holds log-probabilities.
    """
    fn = "kl_div"
    if reduction not in ("mean", "batchmean", "sum", "none"):
        raise ValueError(
            f"{fn}: reduction must be 'mean', 'batchmean', 'sum' or 'none', got {reduction!r}"
        )
    _checks.check_flag("log_target", log_target)
    log_pred, target, _ = core.prepare(fn, log_pred, target)
    if log_target:
        loss = jnp.exp(target) * (target - log_pred)
    else:
        loss = jsp.xlogy(target, target) - target * log_pred
    if reduction == "batchmean":
        total = jnp.sum(loss)
        if jnp.ndim(log_pred) == 0:
            return total
        return core.divide(total, jnp.shape(log_pred)[0])
    return core.reduce(loss, reduction, fn)
