"""Adamax with torch.optim.Adamax's arguments, defaults, checks and update rule."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg import _checks
from jaxreg.optim import _base
from jaxreg.optim._base import host, like, store, up, write
from jaxreg.optim._nadam import beta_values
from jaxreg.optim._state import HyperparamsInit, OptState, check_buffers, unwrap


class AdamaxState(NamedTuple):
    """`adamax`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      exp_avg: first moment, a pytree like params.
      exp_inf: exponentially weighted infinity norm, a pytree like params.
    """

    step: jax.Array
    exp_avg: Any
    exp_inf: Any


@dataclasses.dataclass(frozen=True)
class AdamaxInit(HyperparamsInit):
    """`adamax(...).init`. Compares equal for any numbers (nothing in it is structural).

    Returns `OptState(hyperparams={"beta1", "beta2", "eps", "lr", "weight_decay"},
    inner=AdamaxState, origin)`.
    """

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        zeros = _base.zeros_like(params), _base.zeros_like(params)
        return self.new_state(AdamaxState(_base.zero_step(), *zeros), _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class AdamaxUpdate:
    """`adamax(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, AdamaxState, "adamax")
        check_buffers("adamax", "exp_avg", inner.exp_avg, params, updates)
        step = optax.safe_int32_increment(inner.step)
        g = _base.torch_grads(
            updates, params, hp, "adamax", maximize=self.maximize, l2=self.weight_decay
        )
        w1 = host(1) - host(hp["beta1"])

        def first_moment(m, g):  # exp_avg.lerp_(grad, 1 - beta1)
            return write(_base.lerp(up(m), g, like(w1, g)), m)

        def infinity_norm(u, g):  # torch.maximum(exp_inf.mul_(beta2), grad.abs().add_(eps))
            u32 = up(u)
            decayed = store(u32 * like(hp["beta2"], u32), u.dtype)
            return write(jnp.maximum(decayed, store(jnp.abs(g) + like(hp["eps"], g), u.dtype)), u)

        exp_avg = jax.tree.map(first_moment, inner.exp_avg, g)
        exp_inf = jax.tree.map(infinity_norm, inner.exp_inf, g)
        # Python floats in torch: clr = lr / (1 - beta1 ** step)
        clr = host(hp["lr"]) / (host(1) - host(hp["beta1"]) ** host(step))
        # param.addcdiv_(exp_avg, exp_inf, value=-clr)
        out = jax.tree.map(lambda m, u: -like(clr, up(m)) * up(m) / up(u), exp_avg, exp_inf)
        return out, OptState(hp, AdamaxState(step, exp_avg, exp_inf), state.origin)


def adamax(
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""Adamax exactly as `torch.optim.Adamax` computes it (single-tensor path).

    For each parameter `p` and gradient `g`, step `t = 1, 2, ...` (`m`, `u` start at 0):

        g <- -g                                   if maximize
        g <- g + weight_decay * p                 if weight_decay != 0
        m <- lerp(m, g, 1 - beta1)
        u <- max(beta2 * u, |g| + eps)
        p <- p - lr / (1 - beta1**t) * m / u

    Where optax differs: `optax.adamax` takes `max(beta2 * u, |g|)` and adds `eps` to
    the denominator afterwards; it has no weight decay or maximize.

    Args:
      lr: learning rate, >= 0 (or a 1-element array, as torch's Tensor lr).
      betas: `(beta1, beta2)`, each in [0, 1).
      eps: added to `|g|` inside the maximum, >= 0.
      weight_decay: L2 penalty, >= 0 (`params` must be passed to `update`).
      maximize: ascend the objective. (torch's positional `foreach` is left out, so
        `maximize` is keyword-only here as there.)

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, AdamaxState,
      origin)`; two `adamax(...)` that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid epsilon value:
        -1`, `Invalid beta parameter at index 0: 1.0`, `Invalid weight_decay value: -1`).
    """
    values = beta_values(lr, betas, eps, weight_decay)
    return optax.GradientTransformation(
        AdamaxInit(hyperparams=values),
        AdamaxUpdate(
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            maximize=bool(maximize),
        ),
    )
