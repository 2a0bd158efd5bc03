"""The compiled training loop behind `fit`: epochs, mini-batches, schedules in one program.

`LoopSpec` holds everything static about a run (its hash is part of the compile cache key);
arrays (params, optimizer state with its hyperparameters, data, batch order, key, the
schedule's learning rates) are inputs, so a second run with new values reuses the program.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

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

    # Inside the loop the parameters and the optimizer state travel as one flat vector
    # (their leaves of the parameters' dtype; others, such as an int step count, beside
    # it) and each step's record (parameters, loss) is one row of one array: one kernel
    # updates all the leaves and one writes the record, instead of one per leaf. On
    # XLA:CPU every kernel of a loop body costs a dispatch, and a body of more than 8
    # kernels runs on the thread pool (benchmarks/NOTES.md): at small sizes that is most
    # of the time of a step.
    flat = _Flat.of(params, opt_state)
    loss_dtype = jax.eval_shape(loss_fn, params, x, y).dtype if flat else None
    packed = flat is not None and loss_dtype == flat.dtype

    def step(carry, batch):
        p, s = flat.unravel(carry) if flat else carry
        p, s, loss = update(loss_fn, tx, p, s, *batch)
        if not spec.record:
            out = loss
        elif packed:
            # The row holds the parameters *before* this update (the carry as it came in,
            # so writing it needs no second copy of the update's arithmetic); the history
            # is shifted by one step after the loop.
            out = jnp.concatenate([carry[0][: flat.n_params], loss[None]])
        else:
            out = (loss, p)
        carry = flat.ravel((p, s)) if flat else (p, s)
        return carry, out

    def epoch(carry, e):
        if spec.has_schedule:
            from jaxreg.optim import set_lr

            p, s = flat.unravel(carry) if flat else carry
            s = set_lr(s, lrs[e])
            carry = flat.ravel((p, s)) if flat else (p, s)
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

    start = flat.ravel((params, opt_state)) if flat else (params, opt_state)
    carry, out = _scan_epochs(epoch, start, spec)
    p, s = flat.unravel(carry) if flat else carry
    out = jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), out)
    if not spec.record:
        losses, history = out, None
    elif packed:
        rows = jnp.concatenate([out[1:, :-1], carry[0][None, : flat.n_params]])
        losses, history = out[:, -1], flat.param_rows(rows)
    else:
        losses, history = out
    return p, s, losses, history


class _Flat:
    """(params, opt_state) as one flat vector of the parameters' dtype, plus other leaves.

    Used only when every parameter leaf has the same dtype; optimizer-state leaves of that
    dtype (momentum buffers, hyperparameters) join the vector, others (an int step count)
    travel beside it unchanged in form.
    """

    def __init__(self, treedef, shapes, in_vec, dtype, n_params_leaves):
        self.treedef, self.shapes, self.in_vec, self.dtype = treedef, shapes, in_vec, dtype
        self.sizes = [math.prod(s) for s in shapes]
        self.n_params_leaves = n_params_leaves
        self.n_params = sum(self.sizes[:n_params_leaves])

    @classmethod
    def of(cls, params, opt_state) -> _Flat | None:
        p_leaves = jax.tree.leaves(params)
        dtypes = {jnp.result_type(leaf) for leaf in p_leaves}
        if not p_leaves or len(dtypes) != 1:
            return None
        dtype = dtypes.pop()
        leaves, treedef = jax.tree.flatten((params, opt_state))
        in_vec = [
            isinstance(leaf, (jax.Array, np.ndarray)) and leaf.dtype == dtype for leaf in leaves
        ]
        if not all(in_vec[: len(p_leaves)]):
            return None
        return cls(treedef, [jnp.shape(leaf) for leaf in leaves], in_vec, dtype, len(p_leaves))

    def ravel(self, tree):
        leaves = jax.tree.leaves(tree)
        vec = [jnp.ravel(leaf) for leaf, v in zip(leaves, self.in_vec, strict=True) if v]
        others = tuple(leaf for leaf, v in zip(leaves, self.in_vec, strict=True) if not v)
        return jnp.concatenate(vec).astype(self.dtype), others

    def unravel(self, carry):
        vec, others = carry
        others = iter(others)
        leaves, at = [], 0
        for shape, size, v in zip(self.shapes, self.sizes, self.in_vec, strict=True):
            if v:
                leaves.append(vec[at : at + size].reshape(shape))
                at += size
            else:
                leaves.append(next(others))
        return jax.tree.unflatten(self.treedef, leaves)

    def param_rows(self, rows):
        """(steps, n_params) -> the params pytree with a leading axis of length steps."""
        leaves, at = [None] * len(self.shapes), 0
        for i in range(self.n_params_leaves):
            size = self.sizes[i]
            leaves[i] = rows[:, at : at + size].reshape((rows.shape[0], *self.shapes[i]))
            at += size
        return jax.tree.unflatten(self.treedef, leaves)[0]


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
