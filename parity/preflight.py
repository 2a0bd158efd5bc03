"""`parity.verify`'s checks before any training: the torch program's set-up against the port's.

A short run can stay within tolerance although the port is wrong: Adam with `amsgrad=True`
against `amsgrad=False`, `eps` 1e-8 against 1e-6, `weight_decay` 1e-4 against 0 all move a
trajectory by less than the float32 bound over a few dozen steps. So `verify` compares
what it can read on both sides before it trains, and raises `SettingsError` (a
`ValueError`) naming both values:

- the optimizer: torch's class against the jaxreg transformation's family (its state's
  type), and every setting of torch's `param_groups` against the transformation's
  (`jr.optim.get_hyperparams(tx.init(params))`, the flags on `tx.update` / `tx.init`),
  as `parity.vocab` maps them. A hyperparameter is compared after rounding torch's
  Python float to the dtype jaxreg holds it in (the parameters' dtype): the number the
  port computes with. An optimizer without a vocab row, or a transformation that is not
  a `jaxreg.optim` one (an optax chain, `optax.adam`), cannot be read: an error, unless
  `check_settings=False`;
- the schedule: both or neither, the same class, the same arguments, a fresh torch
  scheduler on the same optimizer;
- the loss, where both sides can be identified (a `torch.nn.functional` loss, its
  `functools.partial`, or a `torch.nn` loss module; a `jr.objective` of a `jr.losses`
  loss): the same function, reduction and options. A hand-written torch loss is not
  identifiable; the trajectories compare it;
- the dtypes of the torch parameters, the torch data, the jax parameters and the jax data.

Before these, `parity.arguments.check_arguments` checks every argument's type and range.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import torch
import torch.nn.functional as F

import jaxreg as jr
from parity import vocab
from parity.arguments import Call


class SettingsError(ValueError):
    """The torch program and its port are set up differently (found before training)."""


# ---------------------------------------------------------------------------------------
# Dtypes


def _one_dtype(what: str, dtypes: set) -> np.dtype:
    if len(dtypes) != 1:
        raise SettingsError(
            f"verify: {what} mix dtypes ({', '.join(sorted(d.name for d in dtypes))}); "
            "use one float dtype on both sides"
        )
    return dtypes.pop()


def check_dtypes(torch_params: Mapping[str, torch.Tensor], params: Any, call: Call) -> np.dtype:
    """The run's dtype: torch's parameters, torch's data, the port's parameters and data agree.

    Raises:
      SettingsError: any two differ, naming both.
    """
    tdtype = _one_dtype(
        "the torch parameters",
        {np.dtype(str(p.dtype).removeprefix("torch.")) for p in torch_params.values()},
    )
    jdtype = _one_dtype(
        "the jax params", {np.dtype(np.asarray(a).dtype) for a in jax.tree.leaves(params)}
    )
    pairs = [
        ("the jax params", jdtype),
        ("x", call.x.dtype),
        ("y", call.y.dtype),
        ("the jax x", call.jax_x.dtype),
        ("the jax y", call.jax_y.dtype),
    ]
    for what, dtype in pairs:
        if np.issubdtype(dtype, np.integer):
            continue  # y as class indices (int64 for torch's CrossEntropyLoss)
        if dtype != tdtype:
            raise SettingsError(
                f"verify: the torch model's parameters are {tdtype.name} but {what} "
                f"{'are' if what.endswith('params') else 'is'} {np.dtype(dtype).name}; both "
                "sides must compute in the same dtype (convert one: model.double() / "
                ".float(), or the arrays' astype)"
            )
    return tdtype


# ---------------------------------------------------------------------------------------
# Optimizer


SCHEDULER_KEYS = frozenset({"max_lr", "min_lr", "base_momentum", "max_momentum"})


def _group_settings(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The one set of settings of torch's param_groups (`initial_lr` as lr when present).

    The keys `OneCycleLR` and `CyclicLR` keep in the group (`max_lr`, `min_lr`,
    `base_momentum`, `max_momentum`) are the scheduler's: `check_schedule` compares them.
    """
    skip = {"params", "param_names", "initial_lr"} | vocab.IMPLEMENTATION_KEYS | SCHEDULER_KEYS
    groups = [
        {**{k: v for k, v in g.items() if k not in skip}, "lr": g.get("initial_lr", g["lr"])}
        for g in optimizer.param_groups
    ]
    for i, g in enumerate(groups[1:], start=1):
        differ = sorted(k for k in g if g[k] != groups[0].get(k))
        if differ:
            raise SettingsError(
                f"verify: torch_optimizer's param_groups 0 and {i} differ in {differ}; a jaxreg "
                "transformation has one set of hyperparameters (optax.multi_transform holds "
                "several; verify it group by group)"
            )
    return groups[0]


