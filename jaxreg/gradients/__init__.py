"""The speed seam: which formulation computes an objective's value and gradient.

Every formulation computes `jax.value_and_grad(objective)(params, x, y)`, the plain
reference (`plain.py`); the others compute the same numbers up to float rounding of the
sums (tests/test_gradients.py checks each against the reference) in a form that is faster
on one backend. `select` is the one place that chooses, from the backend (static: where the
data lives) and the static shapes; `pack_carry` chooses the one loop option that goes with
it (whether the training loop packs its carry into one vector, which pays on XLA:CPU
only). Nothing else in jaxreg looks at shapes or backends to go faster.

    formulation = select(objective, params, x, y, backend="cpu")
    value, grads = formulation.value_and_grad(objective, params, x, y)

Adding a formulation: a new module here with `value_and_grad(objective, params, x, y)` and
a `plan(...)`-style predicate, one line in `select`, one row in tests/test_gradients.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from jaxreg.gradients import gram, native, plain, xla_cpu

__all__ = [
    "HOST_SORT_MIN_N",
    "Formulation",
    "backend_of",
    "host_shuffle",
    "pack_carry",
    "row_gather",
    "select",
]

# From this many rows up, the CPU backend sorts a shuffle's random keys with NumPy on the
# host (`jaxreg.loop.batches.epoch_permutation(..., on_host=True)`, the same order): the
# callback costs ~0.1 ms an epoch, XLA:CPU's sort-based permutation 0.09 ms at n = 512,
# 0.16 ms at 1024, ~0.6 s at 1e6 (benchmarks/NOTES.md, "Mini-batch epoch").
HOST_SORT_MIN_N = 1024


@dataclasses.dataclass(frozen=True)
class Formulation:
    """A way to compute an objective's value and gradient.

    Attributes:
      name: "plain", or the formulation's name ("xla_cpu.small", "xla_cpu.large").
      value_and_grad: `(objective, params, x, y) -> (value, grads)`, traceable.
    """

    name: str
    value_and_grad: Callable[..., Any]


PLAIN = Formulation("plain", plain.value_and_grad)


def select(objective: Any, params: Any, x: Any, y: Any, *, backend: str) -> Formulation:
    """The formulation for this objective, these shapes and this backend ("cpu", "gpu", ...).

    Reads only static information (shapes, dtypes, the objective's declaration), so it can
    run at trace time or at the boundary. Given `gram.Statistics` in place of x (a
    full-batch least-squares fit, `jaxreg.fit(gram=...)`), the statistics formulation.
    """
    if isinstance(x, gram.Statistics):
        return Formulation("gram", gram.value_and_grad)
    if backend == "cpu":
        if native.plan(objective, params, x, y):
            return Formulation("native.onepass", native.value_and_grad)
        name = xla_cpu.plan(objective, params, x, y)
        if name is not None:
            return Formulation(f"xla_cpu.{name}", xla_cpu.FORMULATIONS[name])
    return PLAIN


def host_shuffle(backend: str, n: int) -> bool:
    """Whether the training loop's shuffle of n rows sorts on the host (same order; XLA:CPU's
    sort is slow, an accelerator's is fast and a host round trip is not free)."""
    return backend == "cpu" and n >= HOST_SORT_MIN_N


def row_gather(arrays: list[Any], backend: str) -> Callable[[list[Any], Any], list[Any]] | None:
    """How a mini-batch's random rows of `arrays` are taken: the native gather
    (`native.gather_rows(arrays, idx)`: the same bits, its prefetch overlapping the rows'
    cache misses) for large data on a single-device CPU backend, else None (XLA's gather)."""
    return native.gather_rows if native.gather_plan(arrays, backend) else None


def pack_carry(backend: str) -> bool:
    """Whether the training loop carries params and optimizer state as one flat vector
    (fewer kernels per step on XLA:CPU, where each costs a dispatch; no gain elsewhere)."""
    return backend == "cpu"


def backend_of(*arrays: Any) -> str:
    """The platform the computation on `arrays` runs on: that of the first jax array's
    devices, else JAX's default backend (host data is moved there by the compiled call)."""
    for a in arrays:
        if isinstance(a, jax.Array):
            return next(iter(a.devices())).platform
    return jax.default_backend()
