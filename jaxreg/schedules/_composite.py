"""torch's composite schedulers: `SequentialLR` and `ChainedScheduler`.

Their parts act on one param group in torch's order, constructors included (each part's
constructor takes its initial step on the group before the composite is built), so a part
such as `LinearLR` or `ExponentialLR` that works from the group's current lr sees what it
sees in torch.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from typing import Any

from jaxreg.schedules._base import Schedule, check_int, set_frozen


def _parts(owner: str, schedulers: Any) -> tuple[Any, ...]:
    if isinstance(schedulers, (str, bytes)) or not hasattr(schedulers, "__iter__"):
        raise TypeError(f"{owner}: schedulers must be a list of schedules, got {schedulers!r}")
    parts = tuple(schedulers)
    if not parts:
        chained = " to be chained" if owner == "ChainedScheduler" else ""
        raise ValueError(f"{owner} expects at least one scheduler{chained}, but got no scheduler.")
    for i, part in enumerate(parts):
        if type(part).__name__ == "ReduceLROnPlateau":
            raise ValueError(
                f"{owner} does not support `ReduceLROnPlateau` scheduler as it requires "
                "additional kwargs to be specified when calling `step`, but got one at index "
                f"{i} in the given schedulers sequence."
            )
        if not isinstance(part, Schedule):
            raise TypeError(
                f"{owner}: schedulers[{i}] must be a jaxreg.schedules schedule (stepped per "
                f"epoch; the composite itself may be stepped per batch), got {type(part).__name__}"
            )
    return parts


class _SequentialRun:
    """torch's `SequentialLR` on one param group."""

    def __init__(self, schedule: Any, group: dict[str, float]):
        self.group = group
        self.parts = [part.start(group) for part in schedule.schedulers]  # built first
        self.milestones = schedule.milestones
        self.last_epoch = 0  # torch: last_epoch + 1
        group["lr"] = group["initial_lr"]  # reset the lr to the initial value
        for part in self.parts:  # "undo" the step the parts' constructors took
            part.undo()
        self.parts[bisect_right(self.milestones, 0)].initial_step()

    def undo(self) -> None:
        for part in self.parts:
            part.undo()

    def step(self, epoch: Any = None) -> None:
        if epoch is not None:
            raise TypeError("SequentialLR.step() takes no epoch (torch's neither)")
        self.last_epoch += 1
        idx = bisect_right(self.milestones, self.last_epoch)
        part = self.parts[idx]
        if idx > 0 and self.milestones[idx - 1] == self.last_epoch:
            part.update_lr(0)
        else:
            part.step()


class _ChainedRun:
    """torch's `ChainedScheduler` on one param group: every part steps, in order."""

    def __init__(self, schedule: Any, group: dict[str, float]):
        self.parts = [part.start(group) for part in schedule.schedulers]

    def undo(self) -> None:
        for part in self.parts:
            part.undo()

    def step(self, epoch: Any = None) -> None:
        if epoch is not None:
            raise TypeError("ChainedScheduler.step() takes no epoch (torch's neither)")
        for part in self.parts:
            part.step()


@dataclasses.dataclass(frozen=True)
class SequentialLR(Schedule):
    """`torch.optim.lr_scheduler.SequentialLR`: `schedulers[i]` from `milestones[i - 1]` on.

    At a milestone the next schedule restarts from its epoch 0 (torch's `_update_lr(0)`:
    its closed form where it has one), from the lr the previous one left.

    Args:
      schedulers: jaxreg schedules (stepped per epoch; wrap the SequentialLR in
        `per_batch` to step all of it per batch). A `SequentialLR` nested in another is
        refused: torch's fails at the milestone (it has no `get_lr`).
      milestones: epochs at which to switch, one fewer than `schedulers`.

    Raises:
      ValueError: torch's messages (no scheduler, a ReduceLROnPlateau, the count of
        milestones).
    """

    schedulers: tuple[Any, ...]
    milestones: tuple[int, ...]

    def __post_init__(self) -> None:
        parts = _parts("SequentialLR", self.schedulers)
        for i, part in enumerate(parts):
            if isinstance(part, SequentialLR):
                raise TypeError(
                    f"SequentialLR: schedulers[{i}] is a SequentialLR; torch's fails at its "
                    "milestone (SequentialLR has no get_lr): list its parts instead"
                )
        if isinstance(self.milestones, (str, bytes)) or not hasattr(self.milestones, "__iter__"):
            raise TypeError(f"milestones must be a list of epochs, got {self.milestones!r}")
        marks = tuple(check_int("milestone", m, low=0) for m in self.milestones)
        if len(marks) != len(parts) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more "
                f"than the number of milestone points, but got number of schedulers "
                f"{len(parts)} and the number of milestones to be equal to {len(marks)}"
            )
        set_frozen(self, "schedulers", parts)
        set_frozen(self, "milestones", marks)

    @property
    def cycles_momentum(self) -> bool:
        return any(part.cycles_momentum for part in self.schedulers)

    def start(self, group: dict[str, float]) -> _SequentialRun:
        return _SequentialRun(self, group)


@dataclasses.dataclass(frozen=True)
class ChainedScheduler(Schedule):
    """`torch.optim.lr_scheduler.ChainedScheduler`: every schedule steps, in order.

    The schedules multiply where they act on the current lr (`ExponentialLR`,
    `MultiStepLR`, ...); one computed from the base lr (`LambdaLR`, `CosineAnnealingLR`
    after a restart, ...) overrides the ones before it, as in torch.

    Args:
      schedulers: jaxreg schedules, stepped per epoch (wrap the chain in `per_batch` to
        step all of it per batch).

    Raises:
      ValueError: torch's messages (no scheduler, a ReduceLROnPlateau).
    """

    schedulers: tuple[Any, ...]

    def __post_init__(self) -> None:
        set_frozen(self, "schedulers", _parts("ChainedScheduler", self.schedulers))

    @property
    def cycles_momentum(self) -> bool:
        return any(part.cycles_momentum for part in self.schedulers)

    def start(self, group: dict[str, float]) -> _ChainedRun:
        return _ChainedRun(self, group)
