"""The row order of each epoch and its batches: one implementation for the compiled loop
and for Python loops (`batch_indices`, used by `parity` to replay the same batches).

torch equivalent: `DataLoader(TensorDataset(x, y), batch_size, shuffle, drop_last)`: the
rows of epoch e in order `order[e]`, cut into `n // batch_size` full batches and, unless
`drop_last`, one smaller last batch.

The compiled loop takes each batch's rows inside its step (`batch_rows_of`): a slice of the
data in order, or a gather of `batch_size` rows named by a slice of the epoch's order. The
permuted data is never materialized, so an epoch needs the data plus O(n) memory.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import gradients
from jaxreg.distributed import DataMesh
from jaxreg.loop.spec import LoopSpec

__all__ = [
    "MAX_HOST_N",
    "batch_indices",
    "batch_rows",
    "batch_rows_of",
    "epoch_permutation",
    "epoch_rows",
]

_UINT32_MAX = np.iinfo(np.uint32).max
_LITTLE_ENDIAN = np.little_endian
MAX_HOST_N = 2**32  # the host sort packs a position into 32 bits


def epoch_permutation(key: jax.Array, epoch: Any, n: int, *, on_host: bool = False) -> jax.Array:
    """The row order of epoch `epoch` in a shuffled fit.

    Always `jax.random.permutation(jax.random.fold_in(key, epoch), n)`, array for array:
    that is the definition, and `fit(..., key=key)` trains on exactly these rows.

    Args:
      key: a `jax.random.key` (or a raw uint32 (2,) key).
      epoch: the epoch's index (an int or a traced int scalar).
      n: rows in the data set.
      on_host: compute the same permutation with its sorts done by NumPy on the host (a
        `jax.pure_callback`): the same array, much faster on XLA:CPU for large n (whose
        sort is slow), slower on an accelerator (`jaxreg.gradients.host_shuffle` says which
        the loop uses); for n up to `MAX_HOST_N`.

    Returns:
      (n,) integers (jax's default int dtype), a permutation of 0..n-1.
    """
    key = jax.random.fold_in(key, epoch)
    if not on_host:
        return jax.random.permutation(key, n)
    return _permutation_on_host(key, n)


def _permutation_on_host(key: jax.Array, n: int) -> jax.Array:
    """`jax.random.permutation(key, n)` with its sorts done on the host.

    jax's algorithm (`jax._src.random._shuffle`): `rounds` times, split the key, draw n
    uint32 random keys and stable-sort the current order by them. A stable sort by key
    is a sort of the distinct uint64 values `key << 32 | position`; NumPy sorts those
    with SIMD. The random bits are drawn by jax with the same calls, so the result is
    the same array (tests/test_batches.py checks it against `jax.random.permutation`).
    """
    if n > MAX_HOST_N:
        raise ValueError(f"on_host=True sorts at most 2**32 rows, got n={n}")
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(_UINT32_MAX)))
    bits = []
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        bits.append(jax.random.bits(subkey, (n,), np.uint32))
    dtype = jax.dtypes.canonicalize_dtype(np.int64)
    host = functools.partial(_sorted_positions, n, dtype)
    out = jax.ShapeDtypeStruct((n,), dtype)
    return jax.pure_callback(host, out, *bits, vmap_method="sequential")


def _sorted_positions(n: int, dtype: Any, *bits: Any) -> np.ndarray:
    """Host side of `_permutation_on_host`: 0..n-1 stable-sorted by each round's keys."""
    order = np.arange(n, dtype=dtype)
    for b in bits:
        packed = np.asarray(b).astype(np.uint64)
        packed <<= np.uint64(32)
        packed |= np.arange(n, dtype=np.uint64)
        packed.sort()
        # The low 32 bits (the positions): every other uint32 on a little-endian host.
        low = packed.view(np.uint32)[::2] if _LITTLE_ENDIAN else packed & np.uint64(_UINT32_MAX)
        order = order[low]
    return order


def epoch_rows(spec: LoopSpec, n: int, epoch: Any, order: Any, key: Any, *, backend: str):
    """The row order of `epoch` (traced), or None for rows in their order; in mode
    "replicas", the (replicas, rows per replica) rows of each replica."""
    if spec.mode in ("order", "replicas"):
        return order[epoch]
    if spec.mode == "key":
        on_host = gradients.host_shuffle(backend, n) and n <= MAX_HOST_N
        # A `pure_callback` in a program over several devices of this process hangs XLA:CPU
        # for large n (benchmarks/NOTES.md, scaling): there, XLA sorts (the same order).
        where = spec.data_mesh
        on_host = on_host and (where is None or len(where.mesh.local_devices) == 1)
        return epoch_permutation(key, epoch, n, on_host=on_host)
    return None


def batch_rows_of(
    arrays: list[Any], rows: Any, start: Any, size: int, *, where: DataMesh | None, backend: str
) -> list[Any]:
    """`batch_rows` of each array (x, y, sample weights: the same rows of each); random rows
    on one device taken as `gradients.row_gather` chooses for the backend."""
    gather = None if rows is None or where is not None else gradients.row_gather(arrays, backend)
    if gather is not None:
        return gather(arrays, jax.lax.dynamic_slice_in_dim(rows, start, size))
    return [batch_rows(a, rows, start, size, where=where) for a in arrays]


def batch_rows(x: Any, rows: Any, start: Any, size: int, *, where: DataMesh | None = None):
    """Rows `start:start + size` of the epoch (`size` static, `start` traced) of `x`: a
    slice of `x` when `rows` is None (rows in order), else `x[rows[start:start + size]]`.

    For row-sharded `x` (`where`, its `DataMesh`), a gather whose result every device
    holds: each device takes the batch's rows it has and one all-reduce of the batch
    completes them (a dynamic slice of sharded rows would all-gather the whole of `x`).
    """
    if rows is None and where is None:
        return jax.lax.dynamic_slice_in_dim(x, start, size)
    if rows is None:
        idx = start + jnp.arange(size, dtype=jnp.result_type(start))
    else:
        idx = jax.lax.dynamic_slice_in_dim(rows, start, size)
    # Every index is in 0..n-1 (a permutation, or an order checked by `check_order`).
    if where is None:
        return x.at[idx].get(mode="promise_in_bounds")
    if where.explicit:
        return x.at[idx].get(mode="promise_in_bounds", out_sharding=where.replicated)
    return jax.lax.with_sharding_constraint(
        x.at[idx].get(mode="promise_in_bounds"), where.replicated
    )


def batch_indices(
    n: int, batch_size: int | None, *, order: Any = None, drop_last: bool = False
) -> Iterator[np.ndarray]:
    """The row indices of each batch of one epoch, as a torch `DataLoader` yields them.

    Args:
      n: rows in the data set.
      batch_size: rows per batch; None for one batch of all rows.
      order: the epoch's row order ((n,) integers), default 0..n-1.
      drop_last: drop the last batch when it is smaller.

    Yields:
      int arrays of row indices, `batch_size` long (the last one possibly shorter).
    """
    rows = np.arange(n) if order is None else np.asarray(order)
    size = n if batch_size is None else batch_size
    stop = n - n % size if drop_last else n
    for start in range(0, stop, size):
        yield rows[start : start + size]
