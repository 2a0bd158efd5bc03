"""Adam and AdamW with torch.optim's arguments, defaults, checks and update rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg import _checks
from jaxreg.optim import _base
from jaxreg.optim._base import host, like


@_base.register_state
class AdamState(NamedTuple):
    """State of `adam` / `adamw` (torch's per-parameter `state` dict, as a pytree).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      exp_avg: first moment, a pytree like params.
      exp_avg_sq: second moment, a pytree like params.
      max_exp_avg_sq: running maximum of `exp_avg_sq` (amsgrad), or None.
      hyperparams: `{"lr", "beta1", "beta2", "eps", "weight_decay"}`, 0-d arrays of the
        parameters' dtype (torch's `betas` tuple is split into `beta1`, `beta2`).
    """

    step: jax.Array
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any
    hyperparams: dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class AdamInit:
    """`adam(...).init`. Compares equal for any numbers: only `amsgrad` is structural."""

    amsgrad: bool
    hyperparams: dict[str, Any] = dataclasses.field(compare=False, hash=False)

    def __call__(self, params: Any) -> AdamState:
        dtype = _checks.float_dtype_of(params)
        zeros = lambda: _base.zeros_like(params)  # noqa: E731
        return AdamState(
            step=_base.zero_step(),
            exp_avg=zeros(),
            exp_avg_sq=zeros(),
            max_exp_avg_sq=zeros() if self.amsgrad else None,
            hyperparams=_base.hyper_arrays(self.hyperparams, dtype),
        )


@dataclasses.dataclass(frozen=True)
class AdamUpdate:
    """`adam(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    amsgrad: bool
    weight_decay: bool
    decoupled_weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: AdamState, params: Any = None) -> tuple[Any, AdamState]:
        _base.check_state(state, AdamState, "adam")
        hp = state.hyperparams
        step = optax.safe_int32_increment(state.step)
        if self.weight_decay:
            _base.require_params(params, "adam", "weight_decay != 0 multiplies it with param")
        l2 = self.weight_decay and not self.decoupled_weight_decay
        g = _base.torch_grads(updates, params, hp, "adam", maximize=self.maximize, l2=l2)

        # exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
        w1 = host(1) - host(hp["beta1"])
        w2 = host(1) - host(hp["beta2"])
        exp_avg = jax.tree.map(lambda m, g: _base.lerp(m, g, like(w1, g)), state.exp_avg, g)
        exp_avg_sq = jax.tree.map(
            lambda v, g: like(w2, g) * g * g + v * like(hp["beta2"], v), state.exp_avg_sq, g
        )
        second = exp_avg_sq
        max_sq = state.max_exp_avg_sq
        if self.amsgrad:  # torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=...)
            max_sq = second = jax.tree.map(jnp.maximum, max_sq, exp_avg_sq)

        step_size, bias_correction2_sqrt = bias_corrections(
            hp["lr"], hp["beta1"], hp["beta2"], step
        )

        def direction(m, v):  # denom = (sqrt(v) / bc2_sqrt).add_(eps); addcdiv(-step_size)
            denom = _base.divide_by_scalar(jnp.sqrt(v), bias_correction2_sqrt) + like(hp["eps"], v)
            return -like(step_size, m) * m / denom

        out = jax.tree.map(direction, exp_avg, second)
        if self.weight_decay and self.decoupled_weight_decay:
            # torch: param.mul_(1 - lr * weight_decay) before the Adam step, i.e. the update
            # p * ((1 - lr*wd) - 1); the factor is rounded to p's dtype first, as torch's.
            shrink = host(1) - host(hp["lr"]) * host(hp["weight_decay"])
            out = jax.tree.map(lambda u, p: u + p * (like(shrink, p) - 1), out, params)
        new_state = AdamState(step, exp_avg, exp_avg_sq, max_sq, hp)
        return out, new_state


def bias_corrections(
    lr: jax.Array, beta1: jax.Array, beta2: jax.Array, step: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """torch's per-step scalars, `lr / (1 - beta1**t)` and `(1 - beta2**t) ** 0.5`.

    torch computes them in Python floats from `step.item()`; here in `scalar_dtype()`
    (float64 with x64 on: the same bits as Python's, XLA's `pow` being C's on CPU).
    """
    t = host(step)
    bias_correction1 = host(1) - host(beta1) ** t
    bias_correction2 = host(1) - host(beta2) ** t
    return host(lr) / bias_correction1, _base.python_sqrt(bias_correction2)


def _betas(betas: Sequence[float]) -> tuple[Any, Any]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    return b1, b2


def adam(
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformation:
    r"""Adam exactly as `torch.optim.Adam` computes it (single-tensor path, CPU default).

    For each parameter `p` and gradient `g`, step `t = 1, 2, ...` (`m`, `v` start at 0):

        g <- -g                                           if maximize
        p <- p * (1 - lr * weight_decay)                  if decoupled_weight_decay
        g <- g + weight_decay * p                         otherwise, if weight_decay != 0
        m <- lerp(m, g, 1 - beta1)          = beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g * g
        v_max <- max(v_max, v)                            if amsgrad (then v_max below)
        p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    The bias corrections are computed from the step count in float64 (float32 when x64
    is off), as torch computes them in Python floats; in float64 they are torch's bits.

    Where optax differs: `optax.adam` divides `m / (1 - beta1**t)` and `v / (1 - beta2**t)`
    before the square root (the same value, other roundings); it has no coupled (L2) weight
    decay; `optax.amsgrad` takes the maximum of the *bias-corrected* `v`, torch (and this)
    of the raw `v`, which is a different rule.

    Args:
      lr: learning rate, >= 0.
      betas: `(beta1, beta2)`, each in [0, 1).
      eps: added to the denominator, >= 0.
      weight_decay: >= 0; an L2 term added to the gradient, or with
        `decoupled_weight_decay` a shrink of the parameters (AdamW). Needs `params` in
        `update`.
      amsgrad: use the running maximum of the second moment.
      maximize: ascend the objective.
      decoupled_weight_decay: AdamW's decay instead of L2 (torch's flag of the same
        name).

    Returns:
      An `optax.GradientTransformation` with state `AdamState`; two `adam(...)` that
      differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid epsilon value:
        -1`, `Invalid beta parameter at index 0: 1.0`, `Invalid weight_decay value: -1`).
    """
    beta1, beta2 = _betas(betas)
    values = {
        "lr": _base.as_number("lr", lr),
        "beta1": _base.as_number("betas[0]", beta1),
        "beta2": _base.as_number("betas[1]", beta2),
        "eps": _base.as_number("eps", eps),
        "weight_decay": _base.as_number("weight_decay", weight_decay),
    }
    _base.check_lr(lr)
    _checks.check_hyper("eps", eps, what="epsilon")
    for i, beta in enumerate((beta1, beta2)):
        if not 0.0 <= values[f"beta{i + 1}"] < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    _checks.check_hyper("weight_decay", weight_decay, what="weight_decay")
    return optax.GradientTransformation(
        AdamInit(amsgrad=bool(amsgrad), hyperparams=values),
        AdamUpdate(
            amsgrad=bool(amsgrad),
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            decoupled_weight_decay=bool(decoupled_weight_decay),
            maximize=bool(maximize),
        ),
    )


def adamw(
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""AdamW exactly as `torch.optim.AdamW`: `adam` with `decoupled_weight_decay=True`.

    Per step, before the Adam step: `p <- p * (1 - lr * weight_decay)`. Note torch's
    default `weight_decay=1e-2` (Adam's is 0).

    Where optax differs: `optax.adamw` adds `weight_decay * p` to the Adam direction and
    then scales by `-lr` (the same value, other roundings; in float32 torch rounds the
    factor `1 - lr * weight_decay` to float32 first, which we reproduce); its `mask`
    argument has no torch counterpart here (use `optax.masked`).

    Args and Raises: as `adam`.
    """
    return adam(
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        maximize=maximize,
        decoupled_weight_decay=True,
    )
