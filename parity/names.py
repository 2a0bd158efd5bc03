"""Which jax leaf is which torch parameter: a name map between `named_parameters()` and a pytree.

A torch model names its tensors (`"fc.weight"`); a port holds them in any pytree
(`jr.linear.Params`, `{"fc": {"kernel": ...}}`, a list). Each jax leaf is named by its
path, dotted (`"weight"`, `"fc.kernel"`, `"layers.0.w"`), and matched with a torch name:

- `names={"fc.weight": "fc.kernel", ...}` (torch name -> jax path) where you say so;
- else the torch name equal to the jax path (`{"fc": {"weight": ...}}` is `"fc.weight"`);
- else the one torch name ending in `"." + path` (`Params.weight` is a model's only
  `"linear.weight"`).

A jax leaf whose shape is the torch tensor's reversed (a `(in, out)` kernel for torch's
`(out, in)` weight) is compared transposed; a square one only when named in
`transpose=`. Every trainable torch parameter must have a jax leaf and every jax leaf a
torch parameter: a torch `bias` the port lacks is an error that says so, before training.

No torch here: the map is built from `{torch name: shape}`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

import jax
import numpy as np


class NameMapError(ValueError):
    """The torch parameters and the jax params cannot be matched one to one."""


def _key(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def dotted(path: tuple) -> str:
    """A pytree path as a dotted name: `(DictKey('fc'), DictKey('kernel'))` -> `"fc.kernel"`."""
    return ".".join(_key(k) for k in path)


@dataclasses.dataclass(frozen=True)
class NameMap:
    """The one-to-one map between torch parameter names and a params pytree's leaves.

    Attributes:
      treedef: the jax params' tree structure.
      paths: each jax leaf's dotted path, in leaf order.
      torch_names: the torch name of each leaf, in leaf order.
      transposed: whether each leaf is its torch tensor transposed (last two axes).
    """

    treedef: Any
    paths: tuple[str, ...]
    torch_names: tuple[str, ...]
    transposed: tuple[bool, ...]

    def to_torch(self, params: Any) -> dict[str, np.ndarray]:
        """`{torch name: array in torch's layout}` from jax params (or a history of them
        stacked on a leading axis)."""
        leaves = self.treedef.flatten_up_to(params)
        return {
            name: _layout(np.asarray(leaf), t)
            for name, leaf, t in zip(self.torch_names, leaves, self.transposed, strict=True)
        }

    def to_jax(self, arrays: Mapping[str, Any], dtype: Any = None) -> Any:
        """Jax params (NumPy leaves) from `{torch name: array in torch's layout}`."""
        leaves = [
            _layout(np.asarray(arrays[name], dtype), t)
            for name, t in zip(self.torch_names, self.transposed, strict=True)
        ]
        return self.treedef.unflatten(leaves)

    def describe(self) -> str:
        pairs = [
            f"{t} <-> {p}" + (" (transposed)" if tr else "")
            for t, p, tr in zip(self.torch_names, self.paths, self.transposed, strict=True)
        ]
        return ", ".join(pairs)


def _layout(a: np.ndarray, transposed: bool) -> np.ndarray:
    return np.swapaxes(a, -1, -2) if transposed else a


def build(
    torch_shapes: Mapping[str, tuple[int, ...]],
    params: Any,
    *,
    names: Mapping[str, str] | None = None,
    transpose: Collection[str] = (),
    frozen: Collection[str] = (),
    auto_transpose: bool = True,
) -> NameMap:
    """Match `params`' leaves with the torch parameters `torch_shapes` (`{name: shape}`).

    Args:
      names: `{torch name: jax dotted path}` for pairs whose names differ.
      transpose: torch names whose jax leaf is the tensor transposed although square.
      frozen: torch names that need no jax leaf (parameters with `requires_grad=False`).
      auto_transpose: compare a leaf of reversed shape transposed (False for a pytree
        whose layout is torch's own, `jr.linear.Params`: a reversed shape is a mistake).

    Raises:
      NameMapError: a jax leaf without a torch parameter, a trainable torch parameter
        without a jax leaf, or shapes that differ (other than transposed), each named.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [dotted(p) for p, _ in flat]
    shapes = [tuple(np.shape(leaf)) for _, leaf in flat]
    explicit = dict(names or {})
    unknown = sorted(set(explicit) - set(torch_shapes))
    if unknown:
        raise NameMapError(
            f"verify: names= maps {unknown}, which are not parameters of the torch model "
            f"(its named_parameters: {sorted(torch_shapes)})"
        )
    bad_paths = sorted(set(explicit.values()) - set(paths))
    if bad_paths:
        raise NameMapError(
            f"verify: names= maps to jax paths {bad_paths}, which the jax params do not have "
            f"(their leaves: {paths})"
        )
    by_path = {p: t for t, p in explicit.items()}
    torch_names = []
    for path in paths:
        if path in by_path:
            torch_names.append(by_path[path])
        elif path in torch_shapes and path not in explicit:
            torch_names.append(path)
        else:
            ends = [t for t in torch_shapes if t.endswith("." + path) and t not in explicit]
            if len(ends) != 1:
                why = (
                    f"several do ({', '.join(ends)})"
                    if ends
                    else f"none of {sorted(torch_shapes)} does"
                )
                raise NameMapError(
                    f"verify: jax params {[path]} are not parameters of the torch model "
                    f"(its named_parameters: {sorted(torch_shapes)}: {why}); use the same "
                    "names on both sides, or pass names={torch name: jax path}"
                )
            torch_names.append(ends[0])
    twice = sorted({t for t in torch_names if torch_names.count(t) > 1})
    if twice:
        raise NameMapError(f"verify: torch parameters {twice} are matched by several jax leaves")
    missing = [t for t in torch_shapes if t not in torch_names and t not in frozen]
    if missing:
        hint = " (a missing bias?)" if any(t.endswith("bias") for t in missing) else ""
        raise NameMapError(
            f"verify: the torch model trains {missing}, which have no counterpart in the jax "
            f"params (their leaves: {paths}){hint}; the port must train every parameter "
            "torch trains (or name the pair with names=)"
        )
    transposed = []
    for path, shape, t in zip(paths, shapes, torch_names, strict=True):
        tshape = tuple(torch_shapes[t])
        flip = len(shape) >= 2 and shape[-2:] == tshape[-2:][::-1] and shape[:-2] == tshape[:-2]
        if t in transpose:
            if not flip:
                raise NameMapError(
                    f"verify: transpose= names {t!r} ({tshape}), but the jax leaf {path!r} "
                    f"has shape {shape}, not its transpose"
                )
            transposed.append(True)
        elif shape == tshape:
            transposed.append(False)
        elif flip and auto_transpose:
            transposed.append(True)
        else:
            what = ": it is torch's transposed (a transposed weight)" if flip else ""
            raise NameMapError(
                f"verify: torch's {t} has shape {tshape} but the jax leaf {path!r} has "
                f"{shape}{what}; jax params must start from the torch model's own values"
                + (" (jr.linear.Params holds weight as (out, in), as torch does)" if flip else "")
            )
    return NameMap(treedef, tuple(paths), tuple(torch_names), tuple(transposed))
