"""torch's `DistributedSampler` order, computed without torch: which rows each replica
trains on in each epoch of a data-parallel fit (`fit(..., sampler=DistributedSampler())`).

torch equivalent, for each rank r of R and each epoch e:

    sampler = DistributedSampler(dataset, num_replicas=R, rank=r, shuffle, seed, drop_last)
    sampler.set_epoch(e)
    list(sampler)  ==  DistributedSampler(...).indices(n, e, R)[r]

torch's order: `torch.randperm(n, generator=torch.Generator().manual_seed(seed + e))` when
shuffling, else 0..n-1; cut to a multiple of R (`drop_last`) or padded to one by repeating
indices from the start; replica r takes every R-th index from position r. `randperm`
is torch's CPU Fisher-Yates over its mt19937 stream (`aten/src/ATen/native/TensorFactories.cpp`,
`randperm_cpu`: swap i with i + random() % (n - i)); NumPy's legacy `RandomState` draws the
same mt19937 stream, so `torch_randperm` returns torch's array exactly
(tests/test_sampler.py checks it against torch 2.13). The swaps are a Python loop: about
0.15 s per million rows and epoch, on the host, before the compiled loop starts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["MAX_TORCH_RANDPERM_N", "DistributedSampler", "torch_randperm"]

# torch's randperm switches to 64-bit draws (`random64()`) from n = 2**32 // 20 rows up;
# only the 32-bit path is reproduced here.
MAX_TORCH_RANDPERM_N = (2**32 - 1) // 20
_SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes a uint64


def torch_randperm(n: int, seed: int) -> np.ndarray:
    """`torch.randperm(n, generator=torch.Generator().manual_seed(seed))` as an int64 array.

    Args:
      n: the length, 0 <= n < `MAX_TORCH_RANDPERM_N`.
      seed: the generator's seed, 0 <= seed < 2**64 (torch keeps its low 32 bits).

    Raises:
      ValueError: n or seed outside those ranges (for larger n, pass torch's own order
        to `fit(order=...)`).
    """
    n = _int("n", n, 0, MAX_TORCH_RANDPERM_N)
    seed = _int("seed", seed, 0, _SEED_LIMIT)
    draws = np.random.RandomState(seed & 0xFFFFFFFF).randint(
        0, 2**32, size=max(n - 1, 0), dtype=np.uint32
    )
    offsets = (draws.astype(np.int64) % (n - np.arange(n - 1, dtype=np.int64))).tolist()
    perm = list(range(n))
    for i, k in enumerate(offsets):
        j = i + k
        perm[i], perm[j] = perm[j], perm[i]
    return np.asarray(perm, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class DistributedSampler:
    """Per-replica mini-batches as torch `DistributedSampler` + DDP cut them.

    Pass it to `jaxreg.fit(..., batch_size=b, sampler=...)`: each replica (a position on
    the data mesh's axis: a device; or, for data on one device, one of `num_replicas`
    simulated replicas) takes its rows of each epoch (`indices`), forms batches of `b`
    rows (the last one smaller unless `fit`'s `drop_last`, the DataLoader's), computes
    the gradient of its own batch, and the replicas' gradients are averaged (DDP's
    all-reduce mean). See `jaxreg.fit` for the loss reported.

    Attributes:
      num_replicas: R. None: the number of shards of row-sharded data, one replica a
        device; else a multiple of it (each device computes R / shards replicas in turn),
        or any R for data on one device (R replicas simulated there, one at a time).
      shuffle: each epoch's global order is torch's `randperm(n)` seeded with
        `seed + epoch` (exactly torch's), else 0..n-1.
      seed: torch's `seed` (0 <= seed; `seed + epoch` < 2**64).
      drop_last: torch's sampler `drop_last`: cut the order to a multiple of R instead of
        padding it by repeating indices from the start.

    Raises:
      TypeError / ValueError: an argument of the wrong type or out of range, named.
    """

    num_replicas: int | None = None
    shuffle: bool = True
    seed: int = 0
    drop_last: bool = False

    def __post_init__(self):
        if self.num_replicas is not None:
            _int("num_replicas", self.num_replicas, 1, 2**31)
        for name in ("shuffle", "drop_last"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(
                    f"DistributedSampler {name} must be True or False, got "
                    f"{type(getattr(self, name)).__name__} {getattr(self, name)!r}"
                )
        _int("seed", self.seed, 0, _SEED_LIMIT)

    def replicas(self, shards: int | None) -> int:
        """R for data split into `shards` pieces (None: on one device).

        Raises:
          ValueError: no count known, or `num_replicas` disagrees with the shards.
        """
        if shards is None:
            if self.num_replicas is None:
                raise ValueError(
                    "DistributedSampler() on data that is not row-sharded: pass "
                    "num_replicas=R to simulate R replicas on one device, or shard x and y "
                    "over a mesh (jaxreg.distributed.row_sharding)"
                )
            return int(self.num_replicas)
        if self.num_replicas is None:
            return shards
        if self.num_replicas % shards:
            raise ValueError(
                f"DistributedSampler(num_replicas={self.num_replicas}) but the rows are split "
                f"over {shards} devices, which must hold the same number of replicas each: "
                f"pass num_replicas=None (one a device) or a multiple of {shards}"
            )
        return int(self.num_replicas)

    def num_samples(self, n: int, replicas: int) -> int:
        """Rows each replica takes per epoch (torch's `num_samples`)."""
        if self.drop_last and n % replicas:
            return math.ceil((n - replicas) / replicas)
        return math.ceil(n / replicas)

    def indices(self, n: int, epoch: int, replicas: int, *, order: Any = None) -> np.ndarray:
        """(R, num_samples) int64: row r is what rank r's torch sampler yields in `epoch`.

        Args:
          n: rows in the data set.
          epoch: the epoch (torch's `set_epoch`), >= 0.
          replicas: R.
          order: the epoch's global order ((n,) integers, e.g. from torch's own
            `randperm`) in place of the sampler's; None: `torch_randperm(n, seed + epoch)`
            when shuffling, else 0..n-1.
        """
        m = self.num_samples(n, replicas)
        if order is not None:
            rows = np.asarray(order, dtype=np.int64)
        elif self.shuffle:
            rows = torch_randperm(n, self.seed + _int("epoch", epoch, 0, _SEED_LIMIT))
        else:
            rows = np.arange(n, dtype=np.int64)
        total = m * replicas
        if total > n:  # torch's padding: the order repeated from its start
            rows = np.resize(rows, total)
        return rows[:total].reshape(m, replicas).T.copy()


def _int(name: str, v: Any, low: int, high: int) -> int:
    """`v` as an int in low..high-1, else a TypeError/ValueError naming `name`."""
    if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if not low <= v < high:
        raise ValueError(f"{name} must be an int in {low}..{high - 1}, got {v!r}")
    return int(v)
