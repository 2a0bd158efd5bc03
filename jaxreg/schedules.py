"""Learning-rate schedules with `torch.optim.lr_scheduler`'s arguments and exact values.

A torch loop that steps its scheduler once per epoch,

    opt = torch.optim.SGD(params, lr=base_lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(num_epochs):
        ...                       # trains with opt.param_groups[0]["lr"]
        sched.step()

trains epoch `e` with `StepLR(30, 0.1).lrs(base_lr, num_epochs)[e]`, to the bit: `lrs` runs
torch's own recursive (`get_lr`) arithmetic on Python floats, on the host. `fit(...,
schedule=...)` feeds that array into the compiled loop (one `set_lr` per epoch), so a new
schedule or base learning rate does not recompile.

`as_optax(base_lr, steps_per_epoch)` gives the same schedule as an optax-style function
`count -> lr` (torch's closed form `_get_closed_form_lr`, in jnp), equal to `lrs` up to
rounding (about 1e-15 relative), for code that uses optax's idiom.

Each schedule is a frozen dataclass: hashable, comparable by value, safe as a static
argument.

The schedule contract `fit` reads: `lrs(base_lr, count)` (the learning rate of each of
`count` intervals) and `interval`, "epoch" (torch's `scheduler.step()` after every epoch,
the default) or "batch" (after every optimizer step, as torch users step `OneCycleLR`
or `CyclicLR`). `per_batch(schedule)` steps any schedule per batch. A schedule driven by
the loss (`ReduceLROnPlateau`) cannot be a list of numbers fixed in advance: it is a
transformation that reads the loss the step passes to it (`value=`, see
`jaxreg.step`), e.g. optax's `contrib.reduce_on_plateau` chained after the optimizer.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LinearLR",
    "MultiStepLR",
    "PerBatch",
    "StepLR",
    "per_batch",
]


def _int(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    return value


def _float(name: str, value: Any) -> float:
    if isinstance(value, (bool, str, bytes)) or np.ndim(value) != 0:
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _nonnegative(name: str, value: Any, why: str) -> float:
    out = _float(name, value)
    if out < 0:
        raise ValueError(f"{name} must be >= 0 ({why}), got {value!r}")
    return out


class _Schedule:
    """`lrs` and `as_optax` from a subclass's `_get_lr` (torch's) and `_closed_form`."""

    interval = "epoch"  # `fit` sets the learning rate once per epoch

    def _get_lr(self, lr: float, epoch: int, base_lr: float, initial: bool) -> float:
        raise NotImplementedError

    def _closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        raise NotImplementedError

    def lrs(self, base_lr: float, num_epochs: int) -> np.ndarray:
        """The learning rate of each epoch, bitwise torch's.

        Args:
          base_lr: the optimizer's `lr` when the scheduler is created (>= 0).
          num_epochs: how many epochs (>= 0).

        Returns:
          float64 array of shape `(num_epochs,)`: entry `e` is torch's
          `optimizer.param_groups[0]["lr"]` during epoch `e`, i.e. after `e` calls of
          `scheduler.step()` (computed by the same recursive formula, in Python floats).
        """
        base = _nonnegative("base_lr", base_lr, "a learning rate")
        n = _int("num_epochs", num_epochs, low=0)
        out = np.empty(n, np.float64)
        lr = base
        for epoch in range(n):  # torch: the constructor's initial step, then one per epoch
            lr = self._get_lr(lr, epoch, base, initial=epoch == 0)
            out[epoch] = lr
        return out

    def as_optax(self, base_lr: float, steps_per_epoch: int = 1) -> Callable[[Any], jax.Array]:
        """The schedule as an optax-style function of the update count.

        Args:
          base_lr: the learning rate at epoch 0 (before any decay), >= 0.
          steps_per_epoch: updates per epoch; count `c` is in epoch `c // steps_per_epoch`.

        Returns:
          `schedule(count) -> lr`, jittable; `count` an int (or int array). Values are
          torch's closed form (`_get_closed_form_lr`), equal to `lrs` up to rounding.
        """
        base = _nonnegative("base_lr", base_lr, "a learning rate")
        per = _int("steps_per_epoch", steps_per_epoch, low=1)

        def schedule(count: Any) -> jax.Array:
            return self._closed_form(base, jnp.asarray(count) // per)

        return schedule


@dataclasses.dataclass(frozen=True)
class StepLR(_Schedule):
    """`torch.optim.lr_scheduler.StepLR`: multiply the lr by `gamma` every `step_size` epochs.

    `lr(e) = base_lr * gamma ** (e // step_size)` (torch multiplies recursively; so do we).

    Args:
      step_size: period of the decay, an integer >= 1 (torch does not check it, and
        fails with ZeroDivisionError on its first step for 0).
      gamma: the decay factor, >= 0.
    """

    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_size", _int("step_size", self.step_size, low=1))
        object.__setattr__(
            self, "gamma", _nonnegative("gamma", self.gamma, "a negative lr makes no sense")
        )

    def _get_lr(self, lr: float, epoch: int, base_lr: float, initial: bool) -> float:
        if epoch == 0 or epoch % self.step_size != 0:
            return lr
        return lr * self.gamma

    def _closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        return base_lr * self.gamma ** (epoch // self.step_size)


@dataclasses.dataclass(frozen=True)
class MultiStepLR(_Schedule):
    """`torch.optim.lr_scheduler.MultiStepLR`: multiply the lr by `gamma` at each milestone.

    A milestone listed `k` times multiplies by `gamma ** k` (torch counts them). Milestone
    0 applies from the start, as in torch.

    Args:
      milestones: epoch indices, integers >= 0, any order (kept sorted, so equal sets of
        milestones give equal schedules).
      gamma: the decay factor, >= 0.
    """

    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.milestones, (str, bytes)) or not isinstance(self.milestones, Iterable):
            raise TypeError(f"milestones must be a list of epoch indices, got {self.milestones!r}")
        marks = tuple(sorted(_int("milestone", m, low=0) for m in self.milestones))
        object.__setattr__(self, "milestones", marks)
        object.__setattr__(
            self, "gamma", _nonnegative("gamma", self.gamma, "a negative lr makes no sense")
        )

    def _get_lr(self, lr: float, epoch: int, base_lr: float, initial: bool) -> float:
        count = self.milestones.count(epoch)  # torch: a Counter of the milestones
        if count == 0:
            return lr
        return lr * self.gamma**count

    def _closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        # torch: gamma ** bisect_right(sorted(milestones), epoch)
        marks = jnp.asarray(self.milestones, dtype=jnp.int32)
        return base_lr * self.gamma ** jnp.searchsorted(marks, epoch, side="right")


@dataclasses.dataclass(frozen=True)
class ExponentialLR(_Schedule):
    """`torch.optim.lr_scheduler.ExponentialLR`: multiply the lr by `gamma` every epoch.

    Args:
      gamma: the factor, >= 0 (torch does not check it).
    """

    gamma: float

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "gamma", _nonnegative("gamma", self.gamma, "a negative lr makes no sense")
        )

    def _get_lr(self, lr: float, epoch: int, base_lr: float, initial: bool) -> float:
        return lr if initial else lr * self.gamma

    def _closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        return base_lr * self.gamma**epoch


@dataclasses.dataclass(frozen=True)
class CosineAnnealingLR(_Schedule):
    """`torch.optim.lr_scheduler.CosineAnnealingLR` (no restarts).

    `lr(e) = eta_min + (base_lr - eta_min) * (1 + cos(pi * e / T_max)) / 2`, computed as
    torch does, recursively from the previous epoch's lr (so the values are torch's bits);
    after `T_max` it rises again (period `2 * T_max`), as torch's does.

    Args:
      T_max: half period in epochs, an integer >= 1 (torch fails with ZeroDivisionError
        on its first step for 0).
      eta_min: the minimum learning rate, >= 0.
    """

    T_max: int
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "T_max", _int("T_max", self.T_max, low=1))
        object.__setattr__(
            self, "eta_min", _nonnegative("eta_min", self.eta_min, "it is a learning rate")
        )

    def _get_lr(self, lr: float, epoch: int, base_lr: float, initial: bool) -> float:
        # torch's get_lr, line by line (its `_step_count == 1 and last_epoch > 0` branch
        # only runs when resuming from a checkpoint, never in this loop)
        if initial:
            return lr
        if (epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return lr + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
        return (1 + math.cos(math.pi * epoch / self.T_max)) / (
            1 + math.cos(math.pi * (epoch - 1) / self.T_max)
        ) * (lr - self.eta_min) + self.eta_min

    def _closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        return (
            self.eta_min + (base_lr - self.eta_min) * (1 + jnp.cos(jnp.pi * epoch / self.T_max)) / 2
        )


@dataclasses.dataclass(frozen=True)
class LinearLR(_Schedule):
    """`torch.optim.lr_scheduler.LinearLR`: the lr factor goes linearly from start to end.

    `lr(e) = base_lr * (start_factor + (end_factor - start_factor) * min(e, total_iters)
    / total_iters)`, computed recursively as torch does.

    Args:
      start_factor: the factor at epoch 0, in (0, 1].
      end_factor: the factor from epoch `total_iters` on, in [0, 1].
      total_iters: epochs to get there, an integer >= 1 (for 0 torch's recursive and
        closed forms disagree: one stays at `start_factor`, the other divides by zero).

    Raises:
      ValueError: torch's messages for the factors.
    """

    start_factor: float = 1.0 / 3
    end_factor: float = 1.0
    total_iters: int = 5

    def __post_init__(self) -> None:
        start = _float("start_factor", self.start_factor)
        end = _float("end_factor", self.end_factor)
        if start > 1.0 or start <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or "
                "equal to 1."
            )
        if end > 1.0 or end < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        object.__setattr__(self, "start_factor", start)
        object.__setattr__(self, "end_factor", end)
        object.__setattr__(self, "total_iters", _int("total_iters", self.total_iters, low=1))

    def _get_lr(self, lr: float, epoch: int, base_lr: float, initial: bool) -> float:
        if epoch == 0:
            return lr * self.start_factor
        if initial or epoch > self.total_iters:
            return lr
        return lr * (
            1.0
            + (self.end_factor - self.start_factor)
            / (
                self.total_iters * self.start_factor
                + (epoch - 1) * (self.end_factor - self.start_factor)
            )
        )

    def _closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        done = jnp.minimum(self.total_iters, epoch)
        return base_lr * (
            self.start_factor + (self.end_factor - self.start_factor) * done / self.total_iters
        )


@dataclasses.dataclass(frozen=True)
class PerBatch:
    """`schedule` stepped after every optimizer step instead of every epoch.

    torch equivalent: calling `scheduler.step()` inside the batch loop. `lrs(base_lr, n)`
    is `schedule.lrs(base_lr, n)` over the run's n steps. Build it with `per_batch`.
    """

    schedule: Any
    interval = "batch"

    def lrs(self, base_lr: float, num_steps: int) -> np.ndarray:
        """The learning rate of each of `num_steps` optimizer steps (see `schedule.lrs`)."""
        return self.schedule.lrs(base_lr, num_steps)


def per_batch(schedule: Any) -> PerBatch:
    """`schedule` (a jaxreg schedule) stepped once per batch: `fit(..., schedule=per_batch(
    StepLR(step_size=100)))` decays every 100 optimizer steps."""
    if not isinstance(schedule, _Schedule):
        raise TypeError(
            f"per_batch takes a jaxreg.schedules schedule (e.g. StepLR(step_size=100)), got "
            f"{type(schedule).__name__}"
        )
    return PerBatch(schedule)
