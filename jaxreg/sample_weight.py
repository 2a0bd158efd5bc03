"""Per-sample weights: `fit(..., sample_weight=w)`, torch's weighted-loss idiom.

torch equivalent, each step on the batch's rows `idx` (the same rows as x and y):

    l = F.mse_loss(model(x[idx]), y[idx], reduction="none")   # any loss, reduction="none"
    loss = (l * w[idx]).mean()                   # reduction "mean"
    loss = (l * w[idx]).sum()                    # "sum"
    loss = (l * w[idx]).sum() / w[idx].expand_as(l).sum()   # "normalized"

For `bce`/`bce_with_logits`, "mean" is `F.binary_cross_entropy(p, y[idx], weight=w[idx])`.
w has one value per row, (n,) or (n, 1), multiplying every term of that row, or one per
term, (n, out) like y. The default reduction is the loss's own (`mse`: "mean", `sse` or
`reduction="sum"`: "sum"). A "normalized" batch whose weights are all zero is 0 / 0 (NaN,
as in torch): `fit` then raises `DivergenceError` naming the step.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import _checks
from jaxreg.losses import core
from jaxreg.objective import SEPARABLE, Objective

__all__ = ["REDUCTIONS", "Weighted", "check_sample_weight", "weighted"]

REDUCTIONS = ("mean", "sum", "normalized")


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Weighted:
    """The weighted loss `(params, x, (y, w)) -> scalar` of an `Objective` (see the module
    docstring). A pytree: the objective's array arguments are its leaves, `reduction` is
    static, so a new weight array (an input of the program) does not recompile.

    Attributes:
      objective: the unweighted `jaxreg.objective.Objective`.
      reduction: "mean", "sum" or "normalized".
    """

    objective: Objective
    reduction: str

    def __call__(self, params: Any, x: Any, yw: Any) -> jax.Array:
        y, w = yw
        terms = self.terms(params, x, y)
        w = per_term(w, terms)
        total = terms * w
        if self.reduction == "mean":
            return core.mean(total)
        if self.reduction == "sum":
            return jnp.sum(total)
        return jnp.sum(total) / jnp.sum(jnp.broadcast_to(w, terms.shape))

    def terms(self, params: Any, x: Any, y: Any) -> jax.Array:
        """The loss's unreduced terms (`reduction="none"`), (n,) or (n, ...)."""
        fn, kwargs = _elementwise(self.objective)
        return fn(self.objective.predict(params, x), y, **kwargs)

    def tree_flatten(self):
        return (self.objective,), self.reduction

    @classmethod
    def tree_unflatten(cls, reduction, children):
        return cls(children[0], reduction)


def per_term(w: jax.Array, terms: jax.Array) -> jax.Array:
    """w (n,), (n, 1) or terms' shape, shaped to multiply the (n, ...) terms row by row."""
    if w.shape == terms.shape:
        return w
    return w.reshape((w.shape[0],) + (1,) * (terms.ndim - 1))


def _elementwise(objective: Objective) -> tuple[Any, dict[str, Any]]:
    """(loss, kwargs) computing the objective's loss terms with reduction "none", and the
    loss's own reduction under kwargs' "reduction" key removed."""
    decl = SEPARABLE.get(objective.loss)
    kwargs = dict(objective.loss_kwargs)
    fn = objective.loss
    if decl is not None:  # sse is mse(reduction="sum"): its terms are mse's
        fn = decl.elementwise
        kwargs.update(decl.fixed)
    kwargs["reduction"] = "none"
    return fn, kwargs


def own_reduction(objective: Objective) -> str:
    """The reduction the objective's loss applies itself ("mean" unless it says "sum")."""
    decl = SEPARABLE.get(objective.loss)
    fixed = dict(decl.fixed) if decl is not None else {}
    return fixed.get("reduction", dict(objective.static_kwargs).get("reduction", "mean"))


