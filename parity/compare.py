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
tolerance (`parity.tolerances`). Steps are numbered from 0 everywhere (text, JSON, plots):
step k is the (k+1)-th update, and the values compared are those after it.

`parity.verify` adds a teacher-forced comparison (`TeacherForced`, `parity.teacher`): every
step started from torch's parameters and optimizer state. Its verdict decides: a step
beyond rounding is "implementation differs at step k"; a free run over tolerance while
every teacher-forced step agrees is "each step agrees to within rounding; the dynamics
amplify it", with the growth factor per step of the free deviation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

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

    def first_over(self, rtol: float) -> int | None:
        """The first step (0-based) whose relative deviation exceeds `rtol`, or None."""
        over = np.flatnonzero(~(self.rel_by_step <= rtol))  # NaN counts as over
        return int(over[0]) if over.size else None


def _first_over(deviations: dict[str, Deviation], rtol: float) -> tuple[int, Deviation] | None:
    """(the first step any quantity exceeds `rtol`, the largest such quantity there)."""
    firsts = [(d.first_over(rtol), d) for d in deviations.values()]
    firsts = [(k, d) for k, d in firsts if k is not None]
    if not firsts:
        return None
    k = min(k for k, _ in firsts)
    return k, max((d for j, d in firsts if j == k), key=lambda d: d.rel_by_step[k])


@dataclasses.dataclass(frozen=True)
class TeacherForced:
    """Every step computed by jax from torch's state before it (`parity.teacher`).

    Attributes:
      deviations: {quantity: Deviation} one-step deviations per step: "predictions",
        "loss", "gradient[NAME]", "update[NAME]", "state.FIELD[NAME]" (or, for a user's
        step function, "loss", "update[NAME]", "state.FIELD[NAME]").
      groups: {component: quantity names}, in the order a step computes them:
        predictions, loss, gradients, optimizer update (or "step").
      tolerance: the one-step bound (`parity.tolerances.one_step`).
      diagnosis: what differs at the first failing step, and its likely cause ("" if none).
      lrs: ((torch lr, jax lr) per step) where the port's state holds a learning rate.
    """

    deviations: dict[str, Deviation]
    groups: dict[str, tuple[str, ...]]
    tolerance: Tolerance
    diagnosis: str = ""
    lrs: tuple[tuple[float, float], ...] = ()

    @property
    def max_rel(self) -> float:
        return max((d.max_rel for d in self.deviations.values()), default=0.0)

    @property
    def first_failing_step(self) -> int | None:
        found = _first_over(self.deviations, self.tolerance.rtol)
        return None if found is None else found[0]

    @property
    def passed(self) -> bool:
        return self.first_failing_step is None

    @property
    def complete(self) -> bool:
        """Whether the whole step was teacher-forced, the optimizer included (not for a
        state parity cannot fill with torch's buffers, such as optax's own)."""
        return "optimizer update" in self.groups or "step" in self.groups


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
    torch: Trajectory | None = None
    jax: Trajectory | None = None
    teacher: TeacherForced | None = None
    notes: tuple[str, ...] = ()  # what verify could not check, said in summary()

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
    def free_passed(self) -> bool:
        """The free-running trajectories agree within the tolerance at every step."""
        return self.max_rel <= self.tolerance.rtol

    @property
    def first_failing_step(self) -> int | None:
        """The first step (0-based) any free-run quantity is over tolerance, or None."""
        found = _first_over(self.deviations, self.tolerance.rtol)
        return None if found is None else found[0]

    @property
    def amplified(self) -> bool:
        """The free run is over tolerance although every teacher-forced step agrees."""
        t = self.teacher
        return t is not None and t.complete and t.passed and not self.free_passed

    @property
    def passed(self) -> bool:
        """Without teacher forcing: the free run within tolerance. With it: every step
        within rounding (a free run that drifts only by amplified rounding passes); where
        the optimizer could not be teacher-forced, the free run must pass too."""
        if self.teacher is None:
            return self.free_passed
        if not self.teacher.complete:  # the optimizer was not checked step by step
            return self.teacher.passed and self.free_passed
        return self.teacher.passed

    def growth_factor(self) -> float | None:
        """The free deviation's growth per step, geometric mean from the first step it is
        nonzero to its first step over tolerance (or its largest): None if it never grows."""
        rel = np.max([d.rel_by_step for d in self.deviations.values()], axis=0)
        nonzero = np.flatnonzero((rel > 0) & np.isfinite(rel))
        if not nonzero.size:
            return None
        start = int(nonzero[0])
        end = self.first_failing_step
        if end is None or not np.isfinite(rel[end]) or end <= start:
            end = int(nonzero[np.argmax(rel[nonzero])])
        if end <= start:
            return None
        return float((rel[end] / rel[start]) ** (1.0 / (end - start)))

    def _free(self) -> str:
        w = self.worst
        worst = w.abs_by_step[w.worst_step] if w.abs_by_step.size else 0.0
        diverged = "; NaN or inf there (a side diverged)" if not np.isfinite(worst) else ""
        text = (
            f"max rel deviation {self.max_rel:.3g} (tolerance {self.tolerance.rtol:.3g}, "
            f"{self.tolerance.name})"
        )
        found = _first_over(self.deviations, self.tolerance.rtol)
        if found is not None:
            k, d = found
            text += f", first over tolerance: {d.name} at step {k} (rel {d.rel_by_step[k]:.3g})"
        return (
            text + f", worst: {w.name} at step {w.worst_step} of {self.steps} (steps from 0; abs "
            f"{worst:.3g}, scale {w.scale:.3g}){diverged}"
        )

    def summary(self) -> str:
        text = self._summary()
        return text + "".join(f"\n  not checked: {n}" for n in self.notes)

    def _summary(self) -> str:
        t = self.teacher
        if t is None:
            return f"{self.name}: {'PASS' if self.passed else 'FAIL'}: {self._free()}"
        one_step = (
            f"max one-step rel deviation {t.max_rel:.3g} (tolerance {t.tolerance.rtol:.3g}, "
            f"{t.tolerance.name})"
        )
        if not t.passed:
            return (
                f"{self.name}: FAIL: implementation differs at step {t.first_failing_step} "
                f"(steps from 0): {t.diagnosis}. Free run: {self._free()}"
            )
        if self.free_passed or not t.complete:
            partial = "" if t.complete else " (predictions, loss, gradients; not the optimizer)"
            return (
                f"{self.name}: {'PASS' if self.passed else 'FAIL'}: {self._free()}; every "
                f"teacher-forced step agrees{partial} ({one_step})"
            )
        g = self.growth_factor()
        return (
            f"{self.name}: PASS (amplified): each step agrees to within rounding ({one_step}); "
            f"the dynamics amplify it (growth factor {'?' if g is None else f'{g:.3g}'} per "
            f"step): free run {self._free()}"
        )

    def raise_if_failed(self) -> Comparison:
        """Raise `ParityError` with `summary()` unless passed; returns self."""
        if not self.passed:
            reason = (self.teacher or self).tolerance.reason
            raise ParityError(self.summary() + "\n" + reason)
        return self

    def plot(self, path) -> Any:
        """A PNG of the run at `path` (`parity.plots.comparison_figure`): both
        trajectories, the free and teacher-forced deviations against their tolerances, the
        first failing step marked; steps from 0. Returns the path."""
        from parity import plots  # imports matplotlib, an optional dependency

        return plots.write(self, path)


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
    return Comparison(name, torch.steps, deviations, tolerance, torch, jax)


def format_float(x: float) -> str:
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return f"{x:.2e}"
