"""Regression losses with `torch.nn.functional`'s formulas, gradients and reductions.

Every loss takes `(pred, target)` of exactly the same shape; where torch would broadcast
(n,) against (n, 1) into (n, n) with a warning, these raise `ValueError` naming both shapes.
Integer or bool targets are promoted to the prediction's float dtype. `reduction` is
"mean" (torch's default), "sum" or "none" (the elementwise losses, in `pred`'s shape).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxreg import _checks

Reduction = Literal["mean", "sum", "none"]

# torch clamps the logs in BCELoss at -100 so that log(0) gives a finite loss, and clamps
# the denominator of its hand-written gradient, p * (1 - p), at 1e-12 (ATen Loss.cpp).
_BCE_LOG_FLOOR = -100.0
_BCE_GRAD_EPS = 1e-12


def _prepare(fn: str, pred, target, weight=None):
    dtype = jnp.result_type(pred)
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"{fn}: pred must be floating point, got {dtype}")
    _checks.warn_if_float64_truncated("pred", pred)
    target = _checks.as_data("target", target, dtype)
    _checks.check_same_shape(pred, target, fn=fn)
    if weight is not None:
        weight = _broadcast_to_pred(fn, "weight", _checks.as_data("weight", weight, dtype), pred)
    return pred, target, weight


def _broadcast_to_pred(fn: str, name: str, w: jax.Array, pred) -> jax.Array:
    """`w` broadcast to pred's shape (torch's `weight.expand(...)`); it may not grow pred."""
    shape = jnp.shape(pred)
    if jnp.shape(w) == shape:
        return w
    try:
        return jnp.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"{fn}: {name} shape {jnp.shape(w)} does not broadcast to the prediction shape "
            f"{shape}; give it shape {shape}, or ({shape[-1] if shape else 1},) for one value "
            "per output column."
        ) from None


@jax.custom_jvp
def _abs(d: jax.Array) -> jax.Array:
    """`|d|` with torch's derivative `sign(d)`, which is 0 at d = 0 (jax.grad(jnp.abs)(0.) is 1)."""
    return jnp.abs(d)


@_abs.defjvp
def _abs_jvp(primals, tangents):
    (d,), (dd,) = primals, tangents
    return jnp.abs(d), jnp.sign(d) * dd


def _reduce(loss: jax.Array, reduction: str, fn: str) -> jax.Array:
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def mse(pred: jax.Array, target: jax.Array, *, reduction: Reduction = "mean") -> jax.Array:
    """Mean squared error, `mean((pred - target) ** 2)`: `F.mse_loss` / `nn.MSELoss()`.

    Args:
      pred, target: the same shape, e.g. (n, 1) and (n, 1).
      reduction: "mean", "sum" or "none".

    Returns:
      A scalar (or the elementwise squares for "none").
    """
    pred, target, _ = _prepare("mse", pred, target)
    return _reduce(jnp.square(pred - target), reduction, "mse")


