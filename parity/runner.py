"""Run one scenario end to end: materialize, torch side, jax side, compare."""

from __future__ import annotations

import dataclasses
import os

from parity import jax_side, precision
from parity.compare import Comparison, compare
from parity.problem import DataNotFoundError, materialize
from parity.registry import get
from parity.scenario import NO_PERTURBATION, Perturbation, Problem, Scenario, Trajectory
from parity.tolerances import tolerance_for


@dataclasses.dataclass
class Result:
    """Everything one scenario produced (the report plots from it).

    Attributes:
      scenario, problem: what was run, and the arrays both sides started from.
      torch, jax: the two trajectories.
      comparison: the deviations and the verdict.
    """

    scenario: Scenario
    problem: Problem
    torch: Trajectory
    jax: Trajectory
    comparison: Comparison

    @property
    def passed(self) -> bool:
        return self.comparison.passed


def run_scenario(
    scenario: Scenario,
    *,
    data_path: str | os.PathLike | None = None,
    perturb: Perturbation = NO_PERTURBATION,
) -> Result:
    """Train `scenario` in torch and in jaxreg from the same start; compare every step.

    torch is run every time: no stored reference numbers. JAX's x64 mode is on for a
    float64 scenario and off for a float32 one during the run (`parity.precision`), and
    as the caller had it afterwards.
    """
    from parity import torch_side  # torch: imported when a run needs it

    with precision.for_scenario(scenario.dtype):
        problem = materialize(scenario, data_path=data_path)
        t = torch_side.run(scenario, problem)
        j = jax_side.run(scenario, problem, perturb=perturb)
    comparison = compare(scenario.name, t, j, tolerance_for(scenario))
    return Result(scenario, problem, t, j, comparison)


def outcome(scenario: Scenario, data_path=None, perturb: Perturbation = NO_PERTURBATION):
    """`run_scenario`'s `Result`, or the exception a side raised (a failing scenario, not a
    crash of the whole run). A missing data file is raised: no scenario can fix it."""
    try:
        return run_scenario(scenario, data_path=data_path, perturb=perturb)
    except DataNotFoundError:
        raise
    except Exception as e:
        return e


def outcome_by_name(name: str, data_path=None, perturb: Perturbation = NO_PERTURBATION):
    """`outcome` for a worker process: found by name, returned without the Scenario (its
    data builders are closures, which do not pickle; the caller puts it back)."""
    out = outcome(get(name), data_path, perturb)
    return out if isinstance(out, BaseException) else dataclasses.replace(out, scenario=None)
