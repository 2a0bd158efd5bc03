"""What every loss shares: argument preparation, exact shape checks and torch's reductions."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxreg import _checks

Reduction = Literal["mean", "sum", "none"]


def prepare(fn: str, pred, target, weight=None):
    if not isinstance(pred, jax.Array):
        pred = _checks.as_array("pred", pred)
    dtype = jnp.result_type(pred)
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"{fn}: pred must be floating point, got {dtype}")
    _checks.warn_if_float64_truncated("pred", pred)
    target = _checks.as_data("target", target, dtype)
    _checks.check_same_shape(pred, target, fn=fn)
    if weight is not None:
        weight = broadcast_to_pred(fn, "weight", _checks.as_data("weight", weight, dtype), pred)
    return pred, target, weight


def broadcast_to_pred(fn: str, name: str, w: jax.Array, pred) -> jax.Array:
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


def mean(x: jax.Array) -> jax.Array:
    """`sum(x) / x.size` with a true division, as torch's `mean` computes it.

    `jnp.mean` divides by a constant, which XLA rewrites into a multiplication by the
    rounded reciprocal: `sum * (1/n)` is 1 ulp off `sum / n` for about a quarter of n
    (3/5 gives 0.6000000000000001). The optimization barrier hides n from that rewrite and
    is itself gone from the compiled program (it costs nothing).
    """
    return divide(jnp.sum(x), x.size)


def divide(total: jax.Array, n: int) -> jax.Array:
    """`total / n` with a true division (torch's `tensor / int`), not XLA's `total * (1/n)`."""
    return total / jax.lax.optimization_barrier(jnp.asarray(n, total.dtype))


def check_reduction(reduction: str, fn: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def reduce(loss: jax.Array, reduction: str, fn: str) -> jax.Array:
    check_reduction(reduction, fn)
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss
