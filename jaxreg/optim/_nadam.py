"""NAdam with torch.optim.NAdam's arguments, defaults, checks and update rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _checks
from jaxreg.optim import _base
from jaxreg.optim._base import host, like, store, up, write
from jaxreg.optim._state import HyperparamsInit, OptState, check_buffers, unwrap


class NAdamState(NamedTuple):
    """`nadam`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      mu_product: float32 scalar, the product of the momentum coefficients `mu_1 ... mu_t`
        (torch's `state["mu_product"]`, a float32 tensor under torch's default dtype, so
        rounded to float32 after every step, as here).
      exp_avg: first moment, a pytree like params.
      exp_avg_sq: second moment, a pytree like params.
    """

    step: jax.Array
    mu_product: jax.Array
    exp_avg: Any
    exp_avg_sq: Any


@dataclasses.dataclass(frozen=True)
class NAdamInit(HyperparamsInit):
    """`nadam(...).init`. Compares equal for any numbers (nothing in it is structural).

    Returns `OptState(hyperparams={"beta1", "beta2", "eps", "lr", "momentum_decay",
    "weight_decay"}, inner=NAdamState, origin)`.
    """

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        inner = NAdamState(
            step=_base.zero_step(),
            mu_product=np.ones((), np.float32),
            exp_avg=_base.zeros_like(params),
            exp_avg_sq=_base.zeros_like(params),
        )
        return self.new_state(inner, _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class NAdamUpdate:
    """`nadam(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    weight_decay: bool
    decoupled_weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, NAdamState, "nadam")
        check_buffers("nadam", "exp_avg", inner.exp_avg, params, updates)
        step = optax.safe_int32_increment(inner.step)
        l2 = self.weight_decay and not self.decoupled_weight_decay
        g = _base.torch_grads(updates, params, hp, "nadam", maximize=self.maximize, l2=l2)

        # Python floats in torch: bias_correction2, mu, mu_next
        t = host(step)
        beta1, beta2, lr = host(hp["beta1"]), host(hp["beta2"]), host(hp["lr"])
        bias_correction2 = host(1) - beta2**t
        mu = beta1 * (host(1) - host(0.5) * host(0.96) ** (t * host(hp["momentum_decay"])))
        mu_next = beta1 * (
            host(1) - host(0.5) * host(0.96) ** ((t + 1) * host(hp["momentum_decay"]))
        )
        # mu_product *= mu: a float32 tensor times a Python float, in float32
        mu_product = inner.mu_product * mu.astype(jnp.float32)
        mu_product_next = host(mu_product) * mu_next
        value1 = -lr * (host(1) - mu) / (host(1) - host(mu_product))
        value2 = (-lr * mu_next) / (host(1) - mu_product_next)

        w1 = host(1) - beta1
        w2 = host(1) - beta2

        def first_moment(m, g):  # exp_avg.lerp_(grad, 1 - beta1)
            return write(_base.lerp(up(m), g, like(w1, g)), m)

        def second_moment(v, g):  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            v32 = up(v)
            return write(like(w2, g) * g * g + store(v32 * like(hp["beta2"], v32), v.dtype), v)

        exp_avg = jax.tree.map(first_moment, inner.exp_avg, g)
        exp_avg_sq = jax.tree.map(second_moment, inner.exp_avg_sq, g)
        decoupled = self.weight_decay and self.decoupled_weight_decay
        shrink = host(1) - lr * host(hp["weight_decay"])

        def denominator(v):  # exp_avg_sq.div(bias_correction2).sqrt().add_(eps)
            v32 = up(v)
            scaled = store(_base.divide_by_scalar(v32, bias_correction2), v.dtype)
            return store(store(jnp.sqrt(scaled), v.dtype) + like(hp["eps"], v32), v.dtype)

        denom = jax.tree.map(denominator, exp_avg_sq)
        # value1 * grad / denom and value2 * exp_avg / denom, as addcdiv_ computes them
        first = jax.tree.map(lambda g, d: like(value1, g) * g / d, g, denom)
        second = jax.tree.map(lambda m, d: like(value2, d) * up(m) / d, exp_avg, denom)
        if params is None:  # no parameters to write into: the two terms' sum
            out = jax.tree.map(jnp.add, first, second)
        else:
            # torch writes the new parameters in place: computed here in its order, the
            # update is their difference from params, so that `optax.apply_updates` gives
            # them back (exactly while old and new are within a factor 2 of each other).
            def new_param(a, b, p):
                p32 = up(p)
                new = p32
                if decoupled:  # param.mul_(1 - lr * weight_decay), rounded before the add
                    new = store(jax.lax.optimization_barrier(new * like(shrink, p32)), p.dtype)
                new = store(store(new + a, p.dtype) + b, p.dtype)  # the two addcdiv_
                return new - p32

            out = jax.tree.map(new_param, first, second, params)
        new_inner = NAdamState(step, mu_product, exp_avg, exp_avg_sq)
        return out, OptState(hp, new_inner, state.origin)


def nadam(
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""NAdam exactly as `torch.optim.NAdam` computes it (single-tensor path, CPU default).

    For each parameter `p` and gradient `g`, step `t = 1, 2, ...` (`m`, `v` start at 0,
    `P_0 = 1`):

        g <- -g                                           if maximize
        p <- p * (1 - lr * weight_decay)                  if decoupled_weight_decay
        g <- g + weight_decay * p                         otherwise, if weight_decay != 0
        mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        P_t = P_{t-1} * mu_t                              (float32, as torch's tensor)
        m <- lerp(m, g, 1 - beta1);  v <- beta2 * v + (1 - beta2) * g * g
        d = sqrt(v / (1 - beta2**t)) + eps
        p <- p - lr * (1 - mu_t) / (1 - P_t) * g / d
        p <- p - lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / d

    The scalars are computed as torch computes them in Python floats (float64; float32
    with x64 off). `P_t` lives in a float32 tensor in torch (its default scalar dtype), so
    it is rounded to float32 here too, whatever the parameters' dtype. The new parameters
    are computed in torch's order and the update returned is their difference from
    `params`, so `optax.apply_updates` gives torch's parameters (exactly, while new and old
    are within a factor 2 of each other, the usual case); without `params` (possible
    when there is no weight decay) the update is the sum of the two terms.

    Where optax differs: `optax.nadam` is Adam with a Nesterov-style momentum (Dozat's
    simplified form), with no momentum-decay schedule `mu_t` and no weight decay.

    Args:
      lr: learning rate, >= 0 (or a 1-element array, as torch's Tensor lr).
      betas: `(beta1, beta2)`, each in [0, 1).
      eps: added to the denominator, >= 0.
      weight_decay: >= 0; L2 added to the gradient, or with `decoupled_weight_decay` a
        shrink of the parameters (NAdamW).
      momentum_decay: `psi` in `mu_t` above, >= 0.
      decoupled_weight_decay: decoupled (AdamW-style) weight decay.
      maximize: ascend the objective.

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, NAdamState,
      origin)`; two `nadam(...)` that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid epsilon value:
        -1`, `Invalid beta parameter at index 0: 1.0`, `Invalid weight_decay value: -1`,
        `Invalid momentum_decay value: -1`).
    """
    values = beta_values(lr, betas, eps, weight_decay, momentum_decay=momentum_decay)
    return optax.GradientTransformation(
        NAdamInit(hyperparams=values),
        NAdamUpdate(
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            decoupled_weight_decay=bool(decoupled_weight_decay),
            maximize=bool(maximize),
        ),
    )


def beta_values(lr: Any, betas: Any, eps: Any, weight_decay: Any, **more: Any) -> dict[str, Any]:
    """The validated numbers of an Adam-family optimizer, with torch's checks and messages
    in torch's order (lr, eps, betas, weight_decay, then `more`, e.g. momentum_decay)."""
    beta1, beta2 = betas_pair(betas)
    values = {
        "lr": _base.as_lr(lr),
        "beta1": _base.as_number("betas[0]", beta1),
        "beta2": _base.as_number("betas[1]", beta2),
        "eps": _base.as_number("eps", eps),
        "weight_decay": _base.as_number("weight_decay", weight_decay),
        **{name: _base.as_number(name, value) for name, value in more.items()},
    }
    _base.check_lr(lr)
    _checks.check_hyper("eps", eps, what="epsilon")
    check_betas(values, betas)
    _checks.check_hyper("weight_decay", weight_decay, what="weight_decay")
    for name, value in more.items():
        _checks.check_hyper(name, value, what=name)
    return values


def betas_pair(betas: Sequence[float]) -> tuple[Any, Any]:
    """`(beta1, beta2)` from torch's `betas`; `ValueError` for anything but a pair."""
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    return b1, b2


def check_betas(values: dict[str, Any], betas: Sequence[float]) -> None:
    """torch's `Invalid beta parameter at index i: {betas[i]}` unless each is in [0, 1)."""
    for i in range(2):
        value = values[f"beta{i + 1}"]
        if isinstance(value, jax.Array) and not _checks.is_concrete(value):
            continue
        if not 0.0 <= value < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")
