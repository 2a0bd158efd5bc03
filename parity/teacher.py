"""Teacher forcing: every jax step started from torch's parameters and optimizer state.

A free run compares two trajectories that each feed on their own past, so a rounding
difference at step 0 can grow ~3x per step (RMSprop on sigmoid + BCE) until a correct
port looks wrong; and a short run can hide a wrong one. Teacher forcing takes torch's
parameters, gradients and optimizer state *before* each update (`Recorder`, called by
`parity.programs.torch_loop` after `loss.backward()`) and computes the jax side of that
one step from them, component by component, each from torch's inputs:

    predictions   loss_fn.predict(torch params, x)        vs the torch model's output
    loss          loss_fn(torch params, x, y)              vs loss.item()
    gradients     jr.value_and_grad(loss_fn)(...)          vs p.grad
    update        tx.update(torch grads, torch state, torch params)
                                                           vs new param - old param,
                                                              and the new state's buffers

So each component is judged on its own inputs: a wrong loss reduction shows in the loss,
a wrong learning rate in the update, whatever the other components do. torch's
`optimizer.state` (momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq, square_avg,
grad_avg, sum, step) becomes the jaxreg state of the same family field by field (the
inner NamedTuples use torch's names); the hyperparameters stay the port's own, with the
learning rate the port's schedule gives that step. A user's step function
`(params, opt_state, x, y) -> (params, opt_state, loss)` is one component ("step": the
loss, the update and the new state) from torch's parameters and optimizer state, put into
the port's own state: a jaxreg one, or optax's / a flax `TrainState`'s
(`parity.optax_state`). Step 0 starts from the port's own initial optax state, so a port
that initialises its buffers differently from torch is caught there.

Steps are numbered from 0: step k is the (k+1)-th update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jaxreg as jr
from parity import optax_state, preflight, state_dict, step_diagnosis
from parity.compare import Deviation, TeacherForced
from parity.names import NameMap
from parity.tolerances import Tolerance

GROUPS = ("predictions", "loss", "gradients", "optimizer update", "step")


@dataclasses.dataclass(frozen=True)
class TorchStep:
    """What torch had before one update, and what it computed up to `loss.backward()`."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    state: dict[str, dict[str, Any]]
    lr: float
    x: np.ndarray
    y: np.ndarray
    pred: np.ndarray
    loss: float


def _numpy(t: Any) -> Any:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy().copy()
    return t


class Recorder:
    """`torch_loop.records(before_step=...)`: a `TorchStep` per update, and the state after."""

    def __init__(self, optimizer: torch.optim.Optimizer, named: Mapping[str, torch.Tensor]):
        self.optimizer, self.named = optimizer, dict(named)
        self.steps: list[TorchStep] = []

    def state(self) -> dict[str, dict[str, Any]]:
        """`{param name: {key: array or number}}`, a copy of `optimizer.state`."""
        return {
            k: {key: _numpy(v) for key, v in self.optimizer.state.get(p, {}).items()}
            for k, p in self.named.items()
        }

    def __call__(self, xb, yb, pred, loss) -> None:
        self.steps.append(
            TorchStep(
                {k: _numpy(p) for k, p in self.named.items()},
                {k: _numpy(p.grad) for k, p in self.named.items()},
                self.state(),
                float(self.optimizer.param_groups[0]["lr"]),
                _numpy(xb),
                _numpy(yb),
                _numpy(pred),
                float(loss.item()),
            )
        )


def state_from_torch(
    template: Any, torch_state: Mapping[str, Mapping[str, Any]], names: NameMap, step: int, dtype
) -> Any:
    """The jaxreg `OptState` of `template`'s family holding torch's buffers.

    `parity.state_dict.buffers_from_torch`: each field of the inner NamedTuple is torch's
    key of the same name, cast to the template's dtype (the port's, `dtype`); a buffer
    torch has not made (before its first step, or for an option the port lacks) keeps
    the template's. `step` is torch's `state["step"]`, or `step` (updates so far) where
    torch keeps none (SGD).
    """
    return state_dict.buffers_from_torch(template, torch_state, names, step=step, strict=False)


