"""`LoopSpec`: the static shape of a training run, validated from `fit`'s arguments."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from jaxreg import _checks
from jaxreg.sampler import DistributedSampler

__all__ = ["MAX_STEPS", "LoopSpec", "check_order", "loop_spec", "positive_int"]

# Steps and epochs are counted in int32 inside the compiled loop.
MAX_STEPS = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """The static shape of a training run (its hash is part of the compile cache key).

    Attributes:
      epochs: number of passes in this program (full batch: number of steps).
      batch_size: rows per batch (n for full batch).
      n_full: full batches per epoch (1 for full batch).
      remainder: rows of the last, smaller batch of each epoch (0: none).
      mode: "full", "sequential" (rows in order), "order" (given per-epoch order),
        "key" (a permutation per epoch from a JAX key) or "replicas" (per-replica batches,
        gradients averaged: `jaxreg.sampler.DistributedSampler`; the order input is then
        (epochs, replicas, rows per replica)).
      record: return the parameters after every step.
      schedule: None, "epoch" (a learning rate per epoch is an input) or "batch" (one per
        step).
      data_mesh: where row-sharded data lives (`jaxreg.distributed.DataMesh`), or None
        for data on one device: batches are then gathered from the shards.
      replicas: the number of data-parallel replicas in mode "replicas" (else 0);
        `batch_size`, `n_full` and `remainder` then count one replica's rows.
    """

    epochs: int
    batch_size: int
    n_full: int
    remainder: int
    mode: str
    record: bool = True
    schedule: str | None = None
    data_mesh: Any = None
    replicas: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.n_full + (1 if self.remainder else 0)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def describe_step(self, step: int) -> str:
        if self.mode == "full":
            return ""
        epoch, batch = divmod(step, self.steps_per_epoch)
        return f" (epoch {epoch}, batch {batch})"


def positive_int(name: str, v: Any, *, limit: int = MAX_STEPS) -> int:
    """`v` as an int in 1..limit, else a `ValueError`/`TypeError` naming `name`."""
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{name} must be a positive int, got {type(v).__name__} {v!r}")
    if not 0 < v <= limit:
        raise ValueError(f"{name} must be a positive int of at most {limit}, got {v!r}")
    return int(v)


def loop_spec(
    n: int,
    *,
    steps: Any,
    epochs: Any,
    batch_size: Any,
    shuffle: Any,
    key: Any,
    order: Any,
    drop_last: Any,
    record: Any,
    sampler: Any = None,
    shards: int | None = None,
) -> tuple[LoopSpec, Any, Any]:
    """(spec, order array or None, key or None) from `fit`'s arguments; all validated.
    `shards`: how many pieces row-sharded data is split into (None: one device)."""
    for name, flag in (("shuffle", shuffle), ("drop_last", drop_last), ("record_history", record)):
        _checks.check_flag(name, flag)
    if sampler is not None:
        return _replica_spec(
            n, sampler, shards, steps, epochs, batch_size, shuffle, key, order, drop_last, record
        )
    if batch_size is None:
        return _full_batch(n, steps, epochs, key, order, bool(record))
    batch_size = positive_int("batch_size", batch_size)
    n_full, rem, per_epoch = _batches(n, batch_size, drop_last)
    epochs = _epochs(steps, epochs, per_epoch)
    order_arr = key_arr = None
    if order is not None:
        order_arr = check_order(order, epochs, n)
        mode = "order"
    elif shuffle:
        key_arr = as_key(key)
        mode = "key"
    else:
        mode = "sequential"
    spec = LoopSpec(epochs, batch_size, n_full, rem, mode, record=bool(record))
    return spec, order_arr, key_arr


def _batches(n: int, batch_size: int, drop_last: bool) -> tuple[int, int, int]:
    """(full batches, rows of the smaller last one or 0, batches) of an epoch of n rows."""
    n_full, rem = divmod(n, batch_size)
    if drop_last and n_full == 0:
        raise ValueError(f"batch_size={batch_size} > n={n} with drop_last=True leaves no batch")
    if drop_last:
        rem = 0
    return n_full, rem, n_full + (1 if rem else 0)


def _epochs(steps: Any, epochs: Any, per_epoch: int) -> int:
    """The number of epochs from `fit`'s steps= or epochs= (batches: `per_epoch` a pass)."""
    if epochs is None:
        if steps is None:
            raise ValueError("fit with batch_size= needs epochs=")
        steps = positive_int("steps", steps)
        if steps % per_epoch:
            raise ValueError(
                f"steps={steps} is not a whole number of epochs of {per_epoch} batches; "
                "pass epochs= instead"
            )
        epochs = steps // per_epoch
    elif steps is not None and steps != epochs * per_epoch:
        raise ValueError(f"steps={steps} != epochs ({epochs}) x batches per epoch ({per_epoch})")
    return positive_int("epochs", epochs, limit=MAX_STEPS // per_epoch)


def _replica_spec(
    n, sampler, shards, steps, epochs, batch_size, shuffle, key, order, drop_last, record
):
    """The spec of per-replica batches (`fit(..., sampler=DistributedSampler(...))`) and
    the (epochs, R, rows per replica) order of every replica's rows."""
    if not isinstance(sampler, DistributedSampler):
        raise TypeError(
            f"sampler must be a jaxreg.distributed.DistributedSampler, got "
            f"{type(sampler).__name__} {sampler!r}"
        )
    if batch_size is None:
        raise ValueError(
            "sampler= cuts per-replica mini-batches: pass batch_size= (rows per replica and "
            "step, torch's DataLoader batch_size on each rank)"
        )
    if key is not None or not shuffle:
        raise ValueError(
            "with sampler= the sampler orders the rows: pass shuffle= and seed= to "
            "DistributedSampler(...) (torch's), and leave fit's shuffle and key unset"
        )
    replicas = sampler.replicas(shards)
    per = sampler.num_samples(n, replicas)
    if per == 0:
        raise ValueError(
            f"DistributedSampler(drop_last=True) with n={n} rows and {replicas} replicas "
            "leaves no row per replica: use more rows or drop_last=False"
        )
    batch_size = positive_int("batch_size", batch_size)
    if drop_last and batch_size > per:
        raise ValueError(
            f"batch_size={batch_size} > the {per} rows each of {replicas} replicas takes an "
            "epoch, with drop_last=True: no batch is left (batch_size counts one replica's rows)"
        )
    n_full, rem, per_epoch = _batches(per, batch_size, drop_last)
    epochs = _epochs(steps, epochs, per_epoch)
    given = None if order is None else check_order(order, epochs, n)
    rows = np.stack(
        [
            sampler.indices(n, e, replicas, order=None if given is None else given[e])
            for e in range(epochs)
        ]
    ).astype(np.int32)
    spec = LoopSpec(
        epochs, batch_size, n_full, rem, "replicas", record=bool(record), replicas=replicas
    )
    return spec, rows, None


def _full_batch(n, steps, epochs, key, order, record):
    if steps is not None and epochs is not None and steps != epochs:
        raise ValueError(
            f"full-batch fit: steps ({steps}) and epochs ({epochs}) are the same thing; "
            "pass one of them"
        )
    name, total = ("steps", steps) if steps is not None else ("epochs", epochs)
    if total is None:
        raise ValueError("fit needs steps= (or epochs=) to know how long to train")
    total = positive_int(name, total)
    if order is not None or key is not None:
        raise ValueError("order= and key= only apply with batch_size= (mini-batches)")
    return LoopSpec(total, n, 1, 0, "full", record=record), None, None


def as_key(key: Any) -> jax.Array:
    """A JAX PRNG key for the shuffle (`_checks.as_key`), with the hint for a missing one."""
    if key is None:
        raise ValueError(
            "shuffled mini-batches need a key: fit(..., key=jax.random.key(0)) (or an int "
            "seed); or pass shuffle=False, or order= to replay a torch DataLoader"
        )
    return _checks.as_key("key", key)


def check_order(order: Any, epochs: int, n: int) -> np.ndarray:
    """A torch `DataLoader` order: an integer (epochs, n) array of indices 0..n-1."""
    try:
        arr = np.asarray(order)
    except ValueError:
        raise ValueError(
            f"order must be an integer array of shape (epochs, n) = ({epochs}, {n}); got "
            "rows of different lengths"
        ) from None
    if arr.shape != (epochs, n) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"order must be an integer array of shape (epochs, n) = ({epochs}, {n}), got "
            f"{arr.dtype} {arr.shape}"
        )
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"order has indices outside 0..{n - 1}")
    return arr.astype(np.int32)


def progress_every(progress: Any, epochs: int) -> int:
    """Epochs between progress updates (0: no progress), from `fit`'s `progress=`."""
    if progress is False or progress is None:
        return 0
    if progress is True:
        updates = 100
    elif isinstance(progress, (int, np.integer)) and not isinstance(progress, bool):
        updates = positive_int("progress", progress)
    else:
        raise TypeError(
            f"progress must be True, False or the number of updates of the bar (an int), got "
            f"{type(progress).__name__} {progress!r}"
        )
    return max(1, math.ceil(epochs / updates))
