"""The one optimizer-state type: `OptState(hyperparams, inner, origin)`, and its helpers.

Every jaxreg optimizer (and every optax one wrapped by `inject`) keeps its numbers in the
state rather than in its closures:

- `hyperparams`: `{"lr": 0-d array, ...}`, the numbers `update` uses. One compiled program
  serves every value, and `set_lr` changes `lr` inside a compiled loop (torch:
  `group["lr"] = ...`).
- `inner`: the optimizer's own NamedTuple of buffers and step count (`SGDState`,
  `AdamState`, ..., or the wrapped optax transformation's state).
- `origin`: the numbers of the optimizer that made the state (or last adopted it, see
  `adopt`), one array of shape `(len(hyperparams),)` in sorted-name order. `update` never
  reads it; `set_lr` leaves it alone. It is how `adopt` tells a learning rate changed by
  `set_lr` (keep it) from a state made by an optimizer with other numbers (replace them).

`init` and `update` are frozen dataclasses whose identity (`==`, `hash`) is the structure
only (which buffers and branches exist); the numbers ride in fields that take no part in
it. So `sgd(lr=0.1) == sgd(lr=0.01)`, and a `jax.jit` keyed on the transformation (static
argument) does not retrace. Consequence: call `tx.init(params)` outside any function
jitted with `tx` static; inside it a cached trace would replay the first equal `tx`'s
numbers.

`init` returns the same host NumPy objects every time for a given dtype (read-only 0-d
arrays in a fresh dict, one read-only `origin` array), cached on the `init` instance. That
makes `init` cheap (no device dispatch) and lets `adopt` recognise, by identity, a state
made by the transformation it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import _checks


class OptState(NamedTuple):
    """The state of a jaxreg optimizer (or of an optax one wrapped by `inject`).

    Attributes:
      hyperparams: `{name: 0-d array}` (shape `(M,)` for a batch of M models, as
        `jax.vmap(tx.init)` makes), the numbers `update` uses. The learning rate is
        always `"lr"` (an injected optax `learning_rate` too).
      inner: the optimizer's own state: `SGDState`, `AdamState`, `RMSpropState`,
        `AdagradState`, or the wrapped optax transformation's state.
      origin: `(len(hyperparams),)` array (`(M, len(hyperparams))` batched), the numbers
        of the optimizer that made or last adopted the state, in `sorted(hyperparams)`
        order; `None` in a stripped state (`strip_hyperparams`).
    """

    hyperparams: dict[str, Any] | None
    inner: Any
    origin: Any


class Numbers(NamedTuple):
    """An `init`'s numbers for one dtype: a template of `hyperparams` and the `origin`."""

    hyperparams: Mapping[str, Any]
    origin: Any


def is_optimizer_state(x: Any) -> bool:
    """True for an `OptState` (not for optax's states or a chain's tuple of states)."""
    return isinstance(x, OptState)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HyperparamsInit:
    """Base of every jaxreg `init`: the numbers, out of `==`/`hash`, and their cache.

    Attributes:
      hyperparams: the numbers as given, Python floats (exact: `fit` starts a schedule
        from `hyperparams["lr"]`, as torch's scheduler starts from the Python float).
      cache: per-instance memo (`Numbers` per dtype, all their `origin`s under
        `"origins"`, expected state structures for `adopt`); not part of the identity.
    """

    hyperparams: Mapping[str, Any] = dataclasses.field(compare=False, hash=False)
    cache: dict = dataclasses.field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    def numbers(self, dtype: Any) -> Numbers:
        """The hyperparameters as read-only host arrays of `dtype` (cached per dtype)."""
        key = ("numbers", np.dtype(dtype))
        found = self.cache.get(key)
        if found is not None:
            return found
        names = sorted(self.hyperparams)
        values = [self.hyperparams[name] for name in names]
        if not all(_checks.is_concrete(v) for v in values):  # built under jit: no cache
            arrays = [jnp.asarray(v, dtype) for v in values]
            return Numbers(dict(zip(names, arrays, strict=True)), jnp.stack(arrays))
        arrays = [_read_only(np.asarray(v, dtype)) for v in values]
        origin = _read_only(np.asarray(values, dtype).reshape(len(names)))
        found = Numbers(dict(zip(names, arrays, strict=True)), origin)
        self.cache[key] = found
        self.cache["origins"] = (*self.cache.get("origins", ()), origin)
        return found

    def new_state(self, inner: Any, dtype: Any) -> OptState:
        """A fresh `OptState` around `inner` with this init's numbers in `dtype`."""
        numbers = self.numbers(dtype)
        return OptState(dict(numbers.hyperparams), inner, numbers.origin)


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def unwrap(state: Any, cls: type, optimizer: str) -> tuple[dict[str, Any], Any]:
    """`(state.hyperparams, state.inner)`, after checking `state` is `optimizer`'s."""
    if not isinstance(state, OptState) or not isinstance(state.inner, cls):
        got = type(state).__name__
        if isinstance(state, OptState):
            got = f"an OptState holding {type(state.inner).__name__}"
        raise TypeError(
            f"{optimizer}.update expects the state of {optimizer}(...).init(params), an "
            f"OptState holding {cls.__name__}; got {got}. (jaxreg.optim.adopt(tx, params, "
            "opt_state) says what differs.)"
        )
    if state.hyperparams is None:
        raise TypeError(
            f"{optimizer}.update: the state has no hyperparams (strip_hyperparams removed "
            "them); put them back with restore_hyperparams(new_state, old_state)."
        )
    return state.hyperparams, state.inner


