"""`verify`: check your own torch -> jaxreg port, step by step.

    import torch, jaxreg as jr, parity

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    cmp = parity.verify(
        model, torch.nn.functional.mse_loss, opt,                     # your torch program
        jr.objective(jr.linear.predict, jr.losses.mse), jr.optim.adam(lr=0.01),   # your port
        x, y, steps=200,
    )
    print(cmp.summary()); cmp.raise_if_failed()

Before training, `parity.arguments` checks the arguments and `parity.preflight` compares
the two programs' set-up (optimizer and every hyperparameter, schedule, loss and
reduction, dtypes): a difference raises `parity.preflight.SettingsError` (a `ValueError`)
naming both values, since a short run can stay within tolerance with a wrong `eps` or
`amsgrad`.

The jax side starts from a copy of the torch model's parameters taken before training
(`parity.interop.params_from_torch`), so both sides start from the same numbers; the
torch model and optimizer are then trained in place (`parity.programs.torch_loop`), the
port by `parity.programs.jax_loop` on the same batches. float64 torch parameters turn
JAX's x64 mode on for the call (`parity.precision.at_least`); float32 ones run in the
caller's mode.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np
import torch

import jaxreg as jr
from parity import arguments, optax_state, precision, preflight, step_preflight, teacher, vocab
from parity import names as names_lib
from parity.compare import Comparison, compare
from parity.interop import params_from_torch
from parity.names import NameMap
from parity.problem import dataloader_order
from parity.programs import jax_loop, torch_loop
from parity.runner import run_scenario
from parity.scenario import Scenario, Trajectory
from parity.tolerances import Tolerance, default_tolerance, one_step


def _default_params(model: torch.nn.Module) -> Any:
    """The jax start: `jr.linear.Params` for a model that is one `nn.Linear` (or holds
    only one), else `{name: array}` of every trainable `named_parameters()` entry."""
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if len(linears) == 1 and len(trainable) == len(list(linears[0].parameters())):
        return params_from_torch(linears[0])
    return {
        n: jnp.asarray(p.detach().cpu().numpy().copy())
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def _name_map(model: torch.nn.Module, params: Any, param_names, transpose) -> NameMap:
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    return names_lib.build(
        shapes,
        params,
        names=param_names,
        transpose=transpose,
        frozen=frozen,
        auto_transpose=not isinstance(params, jr.linear.Params),
    )


def _check_start(named: dict[str, torch.Tensor], name_map: NameMap, params: Any) -> None:
    """The jax params hold the torch model's starting values (in torch's layout)."""
    ours = name_map.to_torch(params)
    for n, p in named.items():
        theirs = p.detach().cpu().numpy()
        mine = np.asarray(ours[n], theirs.dtype)
        if np.array_equal(mine, theirs):
            continue
        what = f"differs by up to {np.max(np.abs(mine - theirs)):.3g}"
        if mine.ndim == 2 and np.array_equal(mine.T, theirs):
            what = (
                "is torch's transposed (a transposed weight: torch's nn.Linear weight is (out, in))"
            )
        raise preflight.SettingsError(
            f"verify: the jax params do not start where the torch model does: {n} {what}; "
            "start both sides from the same numbers (params=None copies the model's)"
        )


def _lrs(
    jax_tx: Any, jax_schedule: Any, steps: int, epochs: int, torch_lrs: list[float]
) -> np.ndarray | None:
    """The learning rate the port uses at each step (None: the state's own, unscheduled);
    rows (lr, momentum) for a schedule that cycles the momentum (`jr.schedules.apply`).
    `ReduceLROnPlateau`'s follow the losses: teacher forcing takes torch's (`torch_lrs`),
    and the free run compares the port's own."""
    if jax_schedule is None or jax_tx is None:
        return None
    if isinstance(jax_schedule, jr.schedules.ReduceLROnPlateau):
        return np.asarray(torch_lrs)
    base = jr.optim.hyperparams_of(jax_tx).get("lr")
    if base is None:
        return None
    _, when = preflight.interval(jax_schedule)
    if when == "batch":
        return np.asarray(jax_schedule.lrs(float(base), steps))
    per_epoch = steps // epochs
    return np.repeat(np.asarray(jax_schedule.lrs(float(base), epochs)), per_epoch, axis=0)


def verify(
    torch_model: torch.nn.Module | Scenario,
    torch_loss_fn: Any = None,
    torch_optimizer: torch.optim.Optimizer | None = None,
    jax_loss_fn: Any = None,
    jax_tx: Any = None,
    x: Any = None,
    y: Any = None,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    params: Any = None,
    jax_data: tuple[Any, Any] | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    torch_scheduler: Any = None,
    jax_schedule: Any = None,
    tolerance: Tolerance | float | None = None,
    name: str = "verify",
    data_path: Any = None,
    check_settings: bool = True,
    param_names: dict[str, str] | None = None,
    transpose: Any = (),
    jax_step: Any = None,
    jax_opt_state: Any = None,
    teacher_forcing: bool = True,
    state_from_torch: Any = None,
) -> Comparison:
    """Train a torch program and its jaxreg port from the same start; compare every step.

    The torch loop is `optimizer.zero_grad(); loss = torch_loss_fn(torch_model(xb), yb);
    loss.backward(); optimizer.step()` per batch, then `torch_scheduler.step()` per epoch.
    The jax side is `jr.fit(jax_loss_fn, jax_tx, params, x, y, ...)` on the same batches.

    Args:
      torch_model: the torch model (trained in place), or a `parity.Scenario`, in which
        case the scenario is run and all other arguments but `data_path` are ignored.
      torch_loss_fn: `(prediction, target) -> scalar tensor`, e.g. `F.mse_loss`.
      torch_optimizer: built on `torch_model.parameters()`.
      jax_loss_fn: `(params, x, y) -> scalar`, e.g.
        `jr.objective(jr.linear.predict, jr.losses.mse)`.
      jax_tx: the optax transformation, e.g. `jr.optim.sgd(lr=0.1)`.
      x, y: the data (NumPy or torch, floating point), in the shapes the torch program uses.
      steps: full batch: the number of updates (>= 1). Or
      epochs: passes over the data (>= 1; with `batch_size`, required).
      params: the jax starting parameters: `jr.linear.Params` (compared with the model's one
        `nn.Linear`) or a dict keyed by the model's `named_parameters()` names. Default: a
        copy of the model's `nn.Linear`, taken before training.
      jax_data: `(x, y)` for the jax side when its shapes differ from torch's (e.g. (n, 1)
        targets where torch uses (n,)); the same numbers, reshaped.
      batch_size, shuffle, seed, drop_last: mini-batches: a torch `DataLoader(TensorDataset(x,
        y), batch_size, shuffle, generator=torch.Generator().manual_seed(seed), drop_last)`;
        the jax side replays its order with `fit(order=...)`.
      torch_scheduler, jax_schedule: an `lr_scheduler` on `torch_optimizer` and the matching
        `jr.schedules` schedule, both stepped after each epoch; or after every batch, when
        `jax_schedule` is `jr.schedules.per_batch(schedule)`.
      tolerance: a `Tolerance` or a relative tolerance (>= 0); default: `parity.tolerances`'s
        bound for the parameters' dtype and the optimizer's family.
      name: a name for the summary.
      check_settings: compare the optimizer's, schedule's and loss's settings before
        training (see `parity.preflight`). False: for a port whose transformation parity
        cannot read (an optax chain, `optax.adam`); the trajectories are still compared.
      param_names: `{torch name: jax dotted path}` where the names differ (`parity.names`;
        default: the torch name equal to the path, or the one ending in it). A jax leaf of
        reversed shape (a flax `(in, out)` kernel) is compared transposed.
      transpose: torch names whose square jax leaf holds the tensor transposed.
      jax_step, jax_opt_state: the port as your own step `(params, opt_state, x, y) ->
        (params, opt_state, loss)` and its initial state, instead of `jax_loss_fn` and
        `jax_tx` (pass those as None). Its settings are checked as far as they can be
        read (`parity.step_preflight`: the optax states' family, an `inject_hyperparams`
        state's hyperparameters, the loss's reduction on the first batch); what cannot
        be is said in the summary.
      teacher_forcing: also compute every step from torch's parameters and optimizer
        state (`parity.teacher`): the verdict, and the diagnosis of a failure. An optax
        state (`optax.adam`, `optax.sgd(momentum=...)`, chains, `inject_hyperparams`, a
        flax `TrainState`-shaped container) is filled with torch's buffers by
        `parity.optax_state`; one it does not know is run free only, with a
        `parity.optax_state.NotTeacherForced` warning and a note in the summary.
      state_from_torch: `fn(template, buffers, step) -> opt_state` for a state
        `parity.optax_state` does not know: `template` the port's initial state,
        `buffers` `{torch key: params-shaped pytree}` of torch's `optimizer.state`
        ("exp_avg", "momentum_buffer", ...; empty at step 0, which starts from the
        port's own initial state), `step` the updates torch has made.

    Returns:
      A `Comparison`: `.passed`, `.max_abs`, `.max_rel`, `.deviations` (per quantity and
      step, 0-based), `.teacher` (the teacher-forced one-step deviations, per component),
      `.summary()`, `.raise_if_failed()`, `.plot(path)`. With teacher forcing, `.passed`
      means every step agrees to within rounding; a free run that drifts only because the
      dynamics amplify rounding passes ("PASS (amplified)", `.amplified`,
      `.growth_factor()`); `.free_passed` is the free run's own verdict. A NaN or inf on
      either side fails it.

    Raises:
      TypeError, ValueError: a bad argument (named), before any work.
      parity.preflight.SettingsError (a ValueError): the two programs are set up
        differently (optimizer, hyperparameter, schedule, loss, reduction, dtype), before
        any training.
    """
    if isinstance(torch_model, Scenario):
        return run_scenario(torch_model, data_path=data_path).comparison
    call = arguments.check_arguments(
        torch_model=torch_model,
        torch_loss_fn=torch_loss_fn,
        torch_optimizer=torch_optimizer,
        jax_loss_fn=jax_loss_fn,
        jax_tx=jax_tx,
        x=x,
        y=y,
        steps=steps,
        epochs=epochs,
        jax_data=jax_data,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        tolerance=tolerance,
        name=name,
        check_settings=check_settings,
        jax_step=jax_step,
    )
    with precision.at_least(_dtype_of(torch_model)):
        if params is None:
            params = _default_params(torch_model)
        name_map = _name_map(torch_model, params, param_names, transpose)
        named = {n: dict(torch_model.named_parameters())[n] for n in name_map.torch_names}
        dtype = preflight.check_dtypes(named, params, call)
        _check_start(named, name_map, params)
        row = vocab.torch_row(vocab.OPTIMIZERS, torch_optimizer)
        notes: list[str] = []
        if check_settings and jax_step is None:
            row = preflight.check_optimizer(torch_optimizer, jax_tx, params)
            preflight.check_schedule(torch_scheduler, jax_schedule, torch_optimizer)
            preflight.check_loss(torch_loss_fn, jax_loss_fn)
        elif check_settings:
            size = batch_size or call.x.shape[0]
            notes += step_preflight.check(
                torch_model=torch_model,
                torch_loss_fn=torch_loss_fn,
                torch_optimizer=torch_optimizer,
                jax_step=jax_step,
                params=params,
                opt_state=jax_opt_state,
                names=name_map,
                dtype=dtype,
                first_batch=(call.x[:size], call.y[:size], call.jax_x[:size], call.jax_y[:size]),
            )
        batches, order = _batches(call, batch_size, shuffle, seed, drop_last)
        schedulers = () if torch_scheduler is None else (torch_scheduler,)
        per_batch = preflight.interval(jax_schedule)[1] == "batch"
        program = torch_loop.Program(
            torch_model,
            torch_loss_fn,
            named,
            torch_loop.OptimizerUpdate(torch_optimizer),
            schedulers=() if per_batch else schedulers,
            batch_schedulers=schedulers if per_batch else (),
        )
        recorder = teacher.Recorder(torch_optimizer, named)
        t = torch_loop.run(program, batches, call.epochs, before_step=recorder)

        start = time.perf_counter()
        loop_args = dict(
            epochs=call.epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            order=order,
            drop_last=drop_last,
        )
        if jax_step is None:
            _, losses, history = jax_loop.run(
                jax_loss_fn,
                jax_tx,
                params,
                call.jax_x,
                call.jax_y,
                **loop_args,
                schedule=jax_schedule,
            )
            template = jax_tx.init(params)
        else:
            _, losses, history = jax_loop.run_step_fn(
                jax_step, params, jax_opt_state, call.jax_x, call.jax_y, **loop_args
            )
            template = jax_opt_state
        hist = {k: np.asarray(v) for k, v in name_map.to_torch(history).items()}
        j = Trajectory(np.asarray(losses), hist, time.perf_counter() - start)

        forced = None
        side = None
        if teacher_forcing:
            side, note = _jax_side(
                jax_loss_fn, jax_tx, jax_step, template, name_map, state_from_torch, dtype
            )
            torch_lrs = [step.lr for step in recorder.steps]
            lrs = _lrs(jax_tx, jax_schedule, t.steps, call.epochs, torch_lrs)
            side = dataclasses.replace(side, lrs=lrs)
            if note:
                notes.append(note)
                warnings.warn(optax_state.NotTeacherForced(note), stacklevel=2)
        # a user's step whose state parity cannot fill: the free run only
        if side is not None and (jax_step is None or side.fill or side.template is not None):
            after = [{k: v[i] for k, v in t.params.items()} for i in range(t.steps)]
            forced = teacher.run(
                recorder.steps,
                after,
                recorder.state(),
                side,
                name_map,
                (call.jax_x.shape[1:], call.jax_y.shape[1:]),
                dtype,
                one_step(dtype.name),
                torch_optimizer,
                torch_loss_fn,
            )

    if not isinstance(tolerance, Tolerance):
        # an optimizer parity has no row for (check_settings=False): the adaptive bound
        base = default_tolerance(dtype.name, row.family if row is not None else "adaptive")
        tolerance = base if tolerance is None else Tolerance("user", float(tolerance), base.reason)
    return dataclasses.replace(compare(name, t, j, tolerance), teacher=forced, notes=tuple(notes))


def _jax_side(loss_fn, tx, step_fn, template, names, hook, dtype):
    """(the port as teacher forcing calls it, a note if its optimizer state cannot be
    filled with torch's: then `fill` is None and the optimizer is not teacher-forced)."""
    if jr.optim.is_optimizer_state(template) and hook is None:
        return teacher.JaxSide(loss_fn, tx, step_fn, template, None), ""
    try:
        fill = optax_state.filler(template, names, hook, dtype)
    except optax_state.Unmapped as e:
        note = (
            f"teacher forcing of the optimizer: {e}; the optimizer is compared by the free run only"
        )
        return teacher.JaxSide(loss_fn, tx, step_fn, None, None), note
    read = functools.partial(optax_state.read, names=names)
    return teacher.JaxSide(loss_fn, tx, step_fn, None, None, fill, read), ""


def _dtype_of(model: torch.nn.Module) -> np.dtype:
    """The dtype of the model's first parameter (float32 for a model without any)."""
    first = next(iter(model.parameters()), None)
    return np.dtype(str(first.dtype).removeprefix("torch.")) if first is not None else np.float32


def _batches(call: arguments.Call, batch_size, shuffle, seed, drop_last):
    """The torch side's batches, and the row order the jax side replays (or None)."""
    xt, yt = torch.from_numpy(np.array(call.x)), torch.from_numpy(np.array(call.y))
    if batch_size is None:
        return torch_loop.full_batch(xt, yt), None
    loader = torch_loop.data_loader(
        xt, yt, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    order = None
    if shuffle:
        order = dataloader_order(
            call.x.shape[0], batch_size, call.epochs, seed=seed, drop_last=drop_last
        )
    return torch_loop.loader_batches(loader), order
