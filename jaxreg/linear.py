"""Linear model in torch's `nn.Linear` layout: `y = x @ weight.T + bias`."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxreg import _checks


class Params(NamedTuple):
    """Parameters of a linear layer, laid out as `torch.nn.Linear` stores them.

    Attributes:
      weight: (out_features, in_features).
      bias: (out_features,), or None for `bias=False`.
    """

    weight: jax.Array
    bias: jax.Array | None = None

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]


def init(
    key: jax.Array,
    in_features: int,
    out_features: int = 1,
    *,
    bias: bool = True,
    dtype=jnp.float32,
) -> Params:
    """Random parameters from torch's default `nn.Linear` distribution.

    torch's `reset_parameters` draws the weight with `kaiming_uniform_(a=sqrt(5))` and the
    bias from `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`; both reduce to
    `U(-1/sqrt(in_features), 1/sqrt(in_features))`. The distribution matches torch; the
    numbers do not (different generators): copy torch's tensors with
    `parity.interop.params_from_torch` when you need the same start.

    Args:
      key: a `jax.random` key, or an int seed (`jax.random.key(seed)`).
      in_features, out_features: the layer's sizes (positive).
      bias: whether to create a bias.
      dtype: a float dtype.

    Returns:
      `Params` with weight (out_features, in_features) and bias (out_features,) or None.
    """
    key = _checks.as_key("key", key)
    _check_sizes(in_features, out_features)
    _check_dtype(dtype, "init")
    bound = 1.0 / math.sqrt(in_features)
    kw, kb = jax.random.split(key)
    weight = jax.random.uniform(kw, (out_features, in_features), dtype, -bound, bound)
    b = jax.random.uniform(kb, (out_features,), dtype, -bound, bound) if bias else None
    return Params(weight, b)


def zeros(in_features: int, out_features: int = 1, *, bias: bool = True, dtype=jnp.float32):
    """All-zero parameters (the tutorials' `W = torch.zeros(1, requires_grad=True)` start).

    Returns:
      `Params` with weight (out_features, in_features) and bias (out_features,) or None.
    """
    _check_sizes(in_features, out_features)
    _check_dtype(dtype, "zeros")
    weight = jnp.zeros((out_features, in_features), dtype)
    return Params(weight, jnp.zeros((out_features,), dtype) if bias else None)


def predict(params: Params, x: jax.Array) -> jax.Array:
    """`x @ weight.T + bias`, exactly `torch.nn.functional.linear(x, weight, bias)`.

    Args:
      params: `Params` with weight (out, in) and bias (out,) or None.
      x: (n, in), or (*, in) as torch allows. Integer data is promoted to the weight's dtype.

    Returns:
      (n, out) (or (*, out)).

    Raises:
      ValueError: x's last dimension is not `in_features`.
      TypeError: integer parameters.
    """
    if not isinstance(params, Params):
        raise TypeError(
            f"linear.predict: params must be jr.linear.Params(weight, bias), got "
            f"{type(params).__name__}; build it with jr.linear.zeros(in_features) or "
            "jr.linear.Params(weight=(out, in) array, bias=(out,) array)"
        )
    weight, bias = params.weight, params.bias
    dtype = _checks.float_dtype_of(params)
    if jnp.ndim(weight) != 2:
        raise ValueError(
            f"linear.predict: weight must have shape (out_features, in_features), got "
            f"{jnp.shape(weight)}"
        )
    x = _checks.as_data("x", x, dtype)
    _checks.check_features(x.shape, weight.shape[1], fn="linear.predict")
    out = x @ weight.T
    if bias is not None:
        if jnp.shape(bias) != (weight.shape[0],):
            raise ValueError(
                f"linear.predict: bias must have shape ({weight.shape[0]},) to match weight "
                f"{jnp.shape(weight)}, got {jnp.shape(bias)}"
            )
        out = out + jnp.reshape(bias, (1,) * (out.ndim - 1) + (-1,))  # explicit rank
    return out


def _check_sizes(in_features: int, out_features: int) -> None:
    for name, v in (("in_features", in_features), ("out_features", out_features)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def _check_dtype(dtype, fn: str) -> None:
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"linear.{fn}: dtype must be a float dtype (jnp.float32, jnp.float64), got "
            f"{jnp.dtype(dtype)}; integer parameters cannot be trained."
        )