def state_to_torch(state: Any, names: NameMap) -> dict[str, dict[str, np.ndarray]]:
    """`{field: {torch name: array}}` of a jaxreg state's buffers (not `step`)."""
    return {f: v for f, v in state_dict.buffers_to_torch(state, names).items() if f != "step"}


@dataclasses.dataclass(frozen=True)
class JaxSide:
    """The port, as teacher forcing calls it.

    Attributes:
      loss_fn, tx: `jr.objective(...)` (or any `(params, x, y) -> scalar`) and the
        transformation; or None with `step_fn`.
      step_fn: the user's `(params, opt_state, x, y) -> (params, opt_state, loss)`.
      template: the port's initial jaxreg `OptState` (its hyperparameters are used), or
        None where it is not one.
      lrs: (steps,) the learning rate the port uses at each step, or None.
      fill: for any other state (optax's, a flax `TrainState`): `(torch_state, step,
        params) -> the port's state holding torch's` (`parity.optax_state.filler`), or
        None where torch's state cannot be put into it (the optimizer is then not
        teacher-forced).
      read: `(state) -> {torch key: {torch name: array}}`, the buffers of such a state
        (`parity.optax_state.read`), to compare with torch's after the update.
    """

    loss_fn: Any
    tx: Any
    step_fn: Callable | None
    template: Any
    lrs: np.ndarray | None
    fill: Callable | None = None
    read: Callable | None = None


def _rel_over(abs_dev: np.ndarray, scale: float) -> np.ndarray:
    return abs_dev / (scale if scale > 0 else 1.0)


def _dev(t: np.ndarray, j: np.ndarray, allowance: np.ndarray | float = 0.0) -> float:
    t = np.asarray(t, np.float64).reshape(-1)
    j = np.asarray(j, np.float64).reshape(-1)
    if not t.size:
        return 0.0
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(j))):
        return float("inf")
    allowance = np.asarray(allowance, np.float64).reshape(-1) if np.ndim(allowance) else allowance
    return float(np.max(np.maximum(np.abs(t - j) - allowance, 0.0)))


