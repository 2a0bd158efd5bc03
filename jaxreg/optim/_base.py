"""What every jaxreg optimizer shares: torch's scalar arithmetic and its checks.

The state wrapper (hyperparameters as arrays, `set_lr`, `adopt`) is in `_state.py`; this
module is the arithmetic.

torch computes its per-step scalars (bias corrections, `1 - beta`, `lr / bias_correction`)
in Python float64 and casts the result to the tensor's dtype when the kernel runs. We do the
same arithmetic in `scalar_dtype()` (float64 when x64 is on, else float32) and cast at the
same point. The element-wise expressions are written in torch's operation order, with
each `a * b + c` where torch fuses it (its CPU kernels use FMA for `add(alpha=)`, `lerp`
and `addcmul`; XLA contracts the same expression into an FMA when it compiles the step).

Half precision (bfloat16, float16 parameters): torch's CPU kernels compute in float32 (their
"opmath" type, scalars included) and round once, when they write a tensor. Here `up` reads
a stored value into float32, the math runs in float32 with float32 hyperparameters, `store`
rounds where torch writes an intermediate tensor and `write` where it writes a buffer of
the state. For float32 and float64 all three are the identity (no operation is added).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import _checks

# ----------------------------------------------------------------------------------------
# Hyperparameters: validation at construction, arrays in the state.


def as_number(name: str, value: Any) -> Any:
    """`value` as a Python float (tracers pass through); `TypeError` for non-numbers."""
    if isinstance(value, jax.Array) and not _checks.is_concrete(value):
        return value
    if isinstance(value, (str, bytes)) or np.ndim(value) != 0:
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None


def as_lr(value: Any) -> Any:
    """The learning rate as `as_number`, also from a 1-element array (torch: a Tensor lr).

    torch accepts a tensor `lr` of one element (any shape) and refuses others with
    `ValueError("Tensor lr must be 1-element")`; NumPy and jax arrays are treated alike.
    """
    if hasattr(value, "shape") and hasattr(value, "dtype") and np.ndim(value) != 0:
        if int(np.prod(np.shape(value))) != 1:
            raise ValueError("Tensor lr must be 1-element")
        value = value.reshape(())
    return as_number("lr", value)


def nonzero(name: str, value: Any) -> bool:
    """Whether a hyperparameter switches its branch on (torch's `if weight_decay != 0:`).

    The answer is part of the optimizer's structure, so `value` must be concrete.
    """
    if isinstance(value, jax.Array) and not _checks.is_concrete(value):
        raise TypeError(
            f"{name} decides whether the optimizer has that branch at all, so it must be a "
            "concrete number, not a traced value. Build the optimizer outside jit; change "
            "the value later in the state's hyperparams."
        )
    return bool(value != 0)


def check_lr(lr: Any) -> None:
    """torch's check and message: `ValueError("Invalid learning rate: -1")`.

    Unlike torch's SGD (`if lr < 0.0`), NaN is refused too.
    """
    if isinstance(lr, jax.Array) and not _checks.is_concrete(lr):
        return
    if not float(lr.reshape(()) if np.ndim(lr) else lr) >= 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")


def zeros_like(tree: Any) -> Any:
    """Host zeros shaped like each leaf of `tree` (optimizer buffers).

    Host (NumPy) arrays: `init` then costs no device dispatch (a few per call add up to
    more than a whole small `fit`); the first jitted step moves them to the device.
    """
    return jax.tree.map(lambda p: np.zeros(np.shape(p), p.dtype), tree)


def zero_step() -> np.ndarray:
    """The step counter of a fresh state: a host int32 scalar."""
    return np.zeros((), np.int32)


def scalar_dtype() -> jnp.dtype:
    """The dtype of torch's host scalars: Python floats are float64 (float32 if x64 is off)."""
    return jnp.dtype(jnp.float64 if _checks.x64_enabled() else jnp.float32)


def host(x: jax.Array) -> jax.Array:
    """A hyperparameter (or step count) in `scalar_dtype()`, as torch's Python float."""
    return jnp.asarray(x).astype(scalar_dtype())


def python_sqrt(x: jax.Array) -> jax.Array:
    """`x ** 0.5` rounded as Python's float `**` (C `pow`) rounds it, for a float64 `x`.

    torch takes `bias_correction2 ** 0.5` in Python. C `pow` is not correctly rounded
    (about 1 argument in 1000 differs from `sqrt` in the last bit), and XLA rewrites
    `pow(x, 0.5)` into `sqrt`; an exponent it cannot fold (`0.5 + 0 * x`, which is 0.5
    for the finite `x` used here) keeps the `pow` call. In float32 (x64 off) `sqrt` is
    the closest float32 to torch's float64 value.
    """
    if x.dtype == jnp.float64:
        return x ** (0.5 + 0 * x)
    return jnp.sqrt(x)


def divide_by_scalar(x: jax.Array, scalar: jax.Array) -> jax.Array:
    """`x / scalar` as one correctly rounded division per element, as torch's kernel does.

    XLA rewrites a division by a broadcast scalar into a multiplication by its reciprocal
    (two roundings), and `a / pow(b, c)` into `a * pow(b, -c)`. Dividing by a broadcast
    hidden behind an optimization barrier keeps the division (it still fuses).
    """
    divisor = jnp.broadcast_to(scalar.astype(x.dtype), x.shape)
    return x / jax.lax.optimization_barrier(divisor)


def like(scalar: jax.Array, leaf: jax.Array) -> jax.Array:
    """A host scalar cast to a tensor's dtype, as torch casts a Python scalar in a kernel.

    The barrier makes it a plain number for the element-wise math that follows, as it is
    for torch's kernel: without it XLA folds scalar and tensor arithmetic together, e.g.
    `((1 - beta1) - 1) * x` into `-beta1 * x`, which rounds differently.
    """
    return jax.lax.optimization_barrier(scalar.astype(leaf.dtype))


def like_alpha(scalar: jax.Array, leaf: jax.Array, dtype: Any) -> jax.Array:
    """The `alpha` of torch's `add(other, alpha=scalar)` on a tensor of `dtype`, as `like`.

    torch's CPU `add` casts `alpha` to the tensor's dtype before its (float32) arithmetic
    for bfloat16 and float16 (`mul`, `lerp`, `addcmul`, `addcdiv` keep a float32 scalar);
    for float32 and float64 this is `like`.
    """
    if is_half(dtype):
        return jax.lax.optimization_barrier(scalar.astype(dtype).astype(leaf.dtype))
    return like(scalar, leaf)


def lerp(start: jax.Array, end: jax.Array, weight: jax.Array) -> jax.Array:
    """torch's `start.lerp_(end, weight)` for a scalar weight, in torch's CPU arithmetic.

    `start + weight * (end - start)` when `|weight| < 0.5`, else
    `end + (weight - 1) * (end - start)` (both one FMA in torch's kernel).
    """
    diff = end - start
    return jnp.where(jnp.abs(weight) < 0.5, start + weight * diff, end + (weight - 1) * diff)


def torch_grads(grads: Any, params: Any, hp: dict, optimizer: str, *, maximize: bool, l2: bool):
    """The first lines of every torch optimizer's update, in torch's order.

    `grad = -grad` when maximizing, then the coupled (L2) weight decay
    `grad = grad.add(param, alpha=weight_decay)` when `l2`. Returns the gradients read
    into the compute dtype (`up`).
    """
    g = jax.tree.map(jnp.negative, grads) if maximize else grads
    if not l2:
        return jax.tree.map(up, g)
    require_params(params, optimizer, "weight_decay != 0 adds it times param")

    def decay(g: jax.Array, p: jax.Array) -> jax.Array:
        p32 = up(p)
        return store(up(g) + like_alpha(hp["weight_decay"], p32, g.dtype) * p32, g.dtype)

    return jax.tree.map(decay, g, params)


def require_params(params: Any, optimizer: str, why: str) -> None:
    if params is None:
        raise ValueError(
            f"{optimizer}: update(updates, state, params) needs params because {why}; "
            "call it as tx.update(grads, state, params)."
        )


# ----------------------------------------------------------------------------------------
# Half precision: compute in float32, round where torch writes a tensor.

HALF_DTYPES = (np.dtype(jnp.bfloat16), np.dtype(jnp.float16))


def is_half(dtype: Any) -> bool:
    return np.dtype(dtype) in HALF_DTYPES


def hyper_dtype(dtype: Any) -> np.dtype:
    """The dtype of the hyperparameters in the state of an optimizer of `dtype` parameters.

    The parameters' own dtype, except for bfloat16/float16: `scalar_dtype()` (float64 with
    x64 on), torch's Python floats, which its kernels cast to float32 (or, for `add`'s
    alpha, to the tensor's dtype) themselves.
    """
    return np.dtype(scalar_dtype()) if is_half(dtype) else np.dtype(dtype)


def up(x: jax.Array) -> jax.Array:
    """A stored value in its compute dtype (float32 for half precision, else unchanged)."""
    return x.astype(jnp.float32) if is_half(x.dtype) else x


def store(x: jax.Array, dtype: Any) -> jax.Array:
    """`x` rounded as torch rounds when it writes it into a `dtype` tensor; still float32.

    bfloat16: `reduce_precision` (XLA keeps it, where it may drop a pair of converts;
    bfloat16 has float32's exponent range, so subnormals round as a cast does). float16:
    a cast behind an optimization barrier (`reduce_precision` would flush its subnormals).
    """
    dtype = np.dtype(dtype)
    if dtype == HALF_DTYPES[0]:
        return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=7)
    if dtype == HALF_DTYPES[1]:
        return jax.lax.optimization_barrier(x.astype(dtype)).astype(x.dtype)
    return x


def write(x: jax.Array, buffer: jax.Array) -> jax.Array:
    """`x` written into a state buffer like `buffer`: rounded and stored in its dtype."""
    return store(x, buffer.dtype).astype(buffer.dtype) if is_half(buffer.dtype) else x
