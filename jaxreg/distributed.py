"""Data-parallel training over a device mesh and across processes (JAX's own runtime).

Row-sharded data: put x and y on a mesh with their rows split over one mesh axis,

    mesh = jax.make_mesh((4,), ("data",))                    # Explicit or Auto axes
    rows = NamedSharding(mesh, P("data"))
    jr.fit(loss_fn, tx, params, jax.device_put(x, rows), jax.device_put(y, rows), ...)

and `fit`, `make_step` and `fit_many` (rows: the second axis, `P(None, "data")`) train on
it as they would on one device: the parameters and optimizer state are replicated on the
mesh (`replicate`), each device reduces its own rows and XLA adds the partial sums across
devices (one all-reduce of the gradient a step). A mini-batch is gathered from the shards
(each device takes the batch's rows it holds, one all-reduce of `batch_size` rows), then
the step runs replicated; the data set is never gathered onto one device. With
`fit(..., sampler=DistributedSampler(...))` (or `make_step(..., replicas=True)`) the
batches are per replica instead, as torch DDP cuts them: each device computes the
gradient of its own replica's batch and the gradients are averaged (`jaxreg.sampler`
for the order, `jaxreg.loop.replicas` for the step).

The numbers: a full-batch loss or gradient is a sum over rows, summed here in another
order (per shard, then across shards) than on one device. Two orders of summing n terms
t_i differ by at most `sum_error_bound(n, sum |t_i|, dtype)` (Higham's bound for each
order, twice); tests/test_distributed.py checks a step against it and a trajectory against
its propagation. A mini-batch's rows are gathered exactly and its step computed replicated.

Several processes (one machine or several): start each with `initialize()` (the
environment variables `python -m jaxreg.launch` sets), read only this process's rows
(`process_rows`, `load_npy_rows`, `load_csv_rows`) and join them into the global arrays
with `global_rows`; then call `fit` the same way in every process.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import socket
import time
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxreg.data import count_csv_rows, load_csv
from jaxreg.sampler import DistributedSampler, torch_randperm

__all__ = [
    "ENV_COORDINATOR",
    "ENV_NUM_PROCESSES",
    "ENV_PROCESS_ID",
    "DataMesh",
    "DistributedSampler",
    "data_mesh",
    "global_rows",
    "initialize",
    "load_csv_rows",
    "load_npy_rows",
    "process_rows",
    "replicate",
    "row_sharding",
    "sum_error_bound",
    "torch_randperm",
    "unsplit",
]

# The environment `python -m jaxreg.launch` sets for each process it starts.
ENV_COORDINATOR = "JAXREG_COORDINATOR"
ENV_NUM_PROCESSES = "JAXREG_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXREG_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class DataMesh:
    """Where row-sharded data lives: its mesh and the mesh axis its rows are split over.

    Attributes:
      mesh: the `jax.sharding.Mesh` of the data.
      axis: the mesh axis name (or tuple of names) of the rows.
      row_dim: which array dimension holds the rows (0; 1 for `fit_many`'s (M, n, ...)).
    """

    mesh: Mesh
    axis: Any
    row_dim: int = 0

    @property
    def explicit(self) -> bool:
        """Whether the rows' mesh axes are `AxisType.Explicit` (sharding in types)."""
        names = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        types = dict(zip(self.mesh.axis_names, self.mesh.axis_types, strict=True))
        return any(types[a] == AxisType.Explicit for a in names)

    @property
    def replicated(self) -> NamedSharding:
        """The sharding of a value every device holds whole (parameters, batches)."""
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def shards(self) -> int:
        """How many pieces the rows are split into."""
        names = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        return math.prod(self.mesh.shape[a] for a in names)


def data_mesh(x: Any, y: Any, *, row_dim: int = 0) -> DataMesh | None:
    """The `DataMesh` of row-sharded (x, y), or None for data on one device or the host.

    Accepted: x and y both `jax.Array`s with a `NamedSharding` on the same mesh whose spec
    splits dimension `row_dim` over one mesh axis (or a tuple of axes) and no other
    dimension; or both on one device / replicated / host arrays.

    Raises:
      ValueError: one of x, y sharded and not the other, different meshes or row axes,
        another dimension sharded (features, targets' columns), or rows split unevenly.
    """
    got = [(name, _rows_axis(name, a, row_dim)) for name, a in (("x", x), ("y", y))]
    (_, ax), (_, ay) = got
    if ax is None and ay is None:
        return None
    if ax is None or ay is None:
        sharded, plain = ("x", "y") if ay is None else ("y", "x")
        raise ValueError(
            f"{sharded} is row-sharded on a mesh but {plain} is not: shard both the same "
            f"way, e.g. {plain} = jax.device_put({plain}, {sharded}.sharding) (one process) "
            "or jaxreg.distributed.global_rows(...) (several)."
        )
    (mx, axis_x), (my, axis_y) = ax, ay
    if mx != my or axis_x != axis_y:
        raise ValueError(
            f"x and y must be sharded on the same mesh axis: x's rows are split over "
            f"{axis_x!r} of {mx}, y's over {axis_y!r} of {my}"
        )
    return DataMesh(mx, axis_x, row_dim)


def unsplit(a: Any) -> Any:
    """`a` whole on its mesh (`PartitionSpec()`) when a mesh axis "splits" it into one
    piece, e.g. rows put on a 1-device mesh (`row_sharding()` with one device); else `a`.

    Such an array is on one device (or replicated), so `data_mesh` takes it for unsharded
    data, but on an `AxisType.Explicit` mesh its type still names the axis (float32[n@data,
    d]), and a one-device program over it fails (a contraction or gather over "sharded"
    rows). Resharded whole, the program is the one-device one, with its results.
    """
    if not isinstance(a, jax.Array):
        return a
    sharding = a.sharding
    if not isinstance(sharding, NamedSharding) or not sharding.is_fully_replicated:
        return a
    if all(s is None for s in sharding.spec):
        return a
    return jax.device_put(a, NamedSharding(sharding.mesh, PartitionSpec()))


def _rows_axis(name: str, a: Any, row_dim: int):
    """(mesh, axis) of an array whose dimension `row_dim` is sharded, else None."""
    if not isinstance(a, jax.Array):
        return None
    sharding = a.sharding
    if not isinstance(sharding, NamedSharding) or sharding.is_fully_replicated:
        return None
    spec = tuple(sharding.spec) + (None,) * (a.ndim - len(sharding.spec))
    others = [d for d, s in enumerate(spec) if s is not None and d != row_dim]
    if others or spec[row_dim] is None:
        example = ", ".join(["None"] * row_dim + ['"data"'])
        raise ValueError(
            f"{name} is sharded as {sharding.spec} (shape {a.shape}): jaxreg trains on data "
            f"whose rows (dimension {row_dim}) are split over one mesh axis and whose other "
            f"dimensions are whole, e.g. PartitionSpec({example})."
        )
    axis = spec[row_dim]
    if isinstance(axis, tuple) and len(axis) == 1:
        axis = axis[0]
    return sharding.mesh, axis


def replicate(tree: Any, where: DataMesh) -> Any:
    """Every array leaf of `tree` replicated on `where.mesh` (other leaves unchanged).

    Used for the parameters and optimizer state of a sharded fit: each device holds them
    whole. A leaf already replicated there is returned as is. Works across processes: a
    host value (every process passes the same) becomes one global replicated array.
    """
    target = where.replicated

    def one(leaf):
        if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(target, leaf.ndim):
            return leaf
        if not isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            return leaf
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            # a typed key: its raw data goes across, and is wrapped again where it lands
            # (device_put of a one-process key onto another process's devices fails)
            wrap = functools.partial(jax.random.wrap_key_data, impl=jax.random.key_impl(leaf))
            return jax.jit(wrap, out_shardings=target)(one(jax.random.key_data(leaf)))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, target, lambda index: host[index])

    return jax.tree.map(one, tree)