def check_buffers(optimizer: str, name: str, buffers: Any, params: Any, updates: Any) -> None:
    """`ValueError` unless a state buffer has the params' structure, shapes and dtypes.

    Runs in Python while tracing (free at run time). A state made for other parameters
    would otherwise broadcast against them or fail deep inside the update.
    """
    ref, what = (params, "params") if params is not None else (updates, "updates")
    ours = jax.tree_util.tree_leaves_with_path(buffers)
    theirs = jax.tree_util.tree_leaves_with_path(ref)
    fix = (
        "The state was made for other parameters; make it with tx.init(params) "
        "(jaxreg.optim.adopt(tx, params, opt_state) names every difference)."
    )
    if jax.tree_util.tree_structure(buffers) != jax.tree_util.tree_structure(ref):
        raise ValueError(
            f"{optimizer}.update: the optimizer state (opt_state)'s {name} has the structure "
            f"{jax.tree_util.tree_structure(buffers)} but the {what} have "
            f"{jax.tree_util.tree_structure(ref)}. {fix}"
        )
    for (path, b), (_, r) in zip(ours, theirs, strict=True):
        same_dtype = params is None or np.dtype(b.dtype) == np.dtype(jnp.result_type(r))
        if np.shape(b) != np.shape(r) or not same_dtype:
            where = jax.tree_util.keystr(path) or "(the leaf)"
            raise ValueError(
                f"{optimizer}.update: the optimizer state (opt_state) has {name}{where} of "
                f"{_aval(b)}, but that leaf of the {what} is {_aval(r)}. {fix}"
            )


def _aval(x: Any) -> str:
    return f"{tuple(np.shape(x))} {np.dtype(jnp.result_type(x)).name}"


# ----------------------------------------------------------------------------------------
# Public helpers: read and change the hyperparameters of a state, also inside a chain.


def find_states(state: Any) -> list[OptState]:
    if type(state) is OptState:
        return [state]
    leaves = jax.tree_util.tree_leaves(state, is_leaf=is_optimizer_state)
    return [leaf for leaf in leaves if is_optimizer_state(leaf)]


def _the_state(state: Any, fn: str) -> OptState:
    found = find_states(state)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(
            f"{fn}: no jaxreg optimizer state found in a {type(state).__name__}; pass the "
            "state returned by tx.init(params) for a jaxreg.optim optimizer or an optax one "
            "wrapped by jaxreg.optim.inject (it may be nested inside an optax.chain state)."
        )
    raise ValueError(
        f"{fn}: found {len(found)} jaxreg optimizer states "
        f"({', '.join(type(s.inner).__name__ for s in found)}); which one to use is "
        "ambiguous. Apply it to the part of the state you mean, e.g. state[i] of a chain."
    )


def get_hyperparams(state: Any) -> dict[str, Any]:
    """The hyperparameters of a jaxreg optimizer state, as a new dict of 0-d arrays.

    Args:
      state: an `OptState` (from a `jaxreg.optim` optimizer or `inject`), or any pytree
        (an `optax.chain` state) holding exactly one.

    Returns:
      e.g. `{"lr": Array(0.01), "momentum": Array(0.9), ...}` in the hyperparameters'
      dtype (the parameters' dtype; float32 for bfloat16/float16 parameters).

    Raises:
      ValueError: no jaxreg optimizer state in `state`, or more than one.
    """
    hp = _the_state(state, "get_hyperparams").hyperparams
    if hp is None:
        raise ValueError("get_hyperparams: the state's hyperparams were stripped")
    return dict(hp)


