"""Why one teacher-forced optimizer step differs: the causes `parity.teacher.diagnose` names.

At the first failing step the port's step has been run from torch's parameters, gradients
(or batch) and optimizer state, so everything it computes differently is its own:

- the loss (a user's step): `n` times torch's is a sum where torch takes the mean, ...;
- a moving average that differs (`exp_avg`, `exp_avg_sq`, `square_avg`, `grad_avg`,
  `momentum_buffer`): its decay is solved from both sides' old and new values and the
  gradient, `new = c * old + (1 - c) * g` (`g**2` for a second moment; `new = c * old + g`
  for momentum), and named with torch's setting: "exp_avg_sq moves with b2 = 0.99 where
  torch's betas[1] is 0.999";
- with every buffer agreeing, an update that is one factor times torch's: the learning
  rate ("the port's update is 1.1 x torch's: a learning rate of 0.011 where torch's is
  0.01"); else the update rule itself (eps, bias correction, weight decay);
- any hyperparameter an `inject_hyperparams` state holds that differs from torch's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from parity import step_preflight

# A factor recovered from two sides' numbers is one factor when every element gives it to
# within 1e-3: torch's update is read back as new - old parameters, which carries the
# parameters' rounding (an update 1e-4 of a parameter keeps ~3 significant digits in
# float32), while a wrong learning rate or decay is off by 1e-2 or more.
FACTOR_RTOL = 1e-3

# torch key -> (torch's setting, its optax name, the target the average moves to, form)
MOVING = {
    "exp_avg": ("betas[0]", "b1", lambda g: g, "ema"),
    "exp_avg_sq": ("betas[1]", "b2", lambda g: g * g, "ema"),
    "square_avg": ("alpha", "decay", lambda g: g * g, "ema"),
    "grad_avg": ("alpha", "decay", lambda g: g, "ema"),
    "momentum_buffer": ("momentum", "momentum", lambda g: g, "momentum"),
}


@dataclasses.dataclass(frozen=True)
class JaxStep:
    """The port's step from torch's inputs (`parity.teacher.rerun`), in torch's names."""

    loss: float
    params_after: dict[str, np.ndarray]
    state_before: dict[str, dict[str, np.ndarray]]
    state_after: dict[str, dict[str, np.ndarray]]
    hyperparams: dict[str, Any]


def factor(t: Any, j: Any) -> float | None:
    """j / t where that is one number for every element (to `FACTOR_RTOL`), else None."""
    t = np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in t])
    j = np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in j])
    big = np.abs(t) > 1e-3 * np.abs(t).max() if t.size else t
    if not np.any(big):
        return None
    r = j[big] / t[big]
    mid = float(np.median(r))
    return mid if np.all(np.abs(r - mid) <= FACTOR_RTOL * abs(mid)) else None


def decay(old: np.ndarray, new: np.ndarray, g: np.ndarray, target, form: str) -> float | None:
    """The decay `c` of `new = c * old + (1 - c) * target(g)` ("ema") or `new = c * old + g`
    ("momentum"), where one `c` fits every element (median, to `FACTOR_RTOL`)."""
    old, new, g = (np.asarray(a, np.float64).reshape(-1) for a in (old, new, g))
    goal = target(g)
    if form == "ema":
        num, den = new - goal, old - goal
    else:
        num, den = new - g, old
    ok = np.abs(den) > 1e-3 * np.abs(den).max() if den.size and np.abs(den).max() > 0 else None
    if ok is None or not ok.any():
        return None
    c = num[ok] / den[ok]
    mid = float(np.median(c))
    return mid if np.all(np.abs(c - mid) <= FACTOR_RTOL * max(abs(mid), 1e-12)) else None


def _loss_cause(ours: float, theirs: float, n: int) -> str:
    r = ours / theirs if theirs else None
    if r is not None and np.isclose(r, n, rtol=step_preflight.REDUCTION_RTOL) and n > 1:
        return (
            f"the step's loss is {n} x torch's (the batch's element count): a sum where torch "
            "takes the mean (reduction='sum' against 'mean')"
        )
    if r is not None and np.isclose(r, 1 / n, rtol=step_preflight.REDUCTION_RTOL) and n > 1:
        return (
            f"the step's loss is torch's / {n} (the batch's element count): a mean where torch "
            "takes the sum (reduction='mean' against 'sum')"
        )
    if r is not None:
        return f"the step's loss is {r:.6g} x torch's from the same parameters: another loss"
    return "the step's loss differs from torch's from the same parameters: another loss"


