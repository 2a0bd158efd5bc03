"""A torch optimizer's `state_dict()` <-> a jaxreg `OptState`: move a run between the two.

    # torch ran k steps; jaxreg goes on from there
    sd = torch_optimizer.state_dict()                    # or torch.load(...) of one
    opt_state = state_from_torch(sd, tx, params)         # tx: the jaxreg mirror
    result = jr.fit(loss_fn, tx, params, x, y, opt_state=opt_state, steps=n)

    # and back: a dict torch_optimizer.load_state_dict accepts
    torch_optimizer.load_state_dict(state_to_torch(result.opt_state, tx, result.params))

Which torch parameter is which jax leaf. torch's `state_dict()` keys the state by the
parameter's index in the optimizer (`param_groups[g]["params"]`, in the order the
parameters were given, `model.parameters()`'s). `torch_names` names them (a list of
torch names by index, or the torch model itself: its `named_parameters()` order);
default: the `param_names` torch saves for an optimizer built from `named_parameters()`,
else the jax leaves' dotted paths in tree order (`jr.linear.Params` is `weight, bias`,
`nn.Linear.parameters()`'s order). Names are matched with jax leaves by
`parity.names`' rule (equal, or the one torch name ending in `"." + path`, or
`names={torch name: jax path}`; a `(in, out)` leaf of a `(out, in)` tensor is
transposed).

The buffers. Each field of a jaxreg state's inner NamedTuple is torch's key of the same
name (`exp_avg`, `momentum_buffer`, `square_avg`, `step`, `mu_product`, `eta`, ...): a
field shaped like the params holds one tensor per parameter; a scalar field (the step
count, NAdam's `mu_product`, ASGD's `eta` and `mu`) is one number, which torch keeps per
parameter (every parameter's must then agree). Nothing here names an optimizer: a new
one whose state follows that convention converts without code.

The hyperparameters follow `jaxreg.optim.adopt`'s rule: the optimizer passed wins. The
state is built with the `param_groups`' numbers (torch's `betas`, `etas`, `step_sizes`
split into jaxreg's `beta1`/`beta2`, ...), remembering as its `origin` the numbers the
torch optimizer was made with (`initial_lr`, which torch's lr schedulers store, in place
of the current `lr`); `adopt(tx, params, state)` then keeps the group's numbers (a
scheduled `lr` goes on) where that origin is `tx`'s, and puts `tx`'s numbers otherwise.
Options (amsgrad, centered, momentum) must agree: a buffer on one side only is an error
naming it. Going back, the group holds the adopted state's numbers (`initial_lr` where
`set_lr` or a schedule moved `lr` away from the origin's) and `tx`'s options.

torch keeps optimizer state lazily: a torch optimizer that has not stepped holds none
(Adagrad excepted), and a jaxreg state at step 0 goes back as none. torch's SGD counts
no steps; its jaxreg state gets `step=1` when torch's holds a momentum buffer (SGD reads
only whether a first update happened) unless `step=` says more.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax
import numpy as np
import torch

import jaxreg as jr
from parity import names as names_lib
from parity.names import NameMap

# jaxreg hyperparameter -> (torch's argument, index) where torch takes a pair
PAIRS = MappingProxyType(
    {
        "beta1": ("betas", 0),
        "beta2": ("betas", 1),
        "etaminus": ("etas", 0),
        "etaplus": ("etas", 1),
        "step_size_min": ("step_sizes", 0),
        "step_size_max": ("step_sizes", 1),
    }
)


def _numpy(v: Any) -> Any:
    """A torch tensor as a NumPy array (bfloat16 through float32, exactly); else as is."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        if v.dtype == torch.bfloat16:
            v = v.to(torch.float32)
        return v.numpy().copy()
    return v


def _kind(value: Any, treedef: Any) -> str:
    """ "none", "buffer" (one array per parameter) or "scalar" for one inner field."""
    if value is None:
        return "none"
    if jax.tree_util.tree_structure(value) == treedef:
        return "buffer"
    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value)) and np.ndim(value) == 0:
        return "scalar"
    raise TypeError(
        f"a state field of type {type(value).__name__} is neither shaped like the params nor "
        "a scalar; torch's per-parameter state cannot hold it"
    )


