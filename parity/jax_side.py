"""The jax side: run a scenario with jaxreg's public API and record its trajectory.

`jr.objective(predict, loss, **loss_kwargs)`, `jr.optim.<optimizer>(**torch's kwargs)`,
`jr.schedules.<Schedule>(**kwargs)` and one `jr.fit(...)` per run (two for a program that
continues at another learning rate). Mini-batches replay the torch DataLoader's recorded
row order with `fit(order=...)`. Nothing here reads a torch number except the shared
starting point (`Problem`: data, initial parameters, batch order).

Shapes are jaxreg's explicit ones: x (n, in) and targets (n, out). Where the torch program
uses (n,) vectors (`torch.mv`'s targets, the Celsius tutorial's x and y), they become
(n, 1) columns here (`jax_shapes`); the parameters are converted to `jr.linear.Params` and
back by `parity.forms` (reshapes only).
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

import jaxreg as jr
from parity import lessons
from parity.forms import FORMS
from parity.scenario import Perturbation, Problem, Scenario, Trajectory

# scenario.model -> (jaxreg module, function), looked up when a run starts (not at import),
# so that a test can replace `jaxreg.linear.predict` and watch the comparison fail.
PREDICT = {
    "linear": ("linear", "predict"),
    "logistic": ("logistic", "predict"),
    "logits": ("logistic", "logits"),
}


def jax_shapes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) vectors as (n, 1) columns; (n, k) arrays unchanged. A reshape: same numbers."""
    return (x.reshape(-1, 1) if x.ndim == 1 else x), (y.reshape(-1, 1) if y.ndim == 1 else y)


def loss_fn(scenario: Scenario, perturb: Perturbation = Perturbation()):
    """`jr.objective(predict, loss, **loss_kwargs)` for the scenario, perturbed if asked."""
    module, fn = PREDICT[scenario.model]
    predict = getattr(getattr(jr, module), fn)
    loss = getattr(jr.losses, scenario.loss)
    if perturb.pred_offset:
        predict = _offset(predict, perturb.pred_offset)
    if perturb.loss_scale != 1.0:
        loss = _scaled(loss, perturb.loss_scale)
    return jr.objective(predict, loss, **dict(scenario.loss_kwargs))


def _offset(predict, offset: float):
    def perturbed_predict(params, x):
        return predict(params, x) + offset

    return perturbed_predict


def _scaled(loss, scale: float):
    def perturbed_loss(pred, target, **kw):
        return scale * loss(pred, target, **kw)

    return perturbed_loss


def optimizer(scenario: Scenario, lr: float | None = None, perturb: Perturbation = Perturbation()):
    """`jr.optim.<optimizer>(**opt_kwargs)` (hand-written SGD updates: `jr.optim.sgd(lr)`)."""
    kwargs = scenario.opts
    if lr is not None:
        kwargs["lr"] = lr
    if perturb.lr_factor != 1.0:
        kwargs["lr"] = kwargs.get("lr", _default_lr(scenario.optimizer)) * perturb.lr_factor
    return getattr(jr.optim, scenario.optimizer)(**kwargs)


def _default_lr(name: str) -> float:
    import inspect

    return inspect.signature(getattr(jr.optim, name)).parameters["lr"].default


def schedule(scenario: Scenario):
    if scenario.schedule is None:
        return None
    return getattr(jr.schedules, scenario.schedule)(**dict(scenario.schedule_kwargs))


def run(
    scenario: Scenario, problem: Problem, *, perturb: Perturbation = Perturbation()
) -> Trajectory:
    """Train `scenario` with jaxreg from `problem`; the trajectory, by torch's names/shapes."""
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
        tx = optimizer(scenario, lr, perturb)
        res = jr.fit(
            objective,
            tx,
            params,
            x,
            y,
            epochs=epochs,
            batch_size=scenario.batch_size,
            shuffle=scenario.shuffle,
            order=problem.order,
            drop_last=scenario.drop_last,
            schedule=schedule(scenario),
            check_finite=False,  # the comparison reports divergence; torch does not raise
        )
        params = res.params
        losses.append(np.asarray(res.losses))
        history.append(form.from_params(res.history))
    names = problem.params.keys()  # the torch program's order
    return Trajectory(
        np.concatenate(losses),
        {k: np.concatenate([h[k] for h in history]) for k in names},
        time.perf_counter() - start,
    )
