"""Adafactor with torch.optim.Adafactor's arguments, defaults, checks and update rule."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _checks
from jaxreg.optim import _base
from jaxreg.optim._base import host, like
from jaxreg.optim._state import HyperparamsInit, OptState, unwrap


class AdafactorState(NamedTuple):
    """`adafactor`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch's `state["step"]`).
      row_var: per parameter of 2 or more dimensions, the row factor of the second moment
        (shape `(..., m, 1)`); for a vector or scalar parameter, its full second moment
        (torch's `state["variance"]`).
      col_var: per parameter of 2 or more dimensions, the column factor (`(..., 1, n)`);
        for a vector or scalar an empty `(0,)` placeholder.
    """

    step: jax.Array
    row_var: Any
    col_var: Any


def _factored(p: Any) -> bool:
    return np.ndim(p) > 1


def _row_zeros(p: Any) -> np.ndarray:
    shape = (*np.shape(p)[:-1], 1) if _factored(p) else np.shape(p)
    return np.zeros(shape, p.dtype)


def _col_zeros(p: Any) -> np.ndarray:
    if not _factored(p):
        return np.zeros((0,), p.dtype)
    shape = np.shape(p)
    return np.zeros((*shape[:-2], 1, shape[-1]), p.dtype)


@dataclasses.dataclass(frozen=True)
class AdafactorInit(HyperparamsInit):
    """`adafactor(...).init`. Compares equal for any numbers.

    Returns `OptState(hyperparams={"beta2_decay", "d", "eps2", "lr", "weight_decay"},
    inner=AdafactorState, origin)`.
    """

    def __call__(self, params: Any) -> OptState:
        dtype = _float_dtype(params)
        inner = AdafactorState(
            step=_base.zero_step(),
            row_var=jax.tree.map(_row_zeros, params),
            col_var=jax.tree.map(_col_zeros, params),
        )
        return self.new_state(inner, _base.hyper_dtype(dtype))


def _float_dtype(params: Any) -> np.dtype:
    dtype = _checks.float_dtype_of(params)
    if _base.is_half(dtype):
        raise TypeError(
            f"adafactor: parameters of dtype {np.dtype(dtype).name} are not supported (torch "
            "computes its norms of half-precision tensors in float32, which this mirror does "
            "not reproduce); train in float32 or float64."
        )
    return np.dtype(dtype)


def _norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(x * x))


def _max(a: jax.Array, b: jax.Array) -> jax.Array:
    """Python's `max(a, b)`: `a` unless `b > a`."""
    return jnp.where(b > a, b, a)


@dataclasses.dataclass(frozen=True)
class AdafactorUpdate:
    """`adafactor(...).update(grads, state, params)`; hyperparameters come from `state`.

    `eps1` is structural: None (torch's default, the parameters' dtype's machine epsilon)
    or a number.
    """

    eps1: float | None
    weight_decay: bool
    maximize: bool

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, AdafactorState, "adafactor")
        _base.require_params(params, "adafactor", "its step size scales with the params' norm")
        step = optax.safe_int32_increment(inner.step)
        g = _base.torch_grads(updates, params, hp, "adafactor", maximize=self.maximize, l2=False)
        t = host(step)
        lr = host(hp["lr"])
        one_minus_beta2_t = t ** host(hp["beta2_decay"])  # step_float ** beta2_decay
        inv_root_t = 1 / _base.python_sqrt(t)
        rho = jnp.where(inv_root_t < lr, inv_root_t, lr)  # min(lr, 1 / step ** 0.5)
        shrink = host(1) - lr * host(hp["weight_decay"])
        d = host(hp["d"])
        eps2 = host(hp["eps2"])

        def one(p, g, row, col):
            dt = p.dtype
            eps1 = float(np.finfo(dt).eps) if self.eps1 is None else self.eps1
            root_n = math.sqrt(p.size)  # Python's numel ** 0.5
            # alpha = max(eps2, param.norm(2).item() / numel ** 0.5) * rho_t
            alpha = _max(eps2, _norm(p).astype(t.dtype) / root_n) * rho
            new = p
            if self.weight_decay:  # param.mul_(1 - lr * weight_decay)
                new = jax.lax.optimization_barrier(p * like(shrink, p))
            w = like(one_minus_beta2_t, g)
            if _factored(p):
                # norm(grad, dim).square_().div_(size): a norm, squared, divided
                row_norm = jnp.sqrt(jnp.sum(g * g, axis=-1, keepdims=True))
                row_mean = _base.divide_by_scalar(row_norm * row_norm, jnp.asarray(g.shape[-1]))
                row = _base.lerp(row, row_mean, w)
                col_norm = jnp.sqrt(jnp.sum(g * g, axis=-2, keepdims=True))
                col_mean = _base.divide_by_scalar(col_norm * col_norm, jnp.asarray(g.shape[-2]))
                col = _base.lerp(col, col_mean, w)
                # var_estimate = row_var @ col_var, divided by row_var's mean over rows
                scale = jnp.maximum(jnp.mean(row, axis=-2, keepdims=True), jnp.asarray(eps1, dt))
                var = jax.lax.optimization_barrier(row * col) / scale
            else:
                row = _base.lerp(row, jax.lax.optimization_barrier(g * g), w)
                var = row
            # var_estimate.clamp_(min=eps1 * eps1).rsqrt_(), times grad
            update = jax.lax.optimization_barrier(
                1 / jnp.sqrt(jnp.maximum(var, jnp.asarray(eps1 * eps1, dt)))
            )
            update = update * g
            # denom = max(1.0, update.norm(2).item() / (numel ** 0.5 * d))
            denom = _max(host(1), _norm(update).astype(t.dtype) / (root_n * d))
            new = new + like(-alpha / denom, update) * update  # add_(update, alpha=...)
            return new - p, row, col

        out = jax.tree.map(one, params, g, inner.row_var, inner.col_var)
        treedef = jax.tree.structure(params)
        leaves = treedef.flatten_up_to(out)
        new_updates, rows, cols = (treedef.unflatten(x) for x in zip(*leaves, strict=True))
        return new_updates, OptState(hp, AdafactorState(step, rows, cols), state.origin)


