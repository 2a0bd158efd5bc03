"""The row order of each epoch and its batches: one implementation for the compiled loop
and for Python loops (`batch_indices`, used by `parity` to replay the same batches).

torch equivalent: `DataLoader(TensorDataset(x, y), batch_size, shuffle, drop_last)`: the
rows of epoch e in order `order[e]`, cut into `n // batch_size` full batches and, unless
`drop_last`, one smaller last batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from jaxreg.loop.spec import LoopSpec

__all__ = ["batch_indices", "epoch_batches", "epoch_permutation", "epoch_rows"]


def epoch_permutation(key: jax.Array, epoch: Any, n: int) -> jax.Array:
    """The row order of epoch `epoch` in a shuffled fit: `permutation(fold_in(key, epoch), n)`."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n)


def epoch_rows(spec: LoopSpec, n: int, epoch: Any, order: Any, key: Any):
    """The row order of `epoch` (traced), or None for rows in their order."""
    if spec.mode == "order":
        return order[epoch]
    if spec.mode == "key":
        return epoch_permutation(key, epoch, n)
    return None


def epoch_batches(spec: LoopSpec, x: Any, y: Any, rows: Any):
    """((x, y) stacked full batches (n_full, batch, ...), (x, y) of the last one or None)."""
    cut = spec.n_full * spec.batch_size
    if rows is None:  # rows in order: slices, no gather
        xb, yb, x_rest, y_rest = x[:cut], y[:cut], x[cut:], y[cut:]
    else:
        xb, yb = x[rows[:cut]], y[rows[:cut]]
        x_rest, y_rest = x[rows[cut:]], y[rows[cut:]]
    full = (_split(xb, spec), _split(yb, spec))
    return full, ((x_rest, y_rest) if spec.remainder else None)


def _split(a, spec: LoopSpec):
    return a.reshape((spec.n_full, spec.batch_size, *a.shape[1:]))


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
