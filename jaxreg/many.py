"""Fit many independent models at once: `jax.vmap` of `fit`'s compiled loop.

`fit_many(loss_fn, tx, params, x, y, steps=...)` trains M models that share a loss and an
optimizer but not their data or parameters: every leaf of `params`, and `x`, `y`, have a
leading model axis of length M. It runs the program `fit` runs (`_loop._program`, full
batch) under `jax.vmap`, so model m gets exactly the updates `fit` would give it alone
(up to float rounding of the batched kernels); there is one compiled program per shape,
cached like `fit`'s.

torch equivalent: a Python loop `for m in range(M): train(model[m], x[m], y[m])`, or the
same steps written with batched matrix products (`torch.bmm`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _checks, _loop
from jaxreg.fitting import DivergenceError, FitResult
from jaxreg.train import LossFn, prepare_data


class ManyResult(NamedTuple):
    """What `fit_many` returns; every field has a leading model axis of length M.

    Attributes:
      params: the parameters of each model after its last update.
      opt_state: each model's optimizer state after its last update.
      losses: (M, steps) `losses[m, i]`: model m's loss before its update i.
      history: params with axes (M, steps, ...), or None when `record_history=False`.
    """

    params: Any
    opt_state: Any
    losses: np.ndarray
    history: Any

    def model(self, m: int):
        """Model m's results as `fit` would return them (a `jaxreg.FitResult`)."""

        def pick(tree):
            return None if tree is None else jax.tree.map(lambda a: a[m], tree)

        return FitResult(
            pick(self.params), pick(self.opt_state), self.losses[m], pick(self.history)
        )


def fit_many(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    params: Any,
    x: Any,
    y: Any,
    *,
    steps: int,
    opt_state: Any = None,
    record_history: bool = False,
    check_finite: bool = True,
) -> ManyResult:
    """Train M models at once, full batch, `steps` updates each.

    Args:
      loss_fn: `(params, x, y) -> scalar` for one model, e.g. `jr.objective(...)`.
      tx: the optimizer, shared by all models (its hyperparameters are in the state).
      params: a pytree whose leaves have a leading model axis M (e.g. `Params` with
        weight (M, out, in) and bias (M, out)). Build it with `jax.vmap(jr.linear.init)`.
      x: (M, n, in) inputs; y: (M, n, out) targets (same n for every model).
      steps: updates per model.
      opt_state: per-model optimizer states (leading axis M); default
        `jax.vmap(tx.init)(params)`.
      record_history: keep every model's parameters after every update.
      check_finite: raise `DivergenceError` naming the models whose loss became NaN/inf.

    Returns:
      `ManyResult(params, opt_state, losses (M, steps), history)`; `.model(m)` gives
      model m's results in `fit`'s form.
    """
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params has no arrays in it")
    m = jnp.shape(leaves[0])[0] if jnp.ndim(leaves[0]) else None
    for name, a in [*(("params leaf", leaf) for leaf in leaves), ("x", x), ("y", y)]:
        if jnp.ndim(a) == 0 or jnp.shape(a)[0] != m:
            raise ValueError(
                f"fit_many: every params leaf, x and y need the same leading model axis; "
                f"got {name} of shape {jnp.shape(a)} for {m} models"
            )
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    dtype = _checks.float_dtype_of(params)
    x, y = prepare_data(x, y, dtype)
    if opt_state is None:
        opt_state = jax.vmap(tx.init)(params)
    spec = _loop.LoopSpec(
        epochs=int(steps),
        batch_size=x.shape[1],
        n_full=1,
        remainder=0,
        mode="full",
        record=record_history,
    )
    p, s, losses, history = _run(params, opt_state, x, y, loss_fn=loss_fn, tx=tx, spec=spec)
    losses = np.asarray(losses)
    if check_finite:
        bad = ~np.isfinite(losses).all(axis=1)
        if bad.any():
            models = np.flatnonzero(bad)
            first = [int(np.argmin(np.isfinite(losses[i]))) for i in models[:5]]
            raise DivergenceError(
                f"training diverged in {models.size} of {losses.shape[0]} models (models "
                f"{models[:5].tolist()}{'...' if models.size > 5 else ''}, first bad steps "
                f"{first}). The learning rate is probably too large for their data: try a "
                "smaller one. Pass check_finite=False to get the raw numbers."
            )
    return ManyResult(p, s, losses, history)


@functools.partial(jax.jit, static_argnames=("loss_fn", "tx", "spec"))
def _run(params, opt_state, x, y, *, loss_fn, tx, spec):
    def one(p, s, xm, ym):
        return _loop._program(p, s, xm, ym, None, None, None, loss_fn=loss_fn, tx=tx, spec=spec)

    return jax.vmap(one)(params, opt_state, x, y)
