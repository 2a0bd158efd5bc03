"""ASGD with torch.optim.ASGD's arguments, defaults, checks and update rule."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _checks
from jaxreg.optim import _base
from jaxreg.optim._base import host, like, like_alpha, store, up, write
from jaxreg.optim._state import HyperparamsInit, OptState, check_buffers, unwrap


class ASGDState(NamedTuple):
    """`asgd`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      eta: float32 scalar, the step size of the next update (torch's `state["eta"]`, a
        float32 tensor under torch's default dtype; `lr` before the first update).
      mu: float32 scalar, the averaging coefficient of the next update (`state["mu"]`).
      ax: the averaged parameters, a pytree like params (`state["ax"]`).
    """

    step: jax.Array
    eta: jax.Array
    mu: jax.Array
    ax: Any


@dataclasses.dataclass(frozen=True)
class ASGDInit(HyperparamsInit):
    """`asgd(...).init`. Compares equal for any numbers (nothing in it is structural).

    Returns `OptState(hyperparams={"alpha", "lambd", "lr", "t0", "weight_decay"}, inner=
    ASGDState, origin)`.
    """

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        one = np.ones((), np.float32)  # eta: set from lr by the first update, as torch's
        inner = ASGDState(_base.zero_step(), one, one, _base.zeros_like(params))
        return self.new_state(inner, _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class ASGDUpdate:
    """`asgd(...).update(grads, state, params)`; hyperparameters come from `state`."""

    weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, ASGDState, "asgd")
        check_buffers("asgd", "ax", inner.ax, params, updates)
        _base.require_params(params, "asgd", "it decays and averages the parameters")
        g = _base.torch_grads(
            updates, params, hp, "asgd", maximize=self.maximize, l2=self.weight_decay
        )
        # torch's lazy state: eta = lr (a float32 tensor) at the first step
        eta = jnp.where(inner.step == 0, jnp.asarray(hp["lr"]).astype(jnp.float32), inner.eta)
        eta_value, mu_value = host(eta), host(inner.mu)
        shrink = host(1) - host(hp["lambd"]) * eta_value

        def new_param(p, g):  # param.mul_(1 - lambd * eta); param.add_(grad, alpha=-eta)
            p32 = up(p)
            shrunk = store(jax.lax.optimization_barrier(p32 * like(shrink, p32)), p.dtype)
            return store(shrunk + like_alpha(-eta_value, g, p.dtype) * g, p.dtype)

        new = jax.tree.map(new_param, params, g)

        def average(a, p):  # ax.add_(param.sub(ax).mul_(mu)), or ax.copy_(param) if mu == 1
            a32 = up(a)
            moved = jax.lax.optimization_barrier(store(p - a32, a.dtype) * like(mu_value, a32))
            return write(
                jnp.where(mu_value != 1, store(a32 + store(moved, a.dtype), a.dtype), p), a
            )

        ax = jax.tree.map(average, inner.ax, new)
        step = optax.safe_int32_increment(inner.step)
        t, lr, lambd = host(step), host(hp["lr"]), host(hp["lambd"])
        # Python floats, stored in float32 tensors: eta = lr / (1 + lambd * lr * t) ** alpha,
        # mu = 1 / max(1, t - t0)
        new_eta = (lr / (1 + lambd * lr * t) ** host(hp["alpha"])).astype(jnp.float32)
        new_mu = (1 / jnp.maximum(host(1), t - host(hp["t0"]))).astype(jnp.float32)
        out = jax.tree.map(lambda n, p: n - up(p), new, params)
        return out, OptState(hp, ASGDState(step, new_eta, new_mu, ax), state.origin)


def asgd(
    lr: float = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""Averaged SGD exactly as `torch.optim.ASGD` computes it (single-tensor path).

    For each parameter `p` and gradient `g`, step `t = 1, 2, ...` (`eta_0 = lr`,
    `mu_0 = 1`):

        g <- -g                                   if maximize
        g <- g + weight_decay * p                 if weight_decay != 0
        p <- p * (1 - lambd * eta_{t-1}) - eta_{t-1} * g
        ax <- ax + (p - ax) * mu_{t-1}            (ax <- p while mu_{t-1} == 1)
        eta_t = lr / (1 + lambd * lr * t) ** alpha;  mu_t = 1 / max(1, t - t0)

    `eta` and `mu` live in float32 tensors in torch (its default scalar dtype) and are
    rounded to float32 here too, whatever the parameters' dtype. The new parameters are
    computed in torch's order and the update returned is their difference from `params`
    (so `params` is required), which `optax.apply_updates` turns back into them (exactly
    while old and new are within a factor 2 of each other). The averaged parameters are
    the state's `inner.ax`.

    optax has no ASGD.

    Args:
      lr: learning rate, >= 0 (or a 1-element array, as torch's Tensor lr).
      lambd: decay term.
      alpha: power of the `eta` schedule.
      t0: the step after which averaging starts.
      weight_decay: L2 penalty, >= 0.
      maximize: ascend the objective. (torch's positional `foreach` is left out, so
        `maximize` is keyword-only here.)

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, ASGDState,
      origin)`; two `asgd(...)` that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid weight_decay
        value: -1`); torch checks nothing else.
    """
    values = {
        name: _base.as_number(name, v)
        for name, v in (
            ("lr", _base.as_lr(lr)),
            ("lambd", lambd),
            ("alpha", alpha),
            ("t0", t0),
            ("weight_decay", weight_decay),
        )
    }
    _base.check_lr(lr)
    _checks.check_hyper("weight_decay", weight_decay, what="weight_decay")
    return optax.GradientTransformation(
        ASGDInit(hyperparams=values),
        ASGDUpdate(
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            maximize=bool(maximize),
        ),
    )
