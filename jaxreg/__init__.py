"""jaxreg: torch-exact linear and logistic regression training as pure JAX functions.

Namespaces: `jaxreg.linear`, `jaxreg.logistic`, `jaxreg.losses`, `jaxreg.optim`,
`jaxreg.schedules`, `jaxreg.data`, `jaxreg.io`, `jaxreg.solve`; training: `objective`,
`make_step`, `fit` (and `update`, the pure step they are built on).
"""

from jaxreg import linear, logistic, losses
from jaxreg._checks import PrecisionWarning
from jaxreg.fitting import DivergenceError, FitResult, fit
from jaxreg.train import (
    Objective,
    Step,
    make_step,
    objective,
    update,
    value_and_grad,
)

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "FitResult",
    "Objective",
    "PrecisionWarning",
    "Step",
    "fit",
    "linear",
    "logistic",
    "losses",
    "make_step",
    "objective",
    "update",
    "value_and_grad",
]


def __getattr__(name):  # lazy submodules that other engineers' code may not need
    import importlib

    if name in {"optim", "schedules", "data", "io", "solve"}:
        return importlib.import_module(f"jaxreg.{name}")
    raise AttributeError(f"module 'jaxreg' has no attribute {name!r}")
