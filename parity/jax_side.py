"""The jax side: run a scenario with jaxreg's public API and record its trajectory.

`jr.objective(predict, loss, **loss_kwargs)`, `jr.optim.<optimizer>(**torch's kwargs)`,
`jr.schedules.<Schedule>(**kwargs)` (each from its `parity.vocab` row), trained by
`parity.programs.jax_loop.run`: one `jr.fit` per run (two for a program that continues at
another learning rate), or for `Scenario.jax_loop == "make_step"` a Python loop over
`jr.make_step` (the port of a hand-written torch loop). Mini-batches replay the torch
DataLoader's recorded row order. Nothing here reads a torch number except the shared
starting point (`Problem`: data, initial parameters, batch order).

The run is inside `parity.precision.for_scenario(scenario.dtype)`: JAX's x64 mode is on
for a float64 scenario and off for a float32 one, and the caller's setting is back after.

Shapes are jaxreg's explicit ones: x (n, in) and targets (n, out). Where the torch program
uses (n,) vectors (`torch.mv`'s targets, the Celsius tutorial's x and y), they become
(n, 1) columns here (`jax_shapes`); the parameters are converted to `jr.linear.Params` and
back by `parity.forms` (reshapes only).
"""

from __future__ import annotations

import inspect
import time

import jax.numpy as jnp
import numpy as np

import jaxreg as jr
from parity import lessons, precision, vocab
from parity.forms import FORMS
from parity.programs import jax_loop
from parity.scenario import NO_PERTURBATION, Perturbation, Problem, Scenario, Trajectory


def jax_shapes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) vectors as (n, 1) columns; (n, k) arrays and (n,) integer class indices
    unchanged. A reshape: same numbers."""
    column = y.ndim == 1 and y.dtype.kind == "f"
    return (x.reshape(-1, 1) if x.ndim == 1 else x), (y.reshape(-1, 1) if column else y)


def loss_fn(scenario: Scenario, perturb: Perturbation = NO_PERTURBATION):
    """`jr.objective(predict, loss, **loss_kwargs)` for the scenario, perturbed if asked."""
    predict = vocab.MODELS[scenario.model].jax()
    loss = vocab.LOSSES[scenario.loss].jax()
    if perturb.pred_offset:
        predict = _offset(predict, perturb.pred_offset)
    if perturb.loss_scale != 1.0:
        loss = _scaled(loss, perturb.loss_scale)
    return jr.objective(predict, loss, **dict(scenario.loss_kwargs))


def _offset(predict, offset: float):
    def perturbed_predict(params, x):
        pred = predict(params, x)
        # On the first output only: a softmax ignores a shift of every logit alike.
        if pred.ndim == 0 or pred.shape[-1] == 1:
            return pred + offset
        first = jnp.arange(pred.shape[-1]) == 0
        return pred + jnp.where(first, offset, 0).astype(pred.dtype).reshape(
            (1,) * (pred.ndim - 1) + (-1,)
        )

    return perturbed_predict


def _scaled(loss, scale: float):
    def perturbed_loss(pred, target, **kw):
        return scale * loss(pred, target, **kw)

    return perturbed_loss


def learning_rate(scenario: Scenario, lr: float | None = None, perturb=NO_PERTURBATION) -> float:
    """The run's (or phase's) learning rate as a Python float, as torch holds it."""
    if lr is None:
        lr = scenario.opts.get("lr", _default_lr(scenario.optimizer))
    return lr * perturb.lr_factor


def optimizer(scenario: Scenario, lr: float | None = None, perturb=NO_PERTURBATION):
    """`jr.optim.<optimizer>(**opt_kwargs)` (hand-written SGD updates: `jr.optim.sgd(lr)`)."""
    kwargs = {**scenario.opts, "lr": learning_rate(scenario, lr, perturb)}
    return vocab.OPTIMIZERS[scenario.optimizer].jax()(**kwargs)


def _default_lr(name: str) -> float:
    return inspect.signature(vocab.OPTIMIZERS[name].jax()).parameters["lr"].default


# Schedule arguments that are learning rates themselves (not factors of the optimizer's):
# CyclicLR's and OneCycleLR's lrs replace the optimizer's, so a learning-rate
# perturbation scales them too.
SCHEDULE_LRS = ("base_lr", "max_lr", "eta_min", "min_lr")


def schedule(scenario: Scenario, perturb: Perturbation = NO_PERTURBATION):
    if scenario.schedule is None:
        return None
    kwargs = dict(scenario.schedule_kwargs)
    for key in SCHEDULE_LRS:
        if key in kwargs:
            kwargs[key] = kwargs[key] * perturb.lr_factor
    return vocab.SCHEDULES[scenario.schedule].jax()(**kwargs)


def run(
    scenario: Scenario, problem: Problem, *, perturb: Perturbation = NO_PERTURBATION
) -> Trajectory:
    """Train `scenario` with jaxreg from `problem`; the trajectory, by torch's names/shapes."""
    with precision.for_scenario(scenario.dtype):
        return _run(scenario, problem, perturb)


def _run(scenario: Scenario, problem: Problem, perturb: Perturbation) -> Trajectory:
    start = time.perf_counter()
    if scenario.lesson is not None:
        values, grads = lessons.JAX[scenario.lesson](problem, scenario.epochs)
        values = np.asarray(values) * perturb.loss_scale
        return Trajectory(values, grads, time.perf_counter() - start)
    form = FORMS[scenario.form]
    params = form.to_params(problem.params)
    params = type(params)(*(None if a is None else jnp.asarray(a) for a in params))
    x, y = jax_shapes(problem.data.x, problem.data.y)
    objective = loss_fn(scenario, perturb)
    losses, history = [], []
    for epochs, lr in scenario.phases or ((scenario.epochs, None),):
        lr = learning_rate(scenario, lr, perturb)
        params, run_losses, run_history = jax_loop.run(
            objective,
            optimizer(scenario, lr),
            params,
            x,
            y,
            epochs=epochs,
            batch_size=scenario.batch_size,
            shuffle=scenario.shuffle,
            order=problem.order,
            drop_last=scenario.drop_last,
            schedule=schedule(scenario, perturb),
            base_lr=lr,
            loop=scenario.jax_loop,
        )
        losses.append(np.asarray(run_losses))
        history.append(form.from_params(run_history))
    names = problem.params.keys()  # the torch program's order
    return Trajectory(
        np.concatenate(losses),
        {k: np.concatenate([h[k] for h in history]) for k in names},
        time.perf_counter() - start,
    )
