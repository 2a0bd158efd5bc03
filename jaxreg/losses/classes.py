"""Losses over classes: `cross_entropy` (on logits) and `nll` (on log-probabilities).

Shapes, as torch takes them: the input is (n, C), or (C,) for one sample, or
(n, C, d1, ...) (the class axis second); the target is either class indices, an integer
array of the input's shape without its class axis ((n,), (), (n, d1, ...)), or, for
`cross_entropy` only, class probabilities of the input's own shape. As in torch, a target
of the input's shape means probabilities, any other shape class indices.

The formulas are ATen's (`cross_entropy_loss`, `nll_loss_nd`,
`cross_entropy_loss_label_smoothing`, `cross_entropy_loss_prob_target`), written with the
same operations, and `log_softmax`'s gradient is torch's `grad - exp(out) * sum(grad)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import _checks
from jaxreg.losses import core
from jaxreg.losses.core import Reduction


@jax.custom_jvp
def log_softmax(z: jax.Array) -> jax.Array:
    """`log_softmax` over the last axis, as ATen computes it: `(z - max) - log(sum(exp(z - max)))`.

    Its gradient is torch's `log_softmax_backward`, `grad - exp(out) * sum(grad)`.
    """
    shifted = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


@log_softmax.defjvp
def _log_softmax_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    out = log_softmax(z)
    # Linear in dz; its transpose (what jax.grad runs) is torch's g - exp(out) * sum(g).
    return out, dz - jnp.sum(jnp.exp(out) * dz, axis=-1, keepdims=True)


def _class_last(fn: str, name: str, x) -> tuple[jax.Array, bool]:
    """x (C,), (n, C) or (n, C, d1, ...) as (..., C) with the class axis last, and whether
    it was one sample (C,). Checks the float dtype."""
    if not isinstance(x, jax.Array):
        x = _checks.as_array(name, x)
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{fn}: {name} must be floating point, got {dtype}")
    _checks.warn_if_float64_truncated(name, x)
    ndim = jnp.ndim(x)
    if ndim == 0:
        raise ValueError(
            f"{fn}: {name} must have a class axis, (n, C) or (C,), got a 0-d array; for one "
            "binary output use bce_with_logits"
        )
    if ndim == 1:
        return x[None, :], True
    return (x if ndim == 2 else jnp.moveaxis(x, 1, -1)), False


def _index_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The class-index target shape for an input of `shape` (its class axis removed)."""
    return () if len(shape) == 1 else shape[:1] + shape[2:]


def _indices(fn: str, target, in_shape, n_classes: int, ignore_index: int) -> jax.Array:
    """Class-index targets, checked: integer dtype, the input's shape without the class
    axis, values in [0, C) or `ignore_index` (concrete targets only, as torch's kernel)."""
    if not isinstance(target, jax.Array):
        target = _checks.as_array("target", target)
    want = _index_shape(in_shape)
    dtype = jnp.result_type(target)
    if tuple(jnp.shape(target)) != want:
        raise ValueError(
            f"{fn}: input has shape {in_shape}, so target must be class indices of shape "
            f"{want} (or, for cross_entropy, class probabilities of shape {in_shape}); got "
            f"target of shape {tuple(jnp.shape(target))}."
        )
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"{fn}: class-index targets must be integers (torch: 'expected scalar type Long'), "
            f"got {dtype} of shape {tuple(jnp.shape(target))}; convert them with "
            "y.astype(int), or give class probabilities of the input's shape."
        )
    if _checks.is_concrete(target):
        t = np.asarray(target)
        bad = ((t < 0) | (t >= n_classes)) & (t != ignore_index)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{fn}: Target {t[first]} is out of bounds (torch's message): at index "
                f"{first}; class indices must be in [0, {n_classes}) or ignore_index "
                f"({ignore_index})."
            )
    return jnp.reshape(target, (-1,) if want == () else want)


def _weight(fn: str, weight, n_classes: int, dtype) -> jax.Array | None:
    if weight is None:
        return None
    w = _checks.as_data("weight", weight, dtype)
    if tuple(jnp.shape(w)) != (n_classes,):
        raise ValueError(
            f"{fn}: weight should be defined for all {n_classes} classes (torch's check), "
            f"shape ({n_classes},), got shape {tuple(jnp.shape(w))}"
        )
    return w


def _along_classes(w: jax.Array, x: jax.Array) -> jax.Array:
    """(C,) weights shaped to broadcast against x (..., C) (torch's `weight.view(...)`)."""
    return jnp.reshape(w, (1,) * (x.ndim - 1) + (-1,))


def _check_ignore_index(fn: str, ignore_index) -> None:
    if not isinstance(ignore_index, (int, np.integer)) or isinstance(ignore_index, bool):
        raise TypeError(f"{fn}: ignore_index must be an int, got {ignore_index!r}")


def _nll_terms(logp, t, w, ignore_index: int):
    """Per-sample `-w[t] logp[t]` (0 where ignored) and the weights w[t] (0 where ignored)."""
    valid = t != ignore_index
    safe = jnp.where(valid, t, 0)
    picked = jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    if w is None:
        wt = valid.astype(logp.dtype)
        loss = jnp.where(valid, -picked, 0)
    else:
        wt = jnp.where(valid, w[safe], 0)
        loss = jnp.where(valid, -picked * wt, 0)
    return loss, wt


def _reduce_nll(loss, wt, reduction: str, one: bool):
    if reduction == "none":
        return loss[0] if one else loss
    total = jnp.sum(loss)
    if reduction == "sum":
        return total
    return total / jnp.sum(wt)  # torch: the sum of the weights of non-ignored targets


