"""`parity.verify`'s checks before training for a port given as the user's own step function.

A `jax_step=(params, opt_state, x, y) -> (params, opt_state, loss)` is a closure: parity
cannot read its optimizer's settings the way it reads a `jaxreg.optim` transformation
(`parity.preflight.check_optimizer`). What it can check, it does, before any training,
raising `parity.preflight.SettingsError` (a `ValueError`) naming both sides:

- the dtypes and the layout of every parameter (`preflight.check_dtypes`, the name map),
  as for any port; and the dtype of the optimizer state's buffers against the
  parameters' (torch keeps its state in the parameters' dtype; optax's `mu_dtype` may not);
- the optimizer family, from the optax states the port's state holds
  (`parity.optax_state.kinds`): torch's Adam against a state without `ScaleByAdamState`,
  SGD with momentum against one without a `TraceState`, `amsgrad=True` against a plain
  `ScaleByAdamState`, RMSprop `centered=True` against `ScaleByRmsState`, ...;
- the hyperparameters, where the state holds them: `optax.inject_hyperparams(optax.adam)(
  learning_rate=...)` keeps `learning_rate`, `b1`, `b2`, `eps`, ... in its state
  (`InjectHyperparamsState.hyperparams`), compared with torch's `param_groups` after
  rounding torch's Python float to the dtype optax holds it in;
- the loss's reduction: the step's loss on the first batch against torch's loss of the
  model on it: `n` times torch's (the batch's element count) is a sum where torch takes the
  mean, `1/n` times a mean where torch sums.

What cannot be checked is said, not guessed: `check` returns notes ("the hyperparameters
are in optax.adam's closure: ...") that `verify` puts in the comparison's summary; teacher
forcing then checks every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxreg as jr
from parity import optax_state
from parity.names import NameMap
from parity.preflight import SettingsError

# optax's hyperparameter name -> (torch param_group key, index into a tuple setting or None)
TORCH_SETTING = {
    "learning_rate": ("lr", None),
    "b1": ("betas", 0),
    "b2": ("betas", 1),
    "eps": ("eps", None),
    "momentum": ("momentum", None),
    "nesterov": ("nesterov", None),
    "decay": ("alpha", None),  # optax.rmsprop's decay is torch's alpha
    "weight_decay": ("weight_decay", None),
    "initial_accumulator_value": ("initial_accumulator_value", None),
    "rho": ("rho", None),
}

# torch optimizer class -> the optax states that keep its buffers (any one of them)
FAMILIES: dict[str, tuple[type, ...]] = {
    "Adam": (optax.ScaleByAdamState, optax.ScaleByAmsgradState),
    "AdamW": (optax.ScaleByAdamState, optax.ScaleByAmsgradState),
    "NAdam": (optax.ScaleByAdamState,),
    "RAdam": (optax.ScaleByAdamState,),
    "Adamax": (optax.ScaleByAdamState,),
    "RMSprop": (optax.ScaleByRmsState, optax.ScaleByRStdDevState),
    "Adagrad": (optax.ScaleByRssState,),
    "Adadelta": (optax.ScaleByAdaDeltaState,),
    "SGD": (),
}
BUFFER_KINDS = {k for kinds in FAMILIES.values() for k in kinds} | {optax.TraceState}

# The step's loss against torch's on one batch: the ratio a reduction gives is the batch's
# element count exactly; 1e-4 admits float32 rounding of a sum of a few thousand terms
# (a relative ~n * 2**-24) and rejects any other factor a port could plausibly have.
REDUCTION_RTOL = 1e-4


def torch_setting(torch_optimizer: torch.optim.Optimizer, optax_name: str) -> Any:
    """torch's value of an optax hyperparameter (`initial_lr` as lr), or None if it has none."""
    key, index = TORCH_SETTING.get(optax_name, (None, None))
    group = torch_optimizer.param_groups[0]
    if key is None or key not in group:
        return None
    value = group.get("initial_lr", group["lr"]) if key == "lr" else group[key]
    return value[index] if index is not None else value


