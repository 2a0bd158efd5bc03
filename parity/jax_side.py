"""The jax side: run a scenario with jaxreg's public API and record its trajectory.

`jr.objective(predict, loss, **loss_kwargs)`, `jr.optim.<optimizer>(**torch's kwargs)`,
`jr.schedules.<Schedule>(**kwargs)`, and one `jr.fit(...)` per run (two for a program that
continues at another learning rate); or, for `Scenario.jax_loop == "make_step"`, a Python
loop over `jr.make_step` (the port of a hand-written torch loop). Mini-batches replay the
torch DataLoader's recorded row order (`fit(order=...)`, or the same rows by hand).
Nothing here reads a torch number except the shared starting point (`Problem`: data,
initial parameters, batch order).

Shapes are jaxreg's explicit ones: x (n, in) and targets (n, out). Where the torch program
uses (n,) vectors (`torch.mv`'s targets, the Celsius tutorial's x and y), they become
(n, 1) columns here (`jax_shapes`); the parameters are converted to `jr.linear.Params` and
back by `parity.forms` (reshapes only).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxreg as jr
from parity import lessons
from parity.forms import FORMS
from parity.scenario import NO_PERTURBATION, Perturbation, Problem, Scenario, Trajectory

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


def loss_fn(scenario: Scenario, perturb: Perturbation = NO_PERTURBATION):
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


def learning_rate(scenario: Scenario, lr: float | None = None, perturb=NO_PERTURBATION) -> float:
    """The run's (or phase's) learning rate as a Python float, as torch holds it."""
    if lr is None:
        lr = scenario.opts.get("lr", _default_lr(scenario.optimizer))
    return lr * perturb.lr_factor


def optimizer(scenario: Scenario, lr: float | None = None, perturb=NO_PERTURBATION):
    """`jr.optim.<optimizer>(**opt_kwargs)` (hand-written SGD updates: `jr.optim.sgd(lr)`)."""
    kwargs = {**scenario.opts, "lr": learning_rate(scenario, lr, perturb)}
    return getattr(jr.optim, scenario.optimizer)(**kwargs)


def _default_lr(name: str) -> float:
    import inspect

    return inspect.signature(getattr(jr.optim, name)).parameters["lr"].default


def schedule(scenario: Scenario):
    if scenario.schedule is None:
        return None
    return getattr(jr.schedules, scenario.schedule)(**dict(scenario.schedule_kwargs))


def run(
    scenario: Scenario, problem: Problem, *, perturb: Perturbation = NO_PERTURBATION
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
    train = _fit if scenario.jax_loop == "fit" else _step_loop
    losses, history = [], []
    for epochs, lr in scenario.phases or ((scenario.epochs, None),):
        lr = learning_rate(scenario, lr, perturb)
        params, run_losses, run_history = train(
            scenario, objective, lr, params, x, y, problem, epochs
        )
        losses.append(np.asarray(run_losses))
        history.append(form.from_params(run_history))
    names = problem.params.keys()  # the torch program's order
    return Trajectory(
        np.concatenate(losses),
        {k: np.concatenate([h[k] for h in history]) for k in names},
        time.perf_counter() - start,
    )


def _fit(scenario: Scenario, objective, lr: float, params, x, y, problem: Problem, epochs: int):
    """The run as one `jr.fit`: (params, losses (steps,), history)."""
    res = jr.fit(
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
        schedule=schedule(scenario),
        check_finite=False,  # the comparison reports divergence; torch does not raise
    )
    return res.params, res.losses, res.history


def _step_loop(
    scenario: Scenario, objective, lr: float, params, x, y, problem: Problem, epochs: int
):
    """The run as a Python loop over `jr.make_step`, the way a port of a torch loop reads:
    the same batches as the DataLoader, `jr.optim.set_lr` where torch's scheduler steps."""
    tx = optimizer(scenario, lr)
    step = jr.make_step(objective, tx)
    state = tx.init(params)
    sched = schedule(scenario)
    lrs = None if sched is None else sched.lrs(lr, epochs)
    n = x.shape[0]
    size = scenario.batch_size or n
    stop = n - n % size if scenario.drop_last else n
    losses, history = [], []
    for epoch in range(epochs):
        if lrs is not None:
            state = jr.optim.set_lr(state, lrs[epoch])
        rows = problem.order[epoch] if problem.order is not None else np.arange(n)
        for start in range(0, stop, size):
            idx = rows[start : start + size]
            xb, yb = (x, y) if size == n else (x[idx], y[idx])
            params, state, loss = step(params, state, xb, yb)
            losses.append(float(loss))
            history.append(params)
    stacked = jax.tree.map(lambda *a: np.stack([np.asarray(v) for v in a]), *history)
    return params, np.asarray(losses), stacked