def buffers_from_torch(
    template: Any,
    torch_state: Mapping[str, Mapping[str, Any]],
    names: NameMap,
    step=None,
    *,
    strict: bool = True,
) -> Any:
    """`template` (a jaxreg `OptState`) holding torch's buffers, `{torch name: {key: value}}`.

    Values are torch tensors, NumPy arrays or numbers, in torch's layout; each is cast to
    the dtype of the template's field. A torch state that is empty for every parameter
    (torch has not stepped) gives `template` itself.

    Args:
      step: the updates done, for a state torch keeps no `step` in (SGD); default 1
        where torch holds buffers, else 0.
      strict: refuse what does not fit (below). `False` (teacher forcing, which judges a
        port that may be wrong): a key torch has and the template lacks is ignored, a
        field torch lacks for some parameter keeps the template's, a scalar is the first
        parameter's.

    Raises:
      ValueError: with `strict`: a parameter with state and one without; a key torch
        has and the template lacks (or the other way), naming it and the option that
        adds it; a scalar whose values differ between parameters. Always: a buffer of
        another shape.
    """
    inner = template.inner
    present = {
        n: {k: _numpy(v) for k, v in torch_state.get(n, {}).items() if v is not None}
        for n in names.torch_names
    }
    with_state = [n for n, s in present.items() if s]
    optimizer = type(inner).__name__.removesuffix("State")
    if not with_state:
        if step is None or "step" not in inner._fields:
            return template
        step_field = np.asarray(step, np.asarray(inner.step).dtype)
        return template._replace(inner=inner._replace(step=step_field))
    keys = {n: set(s) for n, s in present.items()}
    common = set.intersection(*keys.values())
    if strict:
        _check_keys(keys, inner, names, optimizer)
    fields = {}
    for field in inner._fields:
        current = getattr(inner, field)
        kind = _kind(current, names.treedef)
        if kind == "none" or (field not in common and not (field == "step" and with_state)):
            fields[field] = current
        elif field not in common:  # torch counts no steps (SGD)
            fields[field] = np.asarray(1 if step is None else step, np.asarray(current).dtype)
        elif kind == "scalar":
            values = {n: present[n][field] for n in present}
            fields[field] = _scalar(field, values, current, strict)
        else:
            fields[field] = _buffer(field, {n: present[n][field] for n in present}, current, names)
    return template._replace(inner=type(inner)(**fields))


def _check_keys(keys: Mapping[str, set], inner: Any, names: NameMap, optimizer: str) -> None:
    """`ValueError` unless every parameter has state, the same keys, and the keys are the
    template's fields that hold something (`step` may be missing: torch's SGD)."""
    empty = [n for n, k in keys.items() if not k]
    if empty:
        raise ValueError(
            f"torch's optimizer state has buffers for {[n for n in keys if n not in empty]} "
            f"but none for {empty}: torch stepped some parameters only (no gradient for the "
            f"others); a jaxreg {optimizer} state counts one step for all parameters"
        )
    first = names.torch_names[0]
    for n, k in keys.items():
        if k != keys[first]:
            raise ValueError(
                f"torch's optimizer state holds {sorted(keys[first])} for {first} but "
                f"{sorted(k)} for {n}"
            )
    ours = {f for f in inner._fields if _kind(getattr(inner, f), names.treedef) != "none"}
    unknown = sorted(keys[first] - ours)
    if unknown:
        raise ValueError(
            f"torch's optimizer state holds {unknown}, which tx's {optimizer} state has no "
            "buffer for: the state_dict is another optimizer's, or an option that adds it "
            "(momentum, centered, amsgrad) is on in the torch optimizer and off in tx; build "
            "tx with the torch optimizer's options"
        )
    missing = sorted(ours - keys[first] - {"step"})
    if missing:
        raise ValueError(
            f"torch's optimizer state has no {missing[0]!r} (it holds {sorted(keys[first])}), "
            f"which tx's {optimizer} state holds: the state_dict is another optimizer's, or an "
            "option that adds it (momentum, centered, amsgrad) is on in tx and off in the "
            "torch optimizer; build tx with the torch optimizer's options"
        )


