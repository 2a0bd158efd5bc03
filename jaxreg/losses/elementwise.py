"""Elementwise losses, prediction and target of one shape, with torch's formulas and gradients.

Every loss takes `(pred, target)` of exactly the same shape; where torch would broadcast
(n,) against (n, 1) into (n, n) with a warning, these raise `ValueError` naming both shapes.
Integer or bool targets are promoted to the prediction's float dtype. `reduction` is
"mean" (torch's default), "sum" or "none" (the elementwise losses, in `pred`'s shape);
"mean" divides the sum by n exactly as torch does (see `mean`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxreg import _checks
from jaxreg.losses import core
from jaxreg.losses.core import Reduction

# torch clamps the logs in BCELoss at -100 so that log(0) gives a finite loss, and clamps
# the denominator of its hand-written gradient, p * (1 - p), at 1e-12 (ATen Loss.cpp). That
# constant is a C++ float, so in float64 the clamp is float32(1e-12) = 9.999999960041972e-13
# (measured: torch 2.13's float64 gradient at p = 0, t = 0.5 is -5.00000002e11, not -5e11).
_BCE_LOG_FLOOR = -100.0
_BCE_GRAD_EPS = float(np.float32(1e-12))
# Below this p, log(1 - p) is computed with log1p (see _log1m); at and above, with log.
_LOG1M_SWITCH = 0.3


@jax.custom_jvp
def _abs(d: jax.Array) -> jax.Array:
    """`|d|` with torch's derivative `sign(d)`, which is 0 at d = 0 (jax.grad(jnp.abs)(0.) is 1)."""
    return jnp.abs(d)


@_abs.defjvp
def _abs_jvp(primals, tangents):
    (d,), (dd,) = primals, tangents
    return jnp.abs(d), jnp.sign(d) * dd


def mse(pred: jax.Array, target: jax.Array, *, reduction: Reduction = "mean") -> jax.Array:
    """Mean squared error, `mean((pred - target) ** 2)`: `F.mse_loss` / `nn.MSELoss()`.

    Args:
      pred, target: the same shape, e.g. (n, 1) and (n, 1).
      reduction: "mean", "sum" or "none".

    Returns:
      A scalar (or the elementwise squares for "none").
    """
    core.check_reduction(reduction, "mse")
    pred, target, _ = core.prepare("mse", pred, target)
    return core.reduce(jnp.square(pred - target), reduction, "mse")


