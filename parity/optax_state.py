"""torch's optimizer state as a user's optax (or flax) state: teacher forcing for any optax loop.

Teacher forcing (`parity.teacher`) starts every jax step from torch's parameters *and*
torch's optimizer state. For a port written with optax (`optax.adam`, `optax.sgd(lr,
momentum)`, a chain, `optax.inject_hyperparams(...)`, a flax `TrainState`), `fill` walks
the user's state pytree and puts torch's buffers where optax keeps them:

    optax state                         torch's optimizer.state key
    ScaleByAdamState  count, mu, nu     step, exp_avg, exp_avg_sq (Adamax: exp_inf)
    ScaleByAmsgradState ..., nu_max     ..., max_exp_avg_sq
    TraceState        trace             momentum_buffer   (optax.sgd's momentum, rmsprop's)
    ScaleByRmsState   nu                square_avg        (RMSprop)
    ScaleByRStdDevState mu, nu          grad_avg, square_avg (RMSprop centered)
    ScaleByRssState   sum_of_squares    sum               (Adagrad)
    ScaleByAdaDeltaState e_g, e_x       square_avg, acc_delta (Adadelta)
    ScaleByScheduleState, InjectHyperparamsState count: the updates so far
    EmptyState, ScaleState, AddDecayedWeightsState: nothing

A chain (a tuple), `InjectHyperparamsState` (its `inner_state`; its hyperparameters stay
the port's own: they are what is being checked), lists, dicts, NamedTuples and
dataclasses are walked into; a container shaped like flax's `TrainState` (fields `step`,
`params`, `opt_state`) gets the updates so far, torch's parameters and the walked
`opt_state`. A buffer torch has not made yet (SGD's momentum before the first step) keeps
the port's initial value.

Anything else holding arrays (an optax state this table lacks, a custom one) cannot be
filled: `check` raises `Unmapped` naming its path and type, and `verify` then runs the
free comparison only and says so. For such a state pass `state_from_torch=fn` to
`parity.verify`: `fn(template, buffers, step) -> opt_state`, with `buffers` `{torch key:
params-shaped pytree in the port's layout}` (the keys torch holds for every parameter,
e.g. "exp_avg") and `step` the number of updates torch has made. At step 0 `buffers` is
empty: every step but the first starts from torch's state, the first from the port's own
initial state (a port that initialises a buffer differently is caught there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax

from parity.names import NameMap

STEP = "<step>"  # a counter field: the number of updates made so far

# optax state type -> {field: torch keys (the first torch holds is used), or STEP}
FIELDS: dict[type, dict[str, tuple[str, ...] | str]] = {
    optax.ScaleByAdamState: {
        "count": STEP,
        "mu": ("exp_avg",),
        "nu": ("exp_avg_sq", "exp_inf"),
    },
    optax.ScaleByAmsgradState: {
        "count": STEP,
        "mu": ("exp_avg",),
        "nu": ("exp_avg_sq",),
        "nu_max": ("max_exp_avg_sq",),
    },
    optax.TraceState: {"trace": ("momentum_buffer",)},
    optax.ScaleByRmsState: {"nu": ("square_avg",)},
    optax.ScaleByRStdDevState: {"mu": ("grad_avg",), "nu": ("square_avg",)},
    optax.ScaleByRssState: {"sum_of_squares": ("sum",)},
    optax.ScaleByAdaDeltaState: {"e_g": ("square_avg",), "e_x": ("acc_delta",)},
    optax.ScaleByScheduleState: {"count": STEP},
    optax.EmptyState: {},
    optax.ScaleState: {},
    optax.AddDecayedWeightsState: {},
}
INJECT = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
TRAIN_STATE_FIELDS = ("step", "params", "opt_state")


class Unmapped(ValueError):
    """The port's optimizer state holds something parity cannot fill with torch's state."""


class NotTeacherForced(UserWarning):
    """`verify` could not fill the port's optimizer state: the optimizer is compared by the
    free run only (the summary says so too)."""


@dataclasses.dataclass(frozen=True)
class _Walk:
    names: NameMap
    torch_state: Mapping[str, Mapping[str, Any]]
    step: int
    params: Any

    def buffer(self, keys: tuple[str, ...], current: Any, path: str) -> Any:
        """torch's buffer (the first of `keys` it holds for every parameter) in `current`'s
        structure and dtypes, or `current` where torch holds none yet."""
        _same_structure(current, self.names, path)
        for key in keys:
            held = [s[key] for s in self.torch_state.values() if key in s]
            if held and len(held) == len(self.torch_state):
                values = self.names.to_jax({n: s[key] for n, s in self.torch_state.items()})
                return jax.tree.map(
                    lambda v, c: np.asarray(v, np.asarray(c).dtype), values, current
                )
        return current

    def count(self, current: Any) -> Any:
        held = [s["step"] for s in self.torch_state.values() if "step" in s]
        value = int(float(np.asarray(held[0]))) if held else self.step
        return np.asarray(value, np.asarray(current).dtype)


def _same_structure(current: Any, names: NameMap, path: str) -> None:
    if jax.tree.structure(current) != names.treedef:
        raise Unmapped(
            f"the port's optimizer state at {path or 'the top'} is not shaped like the params "
            f"({jax.tree.structure(current)} against {names.treedef}); parity cannot put "
            "torch's buffers into it (a masked or partitioned optimizer?): pass "
            "state_from_torch=fn"
        )


def _has_arrays(node: Any) -> bool:
    return any(hasattr(leaf, "shape") for leaf in jax.tree.leaves(node))


def _fill(node: Any, w: _Walk, path: str) -> Any:
    kind = type(node)
    if kind in FIELDS:
        fields = {}
        for field in node._fields:
            how, current = FIELDS[kind][field], getattr(node, field)
            where = f"{path}.{field}" if path else field
            fields[field] = w.count(current) if how == STEP else w.buffer(how, current, where)
        return kind(**fields)
    if isinstance(node, INJECT):
        return node._replace(
            count=w.count(node.count), inner_state=_fill(node.inner_state, w, f"{path}.inner_state")
        )
    if _is_train_state(node):
        return _replace(
            node,
            step=w.count(node.step),
            params=_params_like(w, node.params, f"{path}.params"),
            opt_state=_fill(node.opt_state, w, f"{path}.opt_state"),
        )
    if isinstance(node, tuple) and hasattr(node, "_fields") and _has_arrays(node):
        raise Unmapped(_unknown(f"a {kind.__name__}", path))
    if isinstance(node, (tuple, list)):
        return kind(_fill(v, w, f"{path}[{i}]") for i, v in enumerate(node))
    if isinstance(node, dict):
        return {k: _fill(v, w, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {
            f.name: _fill(getattr(node, f.name), w, f"{path}.{f.name}")
            for f in dataclasses.fields(node)
            if _has_arrays(getattr(node, f.name))
        }
        return dataclasses.replace(node, **changes)
    if not _has_arrays(node):
        return node
    raise Unmapped(_unknown(f"an array ({kind.__name__})", path))


def _unknown(what: str, path: str) -> str:
    return (
        f"the port's optimizer state holds {what} at {path or 'the top'}, which "
        f"parity.optax_state does not know (it fills {', '.join(t.__name__ for t in FIELDS)}, "
        "inside chains, inject_hyperparams and TrainState-shaped containers); pass "
        "state_from_torch=fn(template, buffers, step) to parity.verify"
    )


def _children(node: Any) -> list[Any]:
    """The sub-states a walk visits: a chain's members, an inject state's inner state, a
    TrainState's opt_state, a container's values (not a known state's buffers)."""
    if type(node) in FIELDS:
        return []
    if isinstance(node, INJECT):
        return [node.inner_state]
    if _is_train_state(node):
        return [node.opt_state]
    if isinstance(node, (tuple, list)):
        return list(node)
    if isinstance(node, dict):
        return list(node.values())
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return [getattr(node, f.name) for f in dataclasses.fields(node)]
    return []


def _is_train_state(node: Any) -> bool:
    return not isinstance(node, dict) and all(hasattr(node, f) for f in TRAIN_STATE_FIELDS)


def _replace(node: Any, **changes: Any) -> Any:
    if hasattr(node, "_replace"):
        return node._replace(**changes)
    if hasattr(node, "replace"):  # flax.struct.dataclass
        return node.replace(**changes)
    return dataclasses.replace(node, **changes)


def _params_like(w: _Walk, current: Any, path: str) -> Any:
    _same_structure(current, w.names, path)
    return jax.tree.map(lambda v, c: np.asarray(v, np.asarray(c).dtype), w.params, current)


def fill(
    template: Any,
    torch_state: Mapping[str, Mapping[str, Any]],
    names: NameMap,
    step: int,
    params: Any,
) -> Any:
    """`template` (the port's initial optax state) holding torch's buffers before `step`.

    Args:
      torch_state: `{torch name: optimizer.state entries}` before the update.
      step: the update's index (0-based): the count where torch keeps no `step`.
      params: torch's parameters as jax params (a TrainState's `params`).

    Raises:
      Unmapped: part of the state cannot be filled, naming its path and type.
    """
    return _fill(template, _Walk(names, torch_state, step, params), "")


def check(template: Any, names: NameMap) -> None:
    """Raise `Unmapped` unless `fill` can fill every array of `template`."""
    zeros = names.treedef.unflatten([np.zeros(()) for _ in names.torch_names])
    fill(template, {n: {} for n in names.torch_names}, names, 0, zeros)


def read(state: Any, names: NameMap) -> dict[str, dict[str, np.ndarray]]:
    """`{torch key: {torch name: array in torch's layout}}` of the buffers `fill` knows in
    `state` (every alternative key of a field: the caller compares those torch holds)."""
    out: dict[str, dict[str, np.ndarray]] = {}

    def visit(node: Any) -> None:
        kind = type(node)
        if kind in FIELDS:
            for field, how in FIELDS[kind].items():
                if how != STEP:
                    for key in how:
                        out.setdefault(key, names.to_torch(getattr(node, field)))
            return
        for child in _children(node):
            visit(child)

    visit(state)
    return out


def buffers(
    torch_state: Mapping[str, Mapping[str, Any]], names: NameMap, dtype: Any
) -> dict[str, Any]:
    """`{torch key: params-shaped pytree}` of every key torch holds for every parameter
    (what a `state_from_torch` hook is given); `step` as a Python number."""
    keys = set.intersection(*(set(s) for s in torch_state.values())) if torch_state else set()
    out: dict[str, Any] = {}
    for key in sorted(keys):
        if key == "step":
            out[key] = int(float(np.asarray(next(iter(torch_state.values()))[key])))
        else:
            out[key] = names.to_jax({n: s[key] for n, s in torch_state.items()}, dtype)
    return out


def hyperparams(state: Any) -> dict[str, Any]:
    """The hyperparameters an `optax.inject_hyperparams` state holds (merged, outermost
    first), or {} where none is reachable (a plain `optax.adam`: its closure holds them)."""
    found: dict[str, Any] = {}

    def visit(node: Any) -> None:
        if isinstance(node, INJECT):
            for k, v in node.hyperparams.items():
                found.setdefault(k, v)
            visit(node.inner_state)
        elif type(node) in FIELDS:
            return
        else:
            for child in _children(node):
                visit(child)

    visit(state)
    return found


def kinds(state: Any) -> list[type]:
    """The optax state types `FIELDS` knows in `state`, outermost first."""
    found: list[type] = []

    def visit(node: Any) -> None:
        if type(node) in FIELDS:
            found.append(type(node))
        elif isinstance(node, INJECT):
            visit(node.inner_state)
        else:
            for child in _children(node):
                visit(child)

    visit(state)
    return found


def filler(
    template: Any, names: NameMap, hook: Callable | None, dtype: Any
) -> Callable[[Mapping[str, Mapping[str, Any]], int, Any], Any]:
    """`(torch_state, step, params) -> the port's state` for teacher forcing: the user's
    `hook(template, buffers, step)` if given, else `fill`.

    Raises:
      Unmapped: no hook, and `template` holds a state `fill` does not know.
    """
    if hook is not None:

        def from_hook(torch_state, step, params):
            held = buffers(torch_state, names, dtype)
            return hook(template, held, int(held.pop("step", step)))

        return from_hook
    check(template, names)
    return lambda torch_state, step, params: fill(template, torch_state, names, step, params)
