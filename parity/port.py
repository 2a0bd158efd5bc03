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

import time
from typing import Any

import jax
import numpy as np
import torch

import jaxreg as jr
from parity import arguments, precision, preflight, vocab
from parity.compare import Comparison, compare
from parity.interop import find_linear, params_from_torch
from parity.problem import dataloader_order
from parity.programs import jax_loop, torch_loop
from parity.runner import run_scenario
from parity.scenario import Scenario, Trajectory
from parity.tolerances import Tolerance, default_tolerance


def _torch_names(model: torch.nn.Module, params: Any) -> dict[str, torch.Tensor]:
    """{comparison name: torch parameter} matching the jax params' structure."""
    if isinstance(params, jr.linear.Params):
        layer = find_linear(model)
        out = {"weight": layer.weight}
        if params.bias is not None:
            out["bias"] = layer.bias
        return out
    if isinstance(params, dict):
        named = dict(model.named_parameters())
        missing = sorted(set(params) - set(named))
        if missing:
            raise ValueError(
                f"jax params {missing} are not parameters of the torch model "
                f"(its named_parameters: {sorted(named)}); use the same names on both sides"
            )
        return {k: named[k] for k in params}
    raise TypeError(
        "verify compares jr.linear.Params or a dict keyed by the torch model's "
        f"named_parameters(); got {type(params).__name__}"
    )


def _jax_names(params: Any) -> dict[str, Any]:
    if isinstance(params, jr.linear.Params):
        out = {"weight": params.weight}
        if params.bias is not None:
            out["bias"] = params.bias
        return out
    return dict(params)


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

    Returns:
      A `Comparison`: `.passed`, `.max_abs`, `.max_rel`, `.deviations` (per quantity and
      step), `.summary()`, `.raise_if_failed()`. A NaN or inf on either side fails it.

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
    )
    with precision.at_least(_dtype_of(torch_model)):
        if params is None:
            params = params_from_torch(torch_model)
        named = _torch_names(torch_model, params)
        dtype = preflight.check_dtypes(named, params, call)
        row = vocab.torch_row(vocab.OPTIMIZERS, torch_optimizer)
        if check_settings:
            row = preflight.check_optimizer(torch_optimizer, jax_tx, params)
            preflight.check_schedule(torch_scheduler, jax_schedule, torch_optimizer)
            preflight.check_loss(torch_loss_fn, jax_loss_fn)
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
        t = torch_loop.run(program, batches, call.epochs)

        start = time.perf_counter()
        _, losses, history = jax_loop.run(
            jax_loss_fn,
            jax_tx,
            params,
            call.jax_x,
            call.jax_y,
            epochs=call.epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            order=order,
            drop_last=drop_last,
            schedule=jax_schedule,
        )
        hist = jax.tree.map(np.asarray, _jax_names(history))
        j = Trajectory(np.asarray(losses), hist, time.perf_counter() - start)

    if not isinstance(tolerance, Tolerance):
        # an optimizer parity has no row for (check_settings=False): the adaptive bound
        base = default_tolerance(dtype.name, row.family if row is not None else "adaptive")
        tolerance = base if tolerance is None else Tolerance("user", float(tolerance), base.reason)
    return compare(name, t, j, tolerance)


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
