"""SparseAdam with torch.optim.SparseAdam's arguments, defaults, checks and update rule.

torch's SparseAdam takes sparse gradients only (`nn.Embedding(sparse=True)`); it updates
the parameters, and both moments, only at the entries its coalesced gradient holds. jaxreg's
gradients are dense, so the entries held are those where the gradient is nonzero: what
torch does with `p.grad = g.to_sparse()` (which keeps exactly the nonzero entries). An
entry whose gradient is exactly zero keeps its moments and its value, as in torch; the step
count advances every update, as torch's `state["step"]` does.
"""

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
from jaxreg.optim._nadam import betas_pair
from jaxreg.optim._state import HyperparamsInit, OptState, check_buffers, unwrap


class SparseAdamState(NamedTuple):
    """`sparse_adam`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      exp_avg: first moment, like params (changed only where a gradient was nonzero).
      exp_avg_sq: second moment, like params (likewise).
    """

    step: jax.Array
    exp_avg: Any
    exp_avg_sq: Any


@dataclasses.dataclass(frozen=True)
class SparseAdamInit(HyperparamsInit):
    """`sparse_adam(...).init`. Compares equal for any numbers.

    Returns `OptState(hyperparams={"beta1", "beta2", "eps", "lr"}, inner=SparseAdamState,
    origin)`.
    """

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        if _base.is_half(dtype):
            raise TypeError(
                f"sparse_adam: parameters of dtype {np.dtype(dtype).name} are not supported by "
                "this mirror; train in float32 or float64."
            )
        zeros = _base.zeros_like(params), _base.zeros_like(params)
        return self.new_state(SparseAdamState(_base.zero_step(), *zeros), _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class SparseAdamUpdate:
    """`sparse_adam(...).update(grads, state, params=None)`."""

    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, SparseAdamState, "sparse_adam")
        check_buffers("sparse_adam", "exp_avg", inner.exp_avg, params, updates)
        step = optax.safe_int32_increment(inner.step)
        t = host(step)
        beta1, beta2 = host(hp["beta1"]), host(hp["beta2"])
        bias_correction1 = host(1) - beta1**t
        bias_correction2 = host(1) - beta2**t
        step_size = host(hp["lr"]) * jnp.sqrt(bias_correction2) / bias_correction1  # math.sqrt

        def one(g, m, v):
            g = -g if self.maximize else g
            held = g != 0  # the entries of g.to_sparse()
            # exp_avg += (g - m) * (1 - beta1), at the held entries
            m_update = jax.lax.optimization_barrier((g - m) * like(host(1) - beta1, g))
            new_m = m + m_update
            v_update = jax.lax.optimization_barrier((g * g - v) * like(host(1) - beta2, g))
            new_v = v + v_update
            denom = jnp.sqrt(new_v) + like(hp["eps"], g)
            # param.add_(sparse(-step_size * numer.div_(denom))): a rounded tensor, added
            change = jax.lax.optimization_barrier(
                like(-step_size, g) * jax.lax.optimization_barrier(new_m / denom)
            )
            zero = jnp.zeros_like(g)
            return (
                jnp.where(held, change, zero),
                jnp.where(held, new_m, m),
                jnp.where(held, new_v, v),
            )

        out = jax.tree.map(one, updates, inner.exp_avg, inner.exp_avg_sq)
        treedef = jax.tree.structure(updates)
        new_updates, ms, vs = (
            treedef.unflatten(x) for x in zip(*treedef.flatten_up_to(out), strict=True)
        )
        return new_updates, OptState(hp, SparseAdamState(step, ms, vs), state.origin)


def sparse_adam(
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""SparseAdam as `torch.optim.SparseAdam` computes it, on dense gradients.

    For each parameter entry whose gradient `g` is nonzero (the entries of
    `g.to_sparse()`), step `t = 1, 2, ...` counting every update:

        g <- -g                                          if maximize
        m <- m + (g - m) * (1 - beta1);  v <- v + (g * g - v) * (1 - beta2)
        p <- p - (lr * sqrt(1 - beta2**t) / (1 - beta1**t)) * (m / (sqrt(v) + eps))

    Entries whose gradient is zero keep `p`, `m` and `v` unchanged (plain Adam would decay
    their moments and move them). torch refuses dense gradients outright ("SparseAdam does
    not support dense gradients, please consider Adam instead"); this is its arithmetic on
    the sparse gradient torch's `g.to_sparse()` makes, tested against torch so. Where a
    model's gradient has no exact zeros (a linear regression's), it is Adam with torch's
    SparseAdam rounding (`m + (g - m)(1 - beta1)` rather than `lerp`).

    Args:
      lr: learning rate, > 0.
      betas: `(beta1, beta2)`, each in [0, 1).
      eps: added to the denominator, > 0.
      maximize: ascend the objective.

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams,
      SparseAdamState, origin)`.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: 0.0`, `Invalid epsilon value:
        0.0`, `Invalid beta parameter at index 0: 1.0`, `Tensor lr must be 1-element`).
    """
    beta1, beta2 = betas_pair(betas)
    values = {
        "lr": _base.as_lr(lr),
        "beta1": _base.as_number("betas[0]", beta1),
        "beta2": _base.as_number("betas[1]", beta2),
        "eps": _base.as_number("eps", eps),
    }
    if not 0.0 < values["lr"]:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 < values["eps"]:
        raise ValueError(f"Invalid epsilon value: {eps}")
    for i in range(2):
        if not 0.0 <= values[f"beta{i + 1}"] < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")
    return optax.GradientTransformation(
        SparseAdamInit(hyperparams=values), SparseAdamUpdate(maximize=bool(maximize))
    )