def _scalar(field: str, values: Mapping[str, Any], current: Any, strict: bool) -> np.ndarray:
    dtype = np.asarray(current).dtype
    numbers = {n: np.asarray(v) for n, v in values.items()}
    for n, v in numbers.items():
        if v.size != 1:
            raise ValueError(f"torch's {field} of {n} has shape {v.shape}; expected a number")
    first = next(iter(numbers.values())).reshape(())
    if strict and any(v.reshape(()) != first for v in numbers.values()):
        seen = {n: float(v.reshape(())) for n, v in numbers.items()}
        raise ValueError(
            f"torch's {field} differs between parameters ({seen}); a jaxreg state holds one "
            f"{field} for all parameters"
        )
    if np.issubdtype(dtype, np.integer) and float(first) != int(float(first)):
        raise ValueError(f"torch's {field} is {float(first)}, not a whole number of steps")
    return np.asarray(first, dtype)


def _buffer(field: str, values: Mapping[str, Any], current: Any, names: NameMap) -> Any:
    want = names.to_torch(current)  # torch-layout shapes and jaxreg's dtypes
    arrays = {}
    for n, v in values.items():
        a = np.asarray(v)
        if a.shape != want[n].shape:
            raise ValueError(
                f"torch's {field} of {n} has shape {a.shape}, but that parameter's is "
                f"{want[n].shape} (torch's layout)"
            )
        arrays[n] = a.astype(want[n].dtype, copy=False)
    return names.to_jax(arrays)


def buffers_to_torch(state: Any, names: NameMap) -> dict[str, dict[str, np.ndarray]]:
    """`{field: {torch name: array}}` of a jaxreg `OptState`'s inner fields (torch's keys),
    `None` fields left out; a scalar field appears once per parameter, as torch keeps it."""
    inner = state.inner
    out = {}
    for field in inner._fields:
        value = getattr(inner, field)
        kind = _kind(value, names.treedef)
        if kind == "buffer":
            out[field] = names.to_torch(value)
        elif kind == "scalar":
            out[field] = {n: np.asarray(value) for n in names.torch_names}
    return out


# ----------------------------------------------------------------------------------------
# state_dict level


def _groups(state_dict: Any, fn: str) -> tuple[Mapping, list[Mapping]]:
    if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
        got = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
        raise TypeError(
            f"{fn}: state_dict must be a torch optimizer's state_dict(), a dict with 'state' "
            f"and 'param_groups'; got {got}"
        )
    groups = state_dict["param_groups"]
    if not isinstance(groups, Sequence) or not all(
        isinstance(g, Mapping) and "params" in g for g in groups
    ):
        raise TypeError(
            f"{fn}: state_dict['param_groups'] must be a list of dicts with 'params' (torch's)"
        )
    return state_dict["state"], list(groups)


def _paths(params: Any) -> list[tuple[str, tuple[int, ...]]]:
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [(names_lib.dotted(p), tuple(np.shape(leaf))) for p, leaf in flat]


def _torch_names(torch_names: Any, groups: list[Mapping], params: Any, fn: str) -> list[str]:
    if isinstance(torch_names, torch.nn.Module):
        found = [n for n, _ in torch_names.named_parameters()]
    elif torch_names is not None:
        if isinstance(torch_names, str) or not all(isinstance(n, str) for n in torch_names):
            raise TypeError(
                f"{fn}: torch_names must be a torch module or a list of torch parameter names "
                f"in the optimizer's order, got {torch_names!r}"
            )
        found = list(torch_names)
    elif groups and all("param_names" in g for g in groups):
        found = [n for g in groups for n in g["param_names"]]
    else:
        found = [p for p, _ in _paths(params)]
    return found


