"""Validation at the boundary: shapes, dtypes and values, with messages that name the fix.

Everything here runs in Python. Shape and dtype checks read static information, so they
are free inside a traced function (they run once, at trace time). Value checks
(`check_finite`, `check_nonempty`) need concrete arrays and are called only where data
enters the library (`fit`, `make_step`'s wrapper, the loaders in `jaxreg.data`).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class PrecisionWarning(UserWarning):
    """float64 input computed in float32 because JAX's x64 mode is off."""


def x64_enabled() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


def is_concrete(x: Any) -> bool:
    """True for values we can look at (NumPy arrays, Python scalars, committed jax arrays)."""
    return not isinstance(x, jax.core.Tracer)


def warn_if_float64_truncated(name: str, x: Any) -> None:
    """Warn once per call when float64 data would silently become float32."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and np.dtype(dtype) == np.float64 and not x64_enabled():
        warnings.warn(
            f"{name} is float64 but JAX's x64 mode is off, so it is computed in float32. "
            "Enable it with jax.config.update('jax_enable_x64', True) before creating arrays, "
            "or pass float32 data to silence this warning.",
            PrecisionWarning,
            stacklevel=3,
        )


_FLOATS = frozenset(np.dtype(d) for d in (jnp.float64, jnp.float32, jnp.bfloat16, jnp.float16))


def float_dtype_of(tree: Any, what: str = "parameters") -> np.dtype:
    """The common float dtype of a params pytree; `TypeError` for integer or bool leaves."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(f"the {what} pytree has no arrays in it")
    first = getattr(leaves[0], "dtype", None)
    if first in _FLOATS:  # the common case, cheaply (a step calls this every time)
        for leaf in leaves[1:]:
            if getattr(leaf, "dtype", None) != first:
                break
        else:
            return first
    dtypes = {
        np.dtype(leaf.dtype if hasattr(leaf, "dtype") else jnp.result_type(leaf)) for leaf in leaves
    }
    if all(jnp.issubdtype(d, jnp.floating) for d in dtypes):
        return dtypes.pop() if len(dtypes) == 1 else np.dtype(jnp.result_type(*dtypes))
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dtype = np.dtype(leaf.dtype if hasattr(leaf, "dtype") else jnp.result_type(leaf))
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{what} must be floating point (real), but "
                f"{jax.tree_util.keystr(path) or 'the leaf'} has dtype {dtype}. Create them as "
                "floats, e.g. jnp.zeros(..., jnp.float32) (torch also refuses gradients for "
                "integer tensors)."
            )
    raise AssertionError("unreachable")  # pragma: no cover


def params_dtype(params: Any) -> np.dtype:
    """The dtype training runs in: `float_dtype_of(params)`, warning if x64 would narrow it."""
    dtype = float_dtype_of(params)
    if dtype == np.float64 and not x64_enabled():
        warnings.warn(
            "the parameters are float64 but JAX's x64 mode is off, so training runs in "
            "float32. Enable it with jax.config.update('jax_enable_x64', True) before "
            "creating arrays, or pass float32 parameters to silence this.",
            PrecisionWarning,
            stacklevel=3,
        )
        return np.dtype(np.float32)
    return dtype


def as_array(name: str, x: Any) -> jax.Array | np.ndarray:
    """`x` as a jax array (kept) or a NumPy array, refusing what cannot be data.

    torch tensors are converted on the host (`.detach().cpu().numpy()`, torch is not
    imported); lists become NumPy arrays. `TypeError` for ragged lists, strings, objects
    and complex numbers, naming `name`.
    """
    if isinstance(x, jax.Array):
        arr = x
    else:
        if _is_torch_tensor(x):
            x = x.detach().cpu()
            x = x.float().numpy() if str(x.dtype) == "torch.bfloat16" else x.numpy()
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise TypeError(
                f"{name} could not be read as a numeric array ({e}); pass a NumPy or jax array "
                "(a list of lists must have rows of equal length)"
            ) from None
    dtype = np.dtype(arr.dtype)
    _refuse_complex(name, dtype)
    if not (jnp.issubdtype(dtype, jnp.number) or dtype == np.bool_):
        raise TypeError(
            f"{name} must hold numbers, got an array of dtype {dtype} (shape {arr.shape})"
        )
    return arr