def sum_error_bound(n: int, abs_sum: Any, dtype: Any) -> Any:
    """How far two float sums of the same n products, in different orders, can lie apart.

    A sum of n rounded products x_i y_i (a gradient's `sum_i dz_i x_i`) computed in any
    order is within `gamma(n) * sum |x_i y_i|` of the exact value, `gamma(n) = n u /
    (1 - n u)` with u = eps / 2 the unit roundoff (Higham, "Accuracy and Stability of
    Numerical Algorithms", 2nd ed., (3.5); it covers products fused into the adds or
    not); two orders lie within twice that. A sharded sum (per shard, then across shards)
    and a one-device sum are two such orders.

    Args:
      n: the number of terms.
      abs_sum: the sum of the terms' absolute values (a number or an array, per component).
      dtype: the float dtype the sums are computed in.
    """
    u = float(np.finfo(dtype).eps) / 2
    k = n * u
    if k >= 1:
        raise ValueError(f"n={n} terms: n u >= 1, no bound in {np.dtype(dtype).name}")
    return 2 * k / (1 - k) * np.asarray(abs_sum)


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: float = 60.0,
) -> None:
    """Join this process to the others: `jax.distributed.initialize`, with bounded waits.

    Call it once, first thing, in every process (before any other JAX call). Arguments
    left None come from the environment `python -m jaxreg.launch` sets (`JAXREG_COORDINATOR`
    "host:port", `JAXREG_NUM_PROCESSES`, `JAXREG_PROCESS_ID`). Process 0 serves the
    coordinator at that address; the others first wait (at most `timeout_s`) until it
    accepts connections. On CPU the processes talk over gloo, JAX's default CPU
    collectives (`jax_cpu_collectives_implementation`), so this changes no configuration.

    Raises:
      ValueError: a missing or malformed setting, naming the variable.
      ConnectionError: the coordinator could not be reached within `timeout_s`, or the
        processes did not all join within it.
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR)
    num_processes = _setting("num_processes", num_processes, ENV_NUM_PROCESSES)
    process_id = _setting("process_id", process_id, ENV_PROCESS_ID)
    if not coordinator or ":" not in coordinator:
        raise ValueError(
            f"initialize needs the coordinator's address as 'host:port' (argument "
            f"coordinator= or ${ENV_COORDINATOR}), got {coordinator!r}; start the processes "
            "with python -m jaxreg.launch -n N script.py to have it set"
        )
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} is not in 0..{num_processes - 1}")
    host, port = coordinator.rsplit(":", 1)
    if process_id != 0:
        _wait_for(host, int(port), timeout_s)
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=max(1, math.ceil(timeout_s)),
        )
    except Exception as e:  # jax raises XlaRuntimeError/RuntimeError: name what to check
        raise ConnectionError(
            f"process {process_id} of {num_processes} could not join the coordinator at "
            f"{coordinator} within {timeout_s:g} s ({type(e).__name__}: {e}). Check that "
            "every process was started with the same address and process count."
        ) from e


def _setting(name: str, value: Any, env: str) -> int:
    if value is None:
        raw = os.environ.get(env)
        if raw is None:
            raise ValueError(f"initialize needs {name}= or ${env} (set by python -m jaxreg.launch)")
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"${env} must be an integer, got {raw!r}") from None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def _wait_for(host: str, port: int, timeout_s: float) -> None:
    """Return once host:port accepts a TCP connection; `ConnectionError` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.05, min(1.0, left))):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConnectionError(
                    f"the coordinator at {host}:{port} could not be reached within "
                    f"{timeout_s:g} s ({e}). Is process 0 running and listening there?"
                ) from None
            time.sleep(0.1)


