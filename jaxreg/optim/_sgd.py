"""SGD with torch.optim.SGD's arguments, defaults, checks and update rule."""

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


class SGDState(NamedTuple):
    """`sgd`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (the first one starts the momentum buffer).
      momentum_buffer: a pytree like params (torch's `state["momentum_buffer"]`), or None
        when `momentum == 0`.
    """

    step: jax.Array
    momentum_buffer: Any


@dataclasses.dataclass(frozen=True)
class SGDInit(HyperparamsInit):
    """`sgd(...).init`. Compares equal for any numbers: only `momentum` is structural.

    Returns `OptState(hyperparams={"dampening", "lr", "momentum", "weight_decay"}, inner=
    SGDState, origin)`, the numbers as 0-d arrays of the parameters' dtype (float32 for
    bfloat16/float16 parameters, torch's compute type).
    """

    momentum: bool

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        buf = _base.zeros_like(params) if self.momentum else None
        return self.new_state(SGDState(_base.zero_step(), buf), _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class SGDUpdate:
    """`sgd(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    momentum: bool
    weight_decay: bool
    nesterov: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, SGDState, "sgd")
        g = _base.torch_grads(
            updates, params, hp, "sgd", maximize=self.maximize, l2=self.weight_decay
        )
        buf = inner.momentum_buffer
        if self.momentum:
            check_buffers("sgd", "momentum_buffer", buf, params, updates)
            first = inner.step == 0  # torch: buf = clone(grad), no dampening
            keep = host(1) - host(hp["dampening"])

            def buffer(b, g):  # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                b32 = up(b)
                decayed = store(b32 * like(hp["momentum"], b32), b.dtype)
                return write(jnp.where(first, g, like_alpha(keep, g, b.dtype) * g + decayed), b)

            buf = jax.tree.map(buffer, buf, g)
            if self.nesterov:  # grad.add(buf, alpha=momentum)

                def nesterov(g, b):
                    b32 = up(b)
                    return store(g + like_alpha(hp["momentum"], b32, b.dtype) * b32, b.dtype)

                g = jax.tree.map(nesterov, g, buf)
            else:
                g = jax.tree.map(up, buf)
        # param.add_(grad, alpha=-lr)
        out = jax.tree.map(lambda g, u: -like_alpha(hp["lr"], g, u.dtype) * g, g, updates)
        step = optax.safe_int32_increment(inner.step)
        return out, OptState(hp, SGDState(step, buf), state.origin)


def sgd(
    lr: float = 1e-3,
    momentum: float = 0,
    dampening: float = 0,
    weight_decay: float = 0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""Stochastic gradient descent exactly as `torch.optim.SGD` computes it.

    For each parameter `p` (any shape) and its gradient `g`, step `t = 1, 2, ...`:

        g <- -g                                   if maximize
        g <- g + weight_decay * p                 if weight_decay != 0
        if momentum != 0:
            b <- g                                at t = 1 (torch clones the gradient)
            b <- momentum * b + (1 - dampening) * g   for t > 1
            g <- g + momentum * b if nesterov else b
        p <- p - lr * g

    torch equivalent: `torch.optim.SGD(params, lr, momentum, dampening, weight_decay,
    nesterov, maximize=maximize)` (its single-tensor path, the default on CPU), in the same
    operation order. Where optax differs: `optax.sgd(lr, momentum, nesterov)` is the same
    rule only for `dampening == 0` and `weight_decay == 0` (its zero-started trace gives
    `b = g` at the first step, like torch's clone); it has no dampening, weight decay or
    maximize, and it takes a schedule where here `set_lr` changes `lr` in the state.

    Parameters of any float dtype. bfloat16 and float16 are computed as torch's CPU kernels
    compute them (float32 arithmetic, rounded where torch writes a tensor, `add`'s alpha
    cast to the parameters' dtype): torch's bits, step after step. Their updates come out
    in float32, so `optax.apply_updates` rounds the new parameters once, as torch does.

    Args:
      lr: learning rate, >= 0 (or a 1-element array, as torch's Tensor lr).
      momentum: momentum factor, >= 0.
      dampening: dampening for momentum (not applied on the first step, as torch).
      weight_decay: L2 penalty, >= 0 (`params` must be passed to `update`).
      nesterov: Nesterov momentum; needs `momentum > 0` and `dampening == 0`.
      maximize: ascend the objective instead of descending.

    Returns:
      An `optax.GradientTransformation`; `optax.apply_updates(params, updates)` gives
      torch's new parameters. Its state, `OptState(hyperparams, SGDState, origin)`, holds
      the hyperparameters as arrays, and two `sgd(...)` that differ only in numbers compare
      equal (one compiled program).

    Raises:
      ValueError: torch's messages: `Invalid learning rate: -1`, `Invalid momentum value:
        -1`, `Invalid weight_decay value: -1`, `Nesterov momentum requires a momentum and
        zero dampening`.
    """
    values = {
        name: _base.as_number(name, v)
        for name, v in (
            ("lr", _base.as_lr(lr)),
            ("momentum", momentum),
            ("dampening", dampening),
            ("weight_decay", weight_decay),
        )
    }
    _base.check_lr(lr)
    _checks.check_hyper("momentum", momentum, what="momentum")
    _checks.check_hyper("weight_decay", weight_decay, what="weight_decay")
    has_momentum = _base.nonzero("momentum", values["momentum"])
    if nesterov and (values["momentum"] <= 0 or values["dampening"] != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    return optax.GradientTransformation(
        SGDInit(momentum=has_momentum, hyperparams=values),
        SGDUpdate(
            momentum=has_momentum,
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            nesterov=bool(nesterov),
            maximize=bool(maximize),
        ),
    )