def hyperparams_of(tx: Any) -> dict[str, Any]:
    """The numbers a jaxreg (or `inject`-wrapped) transformation was built with.

    Args:
      tx: an `optax.GradientTransformation`.

    Returns:
      `{"lr": 0.1, ...}` as given (Python floats, not rounded to any dtype: torch's
      schedulers start from the optimizer's Python float), or `{}` for any other
      transformation (an `optax.chain` included: its parts are out of reach).
    """
    init = getattr(tx, "init", None)
    return dict(init.hyperparams) if isinstance(init, HyperparamsInit) else {}


def set_lr(state: Any, lr: Any) -> Any:
    """A copy of `state` whose optimizer uses learning rate `lr` from the next update on.

    The torch equivalent is `for g in opt.param_groups: g["lr"] = lr`. Works inside `jit`
    with a traced `lr` (this is how `fit` applies a schedule without recompiling). Only
    `hyperparams["lr"]` changes, not `origin`, so `adopt` keeps the new value when the
    state goes on with the optimizer that made it.

    Args:
      state: an `OptState`, or a pytree (an `optax.chain` state) holding exactly one.
      lr: a scalar (or, for a batched state, an array of the current lr's shape: one
        learning rate per model); stored in the dtype of the state's current `lr`. A
        concrete value is stored as a host NumPy array, like `init`'s.

    Returns:
      The same pytree with that one state's `hyperparams["lr"]` replaced.

    Raises:
      ValueError: no (or more than one) jaxreg optimizer state, or no `lr` in it; `lr`
        of another shape; a concrete `lr` that is negative or NaN (`"Invalid learning
        rate: -1"`, as torch).
    """
    old = _the_state(state, "set_lr")
    if not old.hyperparams or "lr" not in old.hyperparams:
        raise ValueError(f"set_lr: the optimizer state has no 'lr' (it has {old.hyperparams})")
    current = old.hyperparams["lr"]
    shape, dtype = np.shape(current), current.dtype
    if np.ndim(lr) != 0 and np.shape(lr) != shape:
        raise ValueError(f"set_lr: lr must be a scalar, got shape {np.shape(lr)}")
    if isinstance(lr, (int, float)) and not shape:  # the common case, without NumPy ufuncs
        if not float(lr) >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        value = _read_only(np.array(lr, dtype))
    elif _checks.is_concrete(lr):
        if not np.all(np.asarray(lr, np.float64) >= 0.0):
            raise ValueError(f"Invalid learning rate: {lr}")
        value = _read_only(np.array(np.broadcast_to(np.asarray(lr, dtype), shape)))
    else:
        value = jnp.broadcast_to(jnp.asarray(lr).astype(dtype), shape)
    new = OptState({**old.hyperparams, "lr": value}, old.inner, old.origin)
    if type(state) is OptState:
        return new
    return jax.tree_util.tree_map(
        lambda x: new if x is old else x, state, is_leaf=is_optimizer_state
    )


def strip_hyperparams(state: Any) -> Any:
    """`state` with `hyperparams` and `origin` set to `None` in every `OptState`.

    For the outputs of a jitted step: `update` passes both through unchanged, and an
    output that is an unchanged, non-donated input still costs a copy. Put them back with
    `restore_hyperparams`. A state that is an `OptState` itself costs no tree walk.
    """
    if type(state) is OptState:
        return OptState(None, state.inner, None)
    return jax.tree_util.tree_map(
        lambda s: OptState(None, s.inner, None) if is_optimizer_state(s) else s,
        state,
        is_leaf=is_optimizer_state,
    )


def restore_hyperparams(new_state: Any, old_state: Any) -> Any:
    """`new_state` (stripped) with `old_state`'s `hyperparams` and `origin` put back.

    Args:
      new_state: a step's output state, from `strip_hyperparams`.
      old_state: that step's input state (same structure).
    """
    if type(new_state) is OptState:
        return OptState(old_state.hyperparams, new_state.inner, old_state.origin)
    return jax.tree_util.tree_map(
        lambda n, o: OptState(o.hyperparams, n.inner, o.origin) if is_optimizer_state(n) else n,
        new_state,
        old_state,
        is_leaf=is_optimizer_state,
    )
