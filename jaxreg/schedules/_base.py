"""What every schedule shares: argument checks, torch's stepping machinery, `per_batch`.

torch's `LRScheduler` keeps its numbers in the optimizer's `param_groups` and in its own
attributes (`last_epoch`, `_step_count`, `base_lrs`), and composite schedulers
(`SequentialLR`, `ChainedScheduler`) act on the same `param_group` through their parts.
`Run` re-enacts that machinery for one param group (a dict of Python floats: "lr",
"initial_lr", and "momentum" where a schedule cycles it), so every schedule's values, the
composites' included, are torch's own arithmetic in torch's own order.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import optim


def check_int(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    return value


def check_float(name: str, value: Any) -> float:
    if isinstance(value, (bool, str, bytes)) or np.ndim(value) != 0:
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def check_nonnegative(name: str, value: Any, why: str) -> float:
    out = check_float(name, value)
    if out < 0:
        raise ValueError(f"{name} must be >= 0 ({why}), got {value!r}")
    return out


def check_callable(name: str, value: Any) -> Any:
    """One function, or torch's list of one function per param group (jaxreg: one group)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:  # torch's message, for an optimizer with one param group
            raise ValueError(f"Expected 1 {name}s, but got {len(value)}")
        value = value[0]
    if not callable(value):
        raise TypeError(f"{name} should be a function, but got {type(value).__name__}")
    return value


def check_scalar(name: str, value: Any) -> float:
    """A number, or torch's list of one number per param group (jaxreg: one group)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:  # torch's _format_param message, for one param group
            raise ValueError(f"expected 1 values for {name}, got {len(value)}")
        value = value[0]
    return check_float(name, value)


def set_frozen(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


class Run:
    """torch's `LRScheduler` for one param group (`group`), on Python floats.

    A schedule's `start(group)` is torch's constructor: it sets `initial_lr` (if no
    scheduler has), reads `base_lr` from it and takes the initial step. `step()` is
    `scheduler.step()`, `step(epoch)` the deprecated `scheduler.step(epoch)` (closed form),
    `update_lr(epoch)` torch's `_update_lr` (what `SequentialLR` calls at a milestone).
    """

    def __init__(self, schedule: Any, group: dict[str, float]):
        self.schedule = schedule
        self.group = group
        group.setdefault("initial_lr", group["lr"])
        self.base_lr = group["initial_lr"]
        self.last_epoch = -1
        self.step_count = 0
        self.is_initial = False
        self.initial_step()

    @property
    def lr(self) -> float:
        return self.group["lr"]

    def initial_step(self) -> None:
        self.step_count = 0
        self.is_initial = True
        try:
            self.step()
        finally:
            self.is_initial = False

    def step(self, epoch: Any = None) -> None:
        self.step_count += 1
        self.update_lr(epoch)

    def update_lr(self, epoch: Any = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            lr = self.schedule.get_lr(self)
        else:
            self.last_epoch = epoch
            closed = getattr(self.schedule, "closed_form", None)
            lr = closed(self) if closed is not None else self.schedule.get_lr(self)
        self.group["lr"] = lr

    def undo(self) -> None:
        """`SequentialLR.recursive_undo` on this scheduler: one epoch back."""
        self.last_epoch -= 1


class Schedule:
    """A schedule: `lrs` from torch's machinery (`Run`) and the subclass's `get_lr`.

    Subclasses define `get_lr(run) -> lr` (torch's `get_lr`, reading `run.lr`,
    `run.last_epoch`, `run.base_lr`, `run.is_initial`), optionally `closed_form(run)`
    (torch's `_get_closed_form_lr`), and `start(group)` when their constructor does more
    than `LRScheduler`'s.
    """

    interval = "epoch"  # `fit` sets the learning rate once per epoch
    cycles_momentum = False  # True: `lrs` has a second column, the momentum (or beta1)

    def get_lr(self, run: Run) -> float:
        raise NotImplementedError

    def start(self, group: dict[str, float]) -> Any:
        """torch's constructor on `group`: the `Run` after the initial step."""
        return Run(self, group)

    def lrs(self, base_lr: float, num_epochs: int) -> np.ndarray:
        """The learning rate of each epoch, bitwise torch's.

        Args:
          base_lr: the optimizer's `lr` when the scheduler is created (>= 0).
          num_epochs: how many epochs (>= 0).

        Returns:
          float64 array of shape `(num_epochs,)`: entry `e` is torch's
          `optimizer.param_groups[0]["lr"]` during epoch `e`, i.e. after `e` calls of
          `scheduler.step()` (computed by the same recursive formula, in Python floats).
          For a schedule that cycles the momentum (`CyclicLR`, `OneCycleLR` with
          `cycle_momentum=True`) the shape is `(num_epochs, 2)`: column 1 is the
          `momentum` (SGD, RMSprop) or `beta1` (the Adam family) torch sets with it.
        """
        return run_schedule(self, base_lr, num_epochs, lambda run, k: run.step())


def run_schedule(schedule: Any, base_lr: float, count: int, advance: Any) -> np.ndarray:
    """`count` values of `schedule` started at `base_lr`, `advance(run, k)` after value k."""
    base = check_nonnegative("base_lr", base_lr, "a learning rate")
    n = check_int("num_epochs", count, low=0)
    cycles = schedule.cycles_momentum
    out = np.empty((n, 2) if cycles else (n,), np.float64)
    group = {"lr": base}
    run = schedule.start(group)
    for k in range(n):
        out[k] = (group["lr"], group["momentum"]) if cycles else group["lr"]
        advance(run, k)  # torch: optimizer.step(), then scheduler.step()
    return out


@dataclasses.dataclass(frozen=True)
class PerBatch:
    """`schedule` stepped after every optimizer step instead of every epoch.

    torch equivalent: calling `scheduler.step()` inside the batch loop; with
    `steps_per_epoch`, `scheduler.step(epoch + i / steps_per_epoch)` after batch `i` of
    `epoch` (the fractional epochs torch documents for `CosineAnnealingWarmRestarts`).
    `lrs(base_lr, n)` is the learning rate of each of the run's n steps. Build it with
    `per_batch`.
    """

    schedule: Any
    steps_per_epoch: int | None = None
    interval = "batch"

    @property
    def cycles_momentum(self) -> bool:
        return self.schedule.cycles_momentum

    def lrs(self, base_lr: float, num_steps: int) -> np.ndarray:
        """The learning rate of each of `num_steps` optimizer steps (see `Schedule.lrs`)."""
        per = self.steps_per_epoch
        if per is None:
            return self.schedule.lrs(base_lr, num_steps)

        def fractional(run, k):
            epoch, i = divmod(k, per)
            run.step(epoch + i / per)  # torch's documented call, this arithmetic

        return run_schedule(self.schedule, base_lr, num_steps, fractional)


def per_batch(schedule: Any, steps_per_epoch: int | None = None) -> PerBatch:
    """`schedule` (a jaxreg schedule) stepped once per batch.

    `fit(..., schedule=per_batch(StepLR(step_size=100)))` decays every 100 optimizer steps
    (torch: `scheduler.step()` in the batch loop). `per_batch(CosineAnnealingWarmRestarts(
    T_0=10), steps_per_epoch=iters)` is torch's `scheduler.step(epoch + i / iters)` after
    batch `i` (fractional epochs; `iters` must be the run's batches per epoch).
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"per_batch takes a jaxreg.schedules schedule (e.g. StepLR(step_size=100)), got "
            f"{type(schedule).__name__}"
        )
    if steps_per_epoch is not None:
        steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, low=1)
        if not getattr(schedule, "fractional_epochs", False):
            raise TypeError(
                f"per_batch(..., steps_per_epoch=...) steps with fractional epochs, which "
                f"torch defines for CosineAnnealingWarmRestarts only, not "
                f"{type(schedule).__name__}; use per_batch(schedule) to step it per batch"
            )
    return PerBatch(schedule, steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class PerEpoch:
    """`schedule` stepped after every epoch, also one that is stepped per batch by default
    (`CyclicLR`, `OneCycleLR`: a torch loop may call their `step()` once per epoch, with
    `total_steps` or the step sizes counted in epochs). Build it with `per_epoch`."""

    schedule: Any
    interval = "epoch"

    @property
    def cycles_momentum(self) -> bool:
        return self.schedule.cycles_momentum

    def lrs(self, base_lr: float, num_epochs: int) -> np.ndarray:
        """The learning rate of each of `num_epochs` epochs (see `Schedule.lrs`)."""
        return self.schedule.lrs(base_lr, num_epochs)


def per_epoch(schedule: Any) -> PerEpoch:
    """`schedule` (a jaxreg schedule) stepped once per epoch: `fit(..., schedule=per_epoch(
    OneCycleLR(0.1, total_steps=epochs)))` is torch's `scheduler.step()` after each epoch."""
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"per_epoch takes a jaxreg.schedules schedule (e.g. OneCycleLR(0.1, "
            f"total_steps=100)), got {type(schedule).__name__}"
        )
    return PerEpoch(schedule)


