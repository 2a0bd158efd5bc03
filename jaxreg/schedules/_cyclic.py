"""torch's cyclic schedules: `CosineAnnealingWarmRestarts`, `CyclicLR`, `OneCycleLR`.

`CyclicLR` and `OneCycleLR` are stepped after every batch (`interval = "batch"`), as torch
users step them, and by default they also cycle the momentum: SGD's and RMSprop's
`momentum`, the Adam family's `beta1` (torch: `betas[0]`). Their `lrs` then has two
columns, (lr, momentum), and `fit` sets both before each step. An optimizer with neither
is refused with torch's message; an SGD or RMSprop built with `momentum=0` (no momentum
buffer, which torch would start) is refused too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from jaxreg.schedules._base import (
    Run,
    Schedule,
    check_float,
    check_scalar,
    set_frozen,
)


class _WarmRestartsRun(Run):
    """torch's `CosineAnnealingWarmRestarts.step`, which keeps `T_cur` and `T_i`."""

    def __init__(self, schedule: Any, group: dict[str, float]):
        self.T_i = schedule.T_0
        self.T_cur = -1
        super().__init__(schedule, group)

    def step(self, epoch: Any = None) -> None:
        s = self.schedule
        self.step_count += 1  # LRScheduler.step's count (CAWR overrides step without it)
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * s.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            if epoch >= s.T_0:
                if s.T_mult == 1:
                    self.T_cur = epoch % s.T_0
                else:
                    n = int(math.log((epoch / s.T_0 * (s.T_mult - 1) + 1), s.T_mult))
                    self.T_cur = epoch - s.T_0 * (s.T_mult**n - 1) / (s.T_mult - 1)
                    self.T_i = s.T_0 * s.T_mult ** (n)
            else:
                self.T_i = s.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self.group["lr"] = s.get_lr(self)


@dataclasses.dataclass(frozen=True)
class CosineAnnealingWarmRestarts(Schedule):
    """`torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` (SGDR).

    The lr follows `eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2`,
    restarting at `base_lr` after `T_i` epochs; `T_i` starts at `T_0` and is multiplied by
    `T_mult` at each restart. Stepped per epoch by default; `per_batch(schedule)` steps it
    per batch (counting batches as epochs); `per_batch(schedule, steps_per_epoch=iters)`
    is torch's documented `scheduler.step(epoch + i / iters)` after batch `i`.

    Args:
      T_0: epochs to the first restart, a positive integer.
      T_mult: the factor of the period after each restart, an integer >= 1.
      eta_min: the minimum learning rate.

    Raises:
      ValueError: torch's messages for `T_0`, `T_mult` and `eta_min`.
    """

    T_0: int
    T_mult: int = 1
    eta_min: float = 0.0
    fractional_epochs = True  # torch's step(epoch) accepts a float epoch

    def __post_init__(self) -> None:
        t0, mult, eta = self.T_0, self.T_mult, self.eta_min
        if isinstance(t0, bool) or not isinstance(t0, int) or t0 <= 0:
            raise ValueError(f"Expected positive integer T_0, but got {t0}")
        if isinstance(mult, bool) or not isinstance(mult, int) or mult < 1:
            raise ValueError(f"Expected integer T_mult >= 1, but got {mult}")
        if isinstance(eta, bool) or not isinstance(eta, (float, int)):
            raise ValueError(f"Expected float or int eta_min, but got {eta} of type {type(eta)}")
        set_frozen(self, "eta_min", check_float("eta_min", eta))

    def start(self, group: dict[str, float]) -> Run:
        return _WarmRestartsRun(self, group)

    def get_lr(self, run: Any) -> float:
        return (
            self.eta_min
            + (run.base_lr - self.eta_min) * (1 + math.cos(math.pi * run.T_cur / run.T_i)) / 2
        )


def _check_momenta(obj: Any) -> None:
    if not isinstance(obj.cycle_momentum, bool):
        raise TypeError(f"cycle_momentum must be True or False, got {obj.cycle_momentum!r}")
    set_frozen(obj, "base_momentum", check_scalar("base_momentum", obj.base_momentum))
    set_frozen(obj, "max_momentum", check_scalar("max_momentum", obj.max_momentum))


