"""Muon with torch.optim.Muon's arguments, defaults, checks and update rule (2-D params)."""

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
from jaxreg.optim._state import HyperparamsInit, OptState, check_buffers, unwrap

DEFAULT_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch's DEFAULT_A, _B, _C
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


class MuonState(NamedTuple):
    """`muon`'s own state (the `inner` of its `OptState`).

    Attributes:
      step: int32 scalar, updates done so far (torch keeps none; for `adopt` and
        checkpoints).
      momentum_buffer: like params (torch's `state["momentum_buffer"]`).
    """

    step: jax.Array
    momentum_buffer: Any


def _check_2d(params: Any) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if np.ndim(leaf) != 2:
            raise ValueError(
                "Muon only supports 2D parameters whereas we found a parameter with size: "
                f"torch.Size({list(np.shape(leaf))}) (params{jax.tree_util.keystr(path)}). "
                "As in torch, train the 2-D weights with muon and the rest (a bias) with "
                "another optimizer: optax.multi_transform({'muon': jaxreg.optim.muon(...), "
                "'adamw': jaxreg.optim.adamw(...)}, labels), e.g. labels = "
                "jaxreg.linear.Params(weight='muon', bias='adamw')."
            )


@dataclasses.dataclass(frozen=True)
class MuonInit(HyperparamsInit):
    """`muon(...).init`: refuses parameters that are not 2-D, as torch's constructor.

    Returns `OptState(hyperparams={"a", "b", "c", "eps", "lr", "momentum",
    "weight_decay"}, inner=MuonState, origin)`.
    """

    def __call__(self, params: Any) -> OptState:
        _check_2d(params)
        dtype = _checks.float_dtype_of(params)
        if _base.is_half(dtype):
            raise TypeError(
                f"muon: parameters of dtype {np.dtype(dtype).name} are not supported by this "
                "mirror; train in float32 or float64."
            )
        inner = MuonState(_base.zero_step(), _base.zeros_like(params))
        return self.new_state(inner, _base.scalar_dtype())


def _bf16(x: jax.Array) -> jax.Array:
    """`x` rounded to bfloat16, carried in `scalar_dtype()` (torch's bfloat16 tensors: its
    CPU kernels accumulate their few exact bfloat16 products in float32 and round once on
    writing, which the exact sum, rounded once, reproduces; measured: every one of 300
    random `addmm` calls, where a float32 sum in another order missed 2)."""
    return x.astype(jnp.bfloat16).astype(_base.scalar_dtype())


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def newton_schulz(update: jax.Array, hp: dict, ns_steps: int) -> jax.Array:
    """torch's `_zeropower_via_newtonschulz`, in bfloat16 as torch computes it on CPU.

    Returns the bfloat16 values as float32.
    """
    wide = _base.scalar_dtype()
    a, b, c = (hp[k].astype(jnp.float32).astype(wide) for k in ("a", "b", "c"))  # opmath
    x = _bf16(update)
    tall = update.shape[0] > update.shape[1]
    if tall:
        x = x.T
    # ortho_grad.div_(ortho_grad.norm().clamp(min=eps)), each a bfloat16 tensor
    norm = _bf16(jnp.sqrt(jnp.sum(x * x)))
    norm = jnp.maximum(norm, _bf16(hp["eps"]))
    x = _bf16(x / norm)
    for _ in range(ns_steps):
        gram = _bf16(_matmul(x, x.T))
        # addmm(gram, gram, gram, beta=b, alpha=c): b * gram + c * (gram @ gram)
        gram_update = _bf16(b * gram + c * _matmul(gram, gram))
        # addmm(x, gram_update, x, beta=a): a * x + gram_update @ x
        x = _bf16(a * x + _matmul(gram_update, x))
    return x.T if tall else x


