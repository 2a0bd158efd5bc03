"""RMSprop with torch.optim.RMSprop's arguments, defaults, checks and update rule."""

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


class RMSpropState(NamedTuple):
    """`rmsprop`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch keeps it too; the rule does not use it).
      square_avg: running average of `g * g`, a pytree like params.
      momentum_buffer: a pytree like params when `momentum > 0`, else None.
      grad_avg: running average of `g` when `centered`, else None.
    """

    step: jax.Array
    square_avg: Any
    momentum_buffer: Any
    grad_avg: Any


@dataclasses.dataclass(frozen=True)
class RMSpropInit(HyperparamsInit):
    """`rmsprop(...).init`. Equal for any numbers: `momentum`, `centered` are structural.

    Returns `OptState(hyperparams={"alpha", "eps", "lr", "momentum", "weight_decay"},
    inner=RMSpropState, origin)`, the numbers as 0-d arrays of the parameters' dtype
    (float32 for bfloat16/float16 parameters).
    """

    momentum: bool
    centered: bool

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        zeros = lambda: _base.zeros_like(params)  # noqa: E731
        inner = RMSpropState(
            step=_base.zero_step(),
            square_avg=zeros(),
            momentum_buffer=zeros() if self.momentum else None,
            grad_avg=zeros() if self.centered else None,
        )
        return self.new_state(inner, _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class RMSpropUpdate:
    """`rmsprop(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    momentum: bool
    centered: bool
    weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, RMSpropState, "rmsprop")
        check_buffers("rmsprop", "square_avg", inner.square_avg, params, updates)
        g = _base.torch_grads(
            updates, params, hp, "rmsprop", maximize=self.maximize, l2=self.weight_decay
        )

        w = host(1) - host(hp["alpha"])

        def average(s, g):  # square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
            s32 = up(s)
            return write(like(w, g) * g * g + store(s32 * like(hp["alpha"], s32), s.dtype), s)

        square_avg = jax.tree.map(average, inner.square_avg, g)
        grad_avg = inner.grad_avg
        if self.centered:  # grad_avg.lerp_(grad, 1 - alpha); square_avg.addcmul(ga, ga, -1)
            grad_avg = jax.tree.map(
                lambda a, g: write(_base.lerp(up(a), g, like(w, g)), a), grad_avg, g
            )

            def root(s, a):
                a32 = up(a)
                return store(jnp.sqrt(store(-a32 * a32 + up(s), s.dtype)), s.dtype)

            avg = jax.tree.map(root, square_avg, grad_avg)
        else:
            avg = jax.tree.map(lambda s: store(jnp.sqrt(up(s)), s.dtype), square_avg)
        # .add_(eps), rounded to the parameter's dtype (that of square_avg)
        avg = jax.tree.map(
            lambda a, s: store(a + like(hp["eps"], a), s.dtype), avg, inner.square_avg
        )

        buf = inner.momentum_buffer
        if self.momentum:  # buf.mul_(momentum).addcdiv_(grad, avg); param.add_(buf, -lr)

            def momentum(b, g, a):
                b32 = up(b)
                return write(g / a + store(b32 * like(hp["momentum"], b32), b.dtype), b)

            buf = jax.tree.map(momentum, buf, g, avg)
            out = jax.tree.map(lambda b: -like_alpha(hp["lr"], up(b), b.dtype) * up(b), buf)
        else:  # param.addcdiv_(grad, avg, value=-lr)
            out = jax.tree.map(lambda g, a: -like(hp["lr"], g) * g / a, g, avg)
        step = optax.safe_int32_increment(inner.step)
        new_inner = RMSpropState(step, square_avg, buf, grad_avg)
        return out, OptState(hp, new_inner, state.origin)


def rmsprop(
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0,
    momentum: float = 0,
    centered: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""RMSprop exactly as `torch.optim.RMSprop` computes it (single-tensor path).

    For each parameter `p` and gradient `g` (`s`, `a`, `b` start at 0):

        g <- -g                                   if maximize
        g <- g + weight_decay * p                 if weight_decay != 0
        s <- alpha * s + (1 - alpha) * g * g
        if centered:  a <- lerp(a, g, 1 - alpha);  d <- sqrt(s - a * a) + eps
        else:         d <- sqrt(s) + eps
        if momentum > 0:  b <- momentum * b + g / d;  p <- p - lr * b
        else:             p <- p - lr * g / d

    Where optax differs: `optax.rmsprop` adds `eps` *inside* the square root by default
    (`g / sqrt(s + eps)`; `eps_in_sqrt=False` moves it out), calls `alpha` `decay` with
    default 0.9 (torch: 0.99), and its momentum buffer accumulates `lr * g / d` (the
    learning rate inside the buffer, so an `lr` change acts differently); it has no
    weight decay or maximize. Hence a transform of its own here.

    Parameters of any float dtype. bfloat16 and float16 are computed as torch's CPU kernels
    compute them (float32 arithmetic, rounded where torch writes a tensor, `add`'s alpha
    cast to the parameters' dtype): torch's bits, step after step. Their updates come out
    in float32, so `optax.apply_updates` rounds the new parameters once, as torch does.

    Args:
      lr: learning rate, >= 0 (or a 1-element array, as torch's Tensor lr).
      alpha: smoothing constant, >= 0 (torch does not check `alpha <= 1`).
      eps: added to the denominator outside the square root, >= 0.
      weight_decay: L2 penalty, >= 0 (`params` must be passed to `update`).
      momentum: momentum factor, >= 0.
      centered: normalize by the estimated variance `s - a*a` instead of `s`.
      maximize: ascend the objective.

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, RMSpropState,
      origin)`; two `rmsprop(...)` that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid epsilon value:
        -1`, `Invalid momentum value: -1`, `Invalid weight_decay value: -1`,
        `Invalid alpha value: -1`).
    """
    values = {
        name: _base.as_number(name, v)
        for name, v in (
            ("lr", _base.as_lr(lr)),
            ("alpha", alpha),
            ("eps", eps),
            ("weight_decay", weight_decay),
            ("momentum", momentum),
        )
    }
    _base.check_lr(lr)
    _checks.check_hyper("eps", eps, what="epsilon")
    _checks.check_hyper("momentum", momentum, what="momentum")
    _checks.check_hyper("weight_decay", weight_decay, what="weight_decay")
    _checks.check_hyper("alpha", alpha, what="alpha")
    has_momentum = _base.nonzero("momentum", values["momentum"])  # torch: momentum > 0
    return optax.GradientTransformation(
        RMSpropInit(momentum=has_momentum, centered=bool(centered), hyperparams=values),
        RMSpropUpdate(
            momentum=has_momentum,
            centered=bool(centered),
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            maximize=bool(maximize),
        ),
    )
