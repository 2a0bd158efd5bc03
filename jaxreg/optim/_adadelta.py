"""Adadelta with torch.optim.Adadelta's arguments, defaults, checks and update rule."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg import _checks
from jaxreg.optim import _base
from jaxreg.optim._base import host, like, like_alpha, store, up, write
from jaxreg.optim._state import HyperparamsInit, OptState, check_buffers, unwrap


class AdadeltaState(NamedTuple):
    """`adadelta`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch keeps it too; the rule does not use it).
      square_avg: running average of `g * g`, a pytree like params.
      acc_delta: running average of the squared steps, a pytree like params.
    """

    step: jax.Array
    square_avg: Any
    acc_delta: Any


@dataclasses.dataclass(frozen=True)
class AdadeltaInit(HyperparamsInit):
    """`adadelta(...).init`. Compares equal for any numbers (nothing in it is structural).

    Returns `OptState(hyperparams={"eps", "lr", "rho", "weight_decay"}, inner=
    AdadeltaState, origin)`.
    """

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        zeros = _base.zeros_like(params), _base.zeros_like(params)
        return self.new_state(AdadeltaState(_base.zero_step(), *zeros), _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class AdadeltaUpdate:
    """`adadelta(...).update(grads, state, params=None)`; hyperparameters from `state`."""

    weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, AdadeltaState, "adadelta")
        check_buffers("adadelta", "square_avg", inner.square_avg, params, updates)
        step = optax.safe_int32_increment(inner.step)
        g = _base.torch_grads(
            updates, params, hp, "adadelta", maximize=self.maximize, l2=self.weight_decay
        )
        w = host(1) - host(hp["rho"])

        def average(s, x):  # s.mul_(rho).addcmul_(x, x, value=1 - rho)
            s32 = up(s)
            return write(like(w, x) * x * x + store(s32 * like(hp["rho"], s32), s.dtype), s)

        def root(s):  # s.add(eps).sqrt_()
            s32 = up(s)
            return store(jnp.sqrt(store(s32 + like(hp["eps"], s32), s.dtype)), s.dtype)

        square_avg = jax.tree.map(average, inner.square_avg, g)
        # delta = sqrt(acc_delta + eps).div_(std).mul_(grad)
        delta = jax.tree.map(
            lambda a, s, g: store(store(root(a) / root(s), a.dtype) * g, a.dtype),
            inner.acc_delta,
            square_avg,
            g,
        )
        acc_delta = jax.tree.map(average, inner.acc_delta, delta)
        # param.add_(delta, alpha=-lr)
        out = jax.tree.map(lambda d, a: -like_alpha(hp["lr"], d, a.dtype) * d, delta, acc_delta)
        return out, OptState(hp, AdadeltaState(step, square_avg, acc_delta), state.origin)


def adadelta(
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""Adadelta exactly as `torch.optim.Adadelta` computes it (single-tensor path).

    For each parameter `p` and gradient `g` (`s`, `a` start at 0):

        g <- -g                                   if maximize
        g <- g + weight_decay * p                 if weight_decay != 0
        s <- rho * s + (1 - rho) * g * g
        d = sqrt(a + eps) / sqrt(s + eps) * g
        a <- rho * a + (1 - rho) * d * d
        p <- p - lr * d

    Where optax differs: `optax.adadelta` has the same rule but `learning_rate` has no
    default (torch: 1.0), `eps` defaults to 1e-6 as here, and there is no maximize; its
    weight decay is added to the update, not to the gradient.

    Args:
      lr: coefficient of the step, >= 0 (or a 1-element array, as torch's Tensor lr).
      rho: decay of the running averages, in [0, 1].
      eps: added inside both square roots, >= 0.
      weight_decay: L2 penalty, >= 0 (`params` must be passed to `update`).
      maximize: ascend the objective. (torch's positional `foreach` is left out, so
        `maximize` is keyword-only here as there.)

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, AdadeltaState,
      origin)`; two `adadelta(...)` that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid rho value: 1.1`,
        `Invalid epsilon value: -1`, `Invalid weight_decay value: -1`).
    """
    values = {
        name: _base.as_number(name, v)
        for name, v in (
            ("lr", _base.as_lr(lr)),
            ("rho", rho),
            ("eps", eps),
            ("weight_decay", weight_decay),
        )
    }
    _base.check_lr(lr)
    if _checks.is_concrete(values["rho"]) and not 0.0 <= values["rho"] <= 1.0:
        raise ValueError(f"Invalid rho value: {rho}")
    _checks.check_hyper("eps", eps, what="epsilon")
    _checks.check_hyper("weight_decay", weight_decay, what="weight_decay")
    return optax.GradientTransformation(
        AdadeltaInit(hyperparams=values),
        AdadeltaUpdate(
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            maximize=bool(maximize),
        ),
    )
