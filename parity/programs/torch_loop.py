"""The one torch training loop, and the one way parity builds a torch `DataLoader`.

    for epoch in range(epochs):
        update.set_lr(lrs[epoch])                   # only for a program in phases
        for xb, yb in batches(epoch):
            update.zero_grad()
            loss = loss_fn(forward(xb), yb)
            loss.backward()
            update.step()                           # optimizer.step(), or a hand-written one
            yield StepRecord(...)                   # loss before, parameters after the update
            for s in batch_schedulers: s.step()
        for s in schedulers: s.step()           # ReduceLROnPlateau: s.step(mean batch loss)

`forward` is any callable (an `nn.Module`, or a closure over plain tensors); `params` names
the tensors to record (`{"weight": layer.weight, ...}` or the tutorial's `{"W": W, ...}`).
The scenarios (`parity.torch_side`), `parity.verify` and the optimizer tests
(`tests/optim_ref.py`) all train through `records` / `run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from parity.scenario import Trajectory

# epoch -> the (x_batch, y_batch) pairs of that epoch
Batches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


class StepRecord(NamedTuple):
    """What one update computed.

    Attributes:
      epoch, batch: where in the run (batch: index within the epoch).
      loss: `loss.item()`, the loss at the parameters before the update.
      params: {name: array} the parameters after the update (copies).
      grads: {name: array} the gradients the update used, or None (not recorded).
    """

    epoch: int
    batch: int
    loss: float
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray] | None = None


class OptimizerUpdate:
    """`optimizer.zero_grad()` / `optimizer.step()`; `set_lr` sets every group's lr.

    An optimizer whose `step` requires a closure (`torch.optim.LBFGS`) has `takes_closure`
    True and is stepped as torch documents it, `loss = optimizer.step(closure)` (`records`
    passes the `closure` of the batch). `torch.optim.SparseAdam`, which takes sparse
    gradients only, gets each dense gradient as `p.grad.to_sparse()` (what a model with
    sparse gradients hands it; `jaxreg.optim.sparse_adam` updates the same entries).
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        closure = inspect.signature(optimizer.step).parameters.get("closure")
        self.takes_closure = closure is not None and closure.default is inspect.Parameter.empty

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> Any:
        if closure is not None:
            return self.optimizer.step(closure)
        if isinstance(self.optimizer, torch.optim.SparseAdam):  # sparse gradients only
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None and not p.grad.is_sparse:
                        p.grad = p.grad.to_sparse()  # its nonzero entries
        return self.optimizer.step()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