def sse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Sum of squared errors, `sum((pred - target) ** 2)`: `F.mse_loss(..., reduction="sum")`.

    The real-data tutorial's `loss = torch.sum((y - X @ What) ** 2)`.
    """
    pred, target, _ = core.prepare("sse", pred, target)
    return jnp.sum(jnp.square(pred - target))


def l1(pred: jax.Array, target: jax.Array, *, reduction: Reduction = "mean") -> jax.Array:
    """Mean absolute error `mean(|pred - target|)`: `F.l1_loss`. Its gradient at 0 is 0."""
    core.check_reduction(reduction, "l1")
    pred, target, _ = core.prepare("l1", pred, target)
    return core.reduce(_abs(pred - target), reduction, "l1")


def huber(
    pred: jax.Array, target: jax.Array, *, delta: float = 1.0, reduction: Reduction = "mean"
) -> jax.Array:
    """`F.huber_loss`: `0.5 d²` where `|d| < delta`, else `delta (|d| - delta/2)`.

    `d = pred - target`. At `|d| = delta` the second branch and the gradient `delta sign(d)`
    apply, as in torch. `delta` must be positive (torch raises too).
    """
    if not delta > 0:
        raise ValueError(f"huber: delta must be positive, got {delta}")
    core.check_reduction(reduction, "huber")
    pred, target, _ = core.prepare("huber", pred, target)
    d = pred - target
    a = _abs(d)
    loss = jnp.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return core.reduce(loss, reduction, "huber")


def smooth_l1(
    pred: jax.Array, target: jax.Array, *, beta: float = 1.0, reduction: Reduction = "mean"
) -> jax.Array:
    """`F.smooth_l1_loss`: `0.5 d² / beta` where `|d| < beta`, else `|d| - beta/2`.

    `beta=0` is the L1 loss, as in torch. Equals `huber(delta=beta) / beta` for beta > 0.
    """
    if not beta >= 0:  # also catches NaN
        raise ValueError(f"smooth_l1: beta must be non-negative, got {beta}")
    core.check_reduction(reduction, "smooth_l1")
    pred, target, _ = core.prepare("smooth_l1", pred, target)
    a = _abs(pred - target)
    if beta == 0:
        loss = a
    else:
        loss = jnp.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta)
    return core.reduce(loss, reduction, "smooth_l1")


def _log1m(p: jax.Array) -> jax.Array:
    """`log(1 - p)` to about 2 ulp for every p in [0, 1], as torch's `std::log1p(-p)`.

    Not plain `jnp.log1p(-p)`: XLA's CPU float64 log1p is off by up to ~120 ulp for
    arguments in [-0.414, -0.364] (measured with jax 0.10.2), which showed as BCELoss values
    55 ulp away from torch. It is accurate on [-0.3, 0], so it is used there; for p >= 0.3,
    `1 - p` rounds by at most eps/4 (it is exact for p >= 0.5), which moves
    `log(1 - p)` (|log(1 - p)| >= 0.35) by under 0.75 ulp. (The textbook
    `log(u) * p / (1 - u)` trick does not survive jit: XLA simplifies `(1 - p) - 1` to -p.)
    """
    small = p < _LOG1M_SWITCH
    return jnp.where(small, jnp.log1p(-jnp.where(small, p, 0)), jnp.log(1 - p))


@jax.custom_jvp
def _bce_elementwise(prob: jax.Array, target: jax.Array) -> jax.Array:
    log_p = jnp.maximum(jnp.log(prob), _BCE_LOG_FLOOR)
    log_1mp = jnp.maximum(_log1m(prob), _BCE_LOG_FLOOR)
    return (target - 1) * log_1mp - target * log_p


@functools.partial(_bce_elementwise.defjvp, symbolic_zeros=True)
def _bce_elementwise_jvp(primals, tangents):
    # torch's hand-written backward (binary_cross_entropy_backward), not the derivative of
    # the clamped formula: (p - t) / max(p (1 - p), 1e-12). The target's derivative is
    # torch's unclamped -logit(p), +-inf at p = 0 or 1; symbolic zeros keep that inf from
    # meeting the zero tangent of a target that is not being differentiated (inf * 0 = NaN).
    prob, target = primals
    dprob, dtarget = tangents
    out = _bce_elementwise(prob, target)
    tangent_out = jnp.zeros_like(out)
    if not isinstance(dprob, SymbolicZero):
        tangent_out += (prob - target) / jnp.maximum(prob * (1 - prob), _BCE_GRAD_EPS) * dprob
    if not isinstance(dtarget, SymbolicZero):
        tangent_out += (_log1m(prob) - jnp.log(prob)) * dtarget
    return out, tangent_out


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
    torch's, `(p - t) / max(p (1 - p), 1e-12)`; the target's is torch's `-logit(p)` (inf at
    p = 0 or 1). torch raises for p or targets outside [0, 1]; so does this, called on
    concrete arrays. Inside a compiled program values cannot be checked and such p give
    NaN; `fit` then names the row whose prediction left [0, 1].

    Args:
      prob: probabilities, any shape, e.g. (n, 1) from `logistic.predict`.
      target: the same shape, values in [0, 1].
      weight: optional rescaling, broadcastable to prob's shape.
      reduction: "mean", "sum" or "none".
    """
    core.check_reduction(reduction, "bce")
    prob, target, weight = core.prepare("bce", prob, target, weight)
    _checks.check_range("prob", prob, 0.0, 1.0, fn="bce", torch_name="input")
    _checks.check_range("target", target, 0.0, 1.0, fn="bce", torch_name="target")
    loss = _bce_elementwise(prob, target)
    if weight is not None:
        loss = loss * weight
    return core.reduce(loss, reduction, "bce")


def _log_sigmoid(z: jax.Array) -> jax.Array:
    # ATen's log_sigmoid: min(z, 0) - log1p(exp(-|z|)); exact for large |z| of either sign.
    return jnp.minimum(z, 0) - jnp.log1p(jnp.exp(-jnp.abs(z)))


@jax.custom_jvp
def _bce_logits_elementwise(z, target):
    return (1 - target) * z - _log_sigmoid(z)


@_bce_logits_elementwise.defjvp
def _bce_logits_elementwise_jvp(primals, tangents):
    # torch's binary_cross_entropy_with_logits_backward without pos_weight: sigmoid(z) - t.
    z, target = primals
    dz, dtarget = tangents
    out = _bce_logits_elementwise(z, target)
    return out, (jax.nn.sigmoid(z) - target) * dz - z * dtarget


@jax.custom_jvp
def _bce_logits_pos_weight_elementwise(z, target, pos_weight):
    log_weight = (pos_weight - 1) * target + 1
    return (1 - target) * z - log_weight * _log_sigmoid(z)


@_bce_logits_pos_weight_elementwise.defjvp
def _bce_logits_pos_weight_elementwise_jvp(primals, tangents):
    # torch's backward with pos_weight, in its order of operations:
    # (pw t + 1 - t) sigmoid(z) - pw t.
    z, target, pos_weight = primals
    dz, dtarget, dpw = tangents
    out = _bce_logits_pos_weight_elementwise(z, target, pos_weight)
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
    fn = "bce_with_logits"
    core.check_reduction(reduction, fn)
    logits, target, weight = core.prepare(fn, logits, target, weight)
    if pos_weight is None:
        loss = _bce_logits_elementwise(logits, target)
    else:
        pw = _checks.as_data("pos_weight", pos_weight, jnp.result_type(logits))
        pw = core.broadcast_to_pred(fn, "pos_weight", pw, logits)
        loss = _bce_logits_pos_weight_elementwise(logits, target, pw)
    if weight is not None:
        loss = loss * weight
    return core.reduce(loss, reduction, "bce_with_logits")