def _kind(state: Any) -> type:
    """The type of an optimizer's own state: `SGDState`, `AdamState`, ... (inside the
    `OptState` wrapper where jaxreg has one)."""
    if jr.optim.is_optimizer_state(state) and hasattr(state, "inner"):
        return type(state.inner)
    return type(state)


def _read(tx: Any, hyperparams: Mapping[str, Any], place: str) -> Any:
    where, _, key = place.partition(":")
    if where == "hp":
        return hyperparams[key]
    holder = getattr(tx, where)
    if not hasattr(holder, key):
        raise SettingsError(
            f"verify: cannot read {key} from jax_tx.{where} ({type(holder).__name__}); "
            "verify checks a jaxreg.optim transformation itself, not one wrapped in another "
            "(pass check_settings=False to compare the trajectories only)"
        )
    return getattr(holder, key)


def _same(torch_value: Any, jax_value: Any) -> bool:
    """torch's value, rounded to the dtype jaxreg holds it in, equals jaxreg's."""
    if isinstance(jax_value, (bool, np.bool_)):
        return bool(torch_value) == bool(jax_value)
    if jax_value is None or isinstance(jax_value, str):  # LBFGS's line_search_fn
        return torch_value == jax_value
    jax_value = np.asarray(jax_value)
    dtype = jax_value.dtype if np.issubdtype(jax_value.dtype, np.floating) else np.float64
    return bool(np.asarray(torch_value, dtype) == jax_value.astype(dtype))


def _show(value: Any) -> str:
    if isinstance(value, (np.ndarray, np.generic)) or isinstance(value, jax.Array):
        return f"{np.asarray(value).item()!r} ({np.asarray(value).dtype})"
    return repr(value)


def check_optimizer(
    torch_optimizer: torch.optim.Optimizer, jax_tx: Any, params: Any
) -> vocab.OptimizerRow:
    """The torch optimizer's class and settings against the jaxreg transformation's.

    Returns:
      The vocab row of the torch optimizer.

    Raises:
      SettingsError: another optimizer family, or any setting differs (all are named,
        with both values); or one side cannot be read.
    """
    row = vocab.torch_row(vocab.OPTIMIZERS, torch_optimizer)
    if row is None:
        known = ", ".join(r.torch for r in vocab.OPTIMIZERS.values())
        raise SettingsError(
            f"verify: parity.vocab has no row for torch optimizer "
            f"{type(torch_optimizer).__name__} (it has {known}), "
            "so its settings cannot be compared; add a row, or pass check_settings=False "
            "to compare the trajectories only"
        )
    state = jax_tx.init(params)
    try:
        hyperparams = jr.optim.get_hyperparams(state)
    except ValueError as e:
        raise SettingsError(
            f"verify: jax_tx is not a jaxreg.optim optimizer ({e}); its hyperparameters "
            "cannot be compared with torch's. Pass check_settings=False to compare the "
            "trajectories only."
        ) from None
    port_kind, row_kind = _kind(state), _kind(row.jax()().init(params))
    if port_kind is not row_kind:
        raise SettingsError(
            f"verify: torch_optimizer is torch.optim.{type(torch_optimizer).__name__} but "
            f"jax_tx is not jaxreg's {row.name} (its state is a {port_kind.__name__}, "
            f"{row.name}'s a {row_kind.__name__}); port it with jr.optim.{row.name}, or pass "
            "check_settings=False to compare the trajectories only"
        )
    torch_settings = _group_settings(torch_optimizer)
    unknown = sorted(set(torch_settings) - {k for k, _ in row.settings})
    if unknown:
        raise SettingsError(
            f"verify: torch.optim.{row.torch} has settings {unknown} that parity.vocab's "
            f"{row.name!r} row does not map to jaxreg; add them to the row's settings"
        )
    mismatches = []
    for key, places in row.settings:
        theirs = torch_settings.get(key)
        ours = [_read(jax_tx, hyperparams, p) for p in places]
        theirs_parts = list(theirs) if len(places) > 1 else [theirs]
        if len(theirs_parts) != len(ours) or not all(
            _same(t, j) for t, j in zip(theirs_parts, ours, strict=True)
        ):
            shown = ", ".join(_show(v) for v in ours)
            mismatches.append(
                f"{key}: torch {row.torch} has {theirs!r}, jaxreg "
                f"{'(' + shown + ')' if len(ours) > 1 else shown}"
            )
    if mismatches:
        raise SettingsError(
            "verify: torch_optimizer and jax_tx are set up differently, so the port "
            "computes something else (a short run may still stay within tolerance):\n  "
            + "\n  ".join(mismatches)
        )
    return row


