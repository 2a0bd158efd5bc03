"""Learning-rate schedules with `torch.optim.lr_scheduler`'s arguments and exact values.

A torch loop that steps its scheduler once per epoch,

    opt = torch.optim.SGD(params, lr=base_lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(num_epochs):
        ...                       # trains with opt.param_groups[0]["lr"]
        sched.step()

trains epoch `e` with `StepLR(30, 0.1).lrs(base_lr, num_epochs)[e]`, to the bit: `lrs`
re-enacts torch's scheduler (its constructor's initial step, its recursive `get_lr`, and
for `SequentialLR` and `ChainedScheduler` its parts acting on one param group) on Python
floats, on the host. `fit(..., schedule=...)` feeds that array into the compiled loop
(one `set_lr` per epoch), so a new schedule or base learning rate does not recompile.
`LambdaLR`, `MultiplicativeLR` and `CyclicLR`'s `scale_fn` take a Python function: it is
evaluated on the host, once per epoch (or step), before the loop; the values go in as
an array indexed by the epoch (or step), so no function is traced and none recompiles.

Stepping: `interval` is "epoch" (torch's `scheduler.step()` after every epoch, the
default) or "batch" (after every optimizer step: `CyclicLR` and `OneCycleLR`, as torch
users step them, and any schedule wrapped in `per_batch(...)`);
`per_batch(CosineAnnealingWarmRestarts(...), steps_per_epoch=iters)` is torch's
fractional `scheduler.step(epoch + i / iters)`; `per_epoch(CyclicLR(...))` steps a per-batch
schedule once per epoch. `CyclicLR` and `OneCycleLR` cycle the
momentum (or Adam's beta1) too: their `lrs` has a second column, and `fit` sets both.

Schedules with a closed form in torch (`StepLR`, `MultiStepLR`, `ExponentialLR`,
`CosineAnnealingLR`, `LinearLR`, `ConstantLR`, `PolynomialLR`) also give
`as_optax(base_lr, steps_per_epoch)`: an optax-style function `count -> lr` (torch's
`_get_closed_form_lr` in jnp), equal to `lrs` up to rounding (about 1e-15 relative).

Each schedule is a frozen dataclass: hashable, comparable by value, safe as a static
argument.

`ReduceLROnPlateau` follows the loss, so its learning rates are not known before
training: `ReduceLROnPlateau(...).wrap(tx, steps_per_epoch)` is a transformation whose
state carries torch's counters through the compiled loop (`jaxreg.schedules._plateau`).
"""

from jaxreg.schedules._base import PerBatch, PerEpoch, apply, per_batch, per_epoch
from jaxreg.schedules._composite import ChainedScheduler, SequentialLR
from jaxreg.schedules._cyclic import CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR
from jaxreg.schedules._epoch import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiplicativeLR,
    MultiStepLR,
    PolynomialLR,
    StepLR,
)
from jaxreg.schedules._plateau import PlateauState, ReduceLROnPlateau

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PerBatch",
    "PerEpoch",
    "PlateauState",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
    "apply",
    "per_batch",
    "per_epoch",
]
