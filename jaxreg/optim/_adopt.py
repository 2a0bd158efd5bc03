"""The training boundary: is `tx` a transformation, and does `opt_state` belong to it?

`adopt(tx, params, opt_state)` is what `fit`, `make_step` and `fit_many` call before they
train with a state the caller passed in. Its rule, so that the optimizer passed is the one
that trains (torch: the optimizer object you step owns its `param_groups`):

1. The state must have the structure `tx.init(params)` gives: the same optimizer family,
   the same buffers (momentum, amsgrad, centered on or off), the same shapes and dtypes.
   Otherwise a `TypeError` (another optimizer, or not a state) or a `ValueError` (same
   optimizer, other options or other params) names `opt_state` and what differs.
2. The numbers: each jaxreg `OptState` remembers in `origin` the numbers of the optimizer
   that made it. If they are `tx`'s numbers, the state's `hyperparams` are kept (a
   learning rate changed by `set_lr` or a schedule goes on); if not, `tx`'s numbers
   replace both `hyperparams` and `origin`. `set_lr` changes `hyperparams` only.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg.optim._adagrad import adagrad
from jaxreg.optim._adam import adam, adamw
from jaxreg.optim._rmsprop import rmsprop
from jaxreg.optim._sgd import sgd
from jaxreg.optim._state import HyperparamsInit, Numbers, OptState, find_states, is_optimizer_state

# torch.optim class name -> its jaxreg mirror (for check_transformation's messages)
_MIRRORS = (
    ("SGD", sgd),
    ("Adam", adam),
    ("AdamW", adamw),
    ("RMSprop", rmsprop),
    ("Adagrad", adagrad),
)


def check_transformation(tx: Any, name: str = "tx") -> None:
    """`TypeError` unless `tx` is an optax transformation (an object with `init`, `update`).

    The message shows how to build one: for a torch optimizer, its jaxreg mirror with the
    same arguments (`jr.optim.sgd(lr=0.1, momentum=0.9)` for `torch.optim.SGD(...,
    lr=0.1, momentum=0.9)`); for a factory that was not called (`jr.optim.sgd`), the call;
    for a name (`"sgd"`), the function of that name.

    Args:
      tx: the value to check.
      name: the argument's name in the caller's signature, used in the message.
    """
    if hasattr(tx, "param_groups"):  # a torch.optim.Optimizer (duck-typed: no torch import)
        raise TypeError(_torch_message(tx, name))
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return
    example = "jr.optim.sgd(lr=0.1)"
    if isinstance(tx, str):
        mirror = dict((n.lower(), n) for n, _ in _MIRRORS).get(tx.lower())
        hint = f"jr.optim.{mirror.lower()}(lr=0.1)" if mirror else example
        raise TypeError(
            f"{name} must be an optax GradientTransformation, not the string {tx!r}; "
            f"build one, e.g. {hint}."
        )
    if callable(tx):  # a factory that was not called: jr.optim.sgd, optax.adam
        fn = getattr(tx, "__name__", type(tx).__name__)
        module = getattr(tx, "__module__", "") or ""
        call = f"jr.optim.{fn}(lr=0.1)" if module.startswith("jaxreg.optim") else f"{fn}(...)"
        raise TypeError(
            f"{name} is the function {fn}, not a transformation; call it to build one, e.g. {call}."
        )
    raise TypeError(
        f"{name} must be an optax GradientTransformation (with init and update), e.g. "
        f"{example}; got a {type(tx).__name__}."
    )


def _torch_message(opt: Any, name: str) -> str:
    cls = type(opt).__name__
    for torch_name, factory in _MIRRORS:
        if torch_name == cls:
            ours = inspect.signature(factory).parameters
            given = getattr(opt, "defaults", {})
            args = ", ".join(
                f"{k}={given[k]!r}"
                for k, p in ours.items()
                if k in given and (k == "lr" or given[k] != p.default)
            )
            return (
                f"{name} is a torch optimizer (torch.optim.{cls}); jaxreg trains with optax "
                f"transformations. Its mirror takes the same arguments and computes the same "
                f"updates: jr.optim.{factory.__name__}({args})."
            )
    names = ", ".join(f"jr.optim.{f.__name__}" for _, f in _MIRRORS)
    return (
        f"{name} is a torch optimizer (torch.optim.{cls}), which jaxreg.optim does not "
        f"mirror (it has {names}). Use an optax transformation, e.g. "
        "jr.optim.inject(optax.<name>, learning_rate=...)."
    )


# ----------------------------------------------------------------------------------------
# adopt


class _Expected(NamedTuple):
    """What `tx.init(params)` makes, for one params structure: cached per tx."""

    shapes: Any  # the state as ShapeDtypeStructs (for messages)
    treedef: Any
    avals: tuple  # ((shape, dtype), ...) per leaf
    numbers: tuple  # tx's Numbers for each OptState in the state, tree order (None: unknown)


def adopt(
    tx: Any, params: Any, opt_state: Any, *, batched: bool = False, cache: dict | None = None
) -> Any:
    """`opt_state`, checked against `tx` and carrying `tx`'s numbers: call it at a boundary.

    The rule (so that the optimizer passed is the one that trains, as a torch optimizer's
    `param_groups` do):

    - `opt_state` must have the structure of `tx.init(params)` (for `batched`,
      `jax.vmap(tx.init)(params)`): the same optimizer family, the same buffers, shapes
      and dtypes. For any optax transformation this is the only check.
    - For each jaxreg `OptState` in it: if its `origin` (the numbers of the optimizer
      that made it) equals `tx`'s numbers, its `hyperparams` are kept, so a learning rate
      set by `set_lr` or a schedule goes on; else `tx`'s numbers replace `hyperparams`
      and `origin` (for `batched`, model by model). `sgd(lr=0.001)` given the state of
      `sgd(lr=1.0)` trains with 0.001; `adamw(weight_decay=0.5)` given `adam`'s state
      decays.

    Cost: a state made (or last adopted) by this very `tx` is recognised by the identity
    of its `origin` (about 0.3 µs). Otherwise the structure of `tx.init(params)` is
    traced once per params structure (`jax.eval_shape`) and cached on `tx.init` for
    jaxreg transformations, in `cache` for others (without `cache`, every call traces).

    Args:
      tx: an optax `GradientTransformation` (`check_transformation` runs on it).
      params: the parameters the state is for (leading model axis when `batched`).
      opt_state: the state to check, or `None` for `tx.init(params)`.
      batched: params and state carry a leading model axis (`jr.fit_many`).
      cache: a dict the caller keeps for `tx` (e.g. on its step object), for
        transformations that are not jaxreg's (an `optax.chain`); jaxreg's cache on
        themselves.

    Returns:
      `opt_state` itself when nothing changes, else a copy with `tx`'s numbers.

    Raises:
      TypeError: `tx` is not a transformation; `opt_state` is not a state, or the state of
        another optimizer.
      ValueError: `opt_state` has other buffers (an option such as momentum or amsgrad
        differs), shapes or dtypes than `tx.init(params)`.
    """
    init = getattr(tx, "init", None)
    if not batched and type(opt_state) is OptState and isinstance(init, HyperparamsInit):
        origin = opt_state.origin
        for known in init.cache.get("origins", ()):
            if origin is known:
                return opt_state
    check_transformation(tx)
    if opt_state is None:
        return jax.vmap(tx.init)(params) if batched else tx.init(params)
    expected = _expected(tx, params, batched, cache)
    leaves, treedef = jax.tree_util.tree_flatten(opt_state)
    if treedef != expected.treedef or any(
        _aval(leaf) != aval for leaf, aval in zip(leaves, expected.avals, strict=True)
    ):
        raise _mismatch(expected.shapes, opt_state, batched)
    states = find_states(opt_state)
    new = {}
    for state, numbers in zip(states, expected.numbers, strict=True):
        adopted = _adopt_one(state, numbers, batched)
        if adopted is not state:
            new[id(state)] = adopted
    if not new:
        return opt_state
    if type(opt_state) is OptState:
        return new[id(opt_state)]
    return jax.tree_util.tree_map(
        lambda x: new.get(id(x), x), opt_state, is_leaf=is_optimizer_state
    )


def _adopt_one(state: OptState, numbers: Numbers | None, batched: bool) -> OptState:
    if numbers is None or state.origin is numbers.origin:
        return state
    theirs = numbers.origin
    ours = np.asarray(state.origin)
    if not batched:
        if ours.tobytes() == theirs.tobytes():  # same numbers: keep set_lr's; remember tx's origin
            return OptState(state.hyperparams, state.inner, theirs)
        return OptState(dict(numbers.hyperparams), state.inner, theirs)
    same = np.all(ours == theirs, axis=-1)  # (M,): model m was made with tx's numbers
    if same.all():
        return state
    hp = {
        k: np.where(same, np.asarray(state.hyperparams[k]), v)
        for k, v in numbers.hyperparams.items()
    }
    return OptState(hp, state.inner, np.where(same[:, None], ours, theirs))


def _aval(x: Any) -> tuple:
    try:  # jax and NumPy arrays: plain attributes (this runs per leaf on every slow call)
        return (x.shape, x.dtype)
    except AttributeError:
        return (tuple(np.shape(x)), np.dtype(jnp.result_type(x)))


def _expected(tx: Any, params: Any, batched: bool, cache: dict | None) -> _Expected:
    leaves, treedef = jax.tree_util.tree_flatten(params)
    signature = (batched, treedef, tuple(_aval(leaf) for leaf in leaves))
    if isinstance(tx.init, HyperparamsInit):
        store, key = tx.init.cache, ("expected", signature)
    else:
        store, key = cache, ("expected", tx, signature)
    try:
        found = None if store is None else store.get(key)
    except TypeError:  # an unhashable transformation: no cache
        store, found = None, None
    if found is not None:
        return found
    captured: list = []

    def init(p: Any) -> Any:
        state = tx.init(p)
        # jaxreg inits return their host NumPy numbers even while traced: keep them
        captured[:] = [
            Numbers(s.hyperparams, s.origin) if isinstance(s.origin, np.ndarray) else None
            for s in find_states(state)
        ]
        return state

    shapes = jax.eval_shape(jax.vmap(init) if batched else init, params)
    flat, state_def = jax.tree_util.tree_flatten(shapes)
    found = _Expected(
        shapes, state_def, tuple((tuple(s.shape), np.dtype(s.dtype)) for s in flat), tuple(captured)
    )
    if store is not None:
        store[key] = found
    return found


def _mismatch(expected: Any, got: Any, batched: bool) -> Exception:
    fix = (
        "Make it with tx.init(params)"
        + (" (jax.vmap(tx.init)(params) for many models)" if batched else "")
        + ", or pass the optimizer and params it was made with."
    )
    if type(got) is not type(expected):
        return TypeError(
            f"opt_state is {_describe(got)}, but tx.init(params) makes {_describe(expected)}. "
            + fix
        )
    ours, theirs = find_states(expected), find_states(got)
    if len(ours) != len(theirs):
        return TypeError(
            f"opt_state holds {len(theirs)} jaxreg optimizer states, tx's state {len(ours)}. " + fix
        )
    for e, g in zip(ours, theirs, strict=True):
        if type(e.inner) is not type(g.inner):
            return TypeError(
                f"opt_state is the state of another optimizer: it holds "
                f"{_a(type(g.inner).__name__)}, tx's state {_a(type(e.inner).__name__)}. " + fix
            )
    want = {jax.tree_util.keystr(p): s for p, s in jax.tree_util.tree_leaves_with_path(expected)}
    have = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(got)}
    missing = [p for p in want if p not in have]
    extra = [p for p in have if p not in want]
    differ = [p for p in want if p in have and _aval(have[p]) != _aval(want[p])]
    lines = [f"opt_state{p} is missing ({_show(want[p])} in tx.init(params))" for p in missing[:3]]
    lines += [f"opt_state{p} is not in tx's state" for p in extra[:3]]
    lines += [
        f"opt_state{p} is {_show(have[p])}, tx.init(params) makes {_show(want[p])}"
        for p in differ[:3]
    ]
    hints = []
    if missing or extra:
        hints.append(
            "an option that adds a buffer or hyperparameter (momentum, amsgrad, centered, "
            "another optax factory) differs between tx and the optimizer that made opt_state"
        )
    if differ:
        hints.append(
            "opt_state was made for parameters of other shapes or dtypes"
            + (" (batched: both carry a leading model axis)" if batched else "")
        )
    if not lines:
        lines.append(
            f"its tree structure is {jax.tree_util.tree_structure(got)}, tx's is "
            f"{jax.tree_util.tree_structure(expected)}"
        )
    more = len(missing) + len(extra) + len(differ) - min(len(missing), 3)
    more -= min(len(extra), 3) + min(len(differ), 3)
    return ValueError(
        "opt_state does not fit tx: "
        + "; ".join(lines)
        + (f" (and {more} more)" if more > 0 else "")
        + ". "
        + ("Probably " + "; or ".join(hints) + ". " if hints else "")
        + fix
    )


def _describe(x: Any) -> str:
    if isinstance(x, OptState):
        return f"the state of a jaxreg optimizer (an OptState holding {_a(type(x.inner).__name__)})"
    if type(x) is tuple:
        return f"a tuple of {len(x)} states (an optax.chain's?)"
    return _a(type(x).__name__)


def _a(noun: str) -> str:
    return ("an " if noun[:1].upper() in "AEIOU" or noun.startswith("SGD") else "a ") + noun


def _show(x: Any) -> str:
    shape, dtype = _aval(x)
    return f"{shape} {dtype.name}"
