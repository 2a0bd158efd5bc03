"""The compiled training loop behind `fit`: epochs, mini-batches, schedules in one program.

`LoopSpec` holds everything static about a run (its hash is part of the compile cache key);
arrays (params, optimizer state with its hyperparameters, data, batch order, key, the
schedule's learning rates) are inputs, so a second run with new values reuses the program.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

_progress_callback: list[Callable[[int], None] | None] = [None]


def set_progress_callback(fn: Callable[[int], None] | None) -> None:
    """Install the host function that the compiled loop calls with the epochs just done."""
    _progress_callback[0] = fn


def _tick(k) -> None:
    fn = _progress_callback[0]
    if fn is not None:
        fn(int(k))


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """The static shape of a training run.

    Attributes:
      epochs: number of passes (full batch: number of steps).
      batch_size: rows per batch (n for full batch).
      n_full: full batches per epoch (1 for full batch).
      remainder: rows of the last, smaller batch of each epoch (0: none).
      mode: "full", "sequential" (rows in order), "order" (given per-epoch order) or
        "key" (a permutation per epoch from a JAX key).
      record: return the parameters after every step.
      progress_every: call the progress callback every this many epochs (0: never).
      has_schedule: a per-epoch learning-rate array is an input.
    """

    epochs: int
    batch_size: int
    n_full: int
    remainder: int
    mode: str
    record: bool = True
    progress_every: int = 0
    has_schedule: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return self.n_full + (1 if self.remainder else 0)

    def describe_step(self, step: int) -> str:
        if self.mode == "full":
            return ""
        epoch, batch = divmod(step, self.steps_per_epoch)
        return f" (epoch {epoch}, batch {batch})"


def run_loop(loss_fn, tx, spec: LoopSpec, params, opt_state, x, y, order, key, lrs):
    """Run the compiled loop; returns (params, opt_state, losses (steps,), history or None)."""
    return _program(params, opt_state, x, y, order, key, lrs, loss_fn=loss_fn, tx=tx, spec=spec)


@functools.partial(jax.jit, static_argnames=("loss_fn", "tx", "spec"))
def _program(params, opt_state, x, y, order, key, lrs, *, loss_fn, tx, spec: LoopSpec):
    from jaxreg.train import update

    def step(carry, batch):
        p, s = carry
        p, s, loss = update(loss_fn, tx, p, s, *batch)
        return (p, s), (loss, p if spec.record else None)

    def epoch(carry, e):
        if spec.has_schedule:
            from jaxreg.optim import set_lr

            carry = (carry[0], set_lr(carry[1], lrs[e]))
        if spec.mode == "full":
            carry, out = step(carry, (x, y))
            return carry, jax.tree.map(lambda a: a[None], out)
        rows = _epoch_rows(spec, x.shape[0], e, order, key)
        cut = spec.n_full * spec.batch_size
        if rows is None:  # sequential: slice instead of gather
            xb, yb = x[:cut], y[:cut]
            x_rest, y_rest = x[cut:], y[cut:]
        else:
            xb, yb = x[rows[:cut]], y[rows[:cut]]
            x_rest, y_rest = x[rows[cut:]], y[rows[cut:]]
        batches = (_split(xb, spec), _split(yb, spec))
        carry, out = jax.lax.scan(step, carry, batches)
        if spec.remainder:
            carry, last = step(carry, (x_rest, y_rest))
            out = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), out, last)
        return carry, out

    carry, (losses, history) = _scan_epochs(epoch, (params, opt_state), spec)
    flat = jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), (losses, history))
    return (*carry, *flat)


def _split(a, spec: LoopSpec):
    return a.reshape((spec.n_full, spec.batch_size, *a.shape[1:]))


def _epoch_rows(spec: LoopSpec, n: int, e, order, key):
    if spec.mode == "order":
        return order[e]
    if spec.mode == "key":
        return epoch_permutation(key, e, n)
    return None


def epoch_permutation(key, epoch, n: int):
    """The row order of epoch `epoch` in a shuffled fit: `permutation(fold_in(key, epoch), n)`."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n)


def _scan_epochs(epoch, carry, spec: LoopSpec):
    """Scan `epoch` over 0..epochs-1; with progress, in chunks that report to the host."""
    every = spec.progress_every
    if not every:
        return jax.lax.scan(epoch, carry, jnp.arange(spec.epochs))
    n_chunks, rest = divmod(spec.epochs, every)
    outs = []

    def chunk(c, start):
        c, out = jax.lax.scan(epoch, c, start + jnp.arange(every))
        jax.debug.callback(_tick, every)
        return c, out

    if n_chunks:
        carry, out = jax.lax.scan(chunk, carry, jnp.arange(n_chunks) * every)
        outs.append(jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), out))
    if rest:
        carry, out = jax.lax.scan(epoch, carry, n_chunks * every + jnp.arange(rest))
        jax.debug.callback(_tick, rest)
        outs.append(out)
    return carry, jax.tree.map(lambda *a: jnp.concatenate(a), *outs)
