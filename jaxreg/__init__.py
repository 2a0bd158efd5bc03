"""jaxreg: torch-exact linear and logistic regression training as pure JAX functions.

Namespaces: `jaxreg.linear`, `jaxreg.logistic`, `jaxreg.softmax`, `jaxreg.losses`,
`jaxreg.optim`, `jaxreg.schedules`, `jaxreg.data`, `jaxreg.io`, `jaxreg.solve`, `jaxreg.gradients`;
training: `objective`, `Dataset`, `make_step`, `fit`, `fit_many` (and `update` /
`step_record`, the pure step they are built on).
"""

from jaxreg import (
    data,
    gradients,
    io,
    linear,
    logistic,
    losses,
    many,
    optim,
    schedules,
    softmax,
    solve,
)
from jaxreg._checks import PrecisionWarning
from jaxreg.dataset import Dataset
from jaxreg.fitting import DivergenceError, FitResult, fit
from jaxreg.many import fit_many
from jaxreg.objective import Objective, objective
from jaxreg.step import Step, StepRecord, make_step, step_record, update, value_and_grad

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "DivergenceError",
    "FitResult",
    "Objective",
    "PrecisionWarning",
    "Step",
    "StepRecord",
    "data",
    "fit",
    "fit_many",
    "gradients",
    "io",
    "linear",
    "logistic",
    "losses",
    "make_step",
    "many",
    "objective",
    "optim",
    "schedules",
    "softmax",
    "solve",
    "step_record",
    "update",
    "value_and_grad",
]
