"""`assert_port_matches`: `parity.verify` as an assertion for your own test suite.

    from parity.testing import assert_port_matches

    def test_my_port():
        assert_port_matches(model, F.mse_loss, opt, my_loss, my_tx, x, y, steps=100)

Fails (an `AssertionError`, `parity.ParityError`) with the diagnosis: the first step
that differs beyond rounding, which component (predictions, loss, gradients, optimizer
update) and its likely cause; or, before training, the setting that differs. A port whose
free run drifts only because the dynamics amplify rounding passes. Importing this module
imports neither torch nor matplotlib (`verify` imports torch when called).
"""

from __future__ import annotations

from typing import Any

import parity
from parity.compare import Comparison, ParityError


def assert_port_matches(*args: Any, **kwargs: Any) -> Comparison:
    """`parity.verify(*args, **kwargs)`, raising `ParityError` (an `AssertionError`) unless
    the port matches. A settings difference found before training (a `ValueError` from
    the preflight) is raised as the same `AssertionError`, its message kept. Returns the
    `Comparison`."""
    try:
        cmp = parity.verify(*args, **kwargs)
    except ValueError as e:
        if type(e).__name__ not in ("SettingsError", "NameMapError"):
            raise
        raise ParityError(f"the port does not match before training: {e}") from e
    return cmp.raise_if_failed()
