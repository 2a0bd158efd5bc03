"""parity: the proof that jaxreg computes what PyTorch computes, step by step.

Each `Scenario` (a tutorial workflow, or a row of the optimizer/loss/dtype matrix) is
trained twice from the same data and initial parameters: by the torch program written
the way the tutorial writes it (`parity.torch_side`) and by jaxreg (`parity.jax_side`).
`compare` measures the largest absolute and relative deviation of the loss and of every
parameter after every step; `parity.tolerances` holds the bounds and why.

    python -m parity                        # every scenario, a table, exit status 1 on FAIL
    python -m parity --list / --only 't5*' / --dtype float64 / --json F / --report DIR

For your own port:

    cmp = parity.verify(torch_model, torch_loss_fn, torch_optimizer,
                        jax_loss_fn, jax_tx, x, y, steps=100)
    cmp.raise_if_failed()

Interop: `parity.interop.params_from_torch(layer)` / `params_to_torch(params, layer)`.

Importing parity turns on JAX's x64 mode (`jax_enable_x64`), so that float64 scenarios
run in float64; float32 arrays stay float32. It imports neither torch nor matplotlib.
"""

import jax

jax.config.update("jax_enable_x64", True)

from parity.compare import Comparison, Deviation, ParityError, compare  # noqa: E402
from parity.registry import all_scenarios, get, select  # noqa: E402
from parity.scenario import (  # noqa: E402
    NO_PERTURBATION,
    Data,
    Perturbation,
    Problem,
    Scenario,
    TorchInit,
    Trajectory,
)
from parity.tolerances import Tolerance, default_tolerance, tolerance_for  # noqa: E402

__all__ = [
    "NO_PERTURBATION",
    "Comparison",
    "Data",
    "Deviation",
    "ParityError",
    "Perturbation",
    "Problem",
    "Scenario",
    "Tolerance",
    "TorchInit",
    "Trajectory",
    "all_scenarios",
    "compare",
    "default_tolerance",
    "get",
    "run",
    "select",
    "tolerance_for",
    "verify",
]


def verify(*args, **kwargs):
    """Train a torch program and its jaxreg port from the same start; compare every step.

    See `parity.port.verify` for the arguments. Returns a `Comparison`.
    """
    from parity.port import verify as _verify

    return _verify(*args, **kwargs)


def run(scenario, *, data_path=None, perturb=NO_PERTURBATION):
    """Run one scenario (torch side, jax side, comparison): a `parity.runner.Result`."""
    from parity.runner import run_scenario

    return run_scenario(scenario, data_path=data_path, perturb=perturb)