# ---------------------------------------------------------------------------------------
# Schedule


def interval(jax_schedule: Any) -> tuple[Any, str]:
    """(the schedule itself, its interval: "epoch", or "batch" for `CyclicLR` and
    `OneCycleLR`), or for a wrapper such as `jr.schedules.per_batch(s)`, (`s`, the
    wrapper's interval: when torch steps its scheduler)."""
    for row in vocab.SCHEDULE_WRAPPERS.values():
        if type(jax_schedule) is row.jax():
            return jax_schedule.schedule, row.interval
    return jax_schedule, getattr(jax_schedule, "interval", "epoch")


def check_schedule(torch_scheduler: Any, jax_schedule: Any, torch_optimizer: Any) -> None:
    """Both or neither; the same class and arguments; a fresh scheduler on torch_optimizer.

    A per-batch jax schedule (`jr.schedules.per_batch(s)`) is compared by the schedule it
    wraps: the torch scheduler is then stepped after every batch (`parity.verify`).

    Raises:
      SettingsError: naming what differs.
    """
    if torch_scheduler is None and jax_schedule is None:
        return
    if torch_scheduler is None or jax_schedule is None:
        theirs, ours = (
            None if s is None else type(s).__name__ for s in (torch_scheduler, jax_schedule)
        )
        raise SettingsError(
            f"verify: torch_scheduler is {theirs} but jax_schedule is {ours}; pass both (the "
            "same schedule on each side) or neither"
        )
    jax_schedule, _ = interval(jax_schedule)
    trow = vocab.torch_row(vocab.SCHEDULES, torch_scheduler)
    jrow = next((r for r in vocab.SCHEDULES.values() if type(jax_schedule) is r.jax()), None)
    if trow is None:
        raise SettingsError(
            f"verify: parity.vocab has no row for torch scheduler "
            f"{type(torch_scheduler).__name__} (it has {', '.join(vocab.SCHEDULES)})"
        )
    if jrow is None:
        raise SettingsError(
            f"verify: jax_schedule must be a jaxreg.schedules schedule, got "
            f"{type(jax_schedule).__name__}"
        )
    if trow is not jrow:
        raise SettingsError(
            f"verify: torch_scheduler is {trow.torch} but jax_schedule is "
            f"jr.schedules.{jrow.name}; port it with jr.schedules.{trow.name}"
        )
    if getattr(torch_scheduler, "optimizer", None) is not torch_optimizer:
        raise SettingsError("verify: torch_scheduler is not attached to torch_optimizer")
    if getattr(torch_scheduler, "last_epoch", 0) != 0:
        raise SettingsError(
            f"verify: torch_scheduler has already been stepped (last_epoch "
            f"{torch_scheduler.last_epoch}); pass a fresh one"
        )
    mismatches = []
    ours_all = jrow.jax_settings(jax_schedule)
    theirs_all = jrow.torch_settings(torch_scheduler, dataclasses.fields(jax_schedule))
    for name in ours_all.keys() | theirs_all.keys():
        theirs, ours = theirs_all.get(name), ours_all.get(name)
        if theirs != ours:
            mismatches.append(f"{name}: torch {theirs!r}, jaxreg {ours!r}")
    if mismatches:
        raise SettingsError(
            f"verify: torch_scheduler and jax_schedule ({trow.name}) have different "
            "arguments:\n  " + "\n  ".join(mismatches)
        )


