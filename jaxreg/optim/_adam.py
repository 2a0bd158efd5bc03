"""Adam and AdamW with torch.optim's arguments, defaults, checks and update rule."""

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


class AdamState(NamedTuple):
    """`adam` / `adamw`'s own state (the `inner` of its `OptState`; torch's per-parameter
    `state` dict, as a pytree).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      exp_avg: first moment, a pytree like params.
      exp_avg_sq: second moment, a pytree like params.
      max_exp_avg_sq: running maximum of `exp_avg_sq` (amsgrad), or None.
    """

    step: jax.Array
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any


@dataclasses.dataclass(frozen=True)
class AdamInit(HyperparamsInit):
    """`adam(...).init`. Compares equal for any numbers: only `amsgrad` is structural.

    Returns `OptState(hyperparams={"beta1", "beta2", "eps", "lr", "weight_decay"}, inner=
    AdamState, origin)` (torch's `betas` split in two), the numbers as 0-d arrays of the
    parameters' dtype (float32 for bfloat16/float16 parameters).
    """

    amsgrad: bool

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        zeros = lambda: _base.zeros_like(params)  # noqa: E731
        inner = AdamState(
            step=_base.zero_step(),
            exp_avg=zeros(),
            exp_avg_sq=zeros(),
            max_exp_avg_sq=zeros() if self.amsgrad else None,
        )
        return self.new_state(inner, _base.hyper_dtype(dtype))


@dataclasses.dataclass(frozen=True)
class AdamUpdate:
    """`adam(...).update(grads, state, params=None)`; hyperparameters come from `state`."""

    amsgrad: bool
    weight_decay: bool
    decoupled_weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, AdamState, "adam")
        check_buffers("adam", "exp_avg", inner.exp_avg, params, updates)
        step = optax.safe_int32_increment(inner.step)
        if self.weight_decay:
            _base.require_params(params, "adam", "weight_decay != 0 multiplies it with param")
        l2 = self.weight_decay and not self.decoupled_weight_decay
        g = _base.torch_grads(updates, params, hp, "adam", maximize=self.maximize, l2=l2)

        # exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
        w1 = host(1) - host(hp["beta1"])
        w2 = host(1) - host(hp["beta2"])

        def first_moment(m, g):
            return write(_base.lerp(up(m), g, like(w1, g)), m)

        def second_moment(v, g):
            v32 = up(v)
            return write(like(w2, g) * g * g + store(v32 * like(hp["beta2"], v32), v.dtype), v)

        exp_avg = jax.tree.map(first_moment, inner.exp_avg, g)
        exp_avg_sq = jax.tree.map(second_moment, inner.exp_avg_sq, g)
        second = exp_avg_sq
        max_sq = inner.max_exp_avg_sq
        if self.amsgrad:  # torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=...)
            max_sq = second = jax.tree.map(jnp.maximum, max_sq, exp_avg_sq)

        step_size, bias_correction2_sqrt = bias_corrections(
            hp["lr"], hp["beta1"], hp["beta2"], step
        )

        def direction(m, v):  # denom = (sqrt(v) / bc2_sqrt).add_(eps); addcdiv(-step_size)
            m32, v32 = up(m), up(v)
            scaled = store(
                _base.divide_by_scalar(store(jnp.sqrt(v32), v.dtype), bias_correction2_sqrt),
                v.dtype,
            )
            denom = store(scaled + like(hp["eps"], v32), v.dtype)
            return -like(step_size, m32) * m32 / denom

        out = jax.tree.map(direction, exp_avg, second)
        if self.weight_decay and self.decoupled_weight_decay:
            # torch: param.mul_(1 - lr * weight_decay) before the Adam step, i.e. the update
            # p * ((1 - lr*wd) - 1); the factor is rounded to p's dtype first, as torch's.
            # Half precision: torch rounds the shrunk param to p's dtype, then adds.
            shrink = host(1) - host(hp["lr"]) * host(hp["weight_decay"])

            def decay(u, p):
                if not _base.is_half(p.dtype):
                    return u + p * (like(shrink, p) - 1)
                p32 = up(p)
                return u + (store(p32 * like(shrink, p32), p.dtype) - p32)

            out = jax.tree.map(decay, out, params)
        new_inner = AdamState(step, exp_avg, exp_avg_sq, max_sq)
        return out, OptState(hp, new_inner, state.origin)


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


def _is_tensor(x: Any) -> bool:  # torch: isinstance(x, Tensor); NumPy and jax arrays alike
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, np.floating)


def _as_beta(i: int, beta: Any) -> Any:
    if _is_tensor(beta) and np.ndim(beta) != 0:
        if int(np.prod(np.shape(beta))) != 1:
            raise ValueError(f"Tensor betas[{i}] must be 1-element")
        beta = beta.reshape(())
    return _base.as_number(f"betas[{i}]", beta)


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

    Parameters of any float dtype. bfloat16 and float16 are computed as torch's CPU kernels
    compute them (float32 arithmetic, rounded where torch writes a tensor, `add`'s alpha
    cast to the parameters' dtype): torch's bits, step after step. Their updates come out
    in float32, so `optax.apply_updates` rounds the new parameters once, as torch does.

    Args:
      lr: learning rate, >= 0 (or a 1-element array, as torch's Tensor lr).
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
      An `optax.GradientTransformation` with state `OptState(hyperparams, AdamState,
      origin)`; two `adam(...)` that differ only in numbers compare equal.

    Raises:
      ValueError: torch's messages (`Invalid learning rate: -1`, `Invalid epsilon value:
        -1`, `Invalid beta parameter at index 0: 1.0`, `Invalid weight_decay value: -1`,
        `betas must be either both floats or both Tensors` (e.g. `(0, 0.9)`), `Tensor lr
        must be 1-element`).
    """
    beta1, beta2 = _betas(betas)
    values = {
        "lr": _base.as_lr(lr),
        "beta1": _as_beta(0, beta1),
        "beta2": _as_beta(1, beta2),
        "eps": _base.as_number("eps", eps),
        "weight_decay": _base.as_number("weight_decay", weight_decay),
    }
    _base.check_lr(lr)
    _checks.check_hyper("eps", eps, what="epsilon")
    for i, beta in enumerate((beta1, beta2)):
        if not 0.0 <= values[f"beta{i + 1}"] < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    _checks.check_hyper("weight_decay", weight_decay, what="weight_decay")
    floats = isinstance(beta1, float) and isinstance(beta2, float)
    if not (floats or (_is_tensor(beta1) and _is_tensor(beta2))):  # torch's check, e.g. (0, 0.9)
        raise ValueError("betas must be either both floats or both Tensors")
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