def sse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Sum of squared errors, `sum((pred - target) ** 2)`: `F.mse_loss(..., reduction="sum")`.

    The real-data tutorial's `loss = torch.sum((y - X @ What) ** 2)`.
    """
    return mse(pred, target, reduction="sum")


def l1(pred: jax.Array, target: jax.Array, *, reduction: Reduction = "mean") -> jax.Array:
    """Mean absolute error `mean(|pred - target|)`: `F.l1_loss`. Its gradient at 0 is 0."""
    pred, target, _ = _prepare("l1", pred, target)
    return _reduce(_abs(pred - target), reduction, "l1")


def huber(
    pred: jax.Array, target: jax.Array, *, delta: float = 1.0, reduction: Reduction = "mean"
) -> jax.Array:
    """`F.huber_loss`: `0.5 d²` where `|d| < delta`, else `delta (|d| - delta/2)`; d = pred - target."""
    if not delta > 0:
        raise ValueError(f"huber: delta must be positive, got {delta}")
    pred, target, _ = _prepare("huber", pred, target)
    d = pred - target
    a = _abs(d)
    loss = jnp.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return _reduce(loss, reduction, "huber")


def smooth_l1(
    pred: jax.Array, target: jax.Array, *, beta: float = 1.0, reduction: Reduction = "mean"
) -> jax.Array:
    """`F.smooth_l1_loss`: `0.5 d² / beta` where `|d| < beta`, else `|d| - beta/2`.

    `beta=0` is the L1 loss, as in torch. Equals `huber(delta=beta) / beta` for beta > 0.
    """
    if not beta >= 0:  # also catches NaN
        raise ValueError(f"smooth_l1: beta must be non-negative, got {beta}")
    pred, target, _ = _prepare("smooth_l1", pred, target)
    a = _abs(pred - target)
    if beta == 0:
        loss = a
    else:
        loss = jnp.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta)
    return _reduce(loss, reduction, "smooth_l1")


@jax.custom_jvp
def _bce_elementwise(prob: jax.Array, target: jax.Array) -> jax.Array:
    log_p = jnp.maximum(jnp.log(prob), _BCE_LOG_FLOOR)
    log_1mp = jnp.maximum(jnp.log1p(-prob), _BCE_LOG_FLOOR)
    return (target - 1) * log_1mp - target * log_p


@_bce_elementwise.defjvp
def _bce_elementwise_jvp(primals, tangents):
    # torch's hand-written backward (binary_cross_entropy_backward), not the derivative of
    # the clamped formula: (p - t) / max(p (1 - p), 1e-12).
    prob, target = primals
    dprob, dtarget = tangents
    out = _bce_elementwise(prob, target)
    dp = (prob - target) / jnp.maximum(prob * (1 - prob), _BCE_GRAD_EPS)
    dt = jnp.maximum(jnp.log1p(-prob), _BCE_LOG_FLOOR) - jnp.maximum(jnp.log(prob), _BCE_LOG_FLOOR)
    return out, dp * dprob + dt * dtarget


def bce(
    prob: jax.Array,
    target: jax.Array,
    *,
    weight: jax.Array | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Binary cross-entropy on probabilities: `F.binary_cross_entropy` / `nn.BCELoss`.

    `loss = -(t log p + (1 - t) log(1 - p))`, with both logs clamped at -100 as torch does,
    so p = 0 or 1 gives a finite loss (100 per wrong element) instead of inf. The gradient is
    torch's, `(p - t) / max(p (1 - p), 1e-12)`. torch raises for p outside [0, 1]; inside a
    compiled program values cannot be checked, and such p give NaN.

    Args:
      prob: probabilities, any shape, e.g. (n, 1) from `logistic.predict`.
      target: the same shape, values in [0, 1].
      weight: optional rescaling, broadcastable to prob's shape.
      reduction: "mean", "sum" or "none".
    """
    prob, target, weight = _prepare("bce", prob, target, weight)
    loss = _bce_elementwise(prob, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "bce")


def _log_sigmoid(z: jax.Array) -> jax.Array:
    # ATen's log_sigmoid: min(z, 0) - log1p(exp(-|z|)); exact for large |z| of either sign.
    return jnp.minimum(z, 0) - jnp.log1p(jnp.exp(-jnp.abs(z)))


@jax.custom_jvp
def _bce_logits_elementwise(z, target, pos_weight):
    log_weight = (pos_weight - 1) * target + 1
    return (1 - target) * z - log_weight * _log_sigmoid(z)


@_bce_logits_elementwise.defjvp
def _bce_logits_elementwise_jvp(primals, tangents):
    # torch's binary_cross_entropy_with_logits_backward: (sigmoid(z) (pw t + 1 - t) - pw t).
    z, target, pos_weight = primals
    dz, dtarget, dpw = tangents
    out = _bce_logits_elementwise(z, target, pos_weight)
    pt = pos_weight * target
    grad_z = (pt + 1 - target) * jax.nn.sigmoid(z) - pt
    grad_t = (pos_weight - 1) * -_log_sigmoid(z) - z
    grad_pw = -target * _log_sigmoid(z)
    return out, grad_z * dz + grad_t * dtarget + grad_pw * dpw


def bce_with_logits(
    logits: jax.Array,
    target: jax.Array,
    *,
    weight: jax.Array | None = None,
    pos_weight: jax.Array | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Binary cross-entropy on logits: `F.binary_cross_entropy_with_logits`.

    `loss = (1 - t) z - w_pos(t) log_sigmoid(z)` with `w_pos(t) = (pos_weight - 1) t + 1`,
    torch's numerically stable form: finite for any finite z (|z| = 1e4 included), and
    equal to `bce(sigmoid(z), t)` where that is accurate. The gradient is torch's,
    `sigmoid(z) (pos_weight t + 1 - t) - pos_weight t`.

    Args:
      logits: any shape, e.g. (n, 1) from `logistic.logits`.
      target: the same shape, values in [0, 1].
      weight: optional rescaling of each element, broadcastable to logits' shape.
      pos_weight: optional weight of positive examples, broadcastable (per output column).
      reduction: "mean", "sum" or "none".
    """
    logits, target, weight = _prepare("bce_with_logits", logits, target, weight)
    dtype = jnp.result_type(logits)
    pw = jnp.ones((), dtype) if pos_weight is None else _checks.as_data("pos_weight", pos_weight, dtype)
    pw = jnp.broadcast_to(pw, jnp.shape(logits))
    loss = _bce_logits_elementwise(logits, target, pw)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "bce_with_logits")
