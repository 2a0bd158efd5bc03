"""`objective`: the training loss `loss(predict(params, x), y)`, and what it declares about itself.

An `Objective` says what it computes (the model kind, whether the loss is a sum or mean of
per-element terms), so the speed seam (`jaxreg.gradients`) can choose a formulation from
that declaration instead of recognising functions by identity. jaxreg's own predict and
loss functions are declared in the two tables below; a user's wrapper declares itself with
`objective(..., model="linear")`.

An `Objective` is a pytree: array-valued loss arguments (`weight=`, `pos_weight=`) are its
leaves, everything else is static. So equal objectives share compiled programs and a new
weight array does not recompile.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxreg import linear, logistic, losses, softmax

__all__ = ["CLASS_TARGETS", "MODELS", "SEPARABLE", "Objective", "Separable", "objective"]

# What a predict function computes, by name: "linear" is `x @ W.T + b` with `linear.Params`,
# "logistic" is the sigmoid of it, "softmax" is `x @ W.T + b` read as the (n, k) logits of
# k classes (trained against class indices; the fast formulations do not cover it, so its
# objectives take the plain gradient). jaxreg's own functions are declared here.
MODELS: types.MappingProxyType[Callable, str] = types.MappingProxyType(
    {
        linear.predict: "linear",
        logistic.logits: "linear",
        logistic.predict: "logistic",
        softmax.logits: "softmax",
    }
)
MODEL_KINDS = ("linear", "logistic", "softmax")

# The losses that take class indices (an integer (n,) target): `Dataset` keeps such targets
# integer (see `jaxreg.dataset`). They are not `SEPARABLE` (a term spans a row of classes).
CLASS_TARGETS = frozenset({losses.cross_entropy, losses.nll})


@dataclasses.dataclass(frozen=True)
class Separable:
    """A loss that is the sum (or mean) of per-element terms.

    Attributes:
      elementwise: `(pred, target, reduction="none", **kw) -> per-element losses`.
      fixed: keyword arguments the loss always passes (`sse` is `mse(reduction="sum")`).
      target_range: the closed interval the targets must lie in, or None.
      pred_range: the closed interval the predictions must lie in, or None.
      transcendental: its per-element terms are logs and exps (costly to recompute).
    """

    elementwise: Callable
    fixed: tuple[tuple[str, Any], ...] = ()
    target_range: tuple[float, float] | None = None
    pred_range: tuple[float, float] | None = None
    transcendental: bool = False


# jaxreg's losses, declared: each a sum or mean of independent per-element terms.
SEPARABLE: types.MappingProxyType[Callable, Separable] = types.MappingProxyType(
    {
        losses.mse: Separable(losses.mse),
        losses.sse: Separable(losses.mse, (("reduction", "sum"),)),
        losses.l1: Separable(losses.l1),
        losses.huber: Separable(losses.huber),
        losses.smooth_l1: Separable(losses.smooth_l1),
        losses.bce: Separable(losses.bce, (), (0.0, 1.0), (0.0, 1.0), transcendental=True),
        # torch checks bce's targets and probabilities, not bce_with_logits' targets.
        losses.bce_with_logits: Separable(losses.bce_with_logits, transcendental=True),
    }
)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """`loss(predict(params, x), y, **loss_kwargs)`. Build one with `objective(...)`.

    Attributes:
      predict: `(params, x) -> pred`.
      loss: `(pred, target, **kw) -> scalar`.
      static_kwargs: the loss's non-array keyword arguments, sorted `(name, value)` pairs.
      array_kwargs: the loss's array keyword arguments (the pytree's leaves).
      model: what `predict` computes ("linear", "logistic", "softmax") or None (unknown).
    """

    predict: Callable
    loss: Callable
    static_kwargs: tuple[tuple[str, Any], ...] = ()
    array_kwargs: tuple[tuple[str, Any], ...] = ()
    model: str | None = None

    @property
    def loss_kwargs(self) -> dict[str, Any]:
        return {**dict(self.static_kwargs), **dict(self.array_kwargs)}

    def __call__(self, params, x, y):
        return self.loss(self.predict(params, x), y, **self.loss_kwargs)

    def separable(self) -> tuple[Separable, dict[str, Any], str] | None:
        """(declaration, elementwise kwargs, "mean" or "sum"), or None if not separable."""
        decl = SEPARABLE.get(self.loss)
        if decl is None:
            return None
        kwargs = {**self.loss_kwargs, **dict(decl.fixed)}
        reduction = kwargs.pop("reduction", "mean")
        if reduction not in ("mean", "sum"):
            return None
        return decl, kwargs, reduction

    def value_and_grad(self, params, x, y):
        """`jax.value_and_grad(self)(params, x, y)`: the plain reference formulation."""
        return jax.value_and_grad(self)(params, x, y)

    # pytree protocol: array kwargs are children, the rest is static (hashable).
    def tree_flatten(self):
        names = tuple(k for k, _ in self.array_kwargs)
        values = tuple(v for _, v in self.array_kwargs)
        return values, (self.predict, self.loss, self.static_kwargs, names, self.model)

    @classmethod
    def tree_unflatten(cls, aux, values):
        predict, loss, static_kwargs, names, model = aux
        return cls(predict, loss, static_kwargs, tuple(zip(names, values, strict=True)), model)

    def __eq__(self, other):
        if not isinstance(other, Objective):
            return NotImplemented
        return self.tree_flatten()[1] == other.tree_flatten()[1] and all(
            a is b for a, b in zip(self.tree_flatten()[0], other.tree_flatten()[0], strict=True)
        )

    def __hash__(self):
        return hash(self.tree_flatten()[1])


def objective(predict: Callable, loss: Callable, *, model: str | None = None, **loss_kwargs):
    """The scalar training loss `loss_fn(params, x, y) = loss(predict(params, x), y)`.

    Args:
      predict: `(params, x) -> pred`, e.g. `jaxreg.linear.predict`.
      loss: `(pred, target, **kw) -> scalar`, e.g. `jaxreg.losses.mse`.
      model: what `predict` computes, when it is your own function: "linear" (it returns
        `jaxreg.linear.predict(params, x)`), "logistic" (`jaxreg.logistic.predict`) or
        "softmax" (`jaxreg.softmax.logits`).
        Declaring it lets `fit` use the fast formulations for these models (it is a
        promise: the fast path computes the declared model). jaxreg's own functions are
        declared already.
      **loss_kwargs: passed to `loss` (e.g. `reduction="sum"`, `delta=2.0`,
        `weight=array`). Arrays are inputs of the compiled program (a new array does not
        recompile); other values must be hashable.

    Example:
      loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
      loss_fn(params, x, y)   # torch: F.mse_loss(model(x), y)
    """
    for name, fn in (("predict", predict), ("loss", loss)):
        if not callable(fn):
            raise TypeError(
                f"objective: {name} must be a function, got {type(fn).__name__} {fn!r}; "
                "e.g. jr.objective(jr.linear.predict, jr.losses.mse)"
            )
    declared = MODELS.get(predict)
    if model is not None:
        if model not in MODEL_KINDS:
            raise ValueError(
                f"objective: model must be one of {MODEL_KINDS} or None, got {model!r}"
            )
        declared = model
    static, arrays = [], []
    for name, value in sorted(loss_kwargs.items()):
        if _is_array(value):
            arrays.append((name, value if isinstance(value, jax.Array) else np.asarray(value)))
            continue
        try:
            hash(value)
        except TypeError:
            raise TypeError(
                f"objective: loss argument {name}={value!r} is neither an array nor hashable; "
                "pass arrays (or numbers) as loss arguments"
            ) from None
        static.append((name, value))
    return Objective(predict, loss, tuple(static), tuple(arrays), declared)


def _is_array(value: Any) -> bool:
    return isinstance(value, (jax.Array, np.ndarray)) or (
        isinstance(value, (list, tuple)) and len(value) > 0 and np.ndim(value) > 0
    )


def as_objective(loss_fn: Any) -> Any:
    """`loss_fn` as a pytree a compiled program takes as an input.

    An `Objective` is one already; any other callable becomes a leafless
    `jax.tree_util.Partial` (static, compared by identity).
    """
    if isinstance(loss_fn, Objective):
        return loss_fn
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a function (params, x, y) -> scalar, got {type(loss_fn).__name__}; "
            "build one with jr.objective(jr.linear.predict, jr.losses.mse)"
        )
    return jax.tree_util.Partial(loss_fn)