def adafactor(
    lr: float = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] = (None, 1e-3),
    d: float = 1.0,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""Adafactor exactly as `torch.optim.Adafactor` computes it (single-tensor path).

    For each parameter `p` (`N` entries) and gradient `g`, step `t = 1, 2, ...`:

        g <- -g                                          if maximize
        b_t = t ** beta2_decay;  rho_t = min(lr, 1 / sqrt(t))
        alpha = max(eps2, ||p||_2 / sqrt(N)) * rho_t     (before the weight decay)
        p <- p * (1 - lr * weight_decay)
        p of 2+ dims (m x n in the last two): the second moment factored,
            R <- lerp(R, ||g||_row^2 / n, b_t);  C <- lerp(C, ||g||_col^2 / m, b_t)
            V = R C / max(mean(R), eps1)
        else: V <- lerp(V, g * g, b_t)
        u = g / sqrt(max(V, eps1 ** 2))
        p <- p - alpha / max(1, ||u||_2 / (sqrt(N) d)) * u

    `eps1=None` (torch's default) is the parameters' dtype's machine epsilon. The scalars
    are torch's Python floats (`scalar_dtype()`); the norms are taken in the parameters'
    dtype and read out as torch's `.item()`. The update returned is the new parameters
    minus the old, so `optax.apply_updates` gives torch's (exactly while they are within a
    factor 2 of each other). Float32 and float64 parameters (half precision: `TypeError`).

    Where optax differs: `optax.adafactor` is the original paper's (relative step sizes,
    update clipping by RMS, momentum option, factoring only above a size threshold); it is
    not torch's rule.

    Args:
      lr: learning rate (the cap on `rho_t`), >= 0.
      beta2_decay: the second-moment decay exponent, <= 0.
      eps: `(eps1, eps2)`: `eps1` (None or >= 0) bounds the variance from below, `eps2`
        (>= 0) the parameter scale.
      d: the update's clipping threshold, >= 1.
      weight_decay: decoupled weight decay, >= 0.
      maximize: ascend the objective.

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, AdafactorState,
      origin)`; `update` needs `params`.

    Raises:
      ValueError: torch's messages (`Learning rate should be >= 0 but is: -1`,
        `beta2_decay should be <= 0 but is: 0.8`, `epsilon1 should be >= 0 but is: -1`,
        `epsilon2 should be >= 0 but is: -1`, `Clipping threshold d should be >= 1 but
        is: 0.0`, `weight_decay should be >= 0 but is: -1`, `Tensor lr must be
        1-element`).
    """
    try:
        eps1, eps2 = eps
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a pair (eps1, eps2), got {eps!r}") from None
    lr_value = _base.as_lr(lr)
    values = {
        "lr": lr_value,
        "beta2_decay": _base.as_number("beta2_decay", beta2_decay),
        "eps2": _base.as_number("eps[1]", eps2),
        "d": _base.as_number("d", d),
        "weight_decay": _base.as_number("weight_decay", weight_decay),
    }
    eps1_value = None if eps1 is None else _base.as_number("eps[0]", eps1)
    if not 0.0 <= lr_value:
        raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
    if not 0.0 >= values["beta2_decay"]:
        raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
    if eps1_value is not None and not 0.0 <= eps1_value:
        raise ValueError(f"epsilon1 should be >= 0 but is: {eps1}")
    if not 0.0 <= values["eps2"]:
        raise ValueError(f"epsilon2 should be >= 0 but is: {eps2}")
    if not 1.0 <= values["d"]:
        raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
    if not 0.0 <= values["weight_decay"]:
        raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
    return optax.GradientTransformation(
        AdafactorInit(hyperparams=values),
        AdafactorUpdate(
            eps1=eps1_value,
            weight_decay=_base.nonzero("weight_decay", values["weight_decay"]),
            maximize=bool(maximize),
        ),
    )