def run(
    steps: list[TorchStep],
    after: list[dict[str, np.ndarray]],
    final_state: dict[str, dict[str, Any]],
    jax_side: JaxSide,
    names: NameMap,
    jax_shapes: tuple[tuple[int, ...], tuple[int, ...]],
    dtype: np.dtype,
    tolerance: Tolerance,
    torch_optimizer: Any = None,
    torch_loss_fn: Any = None,
) -> TeacherForced:
    """Every step from torch's start; the one-step deviations of every component.

    Args:
      steps: torch's `TorchStep`s; after: torch's parameters after each update;
        final_state: torch's optimizer state after the last update.
      jax_shapes: the trailing shapes of the jax x and y (a batch is reshaped to them).
      torch_optimizer, torch_loss_fn: for the diagnosis (their settings are compared with
        the port's where a component differs).
    """
    states = [s.state for s in steps[1:]] + [final_state]
    quantities: dict[str, list[float]] = {}
    values: dict[str, list[float]] = {}  # torch's magnitude of each quantity, per step
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    lr_pairs = []

    def add(group, name, t, j, allowance=0.0):
        if name not in quantities:
            quantities[name], values[name] = [], []
            groups[group].append(name)
        quantities[name].append(_dev(t, j, allowance))
        finite = np.abs(np.asarray(t, np.float64))
        finite = finite[np.isfinite(finite)]
        values[name].append(float(finite.max()) if finite.size else 0.0)

    tx, loss_fn = jax_side.tx, jax_side.loss_fn
    value_and_grad = jax.jit(jr.value_and_grad(loss_fn)) if loss_fn is not None else None
    predict = getattr(loss_fn, "predict", None) if isinstance(loss_fn, jr.Objective) else None
    predict = jax.jit(predict) if predict is not None else None
    update = jax.jit(lambda g, s, p: tx.update(g, s, p)) if tx is not None else None
    step_fn = jax_side.step_fn
    for k, (ts, t_after, t_state) in enumerate(zip(steps, after, states, strict=True)):
        params = jax.tree.map(jnp.asarray, names.to_jax(ts.params, dtype))
        xj = np.asarray(ts.x).reshape((ts.x.shape[0], *jax_shapes[0]))
        yj = np.asarray(ts.y).reshape((ts.y.shape[0], *jax_shapes[1]))
        state = None
        if jax_side.template is not None:
            template = _template_at(jax_side, k)
            lr_pairs.append((ts.lr, float(np.asarray(template.hyperparams["lr"]))))
            state = state_from_torch(template, ts.state, names, k, dtype)
        elif jax_side.fill is not None:
            # step 0 starts from the port's own initial state (torch's is its initial one):
            # torch's buffers put in there would hide a port that initialises them
            # differently (optax.adagrad's initial_accumulator_value=0.1 against torch's 0)
            state = jax_side.fill(ts.state if k else {n: {} for n in ts.state}, k, params)
        t_update = {n: np.asarray(t_after[n], np.float64) - ts.params[n] for n in t_after}
        ulp = {n: np.spacing(np.abs(t_after[n]).astype(dtype)) for n in t_after}
        if step_fn is not None:
            new_params, new_state, loss = step_fn(params, state, xj, yj)
            add("step", "loss", ts.loss, np.asarray(loss))
            # the update (new - old parameters), judged on the updates' scale as the
            # optimizer update is below: a wrong weight decay moves a parameter by 1e-4 of
            # itself, a tenth of the float32 one-step bound on the parameters' scale
            for n, v in names.to_torch(new_params).items():
                j_update = np.asarray(v, np.float64) - ts.params[n]
                add("step", f"update[{n}]", t_update[n], j_update, ulp[n])
            if state is not None:
                _add_state(add, "step", _buffers(jax_side, new_state, names), t_state)
            continue
        if predict is not None:
            add(
                "predictions",
                "predictions",
                ts.pred,
                np.asarray(predict(params, xj)).reshape(ts.pred.shape),
            )
        loss, grads = value_and_grad(params, xj, yj)
        add("loss", "loss", ts.loss, np.asarray(loss))
        for n, g in names.to_torch(grads).items():
            add("gradients", f"gradient[{n}]", ts.grads[n], g)
        if state is None:
            continue
        t_grads = jax.tree.map(jnp.asarray, names.to_jax(ts.grads, dtype))
        updates, new_state = update(t_grads, state, params)
        for n, u in names.to_torch(updates).items():
            add("optimizer update", f"update[{n}]", t_update[n], u, ulp[n])
        _add_state(add, "optimizer update", _buffers(jax_side, new_state, names), t_state)

    # One scale per kind of quantity (every gradient, every update, each state field): a
    # sum's rounding is relative to the magnitude of its terms, so a bias gradient that
    # cancels to ~0 all run is judged against the gradients' magnitude, not its own.
    kinds: dict[str, float] = {}
    for name, vals in values.items():
        kind = name.split("[")[0]
        kinds[kind] = max(kinds.get(kind, 0.0), max(vals, default=0.0))
    deviations = {}
    for name, devs in quantities.items():
        deviations[name] = Deviation(name, np.asarray(devs), kinds[name.split("[")[0]])
    result = TeacherForced(
        deviations, {g: tuple(v) for g, v in groups.items() if v}, tolerance, "", tuple(lr_pairs)
    )
    first = result.first_failing_step
    if first is None:
        return result
    why = diagnose(
        result,
        first,
        steps[first],
        jax_side,
        names,
        dtype,
        jax_shapes,
        torch_optimizer,
        torch_loss_fn,
        t_after=after[first],
        t_state=states[first],
    )
    return dataclasses.replace(result, diagnosis=why)


def _template_at(jax_side: JaxSide, k: int) -> Any:
    """The port's jaxreg state template with the learning rate its schedule gives step `k`."""
    template = jax_side.template
    lr = None if jax_side.lrs is None else jax_side.lrs[k]
    if lr is not None:  # an lr, or (lr, momentum) of a schedule that cycles it
        template = jr.schedules.apply(template, np.asarray(lr, template.hyperparams["lr"].dtype))
    return template