def row_sharding(mesh: Mesh | None = None, axis: str = "data") -> NamedSharding:
    """`NamedSharding(mesh, P(axis))`: rows split over `axis`, the other dimensions whole.
    Default mesh: every device of every process on one axis (`jax.make_mesh`)."""
    if mesh is None:
        mesh = jax.make_mesh((jax.device_count(),), (axis,))
    return NamedSharding(mesh, PartitionSpec(axis))


def process_rows(n: int, sharding: NamedSharding) -> range:
    """The rows of an (n, ...) row-sharded array this process holds (a contiguous range).

    Raises:
      ValueError: n not a multiple of the number of shards, or this process's shards not
        contiguous (a mesh whose devices interleave processes).
    """
    spec = tuple(sharding.spec) or (None,)
    axis = spec[0]
    names = () if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    shards = math.prod(sharding.mesh.shape[a] for a in names)
    if n % shards:
        raise ValueError(
            f"{n} rows do not split evenly over {shards} shards: drop {n % shards} rows or "
            "use a mesh whose data axis divides n"
        )
    spans = sorted(
        {
            (idx[0].start or 0, n if idx[0].stop is None else idx[0].stop)
            for idx in sharding.addressable_devices_indices_map((n,)).values()
        }
    )
    for (_, stop), (start, _) in itertools.pairwise(spans):
        if start != stop:
            raise ValueError(
                f"process {jax.process_index()}'s shards of the rows are not contiguous "
                f"({spans}); order the mesh's devices by process (jax.make_mesh does)"
            )
    return range(spans[0][0], spans[-1][1])