# ---------------------------------------------------------------------------------------
# Loss


def _defaults(fn: Any) -> dict[str, Any]:
    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _torch_loss(fn: Any) -> tuple[vocab.LossRow, dict[str, Any]] | None:
    """(the vocab row of torch's function, its options), or None if not identifiable."""
    keywords: dict[str, Any] = {}
    if isinstance(fn, functools.partial) and not fn.args:
        fn, keywords = fn.func, dict(fn.keywords)
    if isinstance(fn, torch.nn.Module):
        modules = {r.name: _ModuleName(r) for r in vocab.LOSSES.values() if r.reduction is None}
        row = vocab.torch_row(modules, fn)
        if row is None:
            return None
        return row.row, {k: getattr(fn, k) for k in row.row.options if hasattr(fn, k)}
    name = getattr(fn, "__name__", None)
    if name is None or getattr(F, name, None) is not fn:
        return None
    row = next((r for r in vocab.LOSSES.values() if r.torch == name and r.reduction is None), None)
    if row is None:
        return None
    return row, {**_defaults(fn), **keywords}


@dataclasses.dataclass(frozen=True)
class _ModuleName:
    """A loss row seen by its torch module class (for `vocab.torch_row`)."""

    row: vocab.LossRow

    @property
    def torch(self) -> str:
        return self.row.torch_module


def _jax_loss(loss_fn: Any) -> tuple[vocab.LossRow, dict[str, Any]] | None:
    """(the vocab row of a `jr.objective`'s loss, its options), or None.

    A loss with a fixed torch reduction (`sse`) is given as the row it is a reduction of
    (`mse` with reduction "sum"), as torch writes it.
    """
    loss = getattr(loss_fn, "loss", None)
    row = next((r for r in vocab.LOSSES.values() if loss is not None and r.jax() is loss), None)
    if row is None:
        return None
    options = {**_defaults(loss), **dict(getattr(loss_fn, "loss_kwargs", ()))}
    if row.reduction is not None:
        options["reduction"] = row.reduction
        row = next(r for r in vocab.LOSSES.values() if r.torch == row.torch and r.reduction is None)
    return row, options


def check_loss(torch_loss_fn: Any, jax_loss_fn: Any) -> None:
    """The same loss, reduction and options, where both sides can be identified.

    Raises:
      SettingsError: another loss, reduction or option value, naming both.
    """
    theirs, ours = _torch_loss(torch_loss_fn), _jax_loss(jax_loss_fn)
    if theirs is None or ours is None:
        return
    (trow, topts), (jrow, jopts) = theirs, ours
    if trow is not jrow:
        raise SettingsError(
            f"verify: the torch loss is F.{trow.torch} but the jax loss computes "
            f"F.{jrow.torch} (jr.losses.{jax_loss_fn.loss.__name__}); port it with "
            f"jr.losses.{trow.name}"
        )
    mismatches = [
        f"{k}: torch {topts.get(k)!r}, jaxreg {jopts.get(k)!r}"
        for k in trow.options
        if topts.get(k) != jopts.get(k)
    ]
    if mismatches:
        raise SettingsError(
            f"verify: the torch loss and the jax loss ({trow.name}) are called differently:\n  "
            + "\n  ".join(mismatches)
        )
