"""The one jaxreg run: `jr.fit`, or a Python loop over `jr.make_step` the way a port reads.

Both take the same arguments and return the same things (final params, losses (steps,),
params after every update stacked on a leading axis), so the scenarios (`parity.jax_side`)
and `parity.verify` train the jax side through `run` alone. Mini-batches replay a torch
`DataLoader`'s recorded row order (`order`, (epochs, n)), else take the rows in order.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

import jaxreg as jr
from jaxreg.loop.batches import batch_indices

LOOPS = ("fit", "make_step")


def run(
    loss_fn: Any,
    tx: Any,
    params: Any,
    x: Any,
    y: Any,
    *,
    epochs: int,
    batch_size: int | None = None,
    shuffle: bool = True,
    order: np.ndarray | None = None,
    drop_last: bool = False,
    schedule: Any = None,
    base_lr: float | None = None,
    loop: str = "fit",
) -> tuple[Any, np.ndarray, Any]:
    """Train with jaxreg: (final params, losses (steps,), history (steps, ...) per leaf).

    Args:
      loss_fn, tx, params, x, y: as `jr.fit` takes them.
      epochs: passes over the data (full batch: updates).
      batch_size, shuffle, order, drop_last: mini-batches, as `jr.fit` takes them.
      schedule: a `jr.schedules` schedule, stepped per epoch (per update when its
        `interval` is "batch": `jr.schedules.per_batch(...)`).
      base_lr: the learning rate the schedule starts from, as the Python float torch
        holds (needed by the "make_step" loop; `fit` reads it from `tx`).
      loop: "fit" (the whole run as one compiled program) or "make_step".

    A `jr.schedules.ReduceLROnPlateau` (which follows the loss) wraps `tx` instead,
    `schedule.wrap(tx, steps_per_epoch)`, with the run's batches per epoch.

    NaN/inf losses are returned, not raised: the comparison reports a divergence.
    """
    if isinstance(schedule, jr.schedules.ReduceLROnPlateau):
        per_epoch = len(
            list(batch_indices(x.shape[0], batch_size or x.shape[0], drop_last=drop_last))
        )
        tx, schedule = schedule.wrap(tx, steps_per_epoch=per_epoch), None
    if loop == "fit":
        res = jr.fit(
            loss_fn,
            tx,
            params,
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            order=order,
            drop_last=drop_last,
            schedule=schedule,
            check_finite=False,  # the comparison reports divergence; torch does not raise
        )
        return res.params, np.asarray(res.losses), res.history
    if loop == "make_step":
        return _step_loop(
            loss_fn, tx, params, x, y, epochs, batch_size, order, drop_last, schedule, base_lr
        )
    raise ValueError(f"loop must be one of {', '.join(LOOPS)}; got {loop!r}")


def _step_loop(loss_fn, tx, params, x, y, epochs, batch_size, order, drop_last, schedule, base_lr):
    """The run as a Python loop over `jr.make_step`, the way a port of a torch loop reads:
    the same batches as the DataLoader, `jr.schedules.apply` (`jr.optim.set_lr`, and the
    momentum of a schedule that cycles it) where torch's scheduler steps (before each
    epoch, or before each update for a per-batch schedule).

    The batches are jaxreg's own (`jaxreg.loop.batches.batch_indices`: the rows of
    `order[epoch]`, `batch_size` at a time, the last batch shorter unless `drop_last`), the
    one definition of a `DataLoader`'s batches that `fit`'s compiled loop follows too.
    """
    step = jr.make_step(loss_fn, tx)
    state = tx.init(params)
    if schedule is not None and base_lr is None:
        raise ValueError("the make_step loop needs base_lr to apply a schedule")
    n = x.shape[0]
    size = batch_size or n
    per_batch = getattr(schedule, "interval", "epoch") == "batch"
    per_epoch = len(list(batch_indices(n, size, drop_last=drop_last)))
    count = epochs * per_epoch if per_batch else epochs
    lrs = None if schedule is None else schedule.lrs(base_lr, count)
    losses, history = [], []
    for epoch in range(epochs):
        if lrs is not None and not per_batch:
            state = jr.schedules.apply(state, lrs[epoch])
        rows = order[epoch] if order is not None else None
        for idx in batch_indices(n, size, order=rows, drop_last=drop_last):
            if lrs is not None and per_batch:
                state = jr.schedules.apply(state, lrs[len(losses)])
            xb, yb = (x, y) if size == n else (x[idx], y[idx])
            params, state, loss = step(params, state, xb, yb)
            losses.append(float(loss))
            history.append(params)
    stacked = jax.tree.map(lambda *a: np.stack([np.asarray(v) for v in a]), *history)
    return params, np.asarray(losses), stacked


def run_step_fn(
    step: Any,
    params: Any,
    opt_state: Any,
    x: Any,
    y: Any,
    *,
    epochs: int,
    batch_size: int | None = None,
    shuffle: bool = True,
    order: np.ndarray | None = None,
    drop_last: bool = False,
) -> tuple[Any, np.ndarray, Any]:
    """A user's own step `(params, opt_state, x, y) -> (params, opt_state, loss)` (their
    optax loop) over the same batches as `run`: (final params, losses, history).

    `shuffle` is accepted for `run`'s signature: the order is `order`'s (or the rows').
    """
    del shuffle
    n = x.shape[0]
    size = batch_size or n
    losses, history = [], []
    for epoch in range(epochs):
        rows = order[epoch] if order is not None else None
        for idx in batch_indices(n, size, order=rows, drop_last=drop_last):
            xb, yb = (x, y) if size == n else (x[idx], y[idx])
            params, opt_state, loss = step(params, opt_state, xb, yb)
            losses.append(float(loss))
            history.append(params)
    stacked = jax.tree.map(lambda *a: np.stack([np.asarray(v) for v in a]), *history)
    return params, np.asarray(losses), stacked
