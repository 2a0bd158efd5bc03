"""Softmax (multinomial logistic) regression: `nn.Linear(d, k)` logits and `nn.CrossEntropyLoss`.

The parameters are a `jaxreg.linear.Params` with weight (k, d) and bias (k,), torch's
`nn.Linear(d, k)` layout; the targets are class indices, an integer array (n,). Train with

    loss_fn = jr.objective(jr.softmax.logits, jr.losses.cross_entropy)
    result = jr.fit(loss_fn, jr.optim.sgd(lr=0.1), jr.softmax.zeros(d, k), x, y, steps=500)

which is torch's `F.cross_entropy(model(x), y)` with `y` an int64 tensor.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxreg import linear, losses
from jaxreg.linear import Params, init, zeros
from jaxreg.losses import classes

__all__ = [
    "Params",
    "accuracy",
    "init",
    "log_proba",
    "logits",
    "predict",
    "predict_proba",
    "zeros",
]


def logits(params: Params, x: jax.Array) -> jax.Array:
    """The class scores `x @ weight.T + bias`: (n, d) -> (n, k). Pair with `cross_entropy`."""
    return linear.predict(params, x)


def log_proba(params: Params, x: jax.Array) -> jax.Array:
    """Log-probabilities `log_softmax(logits)` (torch's kernel): (n, d) -> (n, k). Pair
    with `losses.nll` (torch's `nn.LogSoftmax` + `nn.NLLLoss`)."""
    return classes.log_softmax(logits(params, x))


def predict_proba(params: Params, x: jax.Array) -> jax.Array:
    """Class probabilities `softmax(logits)`, each row summing to 1: (n, d) -> (n, k).

    torch's `F.softmax(model(x), dim=1)`: `exp(z - max) / sum(exp(z - max))`.
    """
    z = logits(params, x)
    e = jnp.exp(z - jnp.max(z, axis=-1, keepdims=True))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def predict(params: Params, x: jax.Array) -> jax.Array:
    """The most probable class, `argmax(logits, axis=1)` (the first on ties, as torch):
    (n, d) -> (n,) int32."""
    return jnp.argmax(logits(params, x), axis=-1).astype(jnp.int32)


def accuracy(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Share of rows whose predicted class equals the class index y (n,)."""
    pred = predict(params, x)
    y = jnp.asarray(y)
    if jnp.shape(y) != jnp.shape(pred):
        raise ValueError(
            f"softmax.accuracy: y must hold one class index per row, shape {jnp.shape(pred)}, "
            f"got {jnp.shape(y)}"
        )
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(
            f"softmax.accuracy: y must be integer class indices, got {y.dtype}; use y.astype(int)"
        )
    dtype = linear.Params(*params).weight.dtype
    return losses.mean((pred == y).astype(dtype))
