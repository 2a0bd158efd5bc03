"""The torch side: run a scenario as the tutorial's torch program and record its trajectory.

The program is the tutorials' loop, `zero_grad / loss.backward() / step`
(`parity.programs.torch_loop`), with the update written the way the scenario says
(`optimizer.step()`, `p.data = p.data - lr * p.grad.data`, or `with torch.no_grad(): p -=
p.grad * lr`), the prediction written in the scenario's form (`nn.Linear`, an `nn.Module`,
`x * W + b`, `torch.mv(X, w)`, `X @ What`, `x * w.t() + b`) and the loss written the way
the tutorial writes it (`TORCH_LOSSES`). Optimizers, losses, links and schedulers come
from their `parity.vocab` rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from parity import lessons, vocab
from parity.programs import torch_loop
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


def _module_loss(name: str) -> Callable:
    def loss(h, y, **kwargs):
        return getattr(nn, name)(**kwargs)(h, y)

    return loss


# The tutorials' own ways of writing a loss: expression -> (the jaxreg loss it equals,
# torch function (pred, target, **loss_kwargs)). `TORCH_LOSSES` adds every vocab row's
# `F.<function>` and `nn.<Module>()`.
TUTORIAL_LOSSES: dict[str, tuple[str, Callable]] = {
    "nn.MSELoss()(y_pred.view_as(y), y)": ("mse", _view_as),
    "torch.mean((h - y) ** 2)": ("mse", _sq_mean),
    "torch.sum((y - h) ** 2)": ("sse", _sq_sum),
    "(d * d).sum() / d.numel()": ("mse", _sq_numel),
    "-torch.mean(y * log(h) + (1 - y) * log(1 - h))": ("bce", _bce_hand),
}
TORCH_LOSSES: dict[str, tuple[str, Callable]] = {
    **{row.torch_expr: (row.name, row.torch_fn()) for row in vocab.LOSSES.values()},
    **{
        f"nn.{row.torch_module}()": (row.name, _module_loss(row.torch_module))
        for row in vocab.LOSSES.values()
        if row.reduction is None
    },
    **TUTORIAL_LOSSES,
}


def torch_loss_name(scenario: Scenario) -> str:
    """The torch expression of the scenario's loss (default: the `torch.nn.functional` one)."""
    name = scenario.torch_loss or vocab.LOSSES[scenario.loss].torch_expr
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


def _batches(scenario: Scenario, problem: Problem, x, y) -> torch_loop.Batches:
    """`epoch -> (x_batch, y_batch)s`, every DataLoader batch checked against `problem.order`."""
    if scenario.batch_size is None:
        return torch_loop.full_batch(x, y)
    loader = torch_loop.data_loader(
        x,
        y,
        batch_size=scenario.batch_size,
        shuffle=scenario.shuffle,
        seed=scenario.shuffle_seed,
        drop_last=scenario.drop_last,
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


def _update(scenario: Scenario, model, named: dict[str, torch.Tensor]):
    """The update the scenario writes, and the schedulers stepped after each epoch."""
    if scenario.update != "optim":
        cls = torch_loop.DataUpdate if scenario.update == "data" else torch_loop.NoGradUpdate
        return cls(named.values(), scenario.opts.get("lr")), ()
    params = list(model.parameters()) if isinstance(model, nn.Module) else list(named.values())
    opt = vocab.OPTIMIZERS[scenario.optimizer].torch_class()(params, **scenario.opts)
    schedulers = ()
    if scenario.schedule is not None:
        row = vocab.SCHEDULES[scenario.schedule]
        schedulers = (row.torch_scheduler(opt, dict(scenario.schedule_kwargs)),)
    return torch_loop.OptimizerUpdate(opt), schedulers


def run(scenario: Scenario, problem: Problem) -> Trajectory:
    """Train `scenario` with torch from `problem`; the trajectory of losses and parameters."""
    if scenario.lesson is not None:
        start = time.perf_counter()
        with torch_loop.single_threaded():
            losses, params = lessons.TORCH[scenario.lesson](problem, scenario.epochs)
        return Trajectory(np.asarray(losses), params, time.perf_counter() - start)
    x, y = _tensor(problem.data.x), _tensor(problem.data.y)
    model, named = build_model(scenario, problem.params)
    loss_name = torch_loss_name(scenario)
    loss_fn, loss_kwargs = TORCH_LOSSES[loss_name][1], dict(scenario.loss_kwargs)
    link = vocab.MODELS[scenario.model].torch_fn()
    meta: dict = {"torch_loss": loss_name}

    def forward(xb):
        pred = link(model(xb))
        meta.setdefault("torch_pred_shape", tuple(pred.shape))
        return pred

    update, schedulers = _update(scenario, model, named)
    per_batch = schedulers and vocab.SCHEDULES[scenario.schedule].jax().interval == "batch"
    program = torch_loop.Program(
        forward,
        lambda h, t: loss_fn(h, t, **loss_kwargs),
        named,
        update,
        () if per_batch else schedulers,
        schedulers if per_batch else (),  # CyclicLR, OneCycleLR: stepped after every batch
    )
    lrs = None
    if scenario.phases:
        lrs = [lr for epochs, lr in scenario.phases for _ in range(epochs)]
    batches = _batches(scenario, problem, x, y)
    return torch_loop.run(program, batches, scenario.total_epochs, lrs=lrs, meta=meta)
