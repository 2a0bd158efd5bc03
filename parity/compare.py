"""One comparison of two trajectories: how far jax is from torch, for every quantity and step.

For each quantity q (every parameter, and the loss) and step t:

    abs_dev[t] = max over the elements of |jax_q[t] - torch_q[t]|
    rel_dev[t] = abs_dev[t] / scale_q,   scale_q = max over all steps and elements of |torch_q|

The denominator is the quantity's own magnitude over the whole torch run, not its value
at step t: a parameter that passes through zero (or a loss that falls to ~0) would
otherwise turn a rounding-level difference into an arbitrarily large "relative" one. A
quantity that is zero all run long (scale 0) uses scale 1, i.e. the absolute deviation.

A NaN or inf never compares equal, to anything: wherever either side has one, the
deviation is infinite, so a run in which both sides diverged fails (two ports that both
blow up prove nothing about each other).

The scenario passes when every quantity's max relative deviation is within the
tolerance (`parity.tolerances`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from parity.scenario import Trajectory
from parity.tolerances import Tolerance


class ParityError(AssertionError):
    """jax and torch trajectories differ by more than the tolerance."""


@dataclasses.dataclass(frozen=True)
class Deviation:
    """How far one quantity's jax trajectory is from torch's.

    Attributes:
      name: "loss" or the parameter's torch name.
      abs_by_step: (steps,) max over elements of |jax - torch| after each step.
      scale: max |torch value| over the run (the denominator of the relative deviation).
    """

    name: str
    abs_by_step: np.ndarray
    scale: float

    @property
    def rel_by_step(self) -> np.ndarray:
        return self.abs_by_step / (self.scale if self.scale > 0 else 1.0)

    @property
    def max_abs(self) -> float:
        return float(np.max(self.abs_by_step)) if self.abs_by_step.size else 0.0

    @property
    def max_rel(self) -> float:
        return float(np.max(self.rel_by_step)) if self.abs_by_step.size else 0.0

    @property
    def worst_step(self) -> int:
        return int(np.argmax(self.rel_by_step)) if self.abs_by_step.size else 0


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The result of comparing a jax trajectory with torch's.

    Attributes:
      name: the scenario's (or the user's) name for the run.
      steps: the number of steps compared.
      deviations: {quantity: Deviation}, "loss" first, then the parameters.
      tolerance: the bound `max_rel` is held to.
    """

    name: str
    steps: int
    deviations: dict[str, Deviation]
    tolerance: Tolerance

    @property
    def max_abs(self) -> float:
        return max((d.max_abs for d in self.deviations.values()), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((d.max_rel for d in self.deviations.values()), default=0.0)

    @property
    def worst(self) -> Deviation:
        """The quantity with the largest relative deviation."""
        return max(self.deviations.values(), key=lambda d: d.max_rel)

    @property
    def passed(self) -> bool:
        return self.max_rel <= self.tolerance.rtol

    def summary(self) -> str:
        w = self.worst
        verdict = "PASS" if self.passed else "FAIL"
        worst = w.abs_by_step[w.worst_step] if w.abs_by_step.size else 0.0
        diverged = "; NaN or inf there (a side diverged)" if not np.isfinite(worst) else ""
        return (
            f"{self.name}: {verdict}: max rel deviation {self.max_rel:.3g} (tolerance "
            f"{self.tolerance.rtol:.3g}, {self.tolerance.name}), worst: {w.name} at step "
            f"{w.worst_step} of {self.steps} (abs {worst:.3g}, scale {w.scale:.3g}){diverged}"
        )

    def raise_if_failed(self) -> Comparison:
        """Raise `ParityError` with `summary()` unless passed; returns self."""
        if not self.passed:
            raise ParityError(self.summary() + "\n" + self.tolerance.reason)
        return self


def _abs_dev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(steps,) max over elements of |a - b|; inf where either side is NaN or inf."""
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(a - b)
    d = np.where(np.isfinite(a) & np.isfinite(b), d, np.inf)
    return d.max(axis=1) if d.shape[1] else np.zeros(d.shape[0])


def _scale(a: np.ndarray) -> float:
    finite = np.abs(a[np.isfinite(a)]).astype(np.float64)
    return float(finite.max()) if finite.size else 0.0


def compare(name: str, torch: Trajectory, jax: Trajectory, tolerance: Tolerance) -> Comparison:
    """Compare `jax` against `torch` (the reference) step by step.

    Raises:
      ValueError: the trajectories do not have the same steps, names and shapes (a
        structural mismatch is a bug in a side, not a deviation).
    """
    if torch.losses.shape != jax.losses.shape:
        raise ValueError(
            f"{name}: torch made {torch.losses.shape[0]} steps, jax {jax.losses.shape[0]}"
        )
    if set(torch.params) != set(jax.params):
        raise ValueError(
            f"{name}: parameter names differ: torch {list(torch.params)}, jax {list(jax.params)}"
        )
    quantities = {"loss": (torch.losses, jax.losses)}
    for k in torch.params:
        t, j = np.asarray(torch.params[k]), np.asarray(jax.params[k])
        if t.shape != j.shape:
            raise ValueError(f"{name}: {k} has shape {t.shape} in torch and {j.shape} in jax")
        quantities[k] = (t, j)
    deviations = {k: Deviation(k, _abs_dev(t, j), _scale(t)) for k, (t, j) in quantities.items()}
    return Comparison(name, torch.steps, deviations, tolerance)


def format_float(x: float) -> str:
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return f"{x:.2e}"
