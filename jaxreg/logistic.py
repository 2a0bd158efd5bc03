"""Logistic regression: a linear layer followed by a sigmoid, as `torch.sigmoid(l1(x))`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxreg import linear, losses
from jaxreg.linear import Params, init, zeros

__all__ = ["Params", "accuracy", "init", "logits", "predict", "zeros"]


def logits(params: Params, x: jax.Array) -> jax.Array:
    """The log-odds `x @ weight.T + bias`: (n, in) -> (n, out). Pair with `bce_with_logits`."""
    return linear.predict(params, x)


def predict(params: Params, x: jax.Array) -> jax.Array:
    """Probabilities `sigmoid(x @ weight.T + bias)`: (n, in) -> (n, out), as `torch.sigmoid`.

    Pair with `losses.bce` (torch's `nn.BCELoss`), or use `logits` + `bce_with_logits`,
    which is stable for large |logits|.
    """
    return jax.nn.sigmoid(logits(params, x))


def accuracy(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Share of rows where `predict >= 0.5` agrees with the 0/1 target y (same shape)."""
    p = logits(params, x)
    if jnp.shape(p) != jnp.shape(y):
        raise ValueError(f"accuracy: prediction shape {jnp.shape(p)} and y {jnp.shape(y)} differ")
    return losses.mean(((p >= 0) == (jnp.asarray(y) >= 0.5)).astype(p.dtype))