def rerun(
    k: int, ts: TorchStep, jax_side: JaxSide, names: NameMap, dtype, jax_shapes
) -> step_diagnosis.JaxStep:
    """The port's step `k` again from torch's parameters and state (for the diagnosis)."""
    params = jax.tree.map(jnp.asarray, names.to_jax(ts.params, dtype))
    xj = np.asarray(ts.x).reshape((ts.x.shape[0], *jax_shapes[0]))
    yj = np.asarray(ts.y).reshape((ts.y.shape[0], *jax_shapes[1]))
    if jax_side.template is not None:
        state = state_from_torch(_template_at(jax_side, k), ts.state, names, k, dtype)
    else:
        state = jax_side.fill(ts.state if k else {n: {} for n in ts.state}, k, params)
    if jax_side.step_fn is not None:
        new_params, new_state, loss = jax_side.step_fn(params, state, xj, yj)
        before = state
    else:
        loss = jax_side.loss_fn(params, xj, yj)
        t_grads = jax.tree.map(jnp.asarray, names.to_jax(ts.grads, dtype))
        updates, new_state = jax_side.tx.update(t_grads, state, params)
        new_params, before = jax.tree.map(jnp.add, params, updates), state
    return step_diagnosis.JaxStep(
        float(np.asarray(loss)),
        names.to_torch(new_params),
        _buffers(jax_side, before, names),
        _buffers(jax_side, new_state, names),
        optax_state.hyperparams(state),
    )


def _buffers(jax_side: JaxSide, state: Any, names: NameMap) -> dict[str, dict[str, Any]]:
    """`{torch key: {torch name: array}}` of a state the port returned."""
    if jr.optim.is_optimizer_state(state):
        return state_to_torch(state, names)
    return jax_side.read(state) if jax_side.read is not None else {}


def _add_state(add, group, buffers, t_state) -> None:
    for field, arrays in buffers.items():
        for n, v in arrays.items():
            if field in t_state.get(n, {}):
                add(group, f"state.{field}[{n}]", t_state[n][field], v)


def _ratio(t: Any, j: Any) -> float | None:
    """jax / torch where that ratio is one number for every element (to 1e-6), else None."""
    t = np.asarray(t, np.float64).reshape(-1)
    j = np.asarray(j, np.float64).reshape(-1)
    ok = np.abs(t) > 0
    if not ok.any():
        return None
    r = j[ok] / t[ok]
    return float(r[0]) if np.all(np.abs(r - r[0]) <= 1e-6 * abs(r[0])) else None


