"""The torch side: run a scenario as the tutorial's torch program and record its trajectory.

The loop is the tutorials' loop, `zero_grad / loss.backward() / step`, with the update
written the way the scenario says (`optimizer.step()`, `p.data = p.data - lr * p.grad.data`,
or `with torch.no_grad(): p -= p.grad * lr`), the prediction written in the scenario's form
(`nn.Linear`, an `nn.Module`, `x * W + b`, `torch.mv(X, w)`, `X @ What`, `x * w.t() + b`)
and the loss written the way the tutorial writes it (`TORCH_LOSSES`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from parity import lessons
from parity.scenario import Problem, Scenario, Trajectory


class ReplayError(AssertionError):
    """A torch DataLoader batch differs from the recorded order the jax side replays."""


def _sq_mean(h, y):
    return torch.mean((h - y) ** 2)


def _sq_sum(h, y):
    return torch.sum((y - h) ** 2)


def _sq_numel(h, y):  # the Celsius tutorial's loss_fn
    d = h - y
    return (d * d).sum() / d.numel()


def _bce_hand(h, y):  # the logistic tutorial's exercise
    return -torch.mean(y * torch.log(h) + (1 - y) * torch.log(1 - h))


def _view_as(h, y):
    return nn.MSELoss()(h.view_as(y), y)


# name -> (the jaxreg loss it equals, torch function (pred, target, **loss_kwargs)).
TORCH_LOSSES: dict[str, tuple[str, Callable]] = {
    "F.mse_loss": ("mse", F.mse_loss),
    "F.mse_loss(reduction='sum')": ("sse", lambda h, y: F.mse_loss(h, y, reduction="sum")),
    "F.l1_loss": ("l1", F.l1_loss),
    "F.huber_loss": ("huber", F.huber_loss),
    "F.smooth_l1_loss": ("smooth_l1", F.smooth_l1_loss),
    "F.binary_cross_entropy": ("bce", F.binary_cross_entropy),
    "F.binary_cross_entropy_with_logits": ("bce_with_logits", F.binary_cross_entropy_with_logits),
    "nn.MSELoss()": ("mse", lambda h, y: nn.MSELoss()(h, y)),
    "nn.MSELoss()(y_pred.view_as(y), y)": ("mse", _view_as),
    "torch.mean((h - y) ** 2)": ("mse", _sq_mean),
    "torch.sum((y - h) ** 2)": ("sse", _sq_sum),
    "(d * d).sum() / d.numel()": ("mse", _sq_numel),
    "-torch.mean(y * log(h) + (1 - y) * log(1 - h))": ("bce", _bce_hand),
}

# the torch expression a matrix scenario uses for each jaxreg loss
DEFAULT_TORCH_LOSS = {
    "mse": "F.mse_loss",
    "sse": "F.mse_loss(reduction='sum')",
    "l1": "F.l1_loss",
    "huber": "F.huber_loss",
    "smooth_l1": "F.smooth_l1_loss",
    "bce": "F.binary_cross_entropy",
    "bce_with_logits": "F.binary_cross_entropy_with_logits",
}

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


def torch_loss_name(scenario: Scenario) -> str:
    """The torch expression of the scenario's loss (default: the `torch.nn.functional` one)."""
    name = scenario.torch_loss or DEFAULT_TORCH_LOSS[scenario.loss]
    if TORCH_LOSSES[name][0] != scenario.loss:
        raise ValueError(
            f"{scenario.name}: torch loss {name!r} is {TORCH_LOSSES[name][0]}, not {scenario.loss}"
        )
    return name


