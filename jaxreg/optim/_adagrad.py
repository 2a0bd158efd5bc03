"""Adagrad with torch.optim.Adagrad's arguments, defaults, checks and update rule."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _checks
from jaxreg.optim import _base
from jaxreg.optim._base import host, like, store, up, write
from jaxreg.optim._state import HyperparamsInit, OptState, check_buffers, unwrap


class AdagradState(NamedTuple):
    """`adagrad`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      sum: running sum of `g * g`, a pytree like params (torch's `state["sum"]`), started
        at `initial_accumulator_value`.
    """

    step: jax.Array
    sum: Any


@dataclasses.dataclass(frozen=True)
class AdagradInit(HyperparamsInit):
    """`adagrad(...).init`. Compares equal for any numbers (nothing in it is structural).

    Returns `OptState(hyperparams={"eps", "lr", "lr_decay", "weight_decay"}, inner=
    AdagradState, origin)`, the numbers as 0-d arrays of the parameters' dtype (float32
    for bfloat16/float16 parameters); `initial_accumulator_value` is used here only.
    """

    initial_accumulator_value: float = dataclasses.field(compare=False, hash=False)

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        start = self.initial_accumulator_value
        total = jax.tree.map(lambda p: np.full(np.shape(p), start, p.dtype), params)
        return self.new_state(AdagradState(_base.zero_step(), total), _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class AdagradUpdate:
    """`adagrad(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, AdagradState, "adagrad")
        check_buffers("adagrad", "sum", inner.sum, params, updates)
        step = optax.safe_int32_increment(inner.step)
        g = _base.torch_grads(
            updates, params, hp, "adagrad", maximize=self.maximize, l2=self.weight_decay
        )
        # torch, in Python floats: clr = lr / (1 + (step - 1) * lr_decay)
        clr = host(hp["lr"]) / (1 + (host(step) - 1) * host(hp["lr_decay"]))
        # state_sum.addcmul_(grad, grad, value=1); std = state_sum.sqrt().add_(eps)
        total = jax.tree.map(lambda s, g: write(g * g + up(s), s), inner.sum, g)

        def direction(g, s):  # param.addcdiv_(grad, std, value=-clr)
            s32 = up(s)
            std = store(store(jnp.sqrt(s32), s.dtype) + like(hp["eps"], s32), s.dtype)
            return -like(clr, g) * g / std

        out = jax.tree.map(direction, g, total)
        return out, OptState(hp, AdagradState(step, total), state.origin)


def adagrad(
    lr: float = 1e-2,
    lr_decay: float = 0,
    weight_decay: float = 0,
    initial_accumulator_value: float = 0,
    eps: float = 1e-10,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""Adagrad exactly as `torch.optim.Adagrad` computes it (single-tensor path).

    For each parameter `p` and gradient `g`, step `t = 1, 2, ...`
    (`s` starts at `initial_accumulator_value`):

        g <- -g                                   if maximize
        g <- g + weight_decay * p                 if weight_decay != 0
        clr = lr / (1 + (t - 1) * lr_decay)
        s <- s + g * g
        p <- p - clr * g / (sqrt(s) + eps)

    Where optax differs: `optax.adagrad` adds `eps` *inside* the square root
    (`g / sqrt(s + eps)`), defaults to `initial_accumulator_value=0.1`, `eps=1e-7`, and
    has no `lr_decay`, weight decay or maximize.

    Parameters of any float dtype. bfloat16 and float16 are computed as torch's CPU kernels
    compute them (float32 arithmetic, rounded where torch writes a tensor, `add`'s alpha
    cast to the parameters' dtype): torch's bits, step after step. Their updates come out
    in float32, so `optax.apply_updates` rounds the new parameters once, as torch does.

    Args:
      lr: learning rate, >= 0 (or a 1-element array, as torch's Tensor lr).
      lr_decay: learning-rate decay per step, >= 0.
      weight_decay: L2 penalty, >= 0 (`params` must be passed to `update`).
      initial_accumulator_value: the start of `s`, >= 0.
      eps: added to the denominator outside the square root, >= 0.
      maximize: ascend the objective. (torch's positional `foreach` is left out, so
        `maximize` is keyword-only here as there.)

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, AdagradState,
      origin)`; two `adagrad(...)` that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid lr_decay value:
        -1`, `Invalid weight_decay value: -1`, `Invalid initial_accumulator_value value:
        -1`, `Invalid epsilon value: -1`).
    """
    values = {
        name: _base.as_number(name, v)
        for name, v in (
            ("lr", _base.as_lr(lr)),
            ("lr_decay", lr_decay),
            ("weight_decay", weight_decay),
            ("eps", eps),
        )
    }
    start = _base.as_number("initial_accumulator_value", initial_accumulator_value)
    _base.check_lr(lr)
    _checks.check_hyper("lr_decay", lr_decay, what="lr_decay")
    _checks.check_hyper("weight_decay", weight_decay, what="weight_decay")
    _checks.check_hyper(
        "initial_accumulator_value", initial_accumulator_value, what="initial_accumulator_value"
    )
    _checks.check_hyper("eps", eps, what="epsilon")
    return optax.GradientTransformation(
        AdagradInit(initial_accumulator_value=start, hyperparams=values),
        AdagradUpdate(
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            maximize=bool(maximize),
        ),
    )