def hyperparameter_mismatches(
    torch_optimizer: torch.optim.Optimizer, hyperparams: Mapping[str, Any]
) -> list[str]:
    """`"b2: torch betas[1] 0.999, the port's 0.99 (float32)"` for each hyperparameter an
    `inject_hyperparams` state holds that differs from torch's (after rounding torch's to
    the port's dtype)."""
    out = []
    for name, ours in hyperparams.items():
        theirs = torch_setting(torch_optimizer, name)
        if theirs is None or isinstance(theirs, torch.Tensor):
            continue
        ours_np = np.asarray(ours)
        if ours_np.dtype == bool or isinstance(theirs, bool):
            same = bool(theirs) == bool(ours_np)
        elif np.issubdtype(ours_np.dtype, np.floating):
            same = bool(np.asarray(theirs, ours_np.dtype) == ours_np)
        else:
            same = bool(np.asarray(theirs) == ours_np)
        if not same:
            key, index = TORCH_SETTING[name]
            where = f"{key}[{index}]" if index is not None else key
            out.append(
                f"{name}: torch {type(torch_optimizer).__name__}'s {where} is {theirs!r}, "
                f"the port's {ours_np.item()!r} ({ours_np.dtype})"
            )
    return out


def _family(torch_optimizer: torch.optim.Optimizer, kinds: list[type]) -> None:
    name = type(torch_optimizer).__name__
    group = torch_optimizer.param_groups[0]
    held = [k for k in kinds if k in BUFFER_KINDS]
    shown = ", ".join(k.__name__ for k in held) or "no optimizer buffers"
    problems = []
    expected = FAMILIES.get(name)
    if expected is None:
        return
    main = [k for k in held if k is not optax.TraceState]
    if expected and not any(k in expected for k in main):
        problems.append(
            f"torch's optimizer is {name}, whose state optax keeps in "
            f"{' or '.join(k.__name__ for k in expected)}, but the port's state holds {shown}"
        )
    elif not expected and main:
        problems.append(f"torch's optimizer is {name} but the port's state holds {shown}")
    if group.get("amsgrad") and optax.ScaleByAmsgradState not in held:
        problems.append(
            f"torch {name} has amsgrad=True but the port's state holds no ScaleByAmsgradState "
            "(optax.amsgrad keeps the running maximum)"
        )
    if group.get("amsgrad") is False and optax.ScaleByAmsgradState in held:
        problems.append(f"torch {name} has amsgrad=False but the port is optax.amsgrad")
    if name == "RMSprop":
        centered = optax.ScaleByRStdDevState in held
        if bool(group.get("centered")) != centered:
            problems.append(
                f"torch RMSprop has centered={group.get('centered')} but the port's state "
                f"holds {shown} (optax.rmsprop(centered={not centered}) would be "
                f"{'ScaleByRmsState' if centered else 'ScaleByRStdDevState'})"
            )
    momentum = group.get("momentum") or 0
    if name in ("SGD", "RMSprop"):
        traced = optax.TraceState in held
        if momentum and not traced:
            problems.append(
                f"torch {name} has momentum={momentum} but the port's state keeps no momentum "
                "(no TraceState: optax.sgd(..., momentum=...))"
            )
        if not momentum and traced:
            problems.append(
                f"torch {name} has no momentum but the port's state keeps a TraceState (momentum)"
            )
    if problems:
        raise SettingsError(
            "verify: torch_optimizer and the port's optimizer state are of different "
            "families:\n  " + "\n  ".join(problems)
        )


def _state_dtypes(opt_state: Any, names: NameMap, dtype: np.dtype) -> None:
    for key, arrays in optax_state.read(opt_state, names).items():
        for n, a in arrays.items():
            if np.asarray(a).dtype != dtype:
                raise SettingsError(
                    f"verify: the port's optimizer state holds torch's {key} of {n} as "
                    f"{np.asarray(a).dtype}, the parameters are {dtype.name}; torch keeps its "
                    "state in the parameters' dtype (init the state from the params in that "
                    "dtype; optax's mu_dtype?)"
                )