class DataUpdate:
    """The tutorials' `p.data = p.data - lr * p.grad.data; p.grad = None`, per tensor."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        self.params, self.lr = list(params), lr

    def zero_grad(self) -> None:  # the step leaves p.grad = None
        pass

    def step(self) -> None:
        for p in self.params:
            p.data = p.data - self.lr * p.grad.data
            p.grad = None

    def set_lr(self, lr: float) -> None:
        self.lr = lr


class NoGradUpdate(DataUpdate):
    """`with torch.no_grad(): p -= p.grad * lr; p.grad.zero_()`, per tensor."""

    def step(self) -> None:
        with torch.no_grad():
            for p in self.params:
                p -= p.grad * self.lr
                p.grad.zero_()


@dataclasses.dataclass
class Program:
    """A torch training program.

    Attributes:
      forward: `x_batch -> prediction`, the loss's first argument.
      loss_fn: `(prediction, y_batch) -> scalar tensor`.
      params: {name: tensor} the parameters to record, in the order to record them.
      update: an `OptimizerUpdate`, `DataUpdate` or `NoGradUpdate` (anything with
        `zero_grad()`, `step()` and `set_lr(lr)`).
      schedulers: stepped after every epoch, in order (torch `lr_scheduler`s).
      batch_schedulers: stepped after every update (a scheduler stepped in the batch loop).
    """

    forward: Callable[[torch.Tensor], torch.Tensor]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    params: Mapping[str, torch.Tensor]
    update: Any
    schedulers: Sequence[Any] = ()
    batch_schedulers: Sequence[Any] = ()


def records(
    program: Program,
    batches: Batches,
    epochs: int,
    *,
    lrs: Sequence[float] | None = None,
    record_grads: bool = False,
    before_step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]
    | None = None,
) -> Iterator[StepRecord]:
    """Train `program` for `epochs` epochs; one `StepRecord` per update.

    Args:
      batches: `epoch -> iterable of (x_batch, y_batch)` (`full_batch`, `loader_batches`).
      lrs: (epochs,) the learning rate set before each epoch (a program that trains in
        phases at several learning rates), or None.
      record_grads: also copy each parameter's gradient before the update.
      before_step: `(x_batch, y_batch, prediction, loss)`, called after `loss.backward()`
        and before the update: the parameters, their `.grad` and the optimizer's state are
        then what the update starts from (`parity.teacher` records them there).
    """
    for epoch in range(epochs):
        if lrs is not None:
            program.update.set_lr(lrs[epoch])
        losses: list[float] = []
        for i, (xb, yb) in enumerate(batches(epoch)):
            program.update.zero_grad()
            pred = program.forward(xb)
            loss = program.loss_fn(pred, yb)
            loss.backward()
            if before_step is not None:
                before_step(xb, yb, pred, loss)
            grads = None
            if record_grads:
                grads = {k: p.grad.detach().cpu().numpy().copy() for k, p in program.params.items()}
            if getattr(program.update, "takes_closure", False):
                # torch's LBFGS loop: the step returns its first closure call's loss (at the
                # parameters before the update, the value computed above)
                loss = program.update.step(closure(program, xb, yb))
            else:
                program.update.step()
            params = {k: p.detach().cpu().numpy().copy() for k, p in program.params.items()}
            yield StepRecord(epoch, i, loss.item(), params, grads)
            losses.append(loss.item())
            for scheduler in program.batch_schedulers:
                scheduler.step()
        for scheduler in program.schedulers:
            step_scheduler(scheduler, losses)


def closure(program: Program, xb: torch.Tensor, yb: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The closure torch's documentation writes for `optimizer.step(closure)`."""

    def evaluate() -> torch.Tensor:
        program.update.zero_grad()
        loss = program.loss_fn(program.forward(xb), yb)
        loss.backward()
        return loss

    return evaluate


def step_scheduler(scheduler: Any, losses: Sequence[float]) -> None:
    """`scheduler.step()` after an epoch; a `ReduceLROnPlateau` gets the epoch's metric,
    `sum(losses) / len(losses)`: the mean of the batch losses `loss.item()` (full batch:
    the epoch's one loss), the number `jaxreg.schedules.ReduceLROnPlateau` reads."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(sum(losses) / len(losses))
    else:
        scheduler.step()


def run(
    program: Program,
    batches: Batches,
    epochs: int,
    *,
    lrs: Sequence[float] | None = None,
    meta: dict[str, Any] | None = None,
    before_step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]
    | None = None,
) -> Trajectory:
    """`records` to the end, on one torch thread, stacked into a `Trajectory`."""
    start = time.perf_counter()
    with single_threaded():
        steps = list(records(program, batches, epochs, lrs=lrs, before_step=before_step))
    return trajectory(steps, list(program.params), time.perf_counter() - start, meta)


def trajectory(
    steps: Sequence[StepRecord],
    names: Sequence[str],
    seconds: float = 0.0,
    meta: dict[str, Any] | None = None,
) -> Trajectory:
    """Records stacked: losses (steps,), params {name: (steps, *shape)}."""
    return Trajectory(
        np.asarray([r.loss for r in steps]),
        {k: np.stack([r.params[k] for r in steps]) for k in names},
        seconds,
        dict(meta or {}),
    )


def full_batch(x: torch.Tensor, y: torch.Tensor) -> Batches:
    """Every epoch is one batch: all of (x, y)."""
    return lambda epoch: ((x, y),)


def data_loader(
    *tensors: torch.Tensor, batch_size: int, shuffle: bool, seed: int, drop_last: bool
) -> DataLoader:
    """`DataLoader(TensorDataset(*tensors), ..., generator=torch.Generator().manual_seed(seed))`.

    Iterating it again starts the next epoch (a shuffling loader draws a new order).
    """
    return DataLoader(
        TensorDataset(*tensors),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )


def loader_batches(loader: DataLoader) -> Batches:
    """Each epoch iterates `loader` once."""
    return lambda epoch: loader


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """torch on one intra-op thread for the duration (restored after).

    These programs handle at most a few thousand numbers per step; a second thread only
    adds synchronisation, and on a loaded 2-core machine a spinning OpenMP pool made a
    6000-step run 10x slower (24 s instead of 2.2 s).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