def adjusted_ratio(adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """torch's `_adjust_lr` factor for a parameter of `shape` (Python floats)."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    return 0.2 * math.sqrt(max(rows, cols))


@dataclasses.dataclass(frozen=True)
class MuonUpdate:
    """`muon(...).update(grads, state, params)`; hyperparameters come from `state`."""

    nesterov: bool
    ns_steps: int
    adjust_lr_fn: str | None

    def __call__(self, updates: Any, state: OptState, params: Any = None) -> tuple[Any, OptState]:
        hp, inner = unwrap(state, MuonState, "muon")
        _base.require_params(params, "muon", "torch decays the params by 1 - lr * weight_decay")
        _check_2d(params)
        check_buffers("muon", "momentum_buffer", inner.momentum_buffer, params, updates)
        lr = host(hp["lr"])
        momentum = host(hp["momentum"])
        shrink = host(1) - lr * host(hp["weight_decay"])

        def one(p, g, buf):
            buf = _base.lerp(buf, g, like(host(1) - momentum, g))  # buf.lerp_(grad, 1 - m)
            update = _base.lerp(g, buf, like(momentum, g)) if self.nesterov else buf
            ortho = newton_schulz(update, hp, self.ns_steps)
            alpha = -(lr * adjusted_ratio(self.adjust_lr_fn, p.shape))
            new = jax.lax.optimization_barrier(p * like(shrink, p))  # param.mul_(1 - lr wd)
            new = new + like(alpha, p) * ortho.astype(p.dtype)  # add_(update, alpha=...)
            return new - p, buf

        out = jax.tree.map(one, params, updates, inner.momentum_buffer)
        treedef = jax.tree.structure(params)
        new_updates, bufs = (
            treedef.unflatten(x) for x in zip(*treedef.flatten_up_to(out), strict=True)
        )
        step = optax.safe_int32_increment(inner.step)
        return new_updates, OptState(hp, MuonState(step, bufs), state.origin)


def muon(
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = DEFAULT_NS_COEFFICIENTS,
    eps: float = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
) -> optax.GradientTransformation:
    r"""Muon exactly as `torch.optim.Muon` computes it on CPU, for 2-D parameters.

    For each (2-D) parameter `p` and gradient `g`:

        B <- lerp(B, g, 1 - momentum)                    (B starts at 0)
        U = lerp(g, B, momentum) if nesterov else B
        O = NS(U): in bfloat16, X = U / max(||U||, eps) (transposed when tall), then
            ns_steps times  A = X X^T;  X <- a X + (b A + c A A) X
        p <- p * (1 - lr * weight_decay) - lr * ratio * O
        ratio = sqrt(max(1, rows / cols))  ("original", the default), or
                0.2 * sqrt(max(rows, cols))  ("match_rms_adamw")

    The Newton-Schulz iteration runs in bfloat16 as torch's: every tensor it writes is
    rounded to bfloat16 (its CPU kernels accumulate in float32), the orthogonalised update
    is bfloat16 and is added to the float32/float64 parameters. torch refuses any parameter
    that is not 2-D (an `nn.Linear`'s bias); its idiom is Muon for the weight and another
    optimizer for the rest, here `optax.multi_transform({"muon": muon(...), "adamw":
    adamw(...)}, jaxreg.linear.Params(weight="muon", bias="adamw"))`, which `jaxreg.fit`
    trains as torch's loop stepping both optimizers.

    Args:
      lr: learning rate, >= 0.
      weight_decay: decoupled weight decay, >= 0 (torch's default 0.1).
      momentum: momentum factor, >= 0.
      nesterov: Nesterov momentum.
      ns_coefficients: `(a, b, c)` of the quintic Newton-Schulz iteration.
      eps: lower bound on the update's norm before normalising.
      ns_steps: Newton-Schulz iterations (< 100, as torch).
      adjust_lr_fn: None or "original" (`sqrt(max(1, rows / cols))`), or
        "match_rms_adamw" (`0.2 * sqrt(max(rows, cols))`).

    Returns:
      An `optax.GradientTransformation` with state `OptState(hyperparams, MuonState,
      origin)`; `init` and `update` refuse parameters that are not 2-D.

    Raises:
      ValueError: torch's messages (`Learning rate should be >= 0 but is: -1`, `momentum
        should be >= 0 but is: -1`, `weight decay should be >= 0 but is: -1`, `Adjust
        learning rate function arbitrary is not supported`, `Number of steps must be
        less than 100 for computational efficiency`, `Coefficients must be a tuple of
        exactly 3 values`, `Muon only supports 2D parameters whereas we found a parameter
        with size: torch.Size([1])`).
    """
    lr_value = _base.as_lr(lr)
    if not 0.0 <= lr_value:
        raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
    if not 0.0 <= _base.as_number("momentum", momentum):
        raise ValueError(f"momentum should be >= 0 but is: {momentum}")
    if not 0.0 <= _base.as_number("weight_decay", weight_decay):
        raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
    if adjust_lr_fn not in ADJUST_LR_FNS:
        raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, (int, np.integer)) or ns_steps < 0:
        raise ValueError(f"muon: ns_steps must be an integer >= 0, got {ns_steps!r}")
    if ns_steps >= 100:  # torch raises it at the first step
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(ns_coefficients) != 3:  # torch raises it at the first step
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = ns_coefficients
    values = {
        "lr": lr_value,
        "weight_decay": _base.as_number("weight_decay", weight_decay),
        "momentum": _base.as_number("momentum", momentum),
        "a": _base.as_number("ns_coefficients[0]", a),
        "b": _base.as_number("ns_coefficients[1]", b),
        "c": _base.as_number("ns_coefficients[2]", c),
        "eps": _base.as_number("eps", eps),
    }
    return optax.GradientTransformation(
        MuonInit(hyperparams=values),
        MuonUpdate(nesterov=bool(nesterov), ns_steps=int(ns_steps), adjust_lr_fn=adjust_lr_fn),
    )
