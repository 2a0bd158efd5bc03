"""Per-replica mini-batches, DDP's way: each replica's batch, its own gradient, the mean.

torch equivalent (R ranks, `DistributedSampler` + `DataLoader` + `DistributedDataParallel`):
rank r computes `loss_r = loss_fn(model(x[idx_r]), y[idx_r])` and its gradient on its own
batch; DDP all-reduces the gradients to their mean, and every rank applies the same update.
Here `idx` is the (R, b) array of the R batches' rows (`jaxreg.sampler`), and:

- on row-sharded data (`DataMesh`; R / shards replicas per device of the data axis,
  usually one), a `jax.shard_map`: each device takes, from its own rows, those of every
  replica's batch (zeros elsewhere) and a reduce-scatter hands each device its replicas'
  batches (one value per row is nonzero: the sum is exact, but for a -0.0 that arrives
  as +0.0), so no device ever holds more
  than its rows and the R batches; each device computes its replicas' gradients with the
  formulation `jaxreg.gradients` selects for one batch, and `pmean` averages loss and
  gradients over the axis;
- on one device, the same per-replica computation for r = 0..R-1 in turn (`lax.map`), then
  the mean over replicas.

The value reported is the mean of the replicas' losses (what a DDP program logs after
`all_reduce(loss) / world_size`). The two paths differ only in the order the R replicas'
values are added (tests/test_distributed.py bounds it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from jaxreg import gradients
from jaxreg.distributed import DataMesh

__all__ = ["FORMULATION", "ReplicaMean", "batches", "value_and_grad"]


@dataclasses.dataclass(frozen=True)
class ReplicaMean:
    """The loss of a data-parallel step: `(params, xb (R, b, ...), yb (R, b, ...)) ->` the
    mean over r of `objective(params, xb[r], yb[r])` (what `value_fn` of an optimizer that
    re-evaluates the loss, such as L-BFGS, sees)."""

    objective: Any
    where: DataMesh | None
    backend: str

    def __call__(self, params: Any, xb: Any, yb: Any) -> Any:
        return value_and_grad(self, params, xb, yb, grads=False)[0]


def batches(x: Any, y: Any, idx: Any, *, where: DataMesh | None):
    """(x[idx], y[idx]): (R, b, ...) each, replica r's batch in row r; split over the data
    axis (replica r on device r) for row-sharded data, where no device gathers more."""
    if where is None:
        return tuple(a.at[idx].get(mode="promise_in_bounds") for a in (x, y))
    rows = PartitionSpec(where.axis)

    def local(x, y, idx):
        per = x.shape[0]  # this device's rows: global rows start..start + per - 1
        start = jax.lax.axis_index(where.axis) * per
        at = idx - start.astype(idx.dtype)
        mine = (at >= 0) & (at < per)
        at = jnp.where(mine, at, 0)
        out = []
        for a in (x, y):
            got = a.at[at].get(mode="promise_in_bounds")
            got = jnp.where(mine.reshape(mine.shape + (1,) * (a.ndim - 1)), got, 0)
            # Replica r's batch to device r: every row comes from exactly one device.
            out.append(jax.lax.psum_scatter(got, where.axis, scatter_dimension=0, tiled=True))
        return tuple(out)

    return jax.shard_map(
        local,
        mesh=where.mesh,
        in_specs=(rows, rows, PartitionSpec()),
        out_specs=(rows, rows),
    )(x, y, idx)


def value_and_grad(loss: ReplicaMean, params: Any, xb: Any, yb: Any, *, grads: bool = True):
    """(mean over replicas of the loss, mean of the gradients) of (R, b, ...) batches
    (gradients None when `grads` is False)."""
    objective, backend = loss.objective, loss.backend

    def one(objective, params, xr, yr):
        if not grads:
            return objective(params, xr, yr), None
        f = gradients.select(objective, params, xr, yr, backend=backend)
        return f.value_and_grad(objective, params, xr, yr)

    def mean(objective, params, xb, yb):  # over the replicas in xb, one at a time
        values = jax.lax.map(lambda b: one(objective, params, *b), (xb, yb))
        return jax.tree.map(lambda v: jnp.mean(v, axis=0), values)

    if loss.where is None:
        return mean(objective, params, xb, yb)
    axis = loss.where.axis

    def local(objective, params, xr, yr):  # this device's replicas (equal counts on all)
        return jax.lax.pmean(mean(objective, params, xr, yr), axis)

    rows, whole = PartitionSpec(axis), PartitionSpec()
    # check_vma=False: the formulations are written for plain arrays (a cotangent made
    # with `ones_like` is not marked as varying over the axis); the outputs are replicated
    # by the `pmean`, which is what out_specs=P() states.
    return jax.shard_map(
        local,
        mesh=loss.where.mesh,
        in_specs=(whole, whole, rows, rows),
        out_specs=whole,
        check_vma=False,
    )(objective, params, xb, yb)


# `jaxreg.step.step_record(ReplicaMean(...), tx, params, opt_state, xb, yb,
# formulation=FORMULATION)` is one data-parallel step on per-replica batches.
FORMULATION = gradients.Formulation("replicas", value_and_grad)