def global_rows(local: Any, sharding: NamedSharding, n: int) -> jax.Array:
    """The global (n, ...) array whose rows `process_rows(n, sharding)` are `local`.

    Every process calls it with its own rows; none reads another's. Checks, across the
    processes, that they agree on n and on the other dimensions and dtype, and that the
    local rows are finite (naming the global row).

    Raises:
      ValueError: a process's rows have another count, shape or dtype than expected.
    """
    local = np.asarray(local)
    rows = process_rows(n, sharding)
    shapes = multihost_utils.process_allgather(
        np.array([n, len(local), *local.shape[1:], local.dtype.num], np.int64)
    )
    shapes = np.asarray(shapes).reshape(jax.process_count(), -1)
    if len({tuple(r) for r in shapes[:, [0, *range(2, shapes.shape[1])]]}) != 1:
        raise ValueError(
            "the processes disagree on the global shape or dtype (per process: n, local "
            f"rows, other dimensions, dtype number): {shapes.tolist()}"
        )
    if len(local) != len(rows):
        raise ValueError(
            f"process {jax.process_index()} holds rows {rows.start}..{rows.stop - 1} of {n} "
            f"({len(rows)} rows) but was given {len(local)}"
        )
    if np.issubdtype(local.dtype, np.inexact) and not np.isfinite(local).all():
        bad = int(np.argwhere(~np.isfinite(local))[0][0])
        raise ValueError(f"row {rows.start + bad} (process {jax.process_index()}) is NaN or inf")
    return jax.make_array_from_process_local_data(sharding, local, (n, *local.shape[1:]))


def load_npy_rows(path: Any, sharding: NamedSharding) -> jax.Array:
    """A `.npy` file as a row-sharded global array, each process reading only its rows
    (the file is memory-mapped; only this process's slice is read from disk)."""
    whole = np.load(path, mmap_mode="r")
    rows = process_rows(whole.shape[0], sharding)
    return global_rows(np.asarray(whole[rows.start : rows.stop]), sharding, whole.shape[0])


def load_csv_rows(
    path: Any, sharding: NamedSharding, *, columns: Any = None, dtype: Any = np.float32
) -> jax.Array:
    """Columns of a CSV file side by side, (n, len(columns)), as a row-sharded global array;
    each process converts only its rows (`process_rows(n, sharding)`).

        x = load_csv_rows("train.csv", rows, columns=("x1", "x2"))  # (n, 2)
        y = load_csv_rows("train.csv", rows, columns=("y",))        # (n, 1)

    What each process reads: the whole file's bytes, memory-mapped and scanned with NumPy
    for line ends (twice: to count the data rows, `jaxreg.data.count_csv_rows`, then to
    find where its rows start); the header and its own rows only are decoded, split and
    converted, by `jaxreg.data.load_csv(..., rows=...)`, whose checks and messages (line
    and column) they get. A bad value in another process's rows is reported by that
    process, not this one (a file with quotes is split into fields whole: see `load_csv`).

    Args:
      path: the CSV file, the same in every process (a shared or copied file).
      sharding: where the rows go, e.g. `row_sharding()`; n must divide evenly over it.
      columns: the names, in this order (default: all columns, in file order).
      dtype: a float dtype (float32, torch's default).
    """
    n = count_csv_rows(path)
    rows = process_rows(n, sharding)
    cols = load_csv(path, columns=columns, dtype=dtype, rows=rows)
    return global_rows(np.stack(list(cols.values()), axis=1), sharding, n)
