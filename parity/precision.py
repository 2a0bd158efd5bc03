"""JAX's x64 mode, scoped to one run: float64 where a run asks for it, never process-wide.

`import parity` leaves `jax_enable_x64` as it finds it. A run switches it inside a
`with` block only (`jax.enable_x64(...)`, a context manager of JAX's config; jaxreg's
optimizers read the same setting through `jax.config.read`, so their host scalars follow
it), and the caller's setting is back when the block ends, also after an exception.

- A scenario is a complete description, so it fixes the mode both ways (`for_scenario`):
  on for a float64 scenario, off for a float32 one, whatever the caller's setting (the test
  session turns x64 on globally; the CLI leaves it off). A float32 scenario therefore runs
  as a float32 jaxreg user's program runs by default: float32 arrays and float32 host
  scalars (Adam's bias corrections, a schedule's learning rates).
- `parity.verify` runs the user's port: float64 tensors turn x64 on for the run
  (`at_least`); float32 ones leave the caller's setting alone.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import numpy as np


def is_float64(dtype: Any) -> bool:
    """Whether `dtype` (a NumPy/jax dtype, or its name) is float64."""
    return np.dtype(dtype) == np.float64


def for_scenario(dtype: Any) -> contextlib.AbstractContextManager:
    """x64 on for a float64 run, off for a float32 one, for the duration of a `with`."""
    return jax.enable_x64(is_float64(dtype))


def at_least(dtype: Any) -> contextlib.AbstractContextManager:
    """x64 on for a float64 run; the caller's setting, untouched, otherwise."""
    return jax.enable_x64(True) if is_float64(dtype) else contextlib.nullcontext()


def x64_enabled() -> bool:
    """The setting in effect here (a `with` block's, else the process's)."""
    return bool(jax.config.read("jax_enable_x64"))