def nll(
    log_prob: jax.Array,
    target: jax.Array,
    *,
    weight: jax.Array | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Negative log likelihood of class indices: `F.nll_loss` / `nn.NLLLoss`.

    `loss_i = -weight[t_i] log_prob[i, t_i]`, 0 where `t_i == ignore_index`; "mean" divides
    the sum by `sum_i weight[t_i]` over the non-ignored samples (torch's weighted mean; NaN
    when every sample is ignored, as in torch).

    Args:
      log_prob: (n, C) log-probabilities (or (C,), (n, C, d1, ...)), e.g.
        `jax.nn.log_softmax(softmax.logits(params, x))`.
      target: (n,) integer class indices in [0, C) (or `ignore_index`).
      weight: optional (C,) weight of each class.
      ignore_index: a target value that contributes nothing (torch's default -100).
      reduction: "mean", "sum" or "none" ((n,) per-sample losses).
    """
    fn = "nll"
    core.check_reduction(reduction, fn)
    _check_ignore_index(fn, ignore_index)
    in_shape = tuple(jnp.shape(log_prob))
    logp, one = _class_last(fn, "log_prob", log_prob)
    n_classes = logp.shape[-1]
    t = _indices(fn, target, in_shape, n_classes, ignore_index)
    w = _weight(fn, weight, n_classes, logp.dtype)
    loss, wt = _nll_terms(logp, t, w, ignore_index)
    return _reduce_nll(loss, wt, reduction, one)


def cross_entropy(
    logits: jax.Array,
    target: jax.Array,
    *,
    weight: jax.Array | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> jax.Array:
    """Cross-entropy of logits: `F.cross_entropy` / `nn.CrossEntropyLoss`.

    Class indices t (an integer array of the input's shape without the class axis):
    `nll(log_softmax(logits), t)` (see `nll` for `weight`, `ignore_index` and the weighted
    mean). With `label_smoothing` = s: `(1 - s) * that + s / C * smooth`, where smooth is
    `-sum_c weight[c] log_softmax[i, c]` per sample (0 for ignored samples), reduced like
    the nll term (its mean divides by the same sum of weights), as ATen does.

    Class probabilities p (a float array of the logits' shape): `-sum_c weight[c] p'[i, c]
    log_softmax[i, c]` with `p' = p (1 - s) + s / C`; "mean" divides by the number of
    samples (not by the weights). `ignore_index` must then stay negative (torch refuses it).

    Args:
      logits: (n, C) (or (C,), (n, C, d1, ...)), e.g. `softmax.logits(params, x)`.
      target: (n,) integer class indices, or (n, C) class probabilities.
      weight: optional (C,) weight of each class.
      ignore_index: a class-index target value that contributes nothing (default -100).
      reduction: "mean", "sum" or "none" (per-sample losses, (n,)).
      label_smoothing: s in [0, 1].

    Returns:
      A scalar, or (n,) for "none".
    """
    fn = "cross_entropy"
    core.check_reduction(reduction, fn)
    _check_ignore_index(fn, ignore_index)
    if not (isinstance(label_smoothing, (int, float)) and 0.0 <= label_smoothing <= 1.0):
        raise ValueError(
            f"{fn}: label_smoothing must be between 0.0 and 1.0 (torch's check), got "
            f"{label_smoothing!r}"
        )
    s = float(label_smoothing)
    in_shape = tuple(jnp.shape(logits))
    z, one = _class_last(fn, "logits", logits)
    n_classes = z.shape[-1]
    w = _weight(fn, weight, n_classes, z.dtype)
    logp = log_softmax(z)
    if tuple(jnp.shape(target)) == in_shape:
        return _probability_targets(fn, logp, target, w, ignore_index, s, reduction, one)
    t = _indices(fn, target, in_shape, n_classes, ignore_index)
    loss, wt = _nll_terms(logp, t, w, ignore_index)
    nll_value = _reduce_nll(loss, wt, reduction, one)
    if s == 0.0:
        return nll_value
    valid = t != ignore_index
    smooth = -jnp.sum(logp if w is None else logp * _along_classes(w, logp), axis=-1)
    smooth = jnp.where(valid, smooth, 0)
    if reduction == "none":
        smooth = smooth[0] if one else smooth
    elif reduction == "sum":
        smooth = jnp.sum(smooth)
    else:
        smooth = jnp.sum(smooth) / jnp.sum(wt)
    return (1 - s) * nll_value + smooth * (s / n_classes)


def _probability_targets(fn, logp, target, w, ignore_index, s, reduction, one):
    if ignore_index >= 0:
        raise ValueError(
            f"{fn}: ignore_index is not supported for floating point target (torch's "
            f"message): class probabilities were given with ignore_index={ignore_index}"
        )
    if not isinstance(target, jax.Array):
        target = _checks.as_array("target", target)
    if not jnp.issubdtype(jnp.result_type(target), jnp.floating):
        raise TypeError(
            f"{fn}: a target of the input's shape holds class probabilities and must be "
            f"floating point, got {jnp.result_type(target)}; give class indices of shape "
            f"{logp.shape[:-1] if not one else ()} for integer labels."
        )
    p = _checks.as_data("target", target, logp.dtype)
    p = p[None, :] if one else (p if p.ndim == 2 else jnp.moveaxis(p, 1, -1))
    n_classes = logp.shape[-1]
    if s > 0.0:
        p = p * (1 - s) + (s / n_classes)
    terms = logp * p if w is None else logp * p * _along_classes(w, logp)
    if reduction == "none":
        loss = -jnp.sum(terms, axis=-1)
        return loss[0] if one else loss
    total = -jnp.sum(terms)
    if reduction == "sum":
        return total
    return core.divide(total, terms.size // n_classes)
