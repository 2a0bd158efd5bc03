"""Old name of `jaxreg.step` (kept importable): the training step and `make_step`."""

from jaxreg.objective import Objective, objective
from jaxreg.step import Step, StepRecord, make_step, step_record, update, value_and_grad

__all__ = [
    "Objective",
    "Step",
    "StepRecord",
    "make_step",
    "objective",
    "step_record",
    "update",
    "value_and_grad",
]
