"""torch's schedules that are a function of the epoch count alone (and of a Python function).

Each is a frozen dataclass of torch's constructor arguments with torch's `get_lr` (the
recursive form `scheduler.step()` uses), and where torch has one, its closed form
(`_get_closed_form_lr`, what `scheduler.step(epoch)` and `SequentialLR` use) twice: on
Python floats for `lrs`, in jnp for `as_optax`.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp

from jaxreg.schedules._base import (
    Run,
    Schedule,
    check_callable,
    check_float,
    check_int,
    check_nonnegative,
    set_frozen,
)


class ClosedForm(Schedule):
    """A schedule with torch's closed form: `as_optax` gives it as an optax schedule."""

    def closed_form(self, run: Run) -> float:
        raise NotImplementedError

    def jnp_closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        raise NotImplementedError

    def as_optax(self, base_lr: float, steps_per_epoch: int = 1) -> Callable[[Any], jax.Array]:
        """The schedule as an optax-style function of the update count.

        Args:
          base_lr: the learning rate at epoch 0 (before any decay), >= 0.
          steps_per_epoch: updates per epoch; count `c` is in epoch `c // steps_per_epoch`.

        Returns:
          `schedule(count) -> lr`, jittable; `count` an int (or int array). Values are
          torch's closed form (`_get_closed_form_lr`), equal to `lrs` up to rounding.
        """
        base = check_nonnegative("base_lr", base_lr, "a learning rate")
        per = check_int("steps_per_epoch", steps_per_epoch, low=1)

        def schedule(count: Any) -> jax.Array:
            return self.jnp_closed_form(base, jnp.asarray(count) // per)

        return schedule


def _gamma(obj: Any) -> None:
    set_frozen(obj, "gamma", check_nonnegative("gamma", obj.gamma, "a negative lr makes no sense"))


@dataclasses.dataclass(frozen=True)
class StepLR(ClosedForm):
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
        set_frozen(self, "step_size", check_int("step_size", self.step_size, low=1))
        _gamma(self)

    def get_lr(self, run: Run) -> float:
        if run.last_epoch == 0 or run.last_epoch % self.step_size != 0:
            return run.lr
        return run.lr * self.gamma

    def closed_form(self, run: Run) -> float:
        return run.base_lr * self.gamma ** (run.last_epoch // self.step_size)

    def jnp_closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        return base_lr * self.gamma ** (epoch // self.step_size)


@dataclasses.dataclass(frozen=True)
class MultiStepLR(ClosedForm):
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
        marks = tuple(sorted(check_int("milestone", m, low=0) for m in self.milestones))
        set_frozen(self, "milestones", marks)
        _gamma(self)

    def get_lr(self, run: Run) -> float:
        count = self.milestones.count(run.last_epoch)  # torch: a Counter of the milestones
        if count == 0:
            return run.lr
        return run.lr * self.gamma**count

    def closed_form(self, run: Run) -> float:
        return run.base_lr * self.gamma ** bisect_right(self.milestones, run.last_epoch)

    def jnp_closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        # torch: gamma ** bisect_right(sorted(milestones), epoch)
        marks = jnp.asarray(self.milestones, dtype=jnp.int32)
        return base_lr * self.gamma ** jnp.searchsorted(marks, epoch, side="right")


@dataclasses.dataclass(frozen=True)
class ExponentialLR(ClosedForm):
    """`torch.optim.lr_scheduler.ExponentialLR`: multiply the lr by `gamma` every epoch.

    Args:
      gamma: the factor, >= 0 (torch does not check it).
    """

    gamma: float

    def __post_init__(self) -> None:
        _gamma(self)

    def get_lr(self, run: Run) -> float:
        return run.lr if run.is_initial else run.lr * self.gamma

    def closed_form(self, run: Run) -> float:
        return run.base_lr * self.gamma**run.last_epoch

    def jnp_closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        return base_lr * self.gamma**epoch


@dataclasses.dataclass(frozen=True)
class CosineAnnealingLR(ClosedForm):
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
        set_frozen(self, "T_max", check_int("T_max", self.T_max, low=1))
        set_frozen(
            self, "eta_min", check_nonnegative("eta_min", self.eta_min, "it is a learning rate")
        )

    def get_lr(self, run: Run) -> float:
        # torch's get_lr, line by line
        epoch, lr, t_max, eta_min = run.last_epoch, run.lr, self.T_max, self.eta_min
        if run.is_initial:
            return lr
        if run.step_count == 1 and epoch > 0:
            return eta_min + (run.base_lr - eta_min) * (1 + math.cos(epoch * math.pi / t_max)) / 2
        if (epoch - 1 - t_max) % (2 * t_max) == 0:
            return lr + (run.base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        return (1 + math.cos(math.pi * epoch / t_max)) / (
            1 + math.cos(math.pi * (epoch - 1) / t_max)
        ) * (lr - eta_min) + eta_min

    def closed_form(self, run: Run) -> float:
        eta_min = self.eta_min
        return (
            eta_min
            + (run.base_lr - eta_min) * (1 + math.cos(math.pi * run.last_epoch / self.T_max)) / 2
        )

    def jnp_closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        return (
            self.eta_min + (base_lr - self.eta_min) * (1 + jnp.cos(jnp.pi * epoch / self.T_max)) / 2
        )


@dataclasses.dataclass(frozen=True)
class LinearLR(ClosedForm):
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
        start = check_float("start_factor", self.start_factor)
        end = check_float("end_factor", self.end_factor)
        if start > 1.0 or start <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or "
                "equal to 1."
            )
        if end > 1.0 or end < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        set_frozen(self, "start_factor", start)
        set_frozen(self, "end_factor", end)
        set_frozen(self, "total_iters", check_int("total_iters", self.total_iters, low=1))

    def get_lr(self, run: Run) -> float:
        epoch = run.last_epoch
        if epoch == 0:
            return run.lr * self.start_factor
        if run.is_initial or epoch > self.total_iters:
            return run.lr
        return run.lr * (
            1.0
            + (self.end_factor - self.start_factor)
            / (
                self.total_iters * self.start_factor
                + (epoch - 1) * (self.end_factor - self.start_factor)
            )
        )

    def closed_form(self, run: Run) -> float:
        return run.base_lr * (
            self.start_factor
            + (self.end_factor - self.start_factor)
            * min(self.total_iters, run.last_epoch)
            / self.total_iters
        )

    def jnp_closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        done = jnp.minimum(self.total_iters, epoch)
        return base_lr * (
            self.start_factor + (self.end_factor - self.start_factor) * done / self.total_iters
        )


@dataclasses.dataclass(frozen=True)
class ConstantLR(ClosedForm):
    """`torch.optim.lr_scheduler.ConstantLR`: `factor * base_lr` for `total_iters` epochs.

    Args:
      factor: in (0, 1] (torch accepts 0, then divides by it when the epochs end: a
        ZeroDivisionError at epoch `total_iters`; refused here).
      total_iters: epochs at the reduced lr, an integer >= 0.

    Raises:
      ValueError: torch's message for a factor outside [0, 1].
    """

    factor: float = 1.0 / 3
    total_iters: int = 5

    def __post_init__(self) -> None:
        factor = check_float("factor", self.factor)
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        if factor == 0:
            raise ValueError(
                "factor must be > 0: torch's ConstantLR divides by it at epoch total_iters "
                "(ZeroDivisionError); use a small positive factor"
            )
        set_frozen(self, "factor", factor)
        set_frozen(self, "total_iters", check_int("total_iters", self.total_iters, low=0))

    def get_lr(self, run: Run) -> float:
        if run.last_epoch == 0:
            return run.lr * self.factor
        if run.last_epoch != self.total_iters:
            return run.lr
        return run.lr * (1.0 / self.factor)

    def closed_form(self, run: Run) -> float:
        reached = run.last_epoch >= self.total_iters
        return run.base_lr * (self.factor + reached * (1 - self.factor))

    def jnp_closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        reached = epoch >= self.total_iters
        return base_lr * (self.factor + reached * (1 - self.factor))


@dataclasses.dataclass(frozen=True)
class PolynomialLR(ClosedForm):
    """`torch.optim.lr_scheduler.PolynomialLR`: `base_lr * (1 - e / total_iters) ** power`.

    Computed recursively as torch does (a ratio of consecutive factors per epoch); 0 from
    epoch `total_iters` on.

    Args:
      total_iters: epochs of the decay, an integer >= 1 (torch divides by it).
      power: the polynomial's power, a real number.
    """

    total_iters: int = 5
    power: float = 1.0

    def __post_init__(self) -> None:
        set_frozen(self, "total_iters", check_int("total_iters", self.total_iters, low=1))
        set_frozen(self, "power", check_float("power", self.power))

    def get_lr(self, run: Run) -> float:
        epoch, total = run.last_epoch, self.total_iters
        if run.is_initial or epoch > total:
            return run.lr
        decay = ((1.0 - epoch / total) / (1.0 - (epoch - 1) / total)) ** self.power
        return run.lr * decay

    def closed_form(self, run: Run) -> float:
        done = min(self.total_iters, run.last_epoch)
        return run.base_lr * (1.0 - done / self.total_iters) ** self.power

    def jnp_closed_form(self, base_lr: float, epoch: jax.Array) -> jax.Array:
        done = jnp.minimum(self.total_iters, epoch)
        return base_lr * (1.0 - done / self.total_iters) ** self.power


@dataclasses.dataclass(frozen=True)
class LambdaLR(Schedule):
    """`torch.optim.lr_scheduler.LambdaLR`: `lr(e) = base_lr * lr_lambda(e)`.

    `lr_lambda` is a Python function of the epoch (an int), evaluated on the host, once
    per epoch, before the compiled loop runs: `fit` gets the values as an array indexed
    by the epoch (or step, with `per_batch`), so a new function or new values do not
    recompile. The function must not depend on training (it is not called during it).

    Args:
      lr_lambda: `epoch -> factor` (or torch's list of one function per param group:
        jaxreg optimizers have one group, so a list of one).
    """

    lr_lambda: Callable[[int], float]

    def __post_init__(self) -> None:
        set_frozen(self, "lr_lambda", check_callable("lr_lambda", self.lr_lambda))

    def get_lr(self, run: Run) -> float:
        return run.base_lr * self.lr_lambda(run.last_epoch)


@dataclasses.dataclass(frozen=True)
class MultiplicativeLR(Schedule):
    """`torch.optim.lr_scheduler.MultiplicativeLR`: `lr(e) = lr(e - 1) * lr_lambda(e)`.

    `lr_lambda` is evaluated on the host before the loop, as for `LambdaLR`.

    Args:
      lr_lambda: `epoch -> factor`, from epoch 1 on (or a list of one such function).

    Raises:
      TypeError: torch's message when `lr_lambda` is not callable.
    """

    lr_lambda: Callable[[int], float]

    def __post_init__(self) -> None:
        set_frozen(self, "lr_lambda", check_callable("lr_lambda", self.lr_lambda))

    def get_lr(self, run: Run) -> float:
        if run.is_initial:
            return run.lr
        return run.lr * self.lr_lambda(run.last_epoch)
