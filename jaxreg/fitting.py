"""`fit`: the whole training loop (epochs, mini-batches, schedules) as one XLA program.

The program is cached on the shapes, the loss function and the optimizer's structure;
hyperparameter values (learning rate, momentum, ...) live in the optimizer state and a
schedule's learning rates are an input array, so changing them does not recompile.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _checks
from jaxreg._loop import LoopSpec, epoch_permutation, run_loop
from jaxreg.train import LossFn, prepare_data

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
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    params: Any,
    x: Any,
    y: Any,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    key: jax.Array | None = None,
    order: Any = None,
    drop_last: bool = False,
    schedule: Any = None,
    opt_state: Any = None,
    record_history: bool = True,
    check_finite: bool = True,
    progress: bool | int = False,
) -> FitResult:
    """Train with `tx` for many steps, the whole loop compiled into one XLA program.

    Full batch (`batch_size=None`): `steps` updates on all of (x, y); `epochs` is a synonym.
    Mini-batches: `epochs` passes over the data in batches of `batch_size` rows, the last
    batch smaller unless `drop_last` (torch `DataLoader(batch_size=..., shuffle=...,
    drop_last=...)`). The row order of each epoch is `order[e]` when given (an (epochs, n)
    integer array: replay a torch DataLoader's order), else a permutation drawn from `key`
    when `shuffle`, else 0..n-1.

    A `schedule` (from `jaxreg.schedules`) sets the learning rate of each epoch the way a
    torch loop that calls `scheduler.step()` after every epoch does.

    Args:
      loss_fn: `(params, x, y) -> scalar`.
      tx: an optax `GradientTransformation` (`jaxreg.optim`'s mirror torch.optim).
      params: any pytree of float arrays (e.g. `jaxreg.linear.Params`, a dict).
      x: (n, ...) inputs; y: (n, ...) targets. Integers are promoted to the params' dtype.
      steps / epochs: the length of the run (see above).
      batch_size, shuffle, key, order, drop_last: mini-batching (see above).
      schedule: a `jaxreg.schedules` schedule, stepped per epoch.
      opt_state: continue from this optimizer state instead of `tx.init(params)`.
      record_history: keep the parameters after every update (`FitResult.history`).
      check_finite: raise `DivergenceError` naming the first step whose loss is NaN/inf.
      progress: show a progress bar (tqdm) updated from inside the compiled loop; an int
        gives the number of updates of the bar (default 100).

    Returns:
      `FitResult(params, opt_state, losses, history)`.
    """
    dtype = _checks.float_dtype_of(params)
    x, y = prepare_data(x, y, dtype)
    n = x.shape[0]
    spec, order_arr, key_arr = _loop_spec(
        n, steps, epochs, batch_size, shuffle, key, order, drop_last, record_history, progress
    )
    if opt_state is None:
        opt_state = tx.init(params)
    lrs = None
    if schedule is not None:
        from jaxreg import optim

        # torch's schedulers start from the Python float the optimizer was built with; the
        # state holds it rounded to the params' dtype, so prefer the builder's exact value.
        exact = getattr(getattr(tx, "init", None), "hyperparams", None)
        if isinstance(exact, dict) and "lr" in exact:
            base_lr = float(exact["lr"])
        else:
            base_lr = float(optim.get_hyperparams(opt_state)["lr"])
        lrs = jnp.asarray(schedule.lrs(base_lr, spec.epochs), dtype)
    spec = dataclasses.replace(spec, has_schedule=lrs is not None)
    bar = _progress_bar(spec) if spec.progress_every else None
    try:
        params_out, state_out, losses, history = run_loop(
            loss_fn, tx, spec, params, opt_state, x, y, order_arr, key_arr, lrs
        )
        losses = np.asarray(losses)
    finally:
        if bar is not None:
            _close_bar(bar)
    if check_finite:
        _check_losses(losses, spec, params_out)
    return FitResult(params_out, state_out, losses, history if record_history else None)


def _loop_spec(n, steps, epochs, batch_size, shuffle, key, order, drop_last, record, progress):
    if batch_size is None:
        if steps is not None and epochs is not None and steps != epochs:
            raise ValueError(
                f"full-batch fit: steps ({steps}) and epochs ({epochs}) are the same thing; "
                "pass one of them"
            )
        total = steps if steps is not None else epochs
        if total is None:
            raise ValueError("fit needs steps= (or epochs=) to know how long to train")
        _positive_int("steps", total)
        if order is not None or key is not None:
            raise ValueError("order= and key= only apply with batch_size= (mini-batches)")
        spec = LoopSpec(epochs=total, batch_size=n, n_full=1, remainder=0, mode="full")
        order_arr = key_arr = None
    else:
        _positive_int("batch_size", batch_size)
        n_full, rem = divmod(n, batch_size)
        if drop_last or n_full == 0:
            if n_full == 0 and drop_last:
                raise ValueError(
                    f"batch_size={batch_size} > n={n} with drop_last=True leaves no batch"
                )
            rem = 0 if drop_last else rem
        per_epoch = n_full + (1 if rem else 0)
        if epochs is None:
            if steps is None:
                raise ValueError("fit with batch_size= needs epochs=")
            if steps % per_epoch:
                raise ValueError(
                    f"steps={steps} is not a whole number of epochs of {per_epoch} batches; "
                    "pass epochs= instead"
                )
            epochs = steps // per_epoch
        elif steps is not None and steps != epochs * per_epoch:
            raise ValueError(
                f"steps={steps} != epochs ({epochs}) x batches per epoch ({per_epoch})"
            )
        _positive_int("epochs", epochs)
        order_arr = key_arr = None
        if order is not None:
            order_arr = _check_order(order, epochs, n)
            mode = "order"
        elif shuffle:
            if key is None:
                raise ValueError(
                    "shuffled mini-batches need a key: fit(..., key=jax.random.key(0)); "
                    "or pass shuffle=False, or order= to replay a torch DataLoader"
                )
            key_arr = key
            mode = "key"
        else:
            mode = "sequential"
        spec = LoopSpec(
            epochs=epochs, batch_size=batch_size, n_full=n_full, remainder=rem, mode=mode
        )
    every = 0
    if progress:
        updates = 100 if progress is True else int(progress)
        every = max(1, math.ceil(spec.epochs / max(1, updates)))
    return dataclasses.replace(spec, record=record, progress_every=every), order_arr, key_arr


def _positive_int(name: str, v: Any) -> None:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def _check_order(order, epochs: int, n: int) -> jax.Array:
    arr = np.asarray(order)
    if arr.shape != (epochs, n) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"order must be an integer array of shape (epochs, n) = ({epochs}, {n}), got "
            f"{arr.dtype} {arr.shape}"
        )
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"order has indices outside 0..{n - 1}")
    return jnp.asarray(arr, jnp.int32)


def _check_losses(losses: np.ndarray, spec: LoopSpec, params) -> None:
    finite = np.isfinite(losses)
    if finite.all():
        leaves = jax.tree_util.tree_leaves(params)  # small: (out, in) arrays
        if all(np.isfinite(np.asarray(leaf)).all() for leaf in leaves):
            return
        first = losses.shape[0] - 1
        what = "the parameters became non-finite in the last update"
    else:
        first = int(np.argmin(finite))
        what = f"the loss became {losses[first]} at step {first}"
    where = spec.describe_step(first)
    last = f"; the last finite loss was {losses[first - 1]:.6g}" if first > 0 else ""
    raise DivergenceError(
        f"training diverged: {what}{where}{last}. The learning rate is probably too large for "
        "this data: try a smaller one (e.g. a tenth), or scale the inputs. Pass "
        "check_finite=False to get the raw numbers."
    )


def _progress_bar(spec: LoopSpec):
    from jaxreg import _loop

    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        tqdm = None
    bar = tqdm(total=spec.epochs, unit="epoch") if tqdm is not None else None
    _loop.set_progress_callback(bar.update if bar is not None else _print_progress(spec))
    return bar if bar is not None else True


def _print_progress(spec: LoopSpec):
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        print(f"\rfit: epoch {done[0]}/{spec.epochs}", end="", flush=True)

    return tick


def _close_bar(bar) -> None:
    from jaxreg import _loop

    jax.effects_barrier()
    _loop.set_progress_callback(None)
    if bar is not True:
        bar.close()
