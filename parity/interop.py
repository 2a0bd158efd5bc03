"""torch `nn.Linear` (or its state dict) <-> `jaxreg.linear.Params`.

Both use the same layout, weight (out, in) and bias (out,), so the conversion copies the
numbers and nothing else: `params_to_torch(params_from_torch(layer))` reproduces the
layer's tensors bit for bit, in both float32 and float64.

    layer = torch.nn.Linear(3, 1)
    params = params_from_torch(layer)          # jr.linear.Params, float32 jax arrays
    ...                                        # train with jaxreg
    params_to_torch(params, layer)             # copy the result back into the layer

The optimizer's state goes across with `parity.state_dict` (`state_from_torch`,
`state_to_torch`: a torch optimizer's `state_dict()` <-> a jaxreg `OptState`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
import torch

from jaxreg.linear import Params


def find_linear(module: torch.nn.Module) -> torch.nn.Linear:
    """The module itself if it is an `nn.Linear`, else its only `nn.Linear` submodule.

    Raises:
      ValueError: no `nn.Linear` in the module, or more than one (name the layer instead:
        `params_from_torch(model.fc)`).
    """
    if isinstance(module, torch.nn.Linear):
        return module
    found = [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    if len(found) != 1:
        what = (
            "no nn.Linear"
            if not found
            else f"{len(found)} nn.Linear layers ({', '.join(n for n, _ in found)})"
        )
        raise ValueError(
            f"{type(module).__name__} has {what}; jaxreg's Params hold one linear layer. "
            "Pass that layer itself (e.g. model.linear) or its state_dict()."
        )
    return found[0][1]


def _from_state_dict(sd: Mapping[str, Any]) -> tuple[Any, Any]:
    weights = [k for k in sd if k == "weight" or k.endswith(".weight")]
    if len(weights) != 1:
        raise ValueError(
            f"a state dict with exactly one '*weight' entry is needed; got keys {sorted(sd)}"
        )
    prefix = weights[0][: -len("weight")]
    extra = sorted(set(sd) - {prefix + "weight", prefix + "bias"})
    if extra:
        raise ValueError(f"the state dict has entries that are not one linear layer's: {extra}")
    return sd[prefix + "weight"], sd.get(prefix + "bias")


def _to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy().copy()
    return np.array(t)


def params_from_torch(module_or_state_dict: Any, dtype: Any = None) -> Params:
    """A torch linear layer's parameters as `jr.linear.Params` of jax arrays (a copy).

    Args:
      module_or_state_dict: an `nn.Linear`, a module containing exactly one `nn.Linear`,
        or a state dict with keys `weight` and optionally `bias` (any common prefix, such
        as `linear.weight`, is accepted).
      dtype: the jax dtype of the result; default: the tensors' own dtype (float32 stays
        float32; float64 needs JAX's x64 mode).

    Returns:
      `Params(weight (out, in), bias (out,) or None)`.

    Raises:
      ValueError: not one linear layer, or shapes that are not (out, in) and (out,).
      TypeError: non-float tensors.
    """
    if isinstance(module_or_state_dict, torch.nn.Module):
        layer = find_linear(module_or_state_dict)
        weight, bias = layer.weight, layer.bias
    elif isinstance(module_or_state_dict, Mapping):
        weight, bias = _from_state_dict(module_or_state_dict)
    else:
        raise TypeError(
            "params_from_torch takes an nn.Module or a state dict, got "
            f"{type(module_or_state_dict).__name__}"
        )
    w = _to_numpy(weight)
    b = None if bias is None else _to_numpy(bias)
    if w.ndim != 2 or (b is not None and b.shape != (w.shape[0],)):
        raise ValueError(
            f"expected weight (out, in) and bias (out,), got {w.shape} and "
            f"{None if b is None else b.shape}"
        )
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"the weight must be floating point, got {w.dtype}")
    dtype = w.dtype if dtype is None else dtype
    return Params(jnp.asarray(w, dtype), None if b is None else jnp.asarray(b, dtype))


def params_to_torch(params: Params, module: torch.nn.Module | None = None):
    """`jr.linear.Params` as a torch state dict, or copied into a module's linear layer.

    Args:
      params: `Params(weight (out, in), bias (out,) or None)`.
      module: an `nn.Linear` or a module with exactly one; its tensors are overwritten in
        place (under `torch.no_grad()`), keeping their identity, so an optimizer built on
        them still holds them.

    Returns:
      Without `module`: `{"weight": tensor, "bias": tensor}` (no "bias" for bias=None), in
      the params' dtype. With `module`: the module.

    Raises:
      ValueError: shapes, or bias presence, differ from the module's.
      TypeError: the module's dtype differs from the params' (no silent float64 -> float32:
        convert one of them first, e.g. `module.double()`).
    """
    sd = {"weight": torch.from_numpy(np.array(params.weight))}
    if params.bias is not None:
        sd["bias"] = torch.from_numpy(np.array(params.bias))
    if module is None:
        return sd
    layer = find_linear(module)
    if (layer.bias is None) != (params.bias is None):
        raise ValueError(
            f"the layer has bias={layer.bias is not None} but the params have "
            f"bias={params.bias is not None}"
        )
    with torch.no_grad():
        for name, value in sd.items():
            target = getattr(layer, name)
            if tuple(target.shape) != tuple(value.shape):
                raise ValueError(
                    f"{name}: the layer's shape is {tuple(target.shape)}, the params' "
                    f"{tuple(value.shape)}"
                )
            if target.dtype != value.dtype:
                raise TypeError(
                    f"{name}: the layer is {target.dtype} but the params are {value.dtype}; "
                    "convert one of them first (module.double() / module.float())"
                )
            target.copy_(value)
    return module
