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
from jaxreg.optim._base import host, like


@_base.register_state
class AdagradState(NamedTuple):
    """State of `adagrad`.

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      sum: running sum of `g * g`, a pytree like params (torch's `state["sum"]`), started
        at `initial_accumulator_value`.
      hyperparams: `{"lr", "lr_decay", "weight_decay", "eps"}`, 0-d arrays of the
        parameters' dtype (`initial_accumulator_value` is used by `init` only).
    """

    step: jax.Array
    sum: Any
    hyperparams: dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class AdagradInit:
    """`adagrad(...).init`. Compares equal for any numbers (nothing in it is structural)."""

    initial_accumulator_value: float = dataclasses.field(compare=False, hash=False)
    hyperparams: dict[str, Any] = dataclasses.field(compare=False, hash=False)

    def __call__(self, params: Any) -> AdagradState:
        dtype = _checks.float_dtype_of(params)
        start = self.initial_accumulator_value
        return AdagradState(
            step=_base.zero_step(),
            sum=jax.tree.map(lambda p: np.full(np.shape(p), start, p.dtype), params),
            hyperparams=_base.hyper_arrays(self.hyperparams, dtype),
        )


@dataclasses.dataclass(frozen=True)
class AdagradUpdate:
    """`adagrad(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    weight_decay: bool
    maximize: bool

    def __call__(
        self, updates: Any, state: AdagradState, params: Any = None
    ) -> tuple[Any, AdagradState]:
        _base.check_state(state, AdagradState, "adagrad")
        hp = state.hyperparams
        step = optax.safe_int32_increment(state.step)
        g = _base.torch_grads(
            updates, params, hp, "adagrad", maximize=self.maximize, l2=self.weight_decay
        )
        # torch, in Python floats: clr = lr / (1 + (step - 1) * lr_decay)
        clr = host(hp["lr"]) / (1 + (host(step) - 1) * host(hp["lr_decay"]))
        # state_sum.addcmul_(grad, grad, value=1); std = state_sum.sqrt().add_(eps)
        total = jax.tree.map(lambda s, g: g * g + s, state.sum, g)

        def direction(g, s):  # param.addcdiv_(grad, std, value=-clr)
            return -like(clr, g) * g / (jnp.sqrt(s) + like(hp["eps"], s))

        out = jax.tree.map(direction, g, total)
        return out, AdagradState(step, total, hp)


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

    Args:
      lr: learning rate, >= 0.
      lr_decay: learning-rate decay per step, >= 0.
      weight_decay: L2 penalty, >= 0 (`params` must be passed to `update`).
      initial_accumulator_value: the start of `s`, >= 0.
      eps: added to the denominator outside the square root, >= 0.
      maximize: ascend the objective. (torch's positional `foreach` is left out, so
        `maximize` is keyword-only here as there.)

    Returns:
      An `optax.GradientTransformation` with state `AdagradState`; two `adagrad(...)`
      that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid lr_decay value:
        -1`, `Invalid weight_decay value: -1`, `Invalid initial_accumulator_value value:
        -1`, `Invalid epsilon value: -1`).
    """
    values = {
        name: _base.as_number(name, v)
        for name, v in (
            ("lr", lr),
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