@dataclasses.dataclass(frozen=True)
class CyclicLR(Schedule):
    """`torch.optim.lr_scheduler.CyclicLR`, stepped after every batch.

    The lr goes from `base_lr` up to `max_lr` in `step_size_up` steps and back down in
    `step_size_down`, scaled per cycle (`"triangular"`: 1, `"triangular2"`: halved each
    cycle) or per step (`"exp_range"`: `gamma ** step`), or by `scale_fn` (a Python
    function, evaluated on the host before the loop, of the cycle or of the step, as
    `scale_mode` says). torch's `CyclicLR` sets the optimizer's lr to `base_lr`: the
    optimizer's own lr is not used. With `cycle_momentum` (the default, as in torch) the
    momentum (or beta1) cycles between `max_momentum` and `base_momentum`, inversely.

    Args:
      base_lr, max_lr: the cycle's bounds (a number, or a list of one).
      step_size_up: steps of the rising half, >= 1 (torch: 2000).
      step_size_down: steps of the falling half (default: `step_size_up`).
      mode: "triangular", "triangular2" or "exp_range" (ignored when `scale_fn` is given).
      gamma: `exp_range`'s factor per step.
      scale_fn: `x -> scale`, a Python function, or None.
      scale_mode: "cycle" or "iterations": what `scale_fn` takes.
      cycle_momentum, base_momentum, max_momentum: the momentum's cycle.

    Raises:
      ValueError: torch's message for an unknown mode without `scale_fn`.
    """

    base_lr: float
    max_lr: float
    step_size_up: int = 2000
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    scale_fn: Callable[[float], float] | None = None
    scale_mode: str = "cycle"
    cycle_momentum: bool = True
    base_momentum: float = 0.8
    max_momentum: float = 0.9
    interval = "batch"

    def __post_init__(self) -> None:
        set_frozen(self, "base_lr", check_scalar("base_lr", self.base_lr))
        set_frozen(self, "max_lr", check_scalar("max_lr", self.max_lr))
        up = check_float("step_size_up", self.step_size_up)
        down = (
            up
            if self.step_size_down is None
            else check_float("step_size_down", self.step_size_down)
        )
        if up + down <= 0:
            raise ValueError(
                f"step_size_up + step_size_down must be > 0 (torch divides by it), got "
                f"{self.step_size_up} and {self.step_size_down}"
            )
        if self.mode not in ("triangular", "triangular2", "exp_range") and self.scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        if self.scale_fn is not None and not callable(self.scale_fn):
            raise TypeError(f"scale_fn must be a function or None, got {self.scale_fn!r}")
        if self.scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"scale_mode must be 'cycle' or 'iterations', got {self.scale_mode!r}")
        set_frozen(self, "gamma", check_float("gamma", self.gamma))
        _check_momenta(self)

    @property
    def cycles_momentum(self) -> bool:
        return self.cycle_momentum

    def _scale(self) -> tuple[Callable[[float], float], str]:
        """torch's `_init_scale_fn`: the function and what it takes."""
        if self.scale_fn is not None:
            return self.scale_fn, self.scale_mode
        if self.mode == "triangular":
            return (lambda x: 1.0), "cycle"
        if self.mode == "triangular2":
            return (lambda x: 1 / (2.0 ** (x - 1))), "cycle"
        gamma = self.gamma
        return (lambda x: gamma**x), "iterations"

    def start(self, group: dict[str, float]) -> Run:
        group["lr"] = self.base_lr  # torch: the constructor sets the group's lr to base_lr
        if self.cycle_momentum:
            group["momentum"] = self.max_momentum
        run = Run(self, group)
        run.base_lr = self.base_lr  # torch: `self.base_lrs = base_lrs` after the initial step
        return run

    def get_lr(self, run: Run) -> float:
        up = float(self.step_size_up)
        down = float(self.step_size_down) if self.step_size_down is not None else up
        total_size = up + down
        step_ratio = up / total_size
        scale_fn, scale_mode = self._scale()
        cycle = math.floor(1 + run.last_epoch / total_size)
        x = 1.0 + run.last_epoch / total_size - cycle
        if x <= step_ratio:
            scale_factor = x / step_ratio
        else:
            scale_factor = (x - 1) / (step_ratio - 1)
        at = cycle if scale_mode == "cycle" else run.last_epoch
        base_height = (self.max_lr - run.base_lr) * scale_factor
        lr = run.base_lr + base_height * scale_fn(at)
        if self.cycle_momentum:
            height = (self.max_momentum - self.base_momentum) * scale_factor
            run.group["momentum"] = self.max_momentum - height * scale_fn(at)
        return lr


