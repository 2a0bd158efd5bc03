"""The one timing helper both sides use.

`measure(run, sync=...)` times `run()` (which does `work` units, e.g. training steps):
one untimed first call, reported apart as `first_s` (for JAX it includes tracing and
compiling), then warm-up calls, then `repeats` timed calls, each ended by `sync(result)`
so that asynchronous device work is inside the timing (`jax.block_until_ready`;
`torch.cuda.synchronize` on a GPU). Per-unit times are the call times divided by `work`;
the summary is the median with the quartiles and the extremes, never a mean (a shared
machine's outliers are one-sided).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Timing:
    """Per-unit wall times in seconds (a unit: one training step, unless stated)."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    repeats: int
    work: int  # units per timed call
    first_s: float  # the first call, whole (compile + run for JAX), not per unit
    compile_s: float  # first_s minus one steady-state call: the one-off cost

    @property
    def per_second(self) -> float:
        return 1.0 / self.median

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"per_second": self.per_second}


def fmt_time(s: float) -> str:
    """A duration in the unit that keeps it short: µs, ms or s, three significant digits."""
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def no_sync(_result: Any) -> None:
    """For work that is finished when it returns (NumPy, torch on CPU)."""


def jax_sync(result: Any) -> None:
    import jax

    jax.block_until_ready(result)


def torch_sync(device: str) -> Callable[[Any], None]:
    """`torch.cuda.synchronize()` after the call on a CUDA device, nothing on CPU."""
    if not str(device).startswith("cuda"):
        return no_sync
    import torch

    def sync(_result: Any) -> None:
        torch.cuda.synchronize()

    return sync


def measure(
    run: Callable[[], Any],
    *,
    sync: Callable[[Any], None],
    work: int = 1,
    repeats: int = 20,
    warmup: int = 2,
    max_seconds: float | None = None,
) -> Timing:
    """Time `run()`; see the module docstring.

    Args:
      run: does `work` units and returns something `sync` can wait on.
      sync: blocks until the device work behind `run`'s result is done.
      work: units per call (the reported times are per unit).
      repeats: timed calls (at least 3 are made, even past `max_seconds`).
      warmup: untimed calls after the first one.
      max_seconds: stop timing early once this much time has been spent in timed calls.
    """
    t0 = time.perf_counter()
    sync(run())
    first = time.perf_counter() - t0
    for _ in range(warmup):
        sync(run())
    samples: list[float] = []
    spent = 0.0
    for i in range(repeats):
        t0 = time.perf_counter()
        sync(run())
        dt = time.perf_counter() - t0
        samples.append(dt)
        spent += dt
        if max_seconds is not None and spent > max_seconds and i >= 2:
            break
    per = sorted(s / work for s in samples)
    q1, _, q3 = statistics.quantiles(per, n=4, method="inclusive") if len(per) > 1 else per * 3
    median = statistics.median(per)
    return Timing(
        median=median,
        q1=q1,
        q3=q3,
        min=per[0],
        max=per[-1],
        repeats=len(per),
        work=work,
        first_s=first,
        compile_s=max(0.0, first - median * work),
    )
