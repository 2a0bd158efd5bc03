"""Rprop with torch.optim.Rprop's arguments, defaults, checks and update rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg import _checks
from jaxreg.optim import _base
from jaxreg.optim._base import like, up, write
from jaxreg.optim._state import HyperparamsInit, OptState, check_buffers, unwrap


class RpropState(NamedTuple):
    """`rprop`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      prev: the previous step's gradient (zeroed where its sign flipped), like params.
      step_size: the per-element step sizes, like params (set to `lr` by the first update,
        as torch's lazy state).
    """

    step: jax.Array
    prev: Any
    step_size: Any


@dataclasses.dataclass(frozen=True)
class RpropInit(HyperparamsInit):
    """`rprop(...).init`. Compares equal for any numbers (nothing in it is structural).

    Returns `OptState(hyperparams={"etaminus", "etaplus", "lr", "step_size_max",
    "step_size_min"}, inner=RpropState, origin)`.
    """

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        zeros = _base.zeros_like(params), _base.zeros_like(params)
        return self.new_state(RpropState(_base.zero_step(), *zeros), _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class RpropUpdate:
    """`rprop(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, RpropState, "rprop")
        check_buffers("rprop", "prev", inner.prev, params, updates)
        g = _base.torch_grads(updates, params, hp, "rprop", maximize=self.maximize, l2=False)
        first = inner.step == 0

        def rule(g, prev, size):
            prev32, size32 = up(prev), up(size)
            # state["step_size"] = full_like(grad, lr) at the first step (torch's lazy state)
            size32 = jnp.where(first, like(hp["lr"], size32), size32)
            sign = jnp.sign(g * prev32)  # grad.mul(prev).sign()
            factor = jnp.where(
                sign > 0,
                like(hp["etaplus"], g),
                jnp.where(sign < 0, like(hp["etaminus"], g), jnp.ones_like(g)),
            )
            # step_size.mul_(sign).clamp_(step_size_min, step_size_max)
            size32 = jnp.minimum(
                jnp.maximum(size32 * factor, like(hp["step_size_min"], g)),
                like(hp["step_size_max"], g),
            )
            g = jnp.where(sign < 0, jnp.zeros_like(g), g)  # grad[sign.eq(etaminus)] = 0
            new_size = write(size32, size)
            # param.addcmul_(grad.sign(), step_size, value=-1)
            return -jnp.sign(g) * up(new_size), write(g, prev), new_size

        triples = jax.tree.map(rule, g, inner.prev, inner.step_size)
        outer = jax.tree.structure(inner.prev)
        out, prev, step_size = jax.tree.transpose(outer, jax.tree.structure((0, 0, 0)), triples)
        step = optax.safe_int32_increment(inner.step)
        return out, OptState(hp, RpropState(step, prev, step_size), state.origin)


def rprop(
    lr: float = 1e-2,
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50),
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""Rprop exactly as `torch.optim.Rprop` computes it (single-tensor path).

    For each parameter `p` and gradient `g` (`g_prev` starts at 0, the step sizes `s` at
    `lr`):

        g <- -g                                   if maximize
        c = sign(g * g_prev)
        s <- clamp(s * (etaplus if c > 0, etaminus if c < 0, else 1), *step_sizes)
        g <- 0 where c < 0
        p <- p - sign(g) * s;  g_prev <- g

    `lr` is read once, by the first update (as torch reads it when it creates its state):
    `set_lr` after that changes nothing, as changing `param_groups[0]["lr"]` does not.

    Where optax differs: optax has no Rprop.

    Args:
      lr: the initial step size, >= 0 (or a 1-element array, as torch's Tensor lr).
      etas: `(etaminus, etaplus)`, with `0 < etaminus < 1 < etaplus`.
      step_sizes: `(step_size_min, step_size_max)`, the bounds of the step sizes.
      maximize: ascend the objective.

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, RpropState,
      origin)`; two `rprop(...)` that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid eta values:
        1.5, 1.2`).
    """
    etaminus, etaplus = _pair("etas", etas)
    step_size_min, step_size_max = _pair("step_sizes", step_sizes)
    values = {
        "lr": _base.as_lr(lr),
        "etaminus": _base.as_number("etas[0]", etaminus),
        "etaplus": _base.as_number("etas[1]", etaplus),
        "step_size_min": _base.as_number("step_sizes[0]", step_size_min),
        "step_size_max": _base.as_number("step_sizes[1]", step_size_max),
    }
    _base.check_lr(lr)
    concrete = _checks.is_concrete(values["etaminus"]) and _checks.is_concrete(values["etaplus"])
    if concrete and not 0.0 < values["etaminus"] < 1.0 < values["etaplus"]:
        raise ValueError(f"Invalid eta values: {etaminus}, {etaplus}")
    return optax.GradientTransformation(
        RpropInit(hyperparams=values), RpropUpdate(maximize=bool(maximize))
    )


def _pair(name: str, pair: Sequence[float]) -> tuple[Any, Any]:
    try:
        a, b = pair
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair, got {pair!r}") from None
    return a, b