@dataclasses.dataclass(frozen=True)
class OneCycleLR(Schedule):
    """`torch.optim.lr_scheduler.OneCycleLR`, stepped after every batch.

    The lr rises from `max_lr / div_factor` to `max_lr` over `pct_start` of
    `total_steps`, then anneals (`"cos"` or `"linear"`) to `max_lr / div_factor /
    final_div_factor`; `three_phase` goes back down to the initial lr before the final
    annealing. With `cycle_momentum` (default) the momentum (or beta1) goes the opposite
    way between `max_momentum` and `base_momentum`. torch raises once stepped past
    `total_steps` (the step after the last update counts): so does `lrs`.

    Args:
      max_lr: the peak lr (a number, or a list of one).
      total_steps: the cycle's length in steps; or `epochs` and `steps_per_epoch`.
      pct_start: the rising fraction, a float in [0, 1].
      anneal_strategy: "cos" or "linear".
      cycle_momentum, base_momentum, max_momentum: the momentum's cycle.
      div_factor: initial lr = max_lr / div_factor.
      final_div_factor: final lr = initial lr / final_div_factor.
      three_phase: torch's three-phase schedule.

    Raises:
      ValueError: torch's messages.
    """

    max_lr: float
    total_steps: int | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    interval = "batch"

    def __post_init__(self) -> None:
        total = self.total_steps
        if total is not None:
            if isinstance(total, bool) or not isinstance(total, int) or total <= 0:
                raise ValueError(f"Expected positive integer total_steps, but got {total}")
        elif self.epochs is not None and self.steps_per_epoch is not None:
            epochs, per = self.epochs, self.steps_per_epoch
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if isinstance(per, bool) or not isinstance(per, int) or per <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, but got {per}")
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        pct = self.pct_start
        if not isinstance(pct, float) or pct < 0 or pct > 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct}")
        if self.anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                "anneal_strategy must be one of 'cos' or 'linear', instead got "
                f"{self.anneal_strategy}"
            )
        if not isinstance(self.three_phase, bool):
            raise TypeError(f"three_phase must be True or False, got {self.three_phase!r}")
        set_frozen(self, "max_lr", check_scalar("max_lr", self.max_lr))
        set_frozen(self, "div_factor", check_float("div_factor", self.div_factor))
        set_frozen(self, "final_div_factor", check_float("final_div_factor", self.final_div_factor))
        _check_momenta(self)

    @property
    def cycles_momentum(self) -> bool:
        return self.cycle_momentum

    @property
    def steps(self) -> int:
        """torch's `total_steps`: as given, or `epochs * steps_per_epoch`."""
        if self.total_steps is not None:
            return self.total_steps
        return self.epochs * self.steps_per_epoch

    def phases(self) -> list[tuple[float, str, str, str, str]]:
        """torch's `_schedule_phases`: (end_step, start_lr, end_lr, start_m, end_m)."""
        total, pct = self.steps, self.pct_start
        if self.three_phase:
            return [
                (float(pct * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (
                    float(2 * pct * total) - 2,
                    "max_lr",
                    "initial_lr",
                    "base_momentum",
                    "max_momentum",
                ),
                (total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        return [
            (float(pct * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
            (total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
        ]

    def start(self, group: dict[str, float]) -> Run:
        group["initial_lr"] = self.max_lr / self.div_factor
        group["max_lr"] = self.max_lr
        group["min_lr"] = group["initial_lr"] / self.final_div_factor
        if self.cycle_momentum:
            group["momentum"] = self.max_momentum
            group["max_momentum"] = self.max_momentum
            group["base_momentum"] = self.base_momentum
        return Run(self, group)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            cos_out = math.cos(math.pi * pct) + 1
            return end + (start - end) / 2.0 * cos_out
        return (end - start) * pct + start

    def get_lr(self, run: Run) -> float:
        step_num, group = run.last_epoch, run.group
        if step_num > self.steps:
            raise ValueError(
                f"Tried to step {step_num} times. The specified number of total steps is "
                f"{self.steps}"
            )
        phases = self.phases()
        start_step = 0.0
        for i, (end_step, start_lr, end_lr, start_m, end_m) in enumerate(phases):
            if step_num <= end_step or i == len(phases) - 1:
                pct = (step_num - start_step) / (end_step - start_step)
                lr = self._anneal(group[start_lr], group[end_lr], pct)
                if self.cycle_momentum:
                    group["momentum"] = self._anneal(group[start_m], group[end_m], pct)
                return lr
            start_step = end_step
        raise AssertionError("unreachable: the last phase always matches")
