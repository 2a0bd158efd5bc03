"""Every scenario is a meaningful test at its tolerance: its own arithmetic determines it.

If torch's float32 run is far from torch's float64 run (or a float64 run from itself
started 4 ulps away), the trajectory amplifies rounding, and any two implementations may
disagree there however correct: such a scenario would test rounding luck, not jaxreg
(`parity.tolerances` tells how the first matrix had one). torch only; no jaxreg here.
"""

import dataclasses

import numpy as np
import pytest

import parity
from parity import torch_side
from parity.compare import compare
from parity.problem import materialize
from parity.scenario import Data

SCENARIOS = [s for s in parity.all_scenarios() if s.lesson is None]
MARGIN = 4  # the scenario's own error must stay this far below its tolerance


def _classes(a):
    """Class-index targets (cross_entropy, nll): integers in both dtypes' runs."""
    return np.issubdtype(a.dtype, np.integer)


def _as_float64(problem):
    data = Data(*(a if a is None or _classes(a) else a.astype(np.float64) for a in problem.data))
    return problem._replace(
        data=data, params={k: v.astype(np.float64) for k, v in problem.params.items()}
    )


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario_is_well_conditioned(scenario):
    tol = parity.tolerance_for(scenario)
    problem = materialize(scenario)
    run = torch_side.run(scenario, problem)
    if scenario.dtype == "float32":
        # the same numbers, computed in float64: float32's own error on this trajectory
        reference = torch_side.run(
            dataclasses.replace(scenario, dtype="float64"), _as_float64(problem)
        )
    else:
        nudged = problem._replace(
            params={k: v * (1 + 4 * 2.0**-53) for k, v in problem.params.items()}
        )
        reference = torch_side.run(scenario, nudged)
    own = compare(scenario.name, reference, run, tol)
    assert own.max_rel * MARGIN <= tol.rtol, (
        f"{scenario.name} amplifies rounding: torch against itself {own.max_rel:.2e} "
        f"(tolerance {tol.rtol:.0e}); {own.summary()}"
    )