def _name_map(
    torch_names: list[str],
    module: Any,
    shapes: Mapping[str, tuple[int, ...]],
    params: Any,
    names: Mapping[str, str] | None,
    transpose: Any,
    fn: str,
) -> NameMap:
    """The map, torch shapes from the module, else from `shapes` (torch's buffers), else
    from the jax leaf the name designates."""
    if isinstance(module, torch.nn.Module):
        shapes = {n: tuple(p.shape) for n, p in module.named_parameters()}
    leaf_shapes = dict(_paths(params))
    explicit = dict(names or {})
    torch_shapes = {}
    for n in torch_names:
        if n in shapes:
            torch_shapes[n] = tuple(shapes[n])
            continue
        path = explicit.get(n, n)
        match = [p for p in leaf_shapes if p == path or path.endswith("." + p)]
        if len(match) != 1:
            raise ValueError(
                f"{fn}: the shape of torch's {n!r} is unknown (torch holds no buffer for it "
                f"and no jax leaf is named so; the leaves are {list(leaf_shapes)}); pass "
                "torch_names=the torch model, or names={torch name: jax path}"
            )
        shape = leaf_shapes[match[0]]
        torch_shapes[n] = shape[:-2] + shape[-2:][::-1] if n in transpose else shape
    try:
        return names_lib.build(torch_shapes, params, names=names, transpose=transpose)
    except names_lib.NameMapError as e:
        raise names_lib.NameMapError(str(e).replace("verify:", f"{fn}:", 1)) from None


def _group_numbers(
    groups: list[Mapping], hyperparams: Mapping[str, Any], fn: str
) -> tuple[dict[str, float], dict[str, float]]:
    """The groups' `(current, origin)` numbers under jaxreg's names."""
    found = []
    for g in groups:
        current = {}
        for name in hyperparams:
            key, index = PAIRS.get(name, (name, None))
            if key not in g:
                raise ValueError(
                    f"{fn}: state_dict's param_groups have no {key!r}, which tx's "
                    f"hyperparameter {name!r} comes from; the state_dict is another "
                    f"optimizer's (its group has {sorted(k for k in g if k != 'params')})"
                )
            value = g[key] if index is None else g[key][index]
            current[name] = float(_numpy(value))
        origin = dict(current, lr=float(_numpy(g.get("initial_lr", g["lr"]))))
        found.append((current, origin))
    if not found:
        raise ValueError(f"{fn}: state_dict has no param_groups")
    for other in found[1:]:
        if other != found[0]:
            raise ValueError(
                f"{fn}: state_dict's {len(found)} param_groups have different hyperparameters "
                f"({[c for c, _ in found]}); a jaxreg optimizer holds one set for all params "
                "(split the params and use one optimizer per group, e.g. optax.multi_transform)"
            )
    return found[0]