def weighted(objective: Any, reduction: Any, params: Any, x: Any, y: Any, w: Any) -> Weighted:
    """The `Weighted` loss of `fit(..., sample_weight=w, sample_weight_reduction=reduction)`,
    checked: the objective is a `jr.objective(predict, loss)` whose loss takes
    `reduction="none"` and returns one term per row (or per element) of y."""
    if not isinstance(objective, Objective):
        raise TypeError(
            "sample_weight needs the loss as jr.objective(predict, loss) (e.g. "
            "jr.objective(jr.linear.predict, jr.losses.mse)), to weight each row's loss "
            "terms; a plain (params, x, y) -> scalar function has no per-row terms. Or "
            "multiply the weights into your own function's loss."
        )
    if reduction is None:
        reduction = own_reduction(objective)
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"sample_weight_reduction must be one of {REDUCTIONS} or None (the loss's own "
            f"reduction), got {reduction!r}"
        )
    if own_reduction(objective) == "none":
        raise ValueError(
            "sample_weight with a loss of reduction='none': fit needs a scalar loss; drop "
            "reduction='none' and choose sample_weight_reduction= ('mean', 'sum', 'normalized')"
        )
    name = getattr(objective.loss, "__name__", repr(objective.loss))
    if not _takes_reduction(objective.loss):
        raise TypeError(
            f"sample_weight: the loss {name} takes no reduction= argument; fit weights the "
            "terms of loss(pred, y, reduction='none') (every jaxreg loss takes it). Add "
            f"reduction='none' support (return one term per row) to {name}."
        )
    out = Weighted(objective, reduction)
    try:
        terms = jax.eval_shape(out.terms, params, x, y)
    except TypeError as e:
        raise TypeError(
            f"sample_weight: {name}(pred, y, reduction='none') failed ({e}); the loss must "
            "return its unreduced terms for reduction='none'."
        ) from None
    n = np.shape(x)[0]
    ok = len(terms.shape) >= 1 and terms.shape[0] == n
    if ok and np.ndim(w) > 1 and np.shape(w)[1:] != (1,):
        ok = tuple(np.shape(w)) == tuple(terms.shape)
    if not ok:
        raise ValueError(
            f"sample_weight {tuple(np.shape(w))} does not match the loss terms of {name}"
            f"(reduction='none'), shape {tuple(terms.shape)}: give one weight per row, "
            f"({n},), or one per term, {tuple(terms.shape)}."
        )
    return out


def _takes_reduction(loss: Any) -> bool:
    try:
        params = inspect.signature(loss).parameters
    except (TypeError, ValueError):  # a builtin: let the trace decide
        return True
    return "reduction" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def check_sample_weight(
    w: Any, n: int | tuple[int, ...], y_shape: tuple[int, ...], *, leading: str = "model"
) -> Any:
    """`w` as an array of (n,), (n, 1) or y's shape, finite and nonnegative, else a
    `TypeError`/`ValueError` naming `sample_weight` and the fix. `n` may be a tuple:
    `fit_many`'s (M, n), one weight per model and row (`leading` names the first axis:
    "model", or "replica" for a replica step's (R, b))."""
    w = _checks.as_array("sample_weight", w)
    shape = tuple(np.shape(w))
    rows = (n,) if isinstance(n, int) else tuple(n)
    allowed = [rows, (*rows, 1), tuple(y_shape)]
    if shape not in allowed:
        what = "row of x and y" if len(rows) == 1 else f"{leading} and row of x and y"
        raise ValueError(
            f"sample_weight has shape {shape}; it takes one weight per {what}: shape "
            f"{rows} or {(*rows, 1)}, or one per element of y, {tuple(y_shape)}."
        )
    if isinstance(w, jax.Array) and not w.is_fully_addressable:
        return w  # sharded across processes: each process checks its rows as it loads
    host = np.asarray(w)
    _checks.check_finite("sample_weight", host)
    negative = host < 0
    if negative.any():
        first = tuple(int(i) for i in np.argwhere(negative)[0])
        raise ValueError(
            f"sample_weight must be >= 0 (a weight multiplies a row's loss), but it has "
            f"{int(negative.sum())} negative value(s), the first {host[first].item()!r} at "
            f"{f'row {first[0]}' if len(rows) == 1 else f'index {first[: len(rows)]}'}. Use "
            "0 to leave a row out."
        )
    return w
