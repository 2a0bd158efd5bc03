"""Run one scenario end to end: materialize, torch side, jax side, compare."""

from __future__ import annotations

import dataclasses
import os

from parity.compare import Comparison, compare
from parity.problem import materialize
from parity.scenario import Perturbation, Problem, Scenario, Trajectory
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
    perturb: Perturbation = Perturbation(),
) -> Result:
    """Train `scenario` in torch and in jaxreg from the same start; compare every step.

    torch is run every time: no stored reference numbers.
    """
    from parity import jax_side, torch_side

    problem = materialize(scenario, data_path=data_path)
    t = torch_side.run(scenario, problem)
    j = jax_side.run(scenario, problem, perturb=perturb)
    comparison = compare(scenario.name, t, j, tolerance_for(scenario))
    return Result(scenario, problem, t, j, comparison)