def state_from_torch(
    state_dict: Mapping[str, Any],
    tx: Any,
    params: Any,
    *,
    torch_names: Any = None,
    names: Mapping[str, str] | None = None,
    transpose: Sequence[str] = (),
    step: int | None = None,
) -> Any:
    """The jaxreg state for `tx` and `params` holding a torch optimizer's `state_dict()`.

    Args:
      state_dict: `torch_optimizer.state_dict()`: `{"state": {index: {key: tensor}},
        "param_groups": [{..., "params": [index, ...]}]}`; tensors or NumPy arrays (a
        state_dict loaded with `torch.load` and converted elsewhere) or numbers.
      tx: the jaxreg mirror of the torch optimizer (`jr.optim.adam(...)`), with the same
        options (amsgrad, momentum, centered).
      params: the parameters the state is for (jax layout), e.g. `params_from_torch(model)`.
      torch_names: the torch model, or its parameter names in the optimizer's order
        (default: see the module's docstring).
      names, transpose: as `parity.verify`'s: `{torch name: jax path}` for pairs whose
        names differ; torch names whose square jax leaf is transposed.
      step: the updates done, for an optimizer whose torch state counts none (SGD).

    Returns:
      `tx`'s `OptState` with torch's buffers and step count, its hyperparameters chosen
      by `adopt`'s rule (see the module's docstring).

    Raises:
      TypeError: not a state_dict; `tx` is not a jaxreg optimizer.
      ValueError: counts of parameters that differ, names that do not match, a buffer on
        one side only, param groups with different numbers (each message says which).
    """
    fn = "state_from_torch"
    state, groups = _groups(state_dict, fn)
    template = tx.init(params)
    if not jr.optim.is_optimizer_state(template):
        raise TypeError(
            f"{fn}: tx must be a jaxreg.optim optimizer (its state is an OptState); "
            f"tx.init(params) gave a {type(template).__name__}"
        )
    order = [i for g in groups for i in g["params"]]
    tnames = _torch_names(torch_names, groups, params, fn)
    leaves = len(jax.tree_util.tree_leaves(params))
    if not len(order) == len(tnames) == leaves:
        raise ValueError(
            f"{fn}: the state_dict's param_groups hold {len(order)} parameters, torch_names "
            f"names {len(tnames)} and params has {leaves} leaves; they must be the same "
            "parameters"
        )
    per_name = {}
    for i, n in zip(order, tnames, strict=True):
        s = state.get(i, state.get(str(i), {}))
        per_name[n] = {k: _numpy(v) for k, v in s.items()}
    shapes = {
        n: np.shape(v)
        for n, s in per_name.items()
        for v in s.values()
        if v is not None and np.ndim(v) > 0
    }
    name_map = _name_map(tnames, torch_names, shapes, params, names, transpose, fn)
    current, origin = _group_numbers(groups, template.hyperparams, fn)
    filled = buffers_from_torch(template, per_name, name_map, step=step)
    dtype = next(iter(template.hyperparams.values())).dtype
    order_hp = sorted(template.hyperparams)
    made = jr.optim.OptState(
        {k: np.asarray(current[k], dtype) for k in template.hyperparams},
        filled.inner,
        np.asarray([origin[k] for k in order_hp], dtype),
    )
    return jr.optim.adopt(tx, params, made)