def as_key(name: str, key: Any) -> jax.Array:
    """A JAX PRNG key from `key`: a key (new-style or a raw uint32 (2,) array), or an int
    seed as `jax.random.key(seed)`; `TypeError` naming `name` otherwise."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        or (key.dtype == np.uint32 and key.shape == (2,))
    ):
        return key
    raise TypeError(
        f"{name} must be a JAX PRNG key (jax.random.key(0)) or an int seed, got "
        f"{type(key).__name__} {key!r}"
    )


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def as_data(name: str, x: Any, dtype: Any) -> jax.Array | np.ndarray:
    """`x` as an array of float dtype `dtype` (integers and bools are promoted).

    Shapes are not changed. Warns (`PrecisionWarning`) for float64 input with x64 off.
    Host data (lists, NumPy) stays a NumPy array, converted on the host: a jitted function
    transfers it on the call, which costs less than a separate `jnp.asarray`.
    """
    warn_if_float64_truncated(name, x)
    if isinstance(x, jax.Array):
        _refuse_complex(name, x.dtype)
        return x if x.dtype == dtype else x.astype(dtype)
    arr = as_array(name, x)
    return arr if arr.dtype == dtype else arr.astype(dtype)


def _refuse_complex(name: str, dtype: Any) -> None:
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{name} is complex ({np.dtype(dtype)}); jaxreg trains on real numbers. Pass the "
            f"real part ({name}.real) if that is what you mean, or split real and imaginary "
            "parts into columns."
        )


def check_range(name: str, x: Any, low: float, high: float, *, fn: str, torch_name: str) -> None:
    """`ValueError` naming the first element of a concrete `x` outside [low, high] (NaN
    passes, as in torch); tracers pass (values are unknown at trace time)."""
    if not is_concrete(x):
        return
    found = first_outside(x, low, high)
    if found is not None:
        _, first, value = found
        raise ValueError(
            f"{fn}: all elements of {name} should be between {low:g} and {high:g} (torch: "
            f"'all elements of {torch_name} should be between 0 and 1'); {value!r} "
            f"at index {first} is not."
        )


def first_outside(x: Any, low: float, high: float) -> tuple[int, tuple[int, ...], Any] | None:
    """(how many, index of the first, its value) of the elements of concrete `x` outside
    [low, high], or None if there are none (NaN is not outside)."""
    arr = np.asarray(x)
    bad = (arr < low) | (arr > high)
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return int(bad.sum()), first, arr[first].item()


def check_flag(name: str, value: Any) -> None:
    """`TypeError` naming `name` unless `value` is a bool (Python's or NumPy's)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_nonempty(name: str, x: Any) -> None:
    if np.size(x) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(np.shape(x))}); there is nothing to fit.")


def check_finite(name: str, x: Any) -> None:
    """`ValueError` naming the first NaN/inf element of a concrete array."""
    arr = np.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.inexact):
        return
    finite = np.isfinite(arr.astype(np.float32) if arr.dtype.itemsize < 4 else arr)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    first = tuple(int(i) for i in bad[0])
    where = f"row {first[0]}" + (f", column {first[1]}" if len(first) > 1 else "")
    raise ValueError(
        f"{name} contains {bad.shape[0]} non-finite value(s) (NaN or inf); the first is "
        f"{arr[first].item()} at index {first} ({where}). Clean or drop those rows before fitting."
    )


def check_same_shape(pred: Any, target: Any, *, fn: str) -> None:
    """`ValueError` unless prediction and target have exactly the same shape.

    torch broadcasts (n,) against (n, 1) to (n, n) with only a warning; we refuse.
    """
    ps, ts = tuple(jnp.shape(pred)), tuple(jnp.shape(target))
    if ps == ts:
        return
    hint = ""
    if len(ps) == 2 and ps[1] == 1 and ts == ps[:1]:
        hint = " Reshape the target with y.reshape(-1, 1) (torch: y.view_as(pred))."
    elif len(ts) == 2 and ts[1] == 1 and ps == ts[:1]:
        hint = " Reshape the prediction with pred.reshape(-1, 1) or the target with y.reshape(-1)."
    elif len(ps) == 2 and len(ts) == 1 and ps[0] == 1 and ps[1] == ts[0]:
        hint = " The prediction is a row; transpose it (pred.T) or use y.reshape(1, -1)."
    elif len(ts) == 2 and len(ps) == 1 and ts[0] == 1 and ts[1] == ps[0]:
        hint = " The target is a row; use y.reshape(-1)."
    else:
        hint = " Make both the same shape, e.g. target.reshape(prediction.shape)."
    raise ValueError(
        f"{fn}: prediction shape {ps} and target shape {ts} differ; broadcasting them would "
        f"silently compare every prediction with every target.{hint}"
    )


def check_features(x_shape: tuple[int, ...], in_features: int, *, fn: str) -> None:
    if len(x_shape) == 0:
        raise ValueError(f"{fn}: x must have shape (n, {in_features}); got a scalar.")
    if x_shape[-1] != in_features:
        hint = ""
        if len(x_shape) == 1 and in_features == 1:
            hint = f" For {x_shape[0]} samples of one feature use x.reshape(-1, 1)."
        raise ValueError(
            f"{fn}: x has {x_shape[-1]} column(s) (shape {x_shape}) but the model has "
            f"in_features={in_features}; x must have shape (n, {in_features}).{hint}"
        )


def check_hyper(name: str, value: float, *, low: float = 0.0, what: str = "") -> None:
    """torch.optim's style: `ValueError(f"Invalid {what}: {value}")` when `value < low`."""
    if isinstance(value, jax.Array) and not is_concrete(value):
        return
    if not float(value) >= low:  # also catches NaN
        raise ValueError(f"Invalid {what or name} value: {value}")