def causes(
    name: str,
    done: JaxStep,
    ts: Any,
    t_after: Mapping[str, np.ndarray],
    t_state: Mapping[str, Mapping[str, Any]],
    torch_optimizer: Any,
    torch_loss_fn: Any,
    tol: float,
) -> list[str]:
    """The likely causes of quantity `name` differing at this step (most direct first)."""
    del torch_loss_fn
    out = []
    if torch_optimizer is not None and done.hyperparams:
        out += step_preflight.hyperparameter_mismatches(torch_optimizer, done.hyperparams)
    scale = max(abs(ts.loss), np.finfo(np.float64).tiny)
    if abs(done.loss - ts.loss) > tol * scale:
        return [*out, _loss_cause(done.loss, ts.loss, int(np.asarray(ts.y).size))]
    for key, ours in done.state_before.items():  # differ only at step 0: the port's init
        if not all(key in ts.state.get(n, {}) for n in ours):
            continue
        theirs = {n: ts.state[n][key] for n in ours}
        if any(
            not np.allclose(np.asarray(ours[n], np.float64), np.asarray(theirs[n], np.float64))
            for n in ours
        ):
            n = next(iter(ours))
            out.append(
                f"the port's initial {key} (for {n}: {_show(ours[n])}) is not torch's "
                f"({_show(theirs[n])}): it initialises its optimizer state differently"
            )
            return out
    differing = []
    for key, (setting, optax_name, target, form) in MOVING.items():
        ours = done.state_after.get(key)
        if ours is None or not all(key in t_state.get(n, {}) for n in ours):
            continue
        theirs = {n: np.asarray(t_state[n][key], np.float64) for n in ours}
        top = max(float(np.abs(v).max()) for v in theirs.values()) or 1.0
        if all(
            np.abs(np.asarray(ours[n], np.float64) - theirs[n]).max() <= tol * top for n in ours
        ):
            continue
        differing.append(key)
        old = {
            n: np.asarray(ts.state.get(n, {}).get(key, done.state_before[key][n]), np.float64)
            for n in ours
        }
        g = np.concatenate([np.asarray(ts.grads[n]).reshape(-1) for n in ours])
        o = np.concatenate([old[n].reshape(-1) for n in ours])
        cj = decay(
            o, np.concatenate([np.asarray(ours[n]).reshape(-1) for n in ours]), g, target, form
        )
        ct = decay(o, np.concatenate([theirs[n].reshape(-1) for n in ours]), g, target, form)
        torch_value = (
            step_preflight.torch_setting(torch_optimizer, optax_name)
            if torch_optimizer is not None
            else None
        )
        if cj is not None and (ct is None or not np.isclose(cj, ct, rtol=FACTOR_RTOL)):
            shown = torch_value if torch_value is not None else ct
            out.append(
                f"the port's {key} (optax's {optax_name}) moves with {optax_name} = {cj:.6g} "
                f"where torch's {setting} is {shown!r}"
            )
        else:
            out.append(
                f"the port's {key} differs from torch's with the same gradient and old value "
                f"in (torch's {setting} is {torch_value!r}): its update of that buffer differs"
            )
    for key, ours in done.state_after.items():  # a buffer without a known update rule
        if key in MOVING or not all(key in t_state.get(n, {}) for n in ours):
            continue
        theirs = {n: np.asarray(t_state[n][key], np.float64) for n in ours}
        top = max(float(np.abs(v).max()) for v in theirs.values()) or 1.0
        if any(np.abs(np.asarray(ours[n], np.float64) - theirs[n]).max() > tol * top for n in ours):
            differing.append(key)
            out.append(
                f"the port's {key} differs from torch's after the step with the same old value "
                "and gradient in: it updates that buffer differently"
            )
    if differing:
        return out
    t_upd = [np.asarray(t_after[n], np.float64) - ts.params[n] for n in t_after]
    j_upd = [np.asarray(done.params_after[n], np.float64) - ts.params[n] for n in t_after]
    r = factor(t_upd, j_upd)
    if r is not None and not np.isclose(r, 1.0, rtol=FACTOR_RTOL):
        out.append(
            f"with the same gradients and optimizer state in, the port's update is {r:.6g} x "
            f"torch's: a learning rate of {r * ts.lr:.6g} where torch's lr is {ts.lr:.6g}"
        )
    elif not out:
        out.append(
            "with the same gradients and optimizer state in, the port's update differs, not "
            "by one factor: its update rule, or a setting other than the learning rate "
            "(eps, bias correction, weight decay, nesterov)"
            + (f"; torch's are {_settings(torch_optimizer)}" if torch_optimizer else "")
        )
    return out


def _settings(torch_optimizer: Any) -> str:
    group = torch_optimizer.param_groups[0]
    skip = {
        "params",
        "param_names",
        "initial_lr",
        "foreach",
        "fused",
        "capturable",
        "differentiable",
        "decoupled_weight_decay",
    }
    shown = [f"{k}={v!r}" for k, v in group.items() if k not in skip and v is not None]
    return f"{type(torch_optimizer).__name__}({', '.join(shown)})"


def _show(a: Any) -> str:
    a = np.asarray(a).reshape(-1)
    return f"{a[0]:.6g}" + (", ..." if a.size > 1 else "")
