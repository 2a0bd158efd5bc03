"""What every jaxreg optimizer shares: hyperparameters in the state, torch's scalar arithmetic.

Design (the contract `jaxreg.fit` relies on):

- Numeric hyperparameters (lr, momentum, betas, ...) live in the optimizer state as 0-d
  arrays of the parameters' float dtype, in a `hyperparams` dict. `update` reads them
  from there, so one compiled program serves every learning rate, and a schedule can
  change `lr` inside a compiled loop (`set_lr`).
- `init` and `update` are frozen dataclasses. Their identity (`==`, `hash`) is the
  *structure* only (maximize, nesterov, amsgrad, centered, whether a momentum or
  weight-decay branch exists); the numbers `init` writes into the state are carried in a
  field that takes no part in `==`/`hash`. So `sgd(lr=0.1) == sgd(lr=0.01)` and a
  `jax.jit` keyed on the transformation (static argument) does not retrace.

  Consequence: call `tx.init(params)` *outside* any function jitted with `tx` static;
  inside it, a cached trace would replay the numbers of the first, equal-comparing `tx`.

torch computes its per-step scalars (bias corrections, `1 - beta`, `lr / bias_correction`)
in Python float64 and casts the result to the tensor's dtype when the kernel runs. We do the
same arithmetic in `scalar_dtype()` (float64 when x64 is on, else float32) and cast at the
same point. The element-wise expressions are written in torch's operation order, with
each `a * b + c` where torch fuses it (its CPU kernels use FMA for `add(alpha=)`, `lerp`
and `addcmul`; XLA contracts the same expression into an FMA when it compiles the step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import _checks

# The NamedTuple classes of jaxreg optimizer states (filled by `register_state`).
_STATE_TYPES: list[type] = []


def register_state(cls: type) -> type:
    """Class decorator: mark a NamedTuple (with a `hyperparams` field) as a jaxreg state."""
    if "hyperparams" not in getattr(cls, "_fields", ()):
        raise TypeError(f"{cls.__name__} must be a NamedTuple with a 'hyperparams' field")
    _STATE_TYPES.append(cls)
    return cls


def is_optimizer_state(x: Any) -> bool:
    """True for the state of a jaxreg optimizer (not for optax's or a chain's tuple)."""
    return isinstance(x, tuple(_STATE_TYPES))


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
    if not float(lr) >= 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")


def hyper_arrays(values: Mapping[str, Any], dtype: Any) -> dict[str, np.ndarray]:
    """The state's `hyperparams`: each value as a 0-d array of `dtype`.

    Host (NumPy) arrays: `init` then costs no device dispatch (a few per call add up to
    more than a whole small `fit`); the first jitted step moves them to the device.
    """
    return {name: np.asarray(v, dtype) for name, v in values.items()}


def zeros_like(tree: Any) -> Any:
    """Host zeros shaped like each leaf of `tree` (optimizer buffers; see `hyper_arrays`)."""
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
    `grad = grad.add(param, alpha=weight_decay)` when `l2`.
    """
    g = grads
    if maximize:
        g = jax.tree.map(jnp.negative, g)
    if l2:
        require_params(params, optimizer, "weight_decay != 0 adds it times param")
        g = jax.tree.map(lambda g, p: g + like(hp["weight_decay"], p) * p, g, params)
    return g


def require_params(params: Any, optimizer: str, why: str) -> None:
    if params is None:
        raise ValueError(
            f"{optimizer}: update(updates, state, params) needs params because {why}; "
            "call it as tx.update(grads, state, params)."
        )


def check_state(state: Any, cls: type, optimizer: str) -> None:
    if not isinstance(state, cls):
        raise TypeError(
            f"{optimizer}.update expects a {cls.__name__} (from {optimizer}(...).init(params)), "
            f"got {type(state).__name__}"
        )


# ----------------------------------------------------------------------------------------
# Public helpers: read and change the hyperparameters of a state, also inside a chain.


def _find_states(state: Any) -> list[Any]:
    leaves = jax.tree_util.tree_leaves(state, is_leaf=is_optimizer_state)
    return [leaf for leaf in leaves if is_optimizer_state(leaf)]


def _the_state(state: Any, fn: str) -> Any:
    found = _find_states(state)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(
            f"{fn}: no jaxreg optimizer state found in a {type(state).__name__}; pass the "
            "state returned by tx.init(params) for a jaxreg.optim optimizer (it may be "
            "nested inside an optax.chain state)."
        )
    raise ValueError(
        f"{fn}: found {len(found)} jaxreg optimizer states "
        f"({', '.join(type(s).__name__ for s in found)}); which one to use is ambiguous. "
        "Apply it to the part of the state you mean, e.g. state[i] of a chain."
    )


def get_hyperparams(state: Any) -> dict[str, jax.Array]:
    """The hyperparameters of a jaxreg optimizer state, as a new dict of 0-d arrays.

    Args:
      state: the state of a `jaxreg.optim` optimizer, or any pytree (an `optax.chain`
        state) holding exactly one.

    Returns:
      e.g. `{"lr": Array(0.01), "momentum": Array(0.9), ...}` in the parameters' dtype.

    Raises:
      ValueError: no jaxreg optimizer state in `state`, or more than one.
    """
    return dict(_the_state(state, "get_hyperparams").hyperparams)


def set_lr(state: Any, lr: Any) -> Any:
    """A copy of `state` whose optimizer uses learning rate `lr` from the next update on.

    The torch equivalent is `for g in opt.param_groups: g["lr"] = lr`. Works inside `jit`
    with a traced `lr` (this is how `fit` applies a schedule without recompiling).

    Args:
      state: a jaxreg optimizer state, or a pytree (an `optax.chain` state) holding exactly
        one.
      lr: a scalar; stored in the dtype of the state's current `lr`.

    Returns:
      The same pytree with that one state's `hyperparams["lr"]` replaced.

    Raises:
      ValueError: no (or more than one) jaxreg optimizer state; `lr` not a scalar; a
        concrete `lr` that is negative or NaN (`"Invalid learning rate: -1"`, as torch).
    """
    old = _the_state(state, "set_lr")
    if jnp.ndim(lr) != 0:
        raise ValueError(f"set_lr: lr must be a scalar, got shape {jnp.shape(lr)}")
    if not isinstance(lr, jax.Array) or _checks.is_concrete(lr):
        check_lr(lr if not isinstance(lr, jax.Array) else float(lr))
    value = jnp.asarray(lr).astype(old.hyperparams["lr"].dtype)

    def replace(x: Any) -> Any:
        if is_optimizer_state(x):  # the only one, `old`
            return x._replace(hyperparams={**x.hyperparams, "lr": value})
        return x

    return jax.tree_util.tree_map(replace, state, is_leaf=is_optimizer_state)