def _reduction(torch_model, torch_loss_fn, jax_step, params, opt_state, x, y, jx, jy) -> str | None:
    """A SettingsError for a loss that is a reduction away from torch's; a note if the
    loss cannot be compared."""
    if list(torch_model.buffers()):
        return (
            "the loss's reduction: not checked before training (the torch model has buffers, "
            "e.g. BatchNorm statistics, that a forward pass would change)"
        )
    with torch.no_grad():
        theirs = float(torch_loss_fn(torch_model(torch.from_numpy(x)), torch.from_numpy(y)))
    copy = jax.tree.map(jnp.array, (params, opt_state))
    ours = float(np.asarray(jax_step(*copy, jx, jy)[2]))
    n = y.size
    if not (np.isfinite(theirs) and np.isfinite(ours)) or theirs == 0:
        return "the loss's reduction: not checked (a loss of 0 or not finite on the first batch)"
    r = ours / theirs
    if np.isclose(r, n, rtol=REDUCTION_RTOL) and n > 1:
        raise SettingsError(
            f"verify: on the first batch the step's loss is {ours:.6g}, {n} x torch's "
            f"{theirs:.6g} (the batch's element count): a sum where torch takes the mean "
            "(reduction='sum' against 'mean')"
        )
    if np.isclose(r, 1 / n, rtol=REDUCTION_RTOL) and n > 1:
        raise SettingsError(
            f"verify: on the first batch the step's loss is {ours:.6g}, torch's {theirs:.6g} "
            f"/ {n} (the batch's element count): a mean where torch takes the sum "
            "(reduction='mean' against 'sum')"
        )
    return None


def check(
    *,
    torch_model: torch.nn.Module,
    torch_loss_fn: Any,
    torch_optimizer: torch.optim.Optimizer,
    jax_step: Any,
    params: Any,
    opt_state: Any,
    names: NameMap,
    dtype: np.dtype,
    first_batch: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> list[str]:
    """Check a `jax_step` port against the torch program before training.

    Args:
      first_batch: (torch x, torch y, jax x, jax y) of the first update's batch.

    Returns:
      Notes on what could not be checked (for the summary).

    Raises:
      SettingsError: a difference found, naming both sides.
    """
    notes = []
    if jr.optim.is_optimizer_state(opt_state):
        hp = jr.optim.get_hyperparams(opt_state)
        notes.append(
            "the optimizer: a jaxreg state in a step function; its hyperparameters "
            f"({', '.join(sorted(hp))}) are checked step by step by teacher forcing"
        )
    else:
        kinds = optax_state.kinds(opt_state)
        if kinds:
            _family(torch_optimizer, kinds)
            _state_dtypes(opt_state, names, dtype)
        else:
            notes.append(
                "the optimizer's family: the port's state holds no optax state parity knows "
                "(an opaque or custom optimizer)"
            )
        hyper = optax_state.hyperparams(opt_state)
        if hyper:
            bad = hyperparameter_mismatches(torch_optimizer, hyper)
            if bad:
                raise SettingsError(
                    "verify: the port's optimizer hyperparameters (its "
                    "inject_hyperparams state) differ from torch_optimizer's param_groups:\n  "
                    + "\n  ".join(bad)
                )
        else:
            notes.append(
                "the hyperparameters (learning rate, betas, eps, momentum): in the "
                "optimizer's closure, not its state, so not checked before training "
                "(wrap it in optax.inject_hyperparams to have them checked); teacher "
                "forcing checks every step"
            )
    note = _reduction(torch_model, torch_loss_fn, jax_step, params, opt_state, *first_batch)
    if note:
        notes.append(note)
    return notes
