"""What is timed: the problems (sizes, data) and each backend's training loop.

Every backend trains the same problem: the same float32 data (made once with NumPy), the
same initial parameters (torch's `nn.Linear` init, copied to JAX), the same loss (mean
squared error, or binary cross-entropy on `sigmoid(x @ W.T + b)`), plain SGD with the
same learning rate (`torch.optim.SGD` / `jaxreg.optim.sgd`), full batch. A backend is a
function `(problem, device) -> Runner`; `Runner.run()` does `Runner.work` steps and
returns something to synchronise on.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import jaxreg as jr
from benchmarks.timing import jax_sync, torch_sync
from jaxreg.many import fit_many


@dataclasses.dataclass(frozen=True)
class Problem:
    """One training problem: `model` ("linear" + MSE or "logistic" + BCE) on (n, d) data."""

    model: str
    n: int
    d: int
    size: str  # "tutorial", "middle", "large"
    steps: int  # steps per timed call for the loop-per-call backends (fit)
    block: int  # steps per timed call for the step-per-call backends (eager, make_step)
    lr: float
    out: int = 1  # outputs (nn.Linear(d, out)): several targets, or independent logits

    @property
    def name(self) -> str:
        many = f" out={self.out}" if self.out > 1 else ""
        return f"{self.model} n={self.n} d={self.d}{many}"

    @property
    def bytes_x(self) -> int:
        return self.n * self.d * 4


SIZES = ("tutorial", "middle", "large")


def problems(sizes: list[str], smoke: bool = False) -> list[Problem]:
    """The benchmark's problems; `smoke` shrinks everything to run in seconds.

    Raises ValueError for a size that is not one of `SIZES` (never an empty list).
    """
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise ValueError(f"unknown problem size {unknown[0]!r}; choose from {', '.join(SIZES)}")
    out = []
    table = {
        "tutorial": [(3, 1, 1000, 100), (100, 3, 1000, 100), (2000, 1, 1000, 50)],
        "middle": [(10_000, 16, 200, 20)],
        # (n, d, steps, block[, outputs]): the second large problem has 10 outputs
        "large": [(1_000_000, 32, 10, 3), (1_000_000, 32, 10, 3, 10)],
    }
    if smoke:
        table = {"tutorial": [(3, 1, 20, 5)], "middle": [(50, 2, 20, 5), (50, 2, 20, 5, 3)]}
    for size in sizes:
        for n, d, steps, block, *outputs in table.get(size, []):
            for model, lr in (("linear", 0.01), ("logistic", 0.1)):
                out.append(Problem(model, n, d, size, steps, block, lr, *outputs))
    return out


@dataclasses.dataclass
class Data:
    x: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n, 1) float32
    weight: np.ndarray  # (1, d) initial parameters (torch's nn.Linear init)
    bias: np.ndarray  # (1,)


def make_data(p: Problem, seed: int = 0) -> Data:
    import torch

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p.n, p.d), dtype=np.float32)
    w_true = rng.standard_normal((p.d, p.out), dtype=np.float32) / np.sqrt(p.d)
    z = x @ w_true + np.float32(0.5)
    if p.model == "linear":
        y = z + np.float32(0.1) * rng.standard_normal((p.n, p.out), dtype=np.float32)
    else:
        y = (rng.random((p.n, p.out)) < 1 / (1 + np.exp(-z))).astype(np.float32)
    torch.manual_seed(seed)
    layer = torch.nn.Linear(p.d, p.out)
    return Data(
        x,
        y.astype(np.float32),
        layer.weight.detach().numpy().copy(),
        layer.bias.detach().numpy().copy(),
    )


@dataclasses.dataclass
class Runner:
    run: Callable[[], Any]
    sync: Callable[[Any], None]
    work: int  # steps per run()
    note: str = ""
    setup_s: float | None = None  # one-off work done before the first timed call (compile)


class Unsupported(Exception):
    """The backend cannot run here; the message says why (reported, not raised)."""


# ---------------------------------------------------------------------------- torch


def _torch_setup(p: Problem, data: Data, device: str):
    import torch

    x = torch.from_numpy(data.x).to(device)
    y = torch.from_numpy(data.y).to(device)
    model = torch.nn.Linear(p.d, p.out).to(device)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(data.weight))
        model.bias.copy_(torch.from_numpy(data.bias))
    opt = torch.optim.SGD(model.parameters(), lr=p.lr)
    return torch, x, y, model, opt


def _torch_loss(torch, p: Problem):
    f = torch.nn.functional
    if p.model == "linear":
        return lambda out, y: f.mse_loss(out, y)
    return lambda out, y: f.binary_cross_entropy(torch.sigmoid(out), y)


def torch_eager(p: Problem, data: Data, device: str) -> Runner:
    """The tutorial loop: nn.Linear, the loss, optim.SGD; zero_grad/backward/step."""
    torch, x, y, model, opt = _torch_setup(p, data, device)
    loss_fn = _torch_loss(torch, p)

    def run():
        for _ in range(p.block):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        return loss

    return Runner(run, torch_sync(device), p.block)


def torch_compiled(p: Problem, data: Data, device: str) -> Runner:
    """`torch.compile` of the forward + loss (backward by AOTAutograd); `opt.step` eager.

    Also compiling `opt.step` (`torch.compile(opt.step)`) was slower here: it graph-breaks
    on a profiler `record_function` and added 300-600 µs a step (benchmarks/NOTES.md).
    """
    torch, x, y, model, opt = _torch_setup(p, data, device)
    loss_fn = _torch_loss(torch, p)
    try:
        fwd = torch.compile(lambda x, y: loss_fn(model(x), y))

        def run():
            for _ in range(p.block):
                opt.zero_grad()
                loss = fwd(x, y)
                loss.backward()
                opt.step()
            return loss

        t0 = time.perf_counter()
        torch_sync(device)(run())  # compile here, so that a failure is reported as unsupported
        setup = time.perf_counter() - t0
    except Exception as e:  # torch raises many kinds (BackendCompilerFailed, ...)
        raise Unsupported(f"torch.compile failed: {type(e).__name__}: {str(e)[:300]}") from e
    return Runner(run, torch_sync(device), p.block, note="first call = compile", setup_s=setup)


# ------------------------------------------------------------------------------ jax


def _jax_setup(p: Problem, data: Data, device: str):
    dev = _jax_device(device)
    x = jax.device_put(data.x, dev)
    y = jax.device_put(data.y, dev)
    params = jax.device_put(jr.linear.Params(data.weight, data.bias), dev)
    if p.model == "linear":
        loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    else:
        loss_fn = jr.objective(jr.logistic.predict, jr.losses.bce)
    tx = jr.optim.sgd(p.lr)
    return jr, x, y, params, loss_fn, tx


def _jax_device(device: str):
    if device == "gpu":
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            raise Unsupported("jax sees no GPU (install jax[cuda12])")
        return gpus[0]
    return jax.devices("cpu")[0]


def jax_make_step(p: Problem, data: Data, device: str) -> Runner:
    """`jr.make_step` called from Python once per step (the eager loop's shape)."""
    jr, x, y, params, loss_fn, tx = _jax_setup(p, data, device)
    step = jr.make_step(loss_fn, tx)
    state = {"p": params, "s": tx.init(params)}

    def run():
        pp, s = state["p"], state["s"]
        for _ in range(p.block):
            pp, s, loss = step(pp, s, x, y)
        state["p"], state["s"] = pp, s
        return loss

    return Runner(run, jax_sync, p.block)


def jax_fit(p: Problem, data: Data, device: str) -> Runner:
    """One whole `jr.fit` call (the compiled loop, results) per `steps` steps, on a
    `jr.Dataset` built once: the documented way to fit the same data many times (its
    validation runs once, as a user's loop of fits on one data set pays it once)."""
    jr, x, y, params, loss_fn, tx = _jax_setup(p, data, device)
    dataset = jr.Dataset(x, y)

    def run():
        return jr.fit(loss_fn, tx, params, dataset, steps=p.steps).params

    return Runner(run, jax_sync, p.steps)


BACKENDS: dict[str, Callable[[Problem, Data, str], Runner]] = {
    "torch eager": torch_eager,
    "torch.compile": torch_compiled,
    "jaxreg make_step": jax_make_step,
    "jaxreg fit": jax_fit,
}


# ---------------------------------------------------------------------- many models


@dataclasses.dataclass(frozen=True)
class ManyProblem:
    """M independent linear regressions (the multivariate tutorial's shape), `steps` each."""

    models: int
    n: int
    d: int
    steps: int
    lr: float = 0.1
    loop_sample: int = 20  # models the torch Python loop actually trains (then scaled)

    @property
    def name(self) -> str:
        return f"{self.models} x linear n={self.n} d={self.d}"


def many_data(mp: ManyProblem, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((mp.models, mp.n, mp.d), dtype=np.float32)
    w = rng.standard_normal((mp.models, mp.d, 1), dtype=np.float32)
    y = x @ w + np.float32(0.1) * rng.standard_normal((mp.models, mp.n, 1), dtype=np.float32)
    bound = 1 / np.sqrt(mp.d)
    w0 = rng.uniform(-bound, bound, (mp.models, 1, mp.d)).astype(np.float32)
    b0 = rng.uniform(-bound, bound, (mp.models, 1)).astype(np.float32)
    return x, y.astype(np.float32), w0, b0


def many_jax(mp: ManyProblem, data, device: str) -> Runner:
    """`jr.many.fit_many`: the whole call, all models, per step."""
    dev = _jax_device(device)
    x, y, w0, b0 = (jax.device_put(a, dev) for a in data)
    params = jr.linear.Params(w0, b0)
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    tx = jr.optim.sgd(mp.lr)

    def run():
        return fit_many(loss_fn, tx, params, x, y, steps=mp.steps).params

    return Runner(run, jax_sync, mp.steps)


def many_torch_loop(mp: ManyProblem, data, device: str) -> Runner:
    """The eager tutorial loop, model after model; times `loop_sample` models, scaled to M."""
    import torch

    x, y, w0, b0 = data
    k = min(mp.loop_sample, mp.models)
    xs = [torch.from_numpy(x[m]).to(device) for m in range(k)]
    ys = [torch.from_numpy(y[m]).to(device) for m in range(k)]
    f = torch.nn.functional

    def run():
        for m in range(k):
            model = torch.nn.Linear(mp.d, 1).to(device)
            with torch.no_grad():
                model.weight.copy_(torch.from_numpy(w0[m]))
                model.bias.copy_(torch.from_numpy(b0[m]))
            opt = torch.optim.SGD(model.parameters(), lr=mp.lr)
            for _ in range(mp.steps):
                opt.zero_grad()
                loss = f.mse_loss(model(xs[m]), ys[m])
                loss.backward()
                opt.step()
        return loss

    # per "step of all M models": (time for k models x steps) * M / k / steps
    return Runner(
        run,
        torch_sync(device),
        mp.steps * k / mp.models,
        note=f"timed {k} models, scaled to {mp.models}",
    )


def many_torch_bmm(mp: ManyProblem, data, device: str) -> Runner:
    """All M models as batched tensors: baddbmm forward, per-model means summed, one SGD."""
    import torch

    x, y, w0, b0 = data
    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(y).to(device)
    w = torch.from_numpy(w0.transpose(0, 2, 1).copy()).to(device).requires_grad_()  # (M,d,1)
    b = torch.from_numpy(b0[:, :, None].copy()).to(device).requires_grad_()  # (M,1,1)

    def run():
        with torch.no_grad():
            w.copy_(torch.from_numpy(w0.transpose(0, 2, 1).copy()))
            b.copy_(torch.from_numpy(b0[:, :, None].copy()))
        opt = torch.optim.SGD([w, b], lr=mp.lr)
        for _ in range(mp.steps):
            opt.zero_grad()
            pred = torch.baddbmm(b, xt, w)  # (M, n, 1)
            # sum over models of each model's mean: each model's gradient is its own
            loss = ((pred - yt) ** 2).mean(dim=(1, 2)).sum()
            loss.backward()
            opt.step()
        return loss

    return Runner(run, torch_sync(device), mp.steps)


MANY_BACKENDS = {
    "torch loop over models": many_torch_loop,
    "torch bmm (batched)": many_torch_bmm,
    "jaxreg fit_many (vmap)": many_jax,
}


# ------------------------------------------------------------------- mini-batch SGD


@dataclasses.dataclass(frozen=True)
class MiniBatchProblem:
    """Linear + MSE + SGD over shuffled mini-batches, one epoch per timed call."""

    n: int
    d: int
    batch_sizes: tuple[int, ...]
    lr: float = 0.01

    @property
    def name(self) -> str:
        return f"linear n={self.n} d={self.d}"

    @property
    def bytes_x(self) -> int:
        return self.n * self.d * 4


def minibatch_problem(smoke: bool = False) -> MiniBatchProblem:
    if smoke:
        return MiniBatchProblem(2000, 4, (16, 256))
    return MiniBatchProblem(1_000_000, 32, (256, 4096))


def linear_data(n: int, d: int, seed: int = 0) -> Data:
    """Linear-regression data as `make_data` makes it, with NumPy only (no torch import):
    built in place, without a float64 or second copy of X on the way; initial parameters
    drawn as `nn.Linear` draws them (uniform in +-1/sqrt(d))."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 65_536):
        x[s : s + 65_536] = rng.standard_normal((min(65_536, n - s), d), dtype=np.float32)
    w_true = rng.standard_normal((d, 1), dtype=np.float32) / np.float32(np.sqrt(d))
    y = x @ w_true + np.float32(0.5)
    y += np.float32(0.1) * rng.standard_normal((n, 1), dtype=np.float32)
    bound = 1 / np.sqrt(d)
    weight = rng.uniform(-bound, bound, (1, d)).astype(np.float32)
    bias = rng.uniform(-bound, bound, (1,)).astype(np.float32)
    return Data(x, y, weight, bias)


def minibatch_jax(mp: MiniBatchProblem, data: Data, batch: int, device: str) -> Runner:
    """`jr.fit(..., jr.Dataset(x, y), epochs=1, batch_size=b, key=k)`: one shuffled epoch
    per call on a Dataset built once, a new key each call (a traced argument: compiled
    once, on the first call)."""
    dev = _jax_device(device)
    x, y = jax.device_put(data.x, dev), jax.device_put(data.y, dev)
    params = jax.device_put(jr.linear.Params(data.weight, data.bias), dev)
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    tx = jr.optim.sgd(mp.lr)
    dataset = jr.Dataset(x, y)
    calls = iter(range(2**31))

    def run():
        key = jax.random.key(next(calls))
        return jr.fit(loss_fn, tx, params, dataset, epochs=1, batch_size=batch, key=key).params

    return Runner(run, jax_sync, 1)


def _torch_minibatch(mp: MiniBatchProblem, data: Data, batch: int, device: str, loader: bool):
    import torch

    x = torch.from_numpy(data.x).to(device)
    y = torch.from_numpy(data.y).to(device)
    w0, b0 = torch.from_numpy(data.weight), torch.from_numpy(data.bias)
    model = torch.nn.Linear(mp.d, 1).to(device)
    f = torch.nn.functional
    batches = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True
    )

    def epoch():
        if loader:
            return batches
        idx = torch.randperm(mp.n, device=device)
        return ((x[j], y[j]) for j in (idx[s : s + batch] for s in range(0, mp.n, batch)))

    def run():
        with torch.no_grad():  # every epoch from the same parameters, as jr.fit's
            model.weight.copy_(w0)
            model.bias.copy_(b0)
        opt = torch.optim.SGD(model.parameters(), lr=mp.lr)
        for xb, yb in epoch():
            opt.zero_grad()
            loss = f.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
        return loss

    return Runner(run, torch_sync(device), 1)


def minibatch_torch_loader(mp: MiniBatchProblem, data: Data, batch: int, device: str) -> Runner:
    """The tutorial loop: `DataLoader(TensorDataset(X, Y), batch_size=b, shuffle=True)`,
    nn.Linear, F.mse_loss, optim.SGD; zero_grad/backward/step per batch."""
    return _torch_minibatch(mp, data, batch, device, loader=True)


def minibatch_torch_randperm(mp: MiniBatchProblem, data: Data, batch: int, device: str) -> Runner:
    """The same loop over one `torch.randperm(n)` per epoch and `X[idx[i:i+b]]` per batch."""
    return _torch_minibatch(mp, data, batch, device, loader=False)


TORCH_LOADER = "torch DataLoader"
TORCH_RANDPERM = "torch randperm+index"
MINIBATCH_BACKENDS: dict[str, Callable[[MiniBatchProblem, Data, int, str], Runner]] = {
    TORCH_LOADER: minibatch_torch_loader,
    TORCH_RANDPERM: minibatch_torch_randperm,
    "jaxreg fit (epochs=1)": minibatch_jax,
}


# --------------------------------------------------------- least squares, Gram path

GRAM_STEPS = 1000
GRAM_BACKEND = "jaxreg fit gram=True"


def gram_fit(p: Problem, data: Data, device: str, steps: int = GRAM_STEPS) -> Runner:
    """`jr.fit(..., gram=True)`, `steps` full-batch steps from the sufficient statistics,
    on a fresh `jr.Dataset` each call: the statistics' precompute (one pass over X) is
    inside every timed call, not cached from an earlier one."""
    jr_, x, y, params, loss_fn, tx = _jax_setup(p, data, device)

    def run():
        with warnings.catch_warnings():
            # gram=True in float32 warns (PrecisionWarning) that the loss it reports is less
            # accurate than the plain path's; this measures speed, tests/test_gram.py accuracy.
            warnings.simplefilter("ignore", jr_.PrecisionWarning)
            return jr_.fit(loss_fn, tx, params, jr_.Dataset(x, y), steps=steps, gram=True).params

    return Runner(run, jax_sync, steps, note="fresh Dataset each call: precompute counted")
