"""`fit`: the whole training loop (epochs, mini-batches, schedules) as one XLA program.

The public call validates everything once (`Dataset`, `LoopSpec`, the optimizer and its
state, the schedule), hands plain values to the compiled loop (`jaxreg.loop.program`) and
checks the result. The program is cached on the shapes, the objective and the optimizer's
structure; hyperparameter values live in the optimizer state and a schedule's learning
rates are an input array, so changing them does not recompile.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _checks, distributed, optim, schedules
from jaxreg.dataset import Dataset, as_dataset
from jaxreg.gradients import gram as gram_path
from jaxreg.loop import program
from jaxreg.loop.batches import epoch_permutation
from jaxreg.loop.progress import Bar
from jaxreg.loop.spec import LoopSpec, loop_spec, progress_every
from jaxreg.objective import Objective, as_objective
from jaxreg.sample_weight import weighted

__all__ = ["DivergenceError", "FitResult", "epoch_permutation", "fit"]


class FitResult(NamedTuple):
    """What `fit` returns.

    Attributes:
      params: the parameters after the last update.
      opt_state: the optimizer state after the last update (pass it back to continue).
      losses: (steps,) `losses[i]` is the loss at the parameters before update i, on that
        step's batch (what a torch loop's `loss.item()` gives).
      history: the params pytree with a leading axis of length `steps`: the parameters
        after each update. None when `record_history=False`.
    """

    params: Any
    opt_state: Any
    losses: np.ndarray
    history: Any


class DivergenceError(FloatingPointError):
    """The training loss became NaN or inf."""


def fit(
    loss_fn: Any,
    tx: optax.GradientTransformation,
    params: Any,
    x: Any,
    y: Any = None,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    key: Any = None,
    order: Any = None,
    drop_last: bool = False,
    sampler: Any = None,
    schedule: Any = None,
    opt_state: Any = None,
    record_history: bool = True,
    check_finite: bool = True,
    progress: bool | int = False,
    gram: bool | str = "auto",
    sample_weight: Any = None,
    sample_weight_reduction: str | None = None,
) -> FitResult:
    """Train with `tx` for many steps, the whole loop compiled into one XLA program.

    Full batch (`batch_size=None`): `steps` updates on all of (x, y); `epochs` is a synonym.
    Mini-batches: `epochs` passes over the data in batches of `batch_size` rows, the last
    batch smaller unless `drop_last` (torch `DataLoader(batch_size=..., shuffle=...,
    drop_last=...)`). The row order of each epoch is `order[e]` when given (an (epochs, n)
    integer array: replay a torch DataLoader's order), else a permutation drawn from `key`
    when `shuffle`, else 0..n-1.

    Data-parallel mini-batches as torch `DistributedSampler` + DDP cut them: pass
    `sampler=jaxreg.distributed.DistributedSampler(seed=...)` (one replica per device of
    row-sharded data's mesh axis, or `num_replicas` simulated on one device); `batch_size`
    is then each replica's, replica r's rows of epoch e are the sampler's
    `indices(n, e, R)[r]` (torch's order exactly; `order` replaces the global permutation
    of each epoch), each replica's gradient is computed on its own batch and the replicas'
    gradients are averaged (DDP's all-reduce mean), and `losses[i]` is the mean of the
    replicas' losses at step i (a DDP program's `all_reduce(loss) / world_size`).

    Per-sample weights (`sample_weight=w`, torch's `(F.mse_loss(pred, yb, reduction="none")
    * w[idx]).mean()`, `jaxreg.sample_weight`): each step weights the loss terms of its
    batch's rows by the same rows of w, in every batching mode.

    A `schedule` (from `jaxreg.schedules`) sets the learning rate of each epoch the way a
    torch loop that calls `scheduler.step()` after every epoch does (a schedule whose
    `interval` is "batch" sets it before every step). `ReduceLROnPlateau` follows the
    epoch's mean batch loss: `fit` wraps the optimizer in it
    (`schedule.wrap(tx, steps_per_epoch)`), so `FitResult.opt_state` is then its
    `PlateauState` (continue with the same `schedule=` and `opt_state=`).

    Args:
      loss_fn: `(params, x, y) -> scalar`, e.g. `jr.objective(jr.linear.predict, jr.losses.mse)`.
      tx: an optax `GradientTransformation` (`jaxreg.optim`'s mirror torch.optim). Its
        hyperparameters are the ones that train, also when `opt_state` was made by another.
      params: any pytree of float arrays (e.g. `jaxreg.linear.Params`, a dict).
      x: (n, ...) inputs, or a `jaxreg.Dataset` (then no `y`); y: (n, ...) targets.
        Integers are promoted to the params' dtype (except a 1-D integer y: class indices
        for `losses.cross_entropy`/`nll`, kept as int32); wider floats are rounded to it with a
        `PrecisionWarning` (training runs in the params' dtype). Rows sharded over a
        mesh axis (x and y alike) train data-parallel, params replicated on the mesh
        (`jaxreg.distributed`).
      steps / epochs: the length of the run (see above).
      batch_size, shuffle, key, order, drop_last: mini-batching (see above); `key` is a
        `jax.random.key` or an int seed.
      sampler: a `jaxreg.distributed.DistributedSampler`: per-replica mini-batches with
        averaged gradients (see above; `shuffle` and `key` then stay unset).
      schedule: a `jaxreg.schedules` schedule.
      opt_state: continue from this optimizer state (its buffers; the hyperparameters are
        `tx`'s, see `jaxreg.optim.adopt`) instead of `tx.init(params)`.
      record_history: keep the parameters after every update (`FitResult.history`).
      check_finite: raise `DivergenceError` naming the first step whose loss is NaN/inf.
      progress: show a progress bar (tqdm) for this call; an int gives the number of
        updates of the bar (default 100). The loop then runs in that many chunks.
      gram: "auto", True or False. Train a full-batch mse/sse (mean or sum) fit of a linear
        model from sufficient statistics of (x, y) (X'X, X'y, ...; scikit-learn's
        `precompute`): computed once per `Dataset` and dtype, then each step costs
        O(out d²) instead of O(n d out) (`jaxreg.gradients.gram`). The loss is then a sum of
        precomputed terms, equal to the direct `mean((x W' + b - y)²)` up to an error that
        grows with the conditioning of x (`gram.error_bound`). "auto": only in float64,
        when that estimate is at most 1e-11 relative and the fit is large enough to pay
        for it. True: always where it applies (a `ValueError` naming why where it does
        not: mini-batches, per-sample weights, other losses or models, dict params; a
        `PrecisionWarning` where the estimate exceeds 1e-11, e.g. in float32). False: never.
      sample_weight: (n,) or (n, 1) weights of the rows (or y's shape: one per element),
        finite and >= 0 (0 leaves a row out); or pass them to `jaxreg.Dataset`. The loss
        must be a `jr.objective(predict, loss)` whose loss takes `reduction="none"`.
      sample_weight_reduction: how a batch's weighted terms `l * w` become the loss:
        "mean" (`(l * w).mean()`, `F.binary_cross_entropy(p, y, weight=w)`), "sum"
        (`(l * w).sum()`) or "normalized" (`(l * w).sum() / w.expand_as(l).sum()`); None
        (default): the loss's own reduction ("sum" for `sse` or `reduction="sum"`).

    Returns:
      `FitResult(params, opt_state, losses, history)`.
    """
    objective, data, dtype = boundary(loss_fn, tx, params, x, y, sample_weight)
    xd, yd, where, backend = data.placed(dtype)
    loop_objective = objective
    wd = data.placed_weight(dtype, where)
    if wd is not None:  # the loop's loss is the weighted one; its y is (y, w)
        loop_objective = weighted(objective, sample_weight_reduction, params, xd, yd, wd)
        yd = (yd, wd)
        if gram is True:
            raise ValueError(
                "gram=True: the statistics path trains unweighted least squares; with "
                "sample_weight pass gram='auto' or gram=False"
            )
        gram = False
    elif sample_weight_reduction is not None:
        raise ValueError(
            f"sample_weight_reduction={sample_weight_reduction!r} without sample_weight: pass "
            "the weights (sample_weight=w), or drop sample_weight_reduction"
        )
    spec, order_arr, key_arr = loop_spec(
        data.n,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        key=key,
        order=order,
        drop_last=drop_last,
        record=record_history,
        sampler=sampler,
        shards=None if where is None else where.shards,
    )
    _checks.check_flag("check_finite", check_finite)
    every = progress_every(progress, spec.epochs)
    if isinstance(schedule, schedules.ReduceLROnPlateau):  # the loss drives it: it wraps tx
        tx, schedule = schedule.wrap(tx, spec.steps_per_epoch), None
    opt_state = tx.init(params) if opt_state is None else optim.adopt(tx, params, opt_state)
    spec, lrs = _schedule(schedule, tx, opt_state, spec, dtype)
    _check_memory(spec, params, dtype)
    if where is not None:  # row-sharded data: everything else replicated on its mesh
        if gram is True:
            raise ValueError(
                "gram=True: the statistics path runs on one device, and x is row-sharded on "
                "a mesh; pass gram='auto' or gram=False to train the sharded data directly."
            )
        gram = False
        spec = dataclasses.replace(spec, data_mesh=where)
        params, opt_state, order_arr, key_arr, lrs = distributed.replicate(
            (params, opt_state, order_arr, key_arr, lrs), where
        )
        objective, loop_objective = distributed.replicate((objective, loop_objective), where)
    stats = gram_path.choose(
        gram, objective, params, data, dtype, full_batch=spec.mode == "full", steps=spec.steps
    )
    if stats is None:
        run = _Run(loop_objective, tx, spec, xd, yd, order_arr, key_arr, lrs, backend)
    else:  # the loop takes the statistics in place of (x, y)
        objective_s = gram_path.FromStatistics(objective)
        run = _Run(objective_s, tx, spec, stats, None, order_arr, key_arr, lrs, backend)
    params_out, state_out, losses, history = run.all(params, opt_state, every)
    if check_finite:
        check_losses(losses, spec, params_out, objective, data, dtype, params, history)
    return FitResult(params_out, state_out, losses, history if record_history else None)


def boundary(
    loss_fn, tx, params, x, y, sample_weight=None, *, models: bool = False
) -> tuple[Any, Dataset, np.dtype]:
    """The validated objective, dataset (with `sample_weight`, if given) and training
    dtype of a `fit`/`fit_many` call (`models`: fit_many's leading model axis)."""
    optim.check_transformation(tx)
    objective = as_objective(loss_fn)
    dtype = _checks.params_dtype(params)
    data = as_dataset(x, y).with_sample_weight(sample_weight)
    if models:
        data = data.for_models()
    data.check_for(objective)
    return objective, data, dtype


class _Run:
    """One fit's compiled loop with its inputs; `all` runs it whole or in progress chunks."""

    def __init__(self, objective, tx, spec, x, y, order, key, lrs, backend):
        self.objective, self.tx, self.spec, self.backend = objective, tx, spec, backend
        self.inputs = (x, y, order, key, lrs)

    def chunk(self, params, opt_state, epoch0: int, epochs: int):
        spec = self.spec
        if epochs != spec.epochs:
            spec = dataclasses.replace(spec, epochs=epochs)
        p, s, losses, history = program.run(
            self.objective,
            params,
            opt_state,
            *self.inputs,
            epoch0,
            tx=self.tx,
            spec=spec,
            backend=self.backend,
        )
        return p, program.finish(s, opt_state, self.inputs[-1], spec, epoch0), losses, history

    def all(self, params, opt_state, every: int):
        total = self.spec.epochs
        if not every:
            p, s, losses, history = self.chunk(params, opt_state, 0, total)
            return p, s, np.asarray(losses), history
        bar = Bar(total)
        parts = []
        try:
            done = 0
            while done < total:
                k = min(every, total - done)
                params, opt_state, losses, history = self.chunk(params, opt_state, done, k)
                parts.append((np.asarray(losses), history))  # waits for the chunk
                done += k
                bar.update(k)
        finally:
            bar.close()
        losses = np.concatenate([p[0] for p in parts])
        history = None
        if self.spec.record:
            history = jax.tree.map(lambda *h: jnp.concatenate(h), *[p[1] for p in parts])
        return params, opt_state, losses, history


def _schedule(schedule, tx, opt_state, spec: LoopSpec, dtype) -> tuple[LoopSpec, Any]:
    if schedule is None:
        return spec, None
    lrs_fn = getattr(schedule, "lrs", None)
    interval = getattr(schedule, "interval", "epoch")
    if not callable(lrs_fn) or interval not in ("epoch", "batch"):
        hint = ""
        if hasattr(schedule, "optimizer") and hasattr(schedule, "get_last_lr"):
            hint = (
                f" This is a torch scheduler: use its jaxreg mirror, e.g. "
                f"jr.schedules.{type(schedule).__name__}(...) with the same arguments."
            )
        raise TypeError(
            f"schedule must be a jaxreg.schedules schedule (e.g. "
            f"jr.schedules.StepLR(step_size=5, gamma=0.5)), got {type(schedule).__name__}.{hint}"
        )
    # torch's schedulers start from the Python float the optimizer was built with; the
    # state holds it rounded to the params' dtype, so prefer the builder's exact value.
    exact = optim.hyperparams_of(tx).get("lr")
    base_lr = float(exact if exact is not None else optim.get_hyperparams(opt_state)["lr"])
    count = spec.epochs if interval == "epoch" else spec.steps
    lrs = jnp.asarray(lrs_fn(base_lr, count), dtype)
    return dataclasses.replace(spec, schedule=interval), lrs


def _check_memory(spec: LoopSpec, params: Any, dtype: Any) -> None:
    """Refuse, before allocating, a run whose losses and history would not fit in memory."""
    per_step = np.dtype(dtype).itemsize
    if spec.record:
        per_step += sum(
            np.size(leaf) * np.dtype(dtype).itemsize for leaf in jax.tree.leaves(params)
        )
    need = spec.steps * per_step
    if need < 2**30:  # small enough for any machine this runs on: skip asking the OS
        return
    have = _memory_bytes()
    if need > have:
        what = "the losses and the parameters after every step" if spec.record else "the losses"
        raise ValueError(
            f"steps={spec.steps}: {what} need {need / 2**30:.3g} GiB, more than the "
            f"{have / 2**30:.3g} GiB this machine can spare (half its memory, at most what is "
            "free). Train fewer steps per call (continue with opt_state=), or pass "
            "record_history=False to keep only the losses."
        )


def _memory_bytes() -> int:
    """Half the machine's memory, at most what is free now."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return min(page * os.sysconf("SC_PHYS_PAGES") // 2, page * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2**40


def check_losses(losses, spec: LoopSpec, params_out, objective, data, dtype, params0, history):
    """`DivergenceError` (or the data's own error) if a loss or the final params are not
    finite; names the first bad step and, for bce, probabilities outside [0, 1]."""
    finite = np.isfinite(losses)
    if finite.all():
        leaves = jax.tree_util.tree_leaves(params_out)  # small: (out, in) arrays
        if all(np.isfinite(np.asarray(leaf)).all() for leaf in leaves):
            return
        first = losses.shape[0] - 1
        what = "the parameters became non-finite in the last update"
    else:
        first = int(np.argmin(finite))
        what = f"the loss became {losses[first]} at step {first}"
        _check_predictions(objective, data, dtype, params0, history, first)
    where = spec.describe_step(first)
    last = f"; the last finite loss was {losses[first - 1]:.6g}" if first > 0 else ""
    raise DivergenceError(
        f"training diverged: {what}{where}{last}. The learning rate is probably too large for "
        "this data: try a smaller one (e.g. a tenth), or scale the inputs. Pass "
        "check_finite=False to get the raw numbers."
    )


def _check_predictions(objective, data, dtype, params0, history, first: int) -> None:
    """For a loss that needs predictions in a range (bce: probabilities), name the row
    whose prediction left it at the step whose loss became NaN."""
    separable = objective.separable() if isinstance(objective, Objective) else None
    if separable is None or separable[0].pred_range is None:
        return
    if first > 0 and history is None:
        return
    at = params0 if first == 0 else jax.tree.map(lambda h: h[first - 1], history)
    x, _ = data.arrays(dtype)
    pred = np.asarray(objective.predict(at, x))
    low, high = separable[0].pred_range
    bad = ~((pred >= low) & (pred <= high))
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(
            f"{objective.loss.__name__} needs predictions in [{low:g}, {high:g}] (torch: 'all "
            f"elements of input should be between 0 and 1'), but at step {first} the "
            f"prediction for row {row} is {pred[np.argwhere(bad)[0][0]].tolist()}: the loss "
            "became NaN. Predict probabilities (jr.logistic.predict), or use "
            "jr.losses.bce_with_logits on logits."
        )
