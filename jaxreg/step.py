"""One training step: the pure `step_record` / `update`, and `make_step` (validated, jitted).

A training step is torch's `zero_grad(); loss = loss_fn(model(x), y); loss.backward();
opt.step()`: the loss is evaluated at the parameters *before* the update, which is what a
torch loop prints. The whole loop compiled as one program is `jaxreg.fit`.

The step contract for optimizers: `tx.update(grads, state, params)`; a transformation that
takes extra arguments (`optax.GradientTransformationExtraArgs`, optax's convention) also
gets `value=loss`, `grad=grads` and `value_fn=lambda p: loss_fn(p, x, y)`: what a closure
optimizer (optax's `lbfgs` and its line search) and a loss-driven schedule (optax's
`contrib.reduce_on_plateau`) read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jaxreg import _checks, distributed, gradients, optim
from jaxreg.dataset import Dataset
from jaxreg.loop import replicas as replica_steps
from jaxreg.objective import as_objective
from jaxreg.sample_weight import REDUCTIONS, weighted

__all__ = ["Step", "StepRecord", "make_step", "step_record", "update", "value_and_grad"]

LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


class StepRecord(NamedTuple):
    """Everything one step computed.

    Attributes:
      loss: the loss at the parameters before the update (torch's `loss.item()`).
      grads: its gradient with respect to the parameters (torch's `p.grad`).
      updates: what the optimizer adds to the parameters.
      params: the parameters after the update.
      opt_state: the optimizer state after the update.
    """

    loss: jax.Array
    grads: Any
    updates: Any
    params: Any
    opt_state: Any


def step_record(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    x: Any,
    y: Any,
    *,
    formulation: gradients.Formulation | None = None,
) -> StepRecord:
    """One pure training step, returning everything it computed (a `StepRecord`).

    Unjitted: compose it into your own jitted or vmapped code. `formulation` (from
    `jaxreg.gradients.select`) chooses how the gradient is computed; default: the one
    `select` picks for JAX's default backend.
    """
    if formulation is None:
        formulation = gradients.select(loss_fn, params, x, y, backend=jax.default_backend())
    loss, grads = formulation.value_and_grad(loss_fn, params, x, y)
    if isinstance(tx, optax.GradientTransformationExtraArgs):
        updates, opt_state = tx.update(
            grads,
            opt_state,
            params,
            value=loss,
            grad=grads,
            value_fn=lambda p: loss_fn(p, x, y),
        )
    else:
        updates, opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    return StepRecord(loss, grads, updates, new_params, opt_state)


def update(loss_fn: LossFn, tx: optax.GradientTransformation, params, opt_state, x, y):
    """One pure training step: `(params, opt_state, x, y) -> (params, opt_state, loss)`.

    The loss is the value at the parameters before the update. `step_record` returns the
    gradients and the optimizer's updates as well.
    """
    rec = step_record(loss_fn, tx, params, opt_state, x, y)
    return rec.params, rec.opt_state, rec.loss


def value_and_grad(loss_fn: LossFn) -> Callable:
    """`jax.value_and_grad(loss_fn)`, computed by the formulation `jaxreg.gradients` selects
    for JAX's default backend (the same numbers up to the rounding of the sums)."""

    def vg(params, x, y):
        f = gradients.select(loss_fn, params, x, y, backend=jax.default_backend())
        return f.value_and_grad(loss_fn, params, x, y)

    return vg


class Step:
    """A jitted training step with validation at the boundary.

    `step(params, opt_state, x, y) -> (params, opt_state, loss)`, or `step(params, opt_state,
    dataset)`. The data is validated and converted once per `Dataset`; given arrays, the
    step keeps the last `Dataset` it built and reuses it while the same jax arrays come
    back (jax arrays are immutable; NumPy arrays are checked on every call). Row-sharded
    x and y train data-parallel with params and state replicated on their mesh
    (`jaxreg.distributed`); with `replicas=True`, x and y are per-replica batches (R, b,
    ...) and the step averages the replicas' gradients (`make_step`). The optimizer
    passed to `make_step` is the one that trains (`jaxreg.optim.adopt`). `step.record(...)`
    returns the whole `StepRecord`; `step.jitted` is the raw jitted function
    `(params, opt_state, x, y)` for use inside your own `jax.jit`/`vmap` (no checks there).
    `step(params, opt_state, x, y, sample_weight=wb)` weights the batch's rows as
    `fit(..., sample_weight=...)` does (`jaxreg.sample_weight`; the reduction is
    `make_step`'s `sample_weight_reduction`), or pass a `Dataset` holding its weights.
    """

    def __init__(
        self,
        loss_fn: LossFn,
        tx: optax.GradientTransformation,
        *,
        donate: bool,
        replicas: bool = False,
        sample_weight_reduction: str | None = None,
    ):
        optim.check_transformation(tx)
        _checks.check_flag("donate", donate)
        _checks.check_flag("replicas", replicas)
        self.loss_fn, self.tx, self.donate = loss_fn, tx, bool(donate)
        self.replicas = bool(replicas)
        self._objective = as_objective(loss_fn)
        self._last: tuple[Any, Any, Dataset] | None = None
        if sample_weight_reduction not in (None, *REDUCTIONS):
            raise ValueError(
                f"sample_weight_reduction must be one of {REDUCTIONS} or None (the loss's own "
                f"reduction), got {sample_weight_reduction!r}"
            )
        self._reduction = sample_weight_reduction
        self._weighted: tuple[Any, Any, Any, Dataset, Any] | None = None  # last weighted call
        self._adopt_cache: dict = {}  # for transformations that are not jaxreg's
        self._programs: dict = {}  # backend -> this step's jitted programs, by kind
        self._last_params: tuple[Any, Any] | None = None  # (params returned, their dtype)
        objective = self._objective
        if self.replicas:  # the replicas one after another (no mesh known here)
            mean = replica_steps.ReplicaMean(objective, None, jax.default_backend())

            def raw(p, s, x, y):
                rec = step_record(mean, tx, p, s, x, y, formulation=replica_steps.FORMULATION)
                return rec.params, rec.opt_state, rec.loss

        else:

            def raw(p, s, x, y):
                return update(objective, tx, p, s, x, y)

        self.jitted = jax.jit(raw, donate_argnums=(0, 1) if donate else ())

    def _data(self, x, y) -> Dataset:
        if isinstance(x, Dataset):
            if y is not None:
                raise TypeError("step(params, opt_state, dataset): pass no y with a Dataset")
            x.check_for(self._objective)
            return x
        last = self._last
        if last is not None and last[0] is x and last[1] is y:
            return last[2]
        data = Dataset(x, y)
        data.check_for(self._objective)
        if isinstance(x, jax.Array) and isinstance(y, jax.Array):
            self._last = (x, y, data)  # held by this step: same arrays, same checked data
        return data

    def _weighted_data(self, x, y, w, params) -> tuple[Dataset, Any]:
        """(the data with its weights, the weighted objective), checked once while the
        same jax arrays come back."""
        last = self._weighted
        if last is not None and last[0] is x and last[1] is y and last[2] is w:
            return last[3], last[4]
        data = self._data(x, y)
        # replicas: x (R, b, ...) holds R batches; a weight per replica and row, (R, b)
        rows = np.shape(data.x)[:2] if self.replicas else None
        data = data.with_sample_weight(w, rows=rows, leading="replica")
        if data.sample_weight is None:
            return data, self._objective
        xd, yd = data.arrays(_checks.params_dtype(params))
        ws = data.sample_weight
        if self.replicas:  # the loss a replica computes on its own batch: check one's shapes
            _check_replica_batches(xd, yd, None)
            xd, yd, ws = (jax.ShapeDtypeStruct(a.shape[1:], a.dtype) for a in (xd, yd, ws))
        objective = weighted(self._objective, self._reduction, params, xd, yd, ws)
        if all(isinstance(a, jax.Array) for a in (x, y, w)):
            self._weighted = (x, y, w, data, objective)
        return data, objective

    def _inputs(self, params, opt_state, x, y, sample_weight=None):
        last = self._last_params
        if last is not None and params is last[0]:
            dtype = last[1]  # the params this step returned: their dtype is known
        else:
            dtype = _checks.params_dtype(params)
        objective = self._objective
        if sample_weight is None and not (isinstance(x, Dataset) and x.sample_weight is not None):
            if self._reduction is not None:
                raise ValueError(
                    f"make_step(sample_weight_reduction={self._reduction!r}) but this call "
                    "has no sample_weight: pass step(..., sample_weight=w)"
                )
            data = self._data(x, y)
        else:
            data, objective = self._weighted_data(x, y, sample_weight, params)
        xd, yd, where, backend = data.placed(dtype)
        wd = data.placed_weight(dtype, where)
        if wd is not None:  # the weighted programs: y is (y, w)
            yd = (yd, wd)
        if self.replicas:
            _check_replica_batches(xd, yd[0] if wd is not None else yd, where)
            backend = (backend, where)  # the programs close over the replicas' mesh
        opt_state = optim.adopt(self.tx, params, opt_state, cache=self._adopt_cache)
        if where is not None:  # row-sharded data: params and state replicated on its mesh
            params, opt_state = distributed.replicate((params, opt_state), where)
        if self.donate:
            params, opt_state = _donatable(params, opt_state)
        return params, opt_state, xd, yd, (backend, objective)

    def _jitted(self, kind: str, on: tuple[Any, Any]):
        """This step's jitted program of `kind` ("step", "donated", "record") for `backend`,
        made on first use. The objective and the optimizer are closed over (fixed for a
        step), so a call hashes no static arguments: it costs what a plain jit call costs.
        `on` is (backend, objective): this step's objective, or the weighted one
        (`jaxreg.sample_weight.Weighted`, the same for every weighted call of a step)."""
        backend, objective = on
        key = backend if objective is self._objective else ("weighted", backend)
        programs = self._programs.get(key)
        if programs is None:
            made = _programs(objective, self.tx, backend, replicas=self.replicas)
            programs = self._programs[key] = made
        return programs[kind]

    def __call__(self, params, opt_state, x, y=None, *, sample_weight=None):
        params, opt_state, xd, yd, backend = self._inputs(params, opt_state, x, y, sample_weight)
        dtype = xd.dtype
        if self.donate:
            new_p, new_s, loss = self._jitted("donated", backend)(params, opt_state, xd, yd)
            self._last_params = (new_p, dtype)
            return new_p, new_s, loss
        # The program does not return the optimizer's hyperparameters: they pass through a
        # step unchanged, and returning them costs a copy each (an output may not alias an
        # input that was not donated); the inputs are put back instead.
        new_p, new_s, loss = self._jitted("step", backend)(params, opt_state, xd, yd)
        self._last_params = (new_p, dtype)
        return new_p, optim.restore_hyperparams(new_s, opt_state), loss

    def record(self, params, opt_state, x, y=None, *, sample_weight=None) -> StepRecord:
        """The whole `StepRecord` of one step (loss, gradients, updates, params, state)."""
        params, opt_state, xd, yd, backend = self._inputs(params, opt_state, x, y, sample_weight)
        return self._jitted("record", backend)(params, opt_state, xd, yd)


def _select_and_record(objective, tx, params, opt_state, x, y, backend) -> StepRecord:
    formulation = gradients.select(objective, params, x, y, backend=backend)
    return step_record(objective, tx, params, opt_state, x, y, formulation=formulation)


def _check_replica_batches(x, y, where) -> None:
    """`make_step(replicas=True)`'s data: (R, b, ...) batches, R a multiple of the shards."""
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(
            f"make_step(replicas=True) takes every replica's batch stacked, x (R, b, ...) and "
            f"y (R, b, ...); got x {x.shape} and y {y.shape}. Stack them: x[idx] with idx "
            "(R, b), e.g. DistributedSampler(...).indices(n, epoch, R)[:, start:start + b]"
        )
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"replica batches of different sizes: x {x.shape}, y {y.shape} (b = dimension 1)"
        )
    if where is not None and x.shape[0] % where.shards:
        raise ValueError(
            f"{x.shape[0]} replica batches split over {where.shards} devices: shard them "
            "over a mesh axis whose size divides R (the same number of replicas a device)"
        )


def _programs(objective, tx, backend: Any, *, replicas: bool = False) -> dict:
    """The jitted step programs of one (objective, optimizer, backend); with `replicas`,
    `backend` is (backend, data mesh or None) and a step averages per-replica gradients."""

    def record(p, s, x, y):
        if replicas:
            loss = replica_steps.ReplicaMean(objective, backend[1], backend[0])
            return step_record(loss, tx, p, s, x, y, formulation=replica_steps.FORMULATION)
        return _select_and_record(objective, tx, p, s, x, y, backend)

    def step(p, s, x, y):
        rec = record(p, s, x, y)
        return rec.params, optim.strip_hyperparams(rec.opt_state), rec.loss

    def donated(p, s, x, y):
        rec = record(p, s, x, y)
        return rec.params, rec.opt_state, rec.loss

    return {
        "record": jax.jit(record),
        "step": jax.jit(step),
        "donated": jax.jit(donated, donate_argnums=(0, 1)),
    }


def _donatable(params, opt_state):
    """Refuse deleted (already donated) buffers; copy a buffer that appears twice."""
    seen: set[int] = set()

    def one(path, leaf):
        if not isinstance(leaf, jax.Array):
            return leaf
        if leaf.is_deleted():
            raise ValueError(
                f"{'params' if path[0].idx == 0 else 'opt_state'}"
                f"{jax.tree_util.keystr(path[1:])} was donated to an earlier call of this "
                "step (make_step(donate=True)) and no longer exists: pass the params and "
                "opt_state the previous call returned, or use donate=False."
            )
        if id(leaf) in seen:
            return leaf.copy()  # donating one buffer twice is an XLA error
        seen.add(id(leaf))
        return leaf

    return jax.tree_util.tree_map_with_path(one, (params, opt_state))


def make_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    donate: bool = False,
    replicas: bool = False,
    sample_weight_reduction: str | None = None,
) -> Step:
    """A jitted step `(params, opt_state, x, y) -> (params, opt_state, loss)`.

    Equivalent to the torch loop body
    `opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()`.
    Compiles once per input shape/dtype; later calls reuse the program (also across
    `make_step` calls with the same loss and an optimizer of the same structure).

    Args:
      loss_fn: `(params, x, y) -> scalar`, e.g. `jr.objective(jr.linear.predict, jr.losses.mse)`.
      tx: an optax `GradientTransformation`, e.g. `jr.optim.sgd(0.01)`.
      donate: donate params and opt_state buffers (saves memory; the inputs become invalid,
        and using them again is a clear error).
      replicas: a data-parallel step, torch DDP's: x (R, b, ...) and y (R, b, ...) hold R
        replicas' batches (replica r's in row r; split over a mesh axis, R / shards a
        device, or on one device); each replica's gradient is computed on its own batch,
        the update uses their mean, and the loss returned is the mean of the replicas'
        losses (`jaxreg.loop.replicas`; `fit(..., sampler=...)` runs whole epochs so).
        A call's `sample_weight` is then one weight per replica and row, (R, b) or
        (R, b, 1), or y's shape: each replica's loss weighs its own batch.
      sample_weight_reduction: for calls with `sample_weight=`: "mean", "sum" or
        "normalized" (`fit`'s), None for the loss's own reduction.
    """
    return Step(
        loss_fn,
        tx,
        donate=donate,
        replicas=replicas,
        sample_weight_reduction=sample_weight_reduction,
    )