class LinearRegressionModel(nn.Module):
    """The tutorials' `nn.Module` with an `nn.Linear` inside."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.linear(x)


def _tensor(a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).requires_grad_(requires_grad)


def build_model(scenario: Scenario, params0: dict[str, np.ndarray]):
    """(forward(x) -> prediction before the link, {name: parameter tensor}), as the form says."""
    if scenario.form in ("nn.Linear", "nn.Linear-nobias", "nn.Module"):
        out_f, in_f = params0["weight"].shape
        if scenario.form == "nn.Module":
            module = LinearRegressionModel(in_f, out_f)
            layer = module.linear
        else:
            module = layer = nn.Linear(in_f, out_f, bias="bias" in params0)
        module = module.to(torch.float64 if scenario.dtype == "float64" else torch.float32)
        with torch.no_grad():
            for name, value in params0.items():
                getattr(layer, name).copy_(torch.from_numpy(np.array(value)))
        named = {name: getattr(layer, name) for name in params0}
        return module, named
    P = {k: _tensor(v, requires_grad=True) for k, v in params0.items()}
    forward = {
        "x*W+b": lambda x: x * P["W"] + P["b"],
        "b+w*x": lambda x: P["b"] + P["w"] * x,
        "torch.mv": lambda x: torch.mv(x, P["w"]),
        "X@What": lambda x: x @ P["What"],
        "x*w.t()+b": lambda x: x * P["w"].t() + P["b"],
    }[scenario.form]
    return forward, P


def _batches(scenario: Scenario, problem: Problem, x, y):
    """A function epoch -> iterable of (x_batch, y_batch), checked against `problem.order`."""
    if scenario.batch_size is None:
        return lambda epoch: [(x, y)]
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=scenario.batch_size,
        shuffle=scenario.shuffle,
        drop_last=scenario.drop_last,
        generator=torch.Generator().manual_seed(scenario.shuffle_seed),
    )
    n, bs = x.shape[0], scenario.batch_size

    def epoch_batches(epoch):
        rows = problem.order[epoch] if problem.order is not None else np.arange(n)
        for i, (xb, yb) in enumerate(loader):
            idx = torch.from_numpy(rows[i * bs : (i + 1) * bs])
            if not (torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])):
                raise ReplayError(
                    f"{scenario.name}: epoch {epoch} batch {i} of the DataLoader is not rows "
                    f"{idx.tolist()} of the data; the recorded order would not replay it"
                )
            yield xb, yb

    return epoch_batches


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """torch on one intra-op thread for the duration (restored after).

    These programs handle at most a few thousand numbers per step; a second thread only
    adds synchronisation, and on a loaded 2-core machine a spinning OpenMP pool made a
    6000-step run 10x slower (24 s instead of 2.2 s).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(scenario: Scenario, problem: Problem) -> Trajectory:
    """Train `scenario` with torch from `problem`; the trajectory of losses and parameters."""
    with single_threaded():
        return _run(scenario, problem)


def _run(scenario: Scenario, problem: Problem) -> Trajectory:
    start = time.perf_counter()
    if scenario.lesson is not None:
        losses, params = lessons.TORCH[scenario.lesson](problem, scenario.epochs)
        return Trajectory(np.asarray(losses), params, time.perf_counter() - start)
    x, y = _tensor(problem.data.x), _tensor(problem.data.y)
    model, named = build_model(scenario, problem.params)
    loss_name = torch_loss_name(scenario)
    loss_fn = TORCH_LOSSES[loss_name][1]
    loss_kwargs = dict(scenario.loss_kwargs)
    link = torch.sigmoid if scenario.model == "logistic" else (lambda z: z)
    opt = sched = None
    if scenario.update == "optim":
        params_list = (
            list(model.parameters()) if isinstance(model, nn.Module) else list(named.values())
        )
        opt = OPTIMIZERS[scenario.optimizer](params_list, **scenario.opts)
        if scenario.schedule is not None:
            cls = getattr(torch.optim.lr_scheduler, scenario.schedule)
            sched = cls(opt, **dict(scenario.schedule_kwargs))
    phases = scenario.phases or ((scenario.epochs, scenario.opts.get("lr")),)
    batches = _batches(scenario, problem, x, y)
    losses, history = [], {k: [] for k in named}
    meta: dict = {}
    epoch = 0
    for n_epochs, lr in phases:
        if opt is not None and scenario.phases:
            for group in opt.param_groups:
                group["lr"] = lr
        for _ in range(n_epochs):
            for xb, yb in batches(epoch):
                if opt is not None:
                    opt.zero_grad()
                pred = link(model(xb))
                meta.setdefault("torch_pred_shape", tuple(pred.shape))
                loss = loss_fn(pred, yb, **loss_kwargs)
                loss.backward()
                if opt is not None:
                    opt.step()
                elif scenario.update == "data":
                    for p in named.values():
                        p.data = p.data - lr * p.grad.data
                        p.grad = None
                else:  # "no_grad"
                    with torch.no_grad():
                        for p in named.values():
                            p -= p.grad * lr
                            p.grad.zero_()
                losses.append(loss.item())
                for k, p in named.items():
                    history[k].append(p.detach().numpy().copy())
            if sched is not None:
                sched.step()
            epoch += 1
    meta["torch_loss"] = loss_name
    return Trajectory(
        np.asarray(losses),
        {k: np.stack(v) for k, v in history.items()},
        time.perf_counter() - start,
        meta,
    )
