"""The one-pass CPU kernel: a large full-batch gradient in a single read of X.

XLA:CPU computes a linear model's gradient as separate kernels (the logits `X w`, the
per-element loss, the weight gradient `X^T dL/dz`), so X streams from memory twice a step
(benchmarks/NOTES.md, "Large full batch"). `csrc/onepass.cc` computes all three on each
block of rows while it is in cache, on XLA's number of threads, through XLA's FFI: one
read of X a step. It covers the tutorials' large-data objectives, with one output or up to
a vector's lanes of them (16 float32, 8 float64), float32 and float64:

    a "linear" model (`linear.predict`)     + losses.mse / losses.sse  (mean or sum)
    a "logistic" model (`logistic.predict`) + losses.bce               (torch's clamps)
    a "linear" model (`logistic.logits`)    + losses.bce_with_logits   (no pos_weight)

Same numbers as the plain gradient up to float rounding of the sums (each block summed in
the data's dtype, blocks and chunks in float64; tests/test_gradients_native.py checks it
against `jax.value_and_grad`), and the transcendental functions of the C library's vector
math (glibc libmvec: within 4 ulp) instead of XLA's.

The same library has `gather_rows`: a mini-batch's random rows of large data copied with
the next rows prefetched (`jaxreg.gradients.row_gather` chooses it from
`GATHER_MIN_BYTES` of data on a single-device CPU backend): XLA's gather's bits, faster.

The kernel is C++ compiled on first use, for this machine (`-march=native`), with the
compiler `$CXX` or `c++`, into `$JAXREG_CACHE_DIR` (default `~/.cache/jaxreg`); ~5 s of CPU
once per machine and jaxlib version. Without a compiler, or with `JAXREG_NATIVE=0`, the
XLA formulations are used; `status()` says which and why. `jaxreg.gradients.select` takes
it for CPU data on a single-device CPU backend (not for sharded data: XLA would gather the
rows to run a custom call).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import tempfile
import types
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import linear, losses
from jaxreg.gradients import xla_cpu

__all__ = [
    "GATHER_MIN_BYTES",
    "MIN_ELEMENTS",
    "Status",
    "gather_plan",
    "gather_rows",
    "plan",
    "status",
    "value_and_grad",
]

SOURCE = Path(__file__).with_name("csrc") / "onepass.cc"
# From this many elements of x; below, the kernel's start-up (~10 µs) is not worth it and
# the XLA formulations are as fast (benchmarks/NOTES.md, "One-pass kernel").
MIN_ELEMENTS = 1 << 16
# The kernel keeps a row's features in up to 8 vectors of 64 bytes, and a row's logits (one
# per output) in one.
_MAX_FEATURES = types.MappingProxyType({np.dtype(np.float32): 128, np.dtype(np.float64): 64})
_MAX_OUTPUTS = types.MappingProxyType({np.dtype(np.float32): 16, np.dtype(np.float64): 8})
# (the objective's model kind, its loss) -> the kernel's loss kind.
_KINDS = types.MappingProxyType(
    {("linear", losses.mse): 0, ("logistic", losses.bce): 1, ("linear", losses.bce_with_logits): 2}
)
_TARGETS = types.MappingProxyType({np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"})
_GATHER = "jaxreg_gather_rows"
# Mini-batch rows from data of this many bytes up: below, the rows stay in the caches and
# XLA's gather is as fast (its custom call costs ~1 µs a step; benchmarks/NOTES.md,
# "Mini-batch rows").
GATHER_MIN_BYTES = 1 << 20
_BUILD_TIMEOUT_S = 600


@dataclasses.dataclass(frozen=True)
class Status:
    """Whether the kernel is in use in this process.

    Attributes:
      available: True when compiled, loaded and registered with XLA.
      detail: the library's path, or why the kernel is not used.
    """

    available: bool
    detail: str


def status() -> Status:
    """Builds (first call in a process) and loads the kernel; whether it is available."""
    if os.environ.get("JAXREG_NATIVE", "1") == "0":
        return Status(False, "disabled by JAXREG_NATIVE=0")
    return _load()


def plan(objective: Any, params: Any, x: Any, y: Any) -> bool:
    """Whether the kernel computes this objective's value and gradient (static facts only,
    plus `status()`: the first eligible call in a process builds or loads the library)."""
    if xla_cpu.terms(objective, params, x, y) is None:
        return False
    # separable() gave a mean or a sum (xla_cpu.terms checked it)
    decl, kwargs, _ = objective.separable()
    if (objective.model, decl.elementwise) not in _KINDS or kwargs:
        return False
    n, d = jnp.shape(x)
    dtype = np.dtype(jnp.result_type(params.weight))
    out = jnp.shape(params.weight)[0]
    if out > _MAX_OUTPUTS[dtype] or d > _MAX_FEATURES[dtype] or n * d < MIN_ELEMENTS:
        return False
    if len(jax.devices("cpu")) != 1:
        return False
    return status().available


def value_and_grad(objective: Any, params: Any, x: Any, y: Any):
    """The value and gradient from the kernel (call only where `plan` is True)."""
    _require()
    decl, _, reduction = objective.separable()
    kind = _KINDS[(objective.model, decl.elementwise)]
    w, b = params.weight, params.bias
    dtype = np.dtype(w.dtype)
    x, y = jnp.asarray(x).astype(dtype), jnp.asarray(y).astype(dtype)
    elements = jnp.shape(x)[0] * w.shape[0]
    mean = reduction == "mean"
    # jnp.mean's VJP: each dL/dz times 1/(n out), rounded in the data's dtype.
    scale = float(dtype.type(1) / dtype.type(elements)) if mean else 1.0
    bias = jnp.zeros((0,), dtype) if b is None else b
    shapes = (
        jax.ShapeDtypeStruct((), dtype),
        jax.ShapeDtypeStruct(w.shape, dtype),
        jax.ShapeDtypeStruct(bias.shape, dtype),
    )
    call = jax.ffi.ffi_call(f"jaxreg_onepass_{_TARGETS[dtype]}", shapes, vmap_method="sequential")
    value, gw, gb = call(x, y, w, bias, kind=np.int64(kind), scale=np.float64(scale), mean=mean)
    return value, linear.Params(gw, None if b is None else gb)


def gather_plan(arrays: list[Any], backend: str) -> bool:
    """Whether a mini-batch's rows of `arrays` are gathered by the kernel's `gather_rows`:
    CPU data of `GATHER_MIN_BYTES` or more (random rows of it miss the caches) on a
    single-device CPU backend, the kernel available."""
    size = sum(np.dtype(jnp.result_type(a)).itemsize * np.prod(jnp.shape(a)) for a in arrays)
    if backend != "cpu" or size < GATHER_MIN_BYTES or len(jax.devices("cpu")) != 1:
        return False
    return status().available


def gather_rows(arrays: list[Any], idx: Any) -> list[Any]:
    """`[a[idx] for a in arrays]` (each (n, ...), idx (b,) int32/int64 in 0..n-1), copied
    row by row with the next rows prefetched: the same arrays as XLA's gather, bit for bit,
    and faster for random rows of a large array (benchmarks/NOTES.md, "Mini-batch rows").
    Call only where `gather_plan` is True."""
    _require()
    b = jnp.shape(idx)[0]
    shapes = tuple(jax.ShapeDtypeStruct((b, *jnp.shape(a)[1:]), jnp.result_type(a)) for a in arrays)
    call = jax.ffi.ffi_call(_GATHER, shapes, vmap_method="sequential")
    return list(call(idx, *arrays))


def _require() -> None:
    """Load and register the kernel (a process's first call; cached), or say why not."""
    got = status()
    if not got.available:
        raise RuntimeError(f"the one-pass kernel is not available: {got.detail}")


@functools.cache
def _load() -> Status:
    """Compiles the kernel if this machine has no build of this source yet, loads it and
    registers its two targets with XLA; once per process."""
    try:
        path = _build()
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        return Status(False, f"not built: {e}")
    lib = ctypes.CDLL(str(path))
    names = [f"jaxreg_onepass_{suffix}" for suffix in _TARGETS.values()] + [_GATHER]
    for name in names:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    return Status(True, str(path))


def _build() -> Path:
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
        raise RuntimeError("no C++ compiler ($CXX, c++ or g++) on PATH")
    source = SOURCE.read_bytes()
    flags = [
        "-O3",
        "-march=native",
        "-fno-math-errno",
        "-fopenmp-simd",
        "-std=c++17",
        "-shared",
        "-fPIC",
        "-w",
        f"-I{jax.ffi.include_dir()}",
    ]
    key = hashlib.sha256(
        b"\0".join([source, " ".join(flags).encode(), _machine().encode()])
    ).hexdigest()[:16]
    directory = _cache_dir()
    target = directory / f"onepass-{key}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".onepass-", suffix=".so", dir=directory)
    os.close(fd)
    try:
        # With glibc's vector math library (SIMD exp and log); without it where the
        # platform has none.
        for extra in (["-lmvec"], ["-DJAXREG_NO_MVEC"]):
            run = subprocess.run(
                [compiler, *flags, str(SOURCE), "-o", tmp, *extra],
                capture_output=True,
                text=True,
                timeout=_BUILD_TIMEOUT_S,
            )
            if run.returncode == 0:
                break
        else:
            raise RuntimeError(f"{compiler} failed: {run.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _cache_dir() -> Path:
    if os.environ.get("JAXREG_CACHE_DIR"):
        return Path(os.environ["JAXREG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxreg"


def _machine() -> str:
    """What a build is for: jaxlib's FFI headers, the architecture, and this CPU's features
    (`-march=native` code may not run on another CPU sharing the cache directory)."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line for line in f if line.startswith(("flags", "Features"))), cpu)
    except OSError:
        pass
    jaxlib = importlib.metadata.version("jaxlib")
    return f"{jax.__version__}/{jaxlib}/{platform.machine()}/{cpu}"
