"""The torch side of `test_optim.py` and `test_schedules.py`: the reference runs.

Each helper runs the real `torch.optim` (CPU, its default single-tensor path) on plain
NumPy inputs and returns NumPy arrays, so the tests compare like with like. The training
runs go through parity's one torch loop (`parity.programs.torch_loop`), the loop every
parity scenario and `parity.verify` use.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import numpy as np
import torch

from parity.programs import torch_loop

F64_EPS = float(np.finfo(np.float64).eps)
F32_EPS = float(np.finfo(np.float32).eps)


def optim_db() -> list:
    """torch's own optimizer test table (`common_optimizers.optim_db`: per class, the
    configurations it tests and the inputs it must refuse). Its module needs `expecttest`
    (a test dependency here) and warns on import that `hypothesis` is missing, which it
    uses only for torch's own randomized tests."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Fail to import hypothesis", ImportWarning)
        module = importlib.import_module("torch.testing._internal.common_optimizers")
    return module.optim_db


def torch_configurations(name: str) -> list[dict]:
    """The keyword arguments torch tests `torch.optim.<name>` with on CPU
    (`optim_inputs_func`)."""
    (info,) = [i for i in optim_db() if i.optim_cls.__name__ == name]
    return [dict(given.kwargs) for given in info.optim_inputs_func(device="cpu")]


TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def regression_problem(seed: int = 0) -> tuple[np.ndarray, ...]:
    """A small linear regression: x (20, 3), y (20, 1), weight0 (1, 3), bias0 (1,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((20, 3))
    y = x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.standard_normal((20, 1))
    weight0 = 0.5 * rng.standard_normal((1, 3))
    bias0 = 0.5 * rng.standard_normal(1)
    return x, y, weight0, bias0


def gradient_stream(steps: int, size: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Initial params (size,) and a fixed sequence of gradients (steps, size).

    The gradients' scale varies by a factor of e**±2 from step to step, so the adaptive
    optimizers' statistics see more than one magnitude.
    """
    rng = np.random.default_rng(seed)
    params0 = rng.standard_normal(size)
    grads = rng.standard_normal((steps, size)) * np.exp(rng.standard_normal((steps, 1)))
    return params0, grads


def torch_regression(
    optimizer: str, kwargs: dict[str, Any], problem: tuple[np.ndarray, ...], dtype, steps: int
) -> np.ndarray:
    """torch's parameters after each of `steps` updates, as rows `[w0, w1, w2, b]`.

    The loop is the tutorial's: `zero_grad`, `mean((x @ W.T + b - y) ** 2)`, `backward`,
    `step`.
    """
    tdtype = TORCH_DTYPES[np.dtype(dtype)]
    x, y, weight0, bias0 = (torch.tensor(a, dtype=tdtype) for a in problem)
    weight = weight0.clone().requires_grad_(True)
    bias = bias0.clone().requires_grad_(True)
    opt = getattr(torch.optim, optimizer)([weight, bias], **kwargs)
    program = torch_loop.Program(
        forward=lambda xb: xb @ weight.T + bias,
        loss_fn=lambda h, yb: torch.mean((h - yb) ** 2),
        params={"weight": weight, "bias": bias},
        update=torch_loop.OptimizerUpdate(opt),
    )
    run = torch_loop.run(program, torch_loop.full_batch(x, y), steps)
    return np.concatenate([run.params["weight"].reshape(steps, -1), run.params["bias"]], axis=1)


def torch_stream(
    optimizer: str, kwargs: dict[str, Any], params0: np.ndarray, grads: np.ndarray, dtype
) -> np.ndarray:
    """torch's parameters after each update when `grads[t]` is the gradient of step t.

    The loss of step t is `sum(param * grads[t])`, whose gradient is `grads[t]` exactly
    (autograd multiplies it by the sum's gradient, 1).
    """
    tdtype = TORCH_DTYPES[np.dtype(dtype)]
    param = torch.tensor(params0, dtype=tdtype, requires_grad=True)
    opt = getattr(torch.optim, optimizer)([param], **kwargs)
    stream = torch.tensor(grads, dtype=tdtype)
    program = torch_loop.Program(
        forward=lambda _: param,
        loss_fn=lambda p, g: torch.sum(p * g),
        params={"param": param},
        update=torch_loop.OptimizerUpdate(opt),
    )
    run = torch_loop.run(program, lambda epoch: ((None, stream[epoch]),), len(grads))
    return run.params["param"]


def torch_lrs(scheduler: str, kwargs: dict[str, Any], base_lr: float, epochs: int) -> list:
    """`optimizer.param_groups[0]["lr"]` during each epoch of a loop that steps per epoch."""
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=base_lr)
    sched = getattr(torch.optim.lr_scheduler, scheduler)(opt, **kwargs)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradients: leaves the parameter alone, keeps torch's order check quiet
        sched.step()
    return lrs


def make_torch_optimizer(optimizer: str, kwargs: dict[str, Any]) -> torch.optim.Optimizer:
    return getattr(torch.optim, optimizer)([torch.zeros(1, requires_grad=True)], **kwargs)


def make_torch_scheduler(scheduler: str, kwargs: dict[str, Any]) -> Any:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return getattr(torch.optim.lr_scheduler, scheduler)(opt, **kwargs)
