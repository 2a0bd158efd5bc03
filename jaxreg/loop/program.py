"""The compiled training loop: a `lax.scan` over epochs, and one over each epoch's batches.

Everything static is in the `LoopSpec`, the optimizer's structure and the backend (all
part of the compile cache key; the backend and the batch shapes choose the gradient's
formulation, `jaxreg.gradients.select`); arrays (the objective's array arguments,
params, optimizer state with its hyperparameters, data, batch order, key, the schedule's
learning rates, the first epoch's index) are inputs, so a second run with new values
reuses the program. `epoch0` lets a caller run a long loop in chunks (progress reporting)
with the same batches and learning rates as one run.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxreg import gradients, optim, schedules
from jaxreg.loop import replicas
from jaxreg.loop.batches import batch_rows_of, epoch_rows
from jaxreg.loop.packing import Flat
from jaxreg.loop.spec import LoopSpec
from jaxreg.step import step_record

__all__ = ["finish", "run"]


@functools.partial(jax.jit, static_argnames=("tx", "spec", "backend"))
def run(
    objective: Any,
    params: Any,
    opt_state: Any,
    x: Any,
    y: Any,
    order: Any,
    key: Any,
    lrs: Any,
    epoch0: Any,
    *,
    tx: Any,
    spec: LoopSpec,
    backend: str,
):
    """`spec.epochs` epochs from epoch `epoch0`: (params, opt_state, losses (steps,), history).

    `y` is the targets, or (targets, per-sample weights) for a weighted objective
    (`jaxreg.sample_weight.Weighted`): each batch takes the weights' rows with y's.

    `history` is the params pytree with a leading axis of length steps (the parameters
    after each update), or None when `spec.record` is False. The returned `opt_state` has
    no hyperparameters (`optim.strip_hyperparams`: returning inputs unchanged costs a copy
    each); `finish(state, opt_state, lrs, spec, epoch0)` puts them back.
    """
    # The optimizer's hyperparameters do not change inside a step: they stay out of the
    # carry (fewer kernels a step, none to unpack at the end) and are put back into the
    # state for each step, with the learning rate the schedule gives that step.
    stripped = optim.strip_hyperparams(opt_state)
    flat = Flat.of(params, stripped) if gradients.pack_carry(backend) else None
    loss_dtype = jax.eval_shape(objective, params, x, y).dtype if flat else None
    packed = flat is not None and loss_dtype == flat.dtype
    unpack = flat.unravel if flat else (lambda c: c)
    pack = flat.ravel if flat else (lambda t: t)

    def step(carry, xb, yb, state):
        p, s = unpack(carry)
        s = optim.restore_hyperparams(s, state)
        if spec.replicas:  # the replicas' batches: their mean loss and gradient
            loss = replicas.ReplicaMean(objective, spec.data_mesh, backend)
            rec = step_record(loss, tx, p, s, xb, yb, formulation=replicas.FORMULATION)
        else:
            formulation = gradients.select(objective, p, xb, yb, backend=backend)
            rec = step_record(objective, tx, p, s, xb, yb, formulation=formulation)
        if not spec.record:
            out = rec.loss
        elif packed:
            # The row holds the parameters *before* this update (the carry as it came in,
            # so writing it needs no second copy of the update's arithmetic); the history
            # is shifted by one step after the loop.
            out = jnp.concatenate([carry[0][: flat.n_params], rec.loss[None]])
        else:
            out = (rec.loss, rec.params)
        return pack((rec.params, optim.strip_hyperparams(rec.opt_state))), out

    def epoch(carry, i):
        e = epoch0 + i
        state = _with_lr(opt_state, lrs[e] if spec.schedule == "epoch" else None)
        batch_lrs = _batch_lrs(spec, lrs, e)

        if spec.mode == "full":
            lr = None if batch_lrs is None else batch_lrs[0]
            carry, out = step(carry, x, y, _with_lr(state, lr))
            return carry, jax.tree.map(lambda a: a[None], out)
        rows = epoch_rows(spec, x.shape[0], e, order, key, backend=backend)
        size = spec.batch_size

        def take(start, size):
            # The batch's rows are taken here, inside the step: never all of x permuted.
            # y is (y, sample weights) in a weighted fit: the weights' rows are the same.
            if spec.replicas:  # every replica's batch: (replicas, size, ...)
                idx = jax.lax.dynamic_slice_in_dim(rows, start, size, axis=1)
                if isinstance(y, tuple):
                    xb, yb = replicas.batches(x, y[0], idx, where=spec.data_mesh)
                    wb, _ = replicas.batches(y[1], y[1], idx, where=spec.data_mesh)
                    return xb, (yb, wb)
                return replicas.batches(x, y, idx, where=spec.data_mesh)
            leaves, tree = jax.tree.flatten((x, y))
            got = batch_rows_of(leaves, rows, start, size, where=spec.data_mesh, backend=backend)
            return jax.tree.unflatten(tree, got)

        def batch(carry, inputs):
            i, lr = inputs
            return step(carry, *take(i * size, size), _with_lr(state, lr))

        outs = []
        if spec.n_full:  # none when batch_size > n: only the smaller last batch
            full_lrs = None if batch_lrs is None else batch_lrs[: spec.n_full]
            carry, out = jax.lax.scan(batch, carry, (jnp.arange(spec.n_full), full_lrs))
            outs.append(out)
        if spec.remainder:
            lr = None if batch_lrs is None else batch_lrs[-1]
            last = take(spec.n_full * size, spec.remainder)
            carry, tail = step(carry, *last, _with_lr(state, lr))
            outs.append(jax.tree.map(lambda a: a[None], tail))
        return carry, jax.tree.map(lambda *a: jnp.concatenate(a), *outs)

    carry, out = jax.lax.scan(epoch, pack((params, stripped)), jnp.arange(spec.epochs))
    p, s = unpack(carry)  # s without hyperparameters: the caller puts them back (`finish`)
    out = jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), out)
    if not spec.record:
        return p, s, out, None
    if packed:
        rows = jnp.concatenate([out[1:, :-1], carry[0][None, : flat.n_params]])
        return p, s, out[:, -1], flat.param_rows(rows)
    losses, history = out
    return p, s, losses, history


def finish(state: Any, opt_state: Any, lrs: Any, spec: LoopSpec, epoch0: int) -> Any:
    """`run`'s output state with `opt_state`'s hyperparameters put back, holding the last
    learning rate the schedule set (as a torch optimizer does after its last epoch)."""
    last = epoch0 + spec.epochs - 1
    lr = None
    if spec.schedule == "epoch":
        lr = lrs[last]
    elif spec.schedule == "batch":
        lr = lrs[(last + 1) * spec.steps_per_epoch - 1]
    return optim.restore_hyperparams(state, _with_lr(opt_state, lr))


def _with_lr(opt_state: Any, lr: Any) -> Any:
    """`opt_state` learning at `lr` (`schedules.apply`: `optim.set_lr`, and the momentum
    too for a row `(lr, momentum)` of a schedule that cycles it), or unchanged for None."""
    return opt_state if lr is None else schedules.apply(opt_state, lr)


def _batch_lrs(spec: LoopSpec, lrs: Any, e: Any):
    """The learning rates of epoch e's steps for a per-batch schedule, else None."""
    if spec.schedule != "batch":
        return None
    per = spec.steps_per_epoch
    return jax.lax.dynamic_slice_in_dim(lrs, e * per, per)