def apply(opt_state: Any, values: Any) -> Any:
    """`opt_state` with one entry of a schedule's `lrs` applied (what `fit` does each step).

    Args:
      opt_state: a jaxreg optimizer state (or a pytree holding exactly one).
      values: a learning rate (a scalar), or for a schedule that cycles the momentum, the
        pair `(lr, momentum)`: the momentum goes to `hyperparams["beta1"]` of the Adam
        family (torch: `betas[0]`) or to `hyperparams["momentum"]` (SGD, RMSprop).

    Raises:
      ValueError: a momentum for an optimizer that has neither (torch's message), or
        one whose momentum buffer does not exist (SGD or RMSprop built with momentum=0).
    """
    if np.ndim(values) == 0:
        return optim.set_lr(opt_state, values)
    state = optim.set_lr(opt_state, values[0])
    found = optim_states(state)
    hp = found[0].hyperparams
    name = "beta1" if "beta1" in hp else "momentum" if "momentum" in hp else None
    if name is None:
        raise ValueError(
            "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
        )
    inner = found[0].inner
    if name == "momentum" and getattr(inner, "momentum_buffer", 0) is None:
        raise ValueError(
            f"cycle_momentum=True: this {type(inner).__name__[:-5].lower()} was built with "
            "momentum=0 and has no momentum buffer (torch would start one); build it with "
            "momentum > 0 (the schedule sets the value) or pass cycle_momentum=False"
        )
    old = hp[name]
    new = optim.OptState({**hp, name: _like(values[1], old)}, inner, found[0].origin)
    if type(state) is optim.OptState:
        return new
    return _replace_state(state, found[0], new)


def optim_states(state: Any) -> list[Any]:
    leaves = jax.tree_util.tree_leaves(state, is_leaf=optim.is_optimizer_state)
    return [leaf for leaf in leaves if optim.is_optimizer_state(leaf)]


def _like(value: Any, old: Any) -> Any:
    return jnp.broadcast_to(jnp.asarray(value).astype(old.dtype), np.shape(old))


def _replace_state(state: Any, old: Any, new: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: new if x is old else x, state, is_leaf=optim.is_optimizer_state
    )
