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

The jax side starts from a copy of the torch model's parameters taken before training
(`parity.interop.params_from_torch`), so both sides start from the same numbers; the
torch model and optimizer are then trained in place.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np
import torch

import jaxreg as jr
from parity.compare import Comparison, compare
from parity.interop import find_linear, params_from_torch
from parity.problem import dataloader_order
from parity.scenario import Scenario, Trajectory
from parity.tolerances import Tolerance, default_tolerance
from parity.torch_side import single_threaded


def _numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


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
      x, y: the data (NumPy or torch), in the shapes the torch program uses.
      steps: full batch: the number of updates. Or
      epochs: passes over the data (with `batch_size`, required).
      params: the jax starting parameters: `jr.linear.Params` (compared with the model's one
        `nn.Linear`) or a dict keyed by the model's `named_parameters()` names. Default: a
        copy of the model's `nn.Linear`, taken before training.
      jax_data: `(x, y)` for the jax side when its shapes differ from torch's (e.g. (n, 1)
        targets where torch uses (n,)); the same numbers, reshaped.
      batch_size, shuffle, seed, drop_last: mini-batches: a torch `DataLoader(TensorDataset(x,
        y), batch_size, shuffle, generator=torch.Generator().manual_seed(seed), drop_last)`;
        the jax side replays its order with `fit(order=...)`.
      torch_scheduler, jax_schedule: an `lr_scheduler` on `torch_optimizer` and the matching
        `jr.schedules` schedule, both stepped after each epoch.
      tolerance: a `Tolerance` or a relative tolerance; default: `parity.tolerances`'s
        bound for the parameters' dtype and the optimizer's family.
      name: a name for the summary.

    Returns:
      A `Comparison`: `.passed`, `.max_abs`, `.max_rel`, `.deviations` (per quantity and
      step), `.summary()`, `.raise_if_failed()`.
    """
    if isinstance(torch_model, Scenario):
        from parity.runner import run_scenario

        return run_scenario(torch_model, data_path=data_path).comparison
    if torch_loss_fn is None or torch_optimizer is None or jax_loss_fn is None or jax_tx is None:
        raise TypeError("verify needs torch_loss_fn, torch_optimizer, jax_loss_fn and jax_tx")
    if x is None or y is None:
        raise TypeError("verify needs the data x and y")
    if batch_size is None:
        if epochs is not None and steps is not None and epochs != steps:
            raise ValueError("full batch: steps and epochs are the same thing; pass one")
        epochs = steps if steps is not None else epochs
    if epochs is None:
        raise TypeError("verify needs steps= (full batch) or epochs= (mini-batches)")
    if params is None:
        params = params_from_torch(torch_model)
    x_np, y_np = _numpy(x), _numpy(y)
    xt, yt = torch.from_numpy(np.array(x_np)), torch.from_numpy(np.array(y_np))
    named = _torch_names(torch_model, params)
    order = None
    if batch_size is not None and shuffle:
        order = dataloader_order(len(x_np), batch_size, epochs, seed=seed, drop_last=drop_last)

    # torch
    start = time.perf_counter()
    if batch_size is None:
        loader = [(xt, yt)]
    else:
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(xt, yt),
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            generator=torch.Generator().manual_seed(seed),
        )
    losses, history = [], {k: [] for k in named}
    with single_threaded():
        for _ in range(epochs):
            for xb, yb in loader:
                torch_optimizer.zero_grad()
                loss = torch_loss_fn(torch_model(xb), yb)
                loss.backward()
                torch_optimizer.step()
                losses.append(loss.item())
                for k, p in named.items():
                    history[k].append(p.detach().cpu().numpy().copy())
            if torch_scheduler is not None:
                torch_scheduler.step()
    t = Trajectory(
        np.asarray(losses),
        {k: np.stack(v) for k, v in history.items()},
        time.perf_counter() - start,
    )

    # jax
    start = time.perf_counter()
    jx, jy = jax_data if jax_data is not None else (x_np, y_np)
    res = jr.fit(
        jax_loss_fn,
        jax_tx,
        params,
        _numpy(jx),
        _numpy(jy),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        order=order,
        drop_last=drop_last,
        schedule=jax_schedule,
        check_finite=False,
    )
    hist = jax.tree.map(np.asarray, _jax_names(res.history))
    j = Trajectory(np.asarray(res.losses), hist, time.perf_counter() - start)

    if not isinstance(tolerance, Tolerance):
        dtype = np.result_type(*(np.asarray(a).dtype for a in jax.tree.leaves(params)))
        family = "sgd" if isinstance(torch_optimizer, torch.optim.SGD) else "adaptive"
        base = default_tolerance(dtype.name, family)
        tolerance = base if tolerance is None else Tolerance("user", float(tolerance), base.reason)
    return compare(name, t, j, tolerance)
