"""`parity.verify`'s arguments, checked before any work: types, ranges, the data.

Every problem is a `TypeError` (a missing argument, or one of the wrong type) or a
`ValueError` (a value out of range: `steps=0`, `tolerance=-1`, rows that differ), and
names the argument. What the two programs compute is compared next, by
`parity.preflight`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np
import torch

from parity.tolerances import Tolerance


@dataclasses.dataclass(frozen=True)
class Call:
    """`verify`'s arguments after `check_arguments`: the run's length and the data."""

    epochs: int
    x: np.ndarray
    y: np.ndarray
    jax_x: np.ndarray
    jax_y: np.ndarray


def _int(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"verify: {name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"verify: {name} must be >= {low}, got {value}")
    return int(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"verify: {name} must be True or False, got {value!r}")
    return bool(value)


def _array(name: str, value: Any, *, classes: bool = False) -> np.ndarray:
    """A float array; with `classes`, also 1-D integer class indices (torch's int64)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as e:
        raise TypeError(f"verify: {name} must be an array (NumPy, torch, jax): {e}") from None
    if classes and arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"verify: {name} must be floating point (as the torch model takes it), got "
            f"{arr.dtype} ({type(value).__name__})"
        )
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"verify: {name} must have at least one row, got shape {arr.shape}")
    return arr


def check_arguments(
    *,
    torch_model: Any,
    torch_loss_fn: Any,
    torch_optimizer: Any,
    jax_loss_fn: Any,
    jax_tx: Any,
    x: Any,
    y: Any,
    steps: Any,
    epochs: Any,
    jax_data: Any,
    batch_size: Any,
    shuffle: Any,
    seed: Any,
    drop_last: Any,
    tolerance: Any,
    name: Any,
    check_settings: Any,
    jax_step: Any = None,
) -> Call:
    """Every argument's type and range; the run's epochs and the data as NumPy arrays.

    Raises:
      TypeError: a missing argument or one of the wrong type, named.
      ValueError: a value out of range (steps=0, tolerance=-1, ...), named.
    """
    if not isinstance(torch_model, torch.nn.Module):
        raise TypeError(
            f"verify: torch_model must be a torch.nn.Module (or a parity.Scenario), got "
            f"{type(torch_model).__name__}"
        )
    port = (("jax_loss_fn", jax_loss_fn, "(params, x, y) -> scalar"),)
    if jax_step is not None:
        if jax_loss_fn is not None or jax_tx is not None:
            raise TypeError(
                "verify: pass the port either as jax_loss_fn and jax_tx, or as jax_step "
                "(with jax_opt_state), not both"
            )
        port = (("jax_step", jax_step, "(params, opt_state, x, y) -> (params, opt_state, loss)"),)
    for arg, value, what in (
        ("torch_loss_fn", torch_loss_fn, "(prediction, target) -> scalar tensor"),
        *port,
    ):
        if value is None:
            raise TypeError(f"verify needs {arg}, a function {what}")
        if not callable(value):
            raise TypeError(f"verify: {arg} must be a function {what}, got {value!r}")
    if torch_optimizer is None:
        raise TypeError("verify needs torch_optimizer, a torch.optim optimizer")
    if not isinstance(torch_optimizer, torch.optim.Optimizer):
        raise TypeError(
            "verify: torch_optimizer must be a torch.optim.Optimizer, got "
            f"{type(torch_optimizer).__name__}"
        )
    if jax_step is not None:
        pass
    elif jax_tx is None:
        raise TypeError("verify needs jax_tx, an optax transformation such as jr.optim.sgd(lr)")
    elif not (
        callable(getattr(jax_tx, "init", None)) and callable(getattr(jax_tx, "update", None))
    ):
        raise TypeError(
            "verify: jax_tx must be an optax GradientTransformation (e.g. jr.optim.sgd(lr)), "
            f"got {type(jax_tx).__name__}"
        )
    if x is None or y is None:
        raise TypeError("verify needs the data x and y")
    xa, ya = _array("x", x), _array("y", y, classes=True)
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(f"verify: x has {xa.shape[0]} rows and y {ya.shape[0]}; they must match")
    if jax_data is None:
        jx, jy = xa, ya
    else:
        if not isinstance(jax_data, (tuple, list)) or len(jax_data) != 2:
            raise TypeError(
                f"verify: jax_data must be a pair (x, y), got {type(jax_data).__name__}"
            )
        jx = _array("jax_data[0]", jax_data[0])
        jy = _array("jax_data[1]", jax_data[1], classes=True)
        for arg, a, b in (("jax_data[0]", jx, xa), ("jax_data[1]", jy, ya)):
            if a.size != b.size:
                raise ValueError(
                    f"verify: {arg} has shape {a.shape}, the torch data {b.shape}: jax_data "
                    "must hold the same numbers, reshaped"
                )
    shuffle = _bool("shuffle", shuffle)
    drop_last = _bool("drop_last", drop_last)
    _bool("check_settings", check_settings)
    _int("seed", seed, low=0)
    if not isinstance(name, str):
        raise TypeError(f"verify: name must be a string, got {name!r}")
    if batch_size is None:
        for arg, value in (("steps", steps), ("epochs", epochs)):
            if value is not None:
                _int(arg, value, low=1)
        if steps is not None and epochs is not None and steps != epochs:
            raise ValueError(
                f"verify: full batch, steps ({steps}) and epochs ({epochs}) are the same thing; "
                "pass one"
            )
        n_epochs = steps if steps is not None else epochs
        if n_epochs is None:
            raise TypeError("verify needs steps= (full batch) or epochs= (mini-batches)")
    else:
        batch_size = _int("batch_size", batch_size, low=1)
        if steps is not None:
            raise ValueError(
                "verify: with batch_size, pass epochs= (passes over the data), not steps="
            )
        if epochs is None:
            raise TypeError("verify needs epochs= with batch_size")
        n_epochs = _int("epochs", epochs, low=1)
        if drop_last and batch_size > xa.shape[0]:
            raise ValueError(
                f"verify: batch_size {batch_size} with drop_last=True and {xa.shape[0]} rows "
                "leaves no batch to train on"
            )
    check_tolerance(tolerance)
    return Call(n_epochs, xa, ya, jx, jy)


def check_tolerance(tolerance: Any) -> None:
    """None, a `Tolerance`, or a finite relative tolerance >= 0."""
    if tolerance is None or isinstance(tolerance, Tolerance):
        return
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise TypeError(
            f"verify: tolerance must be a parity.Tolerance or a number, got {tolerance!r}"
        )
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(
            f"verify: tolerance is a relative deviation, a finite number >= 0; got {tolerance}"
        )