def diagnose(
    result: TeacherForced,
    k: int,
    ts: TorchStep,
    jax_side: JaxSide,
    names: NameMap,
    dtype,
    jax_shapes,
    torch_optimizer,
    torch_loss_fn,
    t_after: Mapping[str, np.ndarray] | None = None,
    t_state: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """What differs at step `k`: the first component over tolerance, and its likely cause.

    `t_after`, `t_state`: torch's parameters and optimizer state after step `k` (for the
    causes inside an optimizer step: `parity.step_diagnosis`)."""
    tol = result.tolerance.rtol
    for group, members in result.groups.items():
        over = [result.deviations[m] for m in members if result.deviations[m].rel_by_step[k] > tol]
        if not over:
            continue
        d = max(over, key=lambda d: d.rel_by_step[k])
        agree = list(result.groups)[: list(result.groups).index(group)]
        head = (
            f"the {group} differ{'' if group in ('predictions', 'gradients') else 's'} "
            f"({d.name}: rel deviation {d.rel_by_step[k]:.3g}, tolerance {tol:.3g})"
        )
        if agree:
            head += f", while the {', '.join(agree)} agree"
        if not np.isfinite(d.abs_by_step[k]):
            return head + "; NaN or inf there (a side diverged)"
        hint = _hint(
            group,
            d,
            k,
            ts,
            jax_side,
            names,
            dtype,
            jax_shapes,
            torch_optimizer,
            torch_loss_fn,
            result,
        )
        if (
            group in ("optimizer update", "step")
            and t_after is not None
            and (jax_side.template is not None or jax_side.fill is not None)
        ):
            done = rerun(k, ts, jax_side, names, dtype, jax_shapes)
            more = step_diagnosis.causes(
                d.name, done, ts, t_after, t_state, torch_optimizer, torch_loss_fn, tol
            )
            generic = hint.startswith("same gradients and optimizer state in")
            hint = "; ".join([*more, *([hint] if hint and not (more and generic) else [])])
        return head + (f": {hint}" if hint else "")
    return ""


def _hint(
    group, d, k, ts, jax_side, names, dtype, jax_shapes, torch_optimizer, torch_loss_fn, result
) -> str:
    params = names.to_jax(ts.params, dtype)
    xj = np.asarray(ts.x).reshape((ts.x.shape[0], *jax_shapes[0]))
    yj = np.asarray(ts.y).reshape((ts.y.shape[0], *jax_shapes[1]))
    loss_fn = jax_side.loss_fn
    if group == "predictions":
        pred = np.asarray(loss_fn.predict(params, xj)).reshape(ts.pred.shape)
        for n in names.torch_names:
            if np.ndim(ts.params[n]) == 2 and ts.params[n].shape[0] == ts.params[n].shape[1]:
                flipped = dict(ts.params)
                flipped[n] = ts.params[n].T
                alt = np.asarray(loss_fn.predict(names.to_jax(flipped, dtype), xj))
                if _dev(ts.pred, alt.reshape(ts.pred.shape)) <= 1e-6 * max(
                    1.0, np.abs(ts.pred).max()
                ):
                    return (
                        f"they are torch's with {n} transposed: the port reads {n} in the "
                        "other layout (torch's nn.Linear weight is (out, in), "
                        "x @ weight.T)"
                    )
        diff = np.asarray(pred, np.float64) - ts.pred
        if np.allclose(diff, diff.reshape(-1)[0], rtol=1e-6, atol=0):
            return (
                f"jax's predictions are torch's {diff.reshape(-1)[0]:+.6g} everywhere: a "
                "bias (intercept) the port adds differently or not at all"
            )
        return "the port's model computes something else from the same parameters"
    if group == "loss":
        loss = float(np.asarray(loss_fn(params, xj, yj)))
        r = loss / ts.loss if ts.loss else None
        n = ts.y.size
        cause = ""
        if r is not None and np.isclose(r, n, rtol=1e-6):
            cause = (
                f"jax's loss is {n} x torch's (the batch's element count): a sum where "
                "torch takes the mean (reduction='sum' against 'mean')"
            )
        elif r is not None and np.isclose(r, 1 / n, rtol=1e-6):
            cause = (
                f"jax's loss is torch's / {n} (the batch's element count): a mean where "
                "torch takes the sum (reduction='mean' against 'sum')"
            )
        elif r is not None:
            cause = f"jax's loss is {r:.6g} x torch's"
        try:
            preflight.check_loss(torch_loss_fn, loss_fn)
        except preflight.SettingsError as e:
            cause += ("; " if cause else "") + str(e).removeprefix("verify: ")
        return cause
    if group == "gradients":
        return (
            "the loss agrees but its gradient does not: the port's loss differentiates "
            "differently (a custom_jvp, a stop_gradient, a clipped or reparametrized loss)"
        )
    if group in ("optimizer update", "step"):
        causes = []
        if result.lrs and k < len(result.lrs):
            t_lr, j_lr = result.lrs[k]
            if not np.isclose(t_lr, j_lr, rtol=1e-6, atol=0):
                first_lr_diff = next(
                    i
                    for i, (a, b) in enumerate(result.lrs)
                    if not np.isclose(a, b, rtol=1e-6, atol=0)
                )
                causes.append(
                    f"the learning rate at step {k}: torch {t_lr:.6g}, jax {j_lr:.6g}"
                    + (
                        " (it agreed before: a schedule missing or different on one side)"
                        if first_lr_diff > 0
                        else ""
                    )
                )
        if (
            torch_optimizer is not None
            and jax_side.tx is not None
            and jax_side.template is not None
        ):
            try:
                preflight.check_optimizer(torch_optimizer, jax_side.tx, params)
            except preflight.SettingsError as e:
                causes.append(str(e).removeprefix("verify: "))
        if not causes and d.name.startswith("update["):
            n = d.name[len("update[") : -1]
            causes.append(
                f"same gradients and optimizer state in, another update of {n} out: "
                "the optimizer computes something else (its rule, or a "
                "hyperparameter parity cannot read)"
            )
        return "; ".join(causes)
    return ""