def _options(tx: Any, signature: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
    """`tx`'s structural options that torch's constructor takes (amsgrad, nesterov, ...)
    and its init's numbers (Adagrad's `initial_accumulator_value`)."""
    found = {}
    for part in (tx.init, tx.update):
        if not dataclasses.is_dataclass(part):
            continue
        for f in dataclasses.fields(part):
            if f.name in ("hyperparams", "cache") or f.name not in signature:
                continue
            value = getattr(part, f.name)
            default = signature[f.name].default
            if isinstance(value, bool) == isinstance(default, bool):
                found[f.name] = value
    return found


def state_to_torch(
    opt_state: Any,
    tx: Any,
    params: Any,
    *,
    torch_names: Any = None,
    names: Mapping[str, str] | None = None,
    transpose: Sequence[str] = (),
) -> dict[str, Any]:
    """A state_dict that the torch optimizer mirrored by `tx` takes in `load_state_dict`.

    Args:
      opt_state: `tx`'s `OptState` (checked, and its numbers chosen, by
        `jr.optim.adopt(tx, params, opt_state)`).
      tx: the jaxreg optimizer; its options (amsgrad, nesterov, maximize, ...) go into
        the param group.
      params: the parameters (jax layout): the structure, and each tensor's dtype.
      torch_names, names, transpose: as `state_from_torch`; the state's index `i` is
        `torch_names[i]`.

    Returns:
      `{"state": {index: {key: tensor}}, "param_groups": [group]}`: the buffers as torch
      tensors in torch's layout and dtype (the step count a float32 tensor, as torch's),
      nothing at step 0 (torch's lazy state; Adagrad's is eager), and one group with
      every key torch's constructor sets, `params` `[0, ..., n-1]`.

    Raises:
      TypeError: `tx` is not a jaxreg optimizer, or torch.optim has no class of its name.
      ValueError: a state that does not fit `tx` and `params` (from `adopt`); names that
        do not match.
    """
    fn = "state_to_torch"
    state = jr.optim.adopt(tx, params, opt_state)
    if not jr.optim.is_optimizer_state(state):
        raise TypeError(f"{fn}: opt_state must be a jaxreg optimizer's OptState")
    inner = state.inner
    cls_name = type(inner).__name__.removesuffix("State")
    cls = getattr(torch.optim, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(f"{fn}: torch.optim has no optimizer {cls_name!r} for {type(inner)}")
    tnames = _torch_names(torch_names, [], params, fn)
    leaves = len(jax.tree_util.tree_leaves(params))
    if len(tnames) != leaves:
        raise ValueError(f"{fn}: torch_names names {len(tnames)} parameters, params has {leaves}")
    name_map = _name_map(tnames, torch_names, {}, params, names, transpose, fn)
    signature = inspect.signature(cls).parameters
    hp = _python_numbers(state.hyperparams, jr.optim.hyperparams_of(tx))
    kwargs: dict[str, Any] = {}
    for name, value in hp.items():
        key, index = PAIRS.get(name, (name, None))
        if key not in signature:
            raise ValueError(f"{fn}: torch.optim.{cls_name} takes no {key!r} (tx's {name!r})")
        if index is None:
            kwargs[key] = value
        else:
            pair = list(kwargs.get(key, (None, None)))
            pair[index] = value
            kwargs[key] = tuple(pair)
    kwargs.update({k: v for k, v in _options(tx, signature).items() if k not in kwargs})
    dtypes = name_map.to_torch(params)  # torch layout, params' dtypes
    dummies = [
        torch.zeros(dtypes[n].shape, dtype=_torch_dtype(dtypes[n].dtype), requires_grad=True)
        for n in name_map.torch_names
    ]
    by_name = dict(zip(name_map.torch_names, dummies, strict=True))
    dummy_opt = cls([by_name[n] for n in tnames], **kwargs)
    made = dummy_opt.state_dict()
    group = dict(made["param_groups"][0], params=list(range(len(tnames))))
    origin = dict(zip(sorted(hp), np.asarray(state.origin), strict=True))
    if origin["lr"] != state.hyperparams["lr"]:
        group["initial_lr"] = _python_numbers({"lr": origin["lr"]}, jr.optim.hyperparams_of(tx))[
            "lr"
        ]
    step = int(np.asarray(inner.step)) if "step" in inner._fields else 1
    if step == 0 and not made["state"]:
        return {"state": {}, "param_groups": [group]}
    if not made["state"]:  # learn torch's keys and scalar dtypes from one zero-gradient step
        for p in dummies:
            p.grad = torch.zeros_like(p)
        dummy_opt.step()
    torch_state = dummy_opt.state_dict()["state"].get(0, {})
    if not torch_state:  # torch keeps nothing (SGD without momentum)
        return {"state": {}, "param_groups": [group]}
    ours = buffers_to_torch(state, name_map)
    missing = sorted(k for k, v in torch_state.items() if v is not None and k not in ours)
    if missing:
        raise ValueError(
            f"{fn}: torch.optim.{cls_name} with these options keeps {missing}, which tx's "
            "state has no buffer for"
        )
    out = {}
    for i, n in enumerate(tnames):
        entry = {}
        for key, like in torch_state.items():
            value = ours[key][n]
            if isinstance(like, torch.Tensor):
                entry[key] = _tensor(value, like.dtype if like.ndim == 0 else None)
            else:
                entry[key] = type(like)(np.asarray(value))
        out[i] = entry
    return {"state": out, "param_groups": [group]}


def _python_numbers(hyperparams: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, float]:
    """The state's numbers as Python floats: `tx`'s own where the state holds them (in a
    float32 state, 0.001 is float32(0.001); torch's group gets the 0.001 it was given)."""
    out = {}
    for k, v in hyperparams.items():
        v = np.asarray(v)
        mine = given.get(k)
        exact = mine is not None and np.asarray(float(mine), v.dtype) == v
        out[k] = float(mine) if exact else float(v)
    return out


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    if np.dtype(dtype) == np.dtype(jax.numpy.bfloat16):
        return torch.bfloat16
    return torch.from_numpy(np.zeros((), dtype)).dtype


def _tensor(value: Any, dtype: torch.dtype | None) -> torch.Tensor:
    a = np.asarray(value)
    if a.dtype == np.dtype(jax.numpy.bfloat16):
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    if dtype is not None:  # a scalar, in the dtype torch keeps it in (step: float32)
        return torch.tensor(a.item(), dtype=dtype)
    return torch.from_numpy(np.array(a))
