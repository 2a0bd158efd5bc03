"""The parts of `parity.vocab`'s schedule rows that differ between torch and jaxreg.

Most of torch's schedulers take the jaxreg class's arguments and keep them as attributes
of the same names. The rest need a word: how to build the torch scheduler from the
jaxreg arguments (`SequentialLR` and `ChainedScheduler` take torch schedulers built on
the same optimizer), and what to compare (`LambdaLR` keeps `lr_lambdas`, a list;
`CyclicLR` keeps `total_size` and `step_ratio`; `OneCycleLR` keeps its numbers in the
param group). A row's `settings` pair reads the same dict from both sides, computed with
torch's own arithmetic where torch keeps a derived number, so `parity.verify` compares
like with like. torch is never imported here: the functions receive torch objects.
"""

from __future__ import annotations

from typing import Any

import jaxreg as jr


def decay_97(epoch: int) -> float:
    """`LambdaLR`'s example: the factor 0.97 ** epoch."""
    return 0.97**epoch


def halve_every_10(epoch: int) -> float:
    """`MultiplicativeLR`'s example: halve the lr every 10 epochs, else keep it."""
    return 0.5 if epoch % 10 == 0 else 1.0


def lambda_settings_jax(s: Any, describe: Any = None) -> dict:
    return {"lr_lambda": s.lr_lambda}


def lambda_settings_torch(s: Any, describe: Any = None) -> dict:
    return {"lr_lambda": s.lr_lambdas[0] if len(s.lr_lambdas) == 1 else s.lr_lambdas}


def cyclic_settings_jax(s: Any, describe: Any = None) -> dict:
    up = float(s.step_size_up)
    down = float(s.step_size_down) if s.step_size_down is not None else up
    out = {
        "base_lr": s.base_lr,
        "max_lr": s.max_lr,
        "total_size": up + down,
        "step_ratio": up / (up + down),
        "scale_fn": s.scale_fn,
        "cycle_momentum": s.cycle_momentum,
    }
    if s.scale_fn is None:
        out["mode"] = s.mode
        out["gamma"] = s.gamma
    else:
        out["scale_mode"] = s.scale_mode
    if s.cycle_momentum:
        out.update(base_momentum=s.base_momentum, max_momentum=s.max_momentum)
    return out


def cyclic_settings_torch(s: Any, describe: Any = None) -> dict:
    out = {
        "base_lr": s.base_lrs[0],
        "max_lr": s.max_lrs[0],
        "total_size": s.total_size,
        "step_ratio": s.step_ratio,
        "scale_fn": s._scale_fn_custom,
        "cycle_momentum": s.cycle_momentum,
    }
    if s._scale_fn_custom is None:
        out["mode"] = s.mode
        out["gamma"] = s.gamma
    else:
        out["scale_mode"] = s.scale_mode
    if s.cycle_momentum:
        out.update(base_momentum=s.base_momentums[0], max_momentum=s.max_momentums[0])
    return out


def one_cycle_settings_jax(s: Any, describe: Any = None) -> dict:
    initial = s.max_lr / s.div_factor
    out = {
        "total_steps": s.steps,
        "phases": [phase[0] for phase in s.phases()],
        "anneal_strategy": s.anneal_strategy,
        "max_lr": s.max_lr,
        "initial_lr": initial,
        "min_lr": initial / s.final_div_factor,
        "cycle_momentum": s.cycle_momentum,
    }
    if s.cycle_momentum:
        out.update(base_momentum=s.base_momentum, max_momentum=s.max_momentum)
    return out


def one_cycle_settings_torch(s: Any, describe: Any = None) -> dict:
    group = s.optimizer.param_groups[0]
    out = {
        "total_steps": s.total_steps,
        "phases": [phase["end_step"] for phase in s._schedule_phases],
        "anneal_strategy": s._anneal_func_type,
        "max_lr": group["max_lr"],
        "initial_lr": group["initial_lr"],
        "min_lr": group["min_lr"],
        "cycle_momentum": s.cycle_momentum,
    }
    if s.cycle_momentum:
        out.update(base_momentum=group["base_momentum"], max_momentum=group["max_momentum"])
    return out


def plateau_settings_jax(s: Any, describe: Any = None) -> dict:
    names = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps")
    return {**{n: getattr(s, n) for n in names}, "min_lr": s.min_lr}


def plateau_settings_torch(s: Any, describe: Any = None) -> dict:
    names = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps")
    return {**{n: getattr(s, n) for n in names}, "min_lr": s.min_lrs[0]}


def composite_settings_jax(s: Any, describe: Any) -> dict:
    """`describe(part)`: (row name, settings) of a jaxreg part (from its row)."""
    out = {"schedulers": [describe(part) for part in s.schedulers]}
    if isinstance(s, jr.schedules.SequentialLR):
        out["milestones"] = list(s.milestones)
    return out


def composite_settings_torch(s: Any, describe: Any) -> dict:
    """`describe(part)`: (row name, settings) of a torch part (from its row)."""
    out = {"schedulers": [describe(part) for part in s._schedulers]}
    if hasattr(s, "_milestones"):
        out["milestones"] = list(s._milestones)
    return out


def sequential_torch(cls: type, opt: Any, kwargs: dict, part: Any) -> Any:
    """torch's `SequentialLR` from the jaxreg arguments: each part built on `opt` first."""
    parts = [part(opt, p) for p in kwargs["schedulers"]]
    return cls(opt, schedulers=parts, milestones=list(kwargs["milestones"]))


def chained_torch(cls: type, opt: Any, kwargs: dict, part: Any) -> Any:
    """torch's `ChainedScheduler` (it takes the parts first, the optimizer optional)."""
    return cls([part(opt, p) for p in kwargs["schedulers"]], optimizer=opt)
