"""The reference formulation: `jax.value_and_grad` of the objective, as written."""

from __future__ import annotations

from typing import Any

import jax


def value_and_grad(objective: Any, params: Any, x: Any, y: Any):
    """`jax.value_and_grad(objective)(params, x, y)`."""
    return jax.value_and_grad(objective)(params, x, y)
