"""parity: the proof that jaxreg computes what PyTorch computes, step by step.

Each `Scenario` (a tutorial workflow, or a row of the optimizer/loss/dtype matrix) is
trained twice from the same data and initial parameters: by the torch program written
the way the tutorial writes it (`parity.torch_side`) and by jaxreg (`parity.jax_side`).
`compare` measures the largest absolute and relative deviation of the loss and of every
parameter after every step; `parity.tolerances` holds the bounds and why. The names
both frameworks give each optimizer, loss, model and schedule are in `parity.vocab`.

    python -m parity                        # every scenario, a table, exit status 1 on FAIL
    python -m parity --list / --only 't5*' / --dtype float64 / --json F / --report DIR

For your own port:

    cmp = parity.verify(torch_model, torch_loss_fn, torch_optimizer,
                        jax_loss_fn, jax_tx, x, y, steps=100)
    cmp.raise_if_failed()

Interop: `parity.interop.params_from_torch(layer)` / `params_to_torch(params, layer)`.

Importing parity changes no global setting: JAX's x64 mode stays as you left it (off by
default). A float64 scenario turns x64 on for its own run only, and a float32 scenario
runs with it off, inside a `with` block (`parity.precision`); `verify` turns it on for
float64 torch tensors, for that call only. Importing parity imports neither torch nor
matplotlib.
"""

from parity.compare import Comparison, Deviation, ParityError, compare
from parity.registry import all_scenarios, get, select
from parity.runner import run_scenario
from parity.scenario import (
    NO_PERTURBATION,
    Data,
    Perturbation,
    Problem,
    Scenario,
    TorchInit,
    Trajectory,
)
from parity.tolerances import Tolerance, default_tolerance, tolerance_for

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
    from parity.port import verify as _verify  # imports torch, an optional dependency

    return _verify(*args, **kwargs)


def run(scenario, *, data_path=None, perturb=NO_PERTURBATION):
    """Run one scenario (torch side, jax side, comparison): a `parity.runner.Result`."""
    return run_scenario(scenario, data_path=data_path, perturb=perturb)
