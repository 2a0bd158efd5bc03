"""jaxreg: torch-exact linear and logistic regression training as pure JAX functions.

Namespaces: `jaxreg.linear`, `jaxreg.logistic`, `jaxreg.losses`, `jaxreg.optim`,
`jaxreg.schedules`, `jaxreg.data`, `jaxreg.io`, `jaxreg.solve`; training: `objective`,
`make_step`, `fit`, `fit_many` (and `update`, the pure step they are built on).
"""

from jaxreg import data, io, linear, logistic, losses, many, optim, schedules, solve
from jaxreg._checks import PrecisionWarning
from jaxreg.fitting import DivergenceError, FitResult, fit
from jaxreg.many import fit_many
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
    "data",
    "fit",
    "fit_many",
    "io",
    "linear",
    "logistic",
    "losses",
    "make_step",
    "many",
    "objective",
    "optim",
    "schedules",
    "solve",
    "update",
    "value_and_grad",
]
