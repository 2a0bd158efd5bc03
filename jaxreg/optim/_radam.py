"""RAdam with torch.optim.RAdam's arguments, defaults, checks and update rule."""

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


class RAdamState(NamedTuple):
    """`radam`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      exp_avg: first moment, a pytree like params.
      exp_avg_sq: second moment, a pytree like params.
    """

    step: jax.Array
    exp_avg: Any
    exp_avg_sq: Any


@dataclasses.dataclass(frozen=True)
class RAdamInit(HyperparamsInit):
    """`radam(...).init`. Compares equal for any numbers (nothing in it is structural).

    Returns `OptState(hyperparams={"beta1", "beta2", "eps", "lr", "weight_decay"},
    inner=RAdamState, origin)`.
    """

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        zeros = _base.zeros_like(params), _base.zeros_like(params)
        return self.new_state(RAdamState(_base.zero_step(), *zeros), _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class RAdamUpdate:
    """`radam(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    weight_decay: bool
    decoupled_weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, RAdamState, "radam")
        check_buffers("radam", "exp_avg", inner.exp_avg, params, updates)
        step = optax.safe_int32_increment(inner.step)
        if self.weight_decay:
            _base.require_params(params, "radam", "weight_decay != 0 multiplies it with param")
        l2 = self.weight_decay and not self.decoupled_weight_decay
        g = _base.torch_grads(updates, params, hp, "radam", maximize=self.maximize, l2=l2)

        t = host(step)
        beta1, beta2, lr = host(hp["beta1"]), host(hp["beta2"]), host(hp["lr"])
        w1, w2 = host(1) - beta1, host(1) - beta2

        def first_moment(m, g):  # exp_avg.lerp_(grad, 1 - beta1)
            return write(_base.lerp(up(m), g, like(w1, g)), m)

        def second_moment(v, g):  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            v32 = up(v)
            return write(like(w2, g) * g * g + store(v32 * like(hp["beta2"], v32), v.dtype), v)

        exp_avg = jax.tree.map(first_moment, inner.exp_avg, g)
        exp_avg_sq = jax.tree.map(second_moment, inner.exp_avg_sq, g)

        # torch's Python floats
        bias_correction1 = host(1) - beta1**t
        bias_correction2 = host(1) - beta2**t
        rho_inf = 2 / (host(1) - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2**t / bias_correction2
        rect = _base.python_sqrt(
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        )
        rectified = rho_t > 5.0
        bc2_sqrt = _base.python_sqrt(bias_correction2)

        def direction(m, v):
            m32, v32 = up(m), up(v)
            # bias_corrected_exp_avg * lr: (exp_avg / bias_correction1) * lr
            corrected = store(_base.divide_by_scalar(m32, bias_correction1), m.dtype)
            plain = store(corrected * like(lr, m32), m.dtype)
            # adaptive = bias_correction2**0.5 / (exp_avg_sq.sqrt() + eps), which torch's
            # Python-scalar division computes as reciprocal(denominator) * scalar
            denom = store(store(jnp.sqrt(v32), v.dtype) + like(hp["eps"], v32), v.dtype)
            adaptive = store(store(1 / denom, v.dtype) * like(bc2_sqrt, v32), v.dtype)
            full = store(store(plain * adaptive, m.dtype) * like(rect, m32), m.dtype)
            return -jnp.where(rectified, full, plain)  # param.add_(..., alpha=-1.0)

        out = jax.tree.map(direction, exp_avg, exp_avg_sq)
        if self.weight_decay and self.decoupled_weight_decay:
            # param.mul_(1 - lr * weight_decay), then the step: computed in torch's order,
            # the update is the difference of new and old parameters (exact while they are
            # within a factor 2 of each other), so `optax.apply_updates` gives torch's.
            shrink = host(1) - lr * host(hp["weight_decay"])

            def decay(u, p):
                p32 = up(p)
                shrunk = store(jax.lax.optimization_barrier(p32 * like(shrink, p32)), p.dtype)
                return store(shrunk + u, p.dtype) - p32

            out = jax.tree.map(decay, out, params)
        return out, OptState(hp, RAdamState(step, exp_avg, exp_avg_sq), state.origin)


def radam(
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""RAdam exactly as `torch.optim.RAdam` computes it (single-tensor path, CPU default).

    For each parameter `p` and gradient `g`, step `t = 1, 2, ...` (`m`, `v` start at 0):

        g <- -g                                           if maximize
        p <- p * (1 - lr * weight_decay)                  if decoupled_weight_decay
        g <- g + weight_decay * p                         otherwise, if weight_decay != 0
        m <- lerp(m, g, 1 - beta1);  v <- beta2 * v + (1 - beta2) * g * g
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)
        r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        p <- p - m / (1 - beta1**t) * lr * sqrt(1 - beta2**t) / (sqrt(v) + eps) * r_t
                                                          if rho_t > 5
        p <- p - m / (1 - beta1**t) * lr                  otherwise

    The scalars are computed as torch computes them in Python floats (float64; float32
    with x64 off); the branch on `rho_t > 5` is a `where`, not a recompile.

    Where optax differs: `optax.radam` has the threshold as an argument (default 5, the
    same), adds `eps` inside differently (`eps_root`), has no weight decay or maximize,
    and scales by the learning rate after the rectification (other roundings).

    Args:
      lr: learning rate, >= 0 (or a 1-element array, as torch's Tensor lr).
      betas: `(beta1, beta2)`, each in [0, 1).
      eps: added to the denominator, >= 0.
      weight_decay: >= 0; L2 added to the gradient, or with `decoupled_weight_decay` a
        shrink of the parameters. Needs `params` in `update`.
      decoupled_weight_decay: decoupled (AdamW-style) weight decay.
      maximize: ascend the objective.

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, RAdamState,
      origin)`; two `radam(...)` that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid epsilon value:
        -1`, `Invalid beta parameter at index 0: 1.0`, `Invalid weight_decay value: -1`).
    """
    values = beta_values(lr, betas, eps, weight_decay)
    return optax.GradientTransformation(
        RAdamInit(hyperparams=values),
        RAdamUpdate(
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            decoupled_weight_decay=bool(decoupled_weight_decay),
            maximize=bool(maximize),
        ),
    )
