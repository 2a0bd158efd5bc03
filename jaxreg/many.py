"""Fit many independent models at once: `jax.vmap` of `fit`'s compiled loop.

`fit_many(loss_fn, tx, params, x, y, steps=...)` trains M models that share a loss and an
optimizer but not their data or parameters: every leaf of `params`, and `x`, `y`, have a
leading model axis of length M. It runs the program `fit` runs (`jaxreg.loop.program`, full
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

from jaxreg import _checks, distributed, gradients, optim
from jaxreg.fitting import DivergenceError, FitResult, boundary
from jaxreg.loop import program
from jaxreg.loop.spec import LoopSpec, positive_int
from jaxreg.sample_weight import weighted


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
    loss_fn: Any,
    tx: optax.GradientTransformation,
    params: Any,
    x: Any,
    y: Any = None,
    *,
    steps: int,
    opt_state: Any = None,
    record_history: bool = False,
    check_finite: bool = True,
    sample_weight: Any = None,
    sample_weight_reduction: str | None = None,
) -> ManyResult:
    """Train M models at once, full batch, `steps` updates each.

    Args:
      loss_fn: `(params, x, y) -> scalar` for one model, e.g. `jr.objective(...)`.
      tx: the optimizer, shared by all models (its hyperparameters are in the state).
      params: a pytree whose leaves have a leading model axis M (e.g. `Params` with
        weight (M, out, in) and bias (M, out)). Build it with `jax.vmap(jr.linear.init)`.
      x: (M, n, in) inputs, or a `jaxreg.Dataset` of them; y: (M, n, out) targets (same n
        for every model), or (M, n) integer class indices (`losses.cross_entropy`/`nll`).
        Rows may be sharded over a mesh axis (`PartitionSpec(None, "data")` for x and y):
        each model trains data-parallel (`jaxreg.distributed`).
      steps: updates per model.
      opt_state: per-model optimizer states (leading axis M); default
        `jax.vmap(tx.init)(params)`. Its hyperparameters are `tx`'s (`jaxreg.optim.adopt`).
      record_history: keep every model's parameters after every update.
      check_finite: raise `DivergenceError` naming the models whose loss or parameters
        became NaN/inf.
      sample_weight: (M, n) or (M, n, 1) per-sample weights of each model's rows (or y's
        shape), `fit`'s `sample_weight` for every model; sample_weight_reduction: `fit`'s.

    Returns:
      `ManyResult(params, opt_state, losses (M, steps), history)`; `.model(m)` gives
      model m's results in `fit`'s form.
    """
    objective, data, dtype = boundary(loss_fn, tx, params, x, y, models=True)
    if data.sample_weight is not None:
        raise ValueError(
            "fit_many takes per-sample weights as fit_many(..., sample_weight=w) with w of "
            "shape (M, n), not on the Dataset (its rows would be the models)"
        )
    _check_model_axis(params, data)
    data = data.with_sample_weight(sample_weight, rows=np.shape(data.x)[:2])
    steps = positive_int("steps", steps)
    for name, flag in (("record_history", record_history), ("check_finite", check_finite)):
        _checks.check_flag(name, flag)
    xd, yd = data.arrays(dtype)
    if opt_state is None:
        opt_state = jax.vmap(tx.init)(params)
    else:
        opt_state = optim.adopt(tx, params, opt_state, batched=True)
    where = distributed.data_mesh(xd, yd, row_dim=1)
    wd = data.placed_weight(dtype, where)
    if wd is not None:  # every model's loss weighted; y is (y, w)
        first = jax.tree.map(lambda a: a[0], (params, xd, yd, wd))
        objective = weighted(objective, sample_weight_reduction, *first)
        yd = (yd, wd)
    elif sample_weight_reduction is not None:
        raise ValueError(
            f"sample_weight_reduction={sample_weight_reduction!r} without sample_weight: pass "
            "the weights (sample_weight=w), or drop sample_weight_reduction"
        )
    if where is not None:  # rows sharded: params and states replicated on the mesh
        params, opt_state = distributed.replicate((params, opt_state), where)
        objective = distributed.replicate(objective, where)
    spec = LoopSpec(steps, xd.shape[1], 1, 0, "full", record=bool(record_history))
    backend = gradients.backend_of(xd, *jax.tree.leaves(yd))
    p, s, losses, history = _run(
        objective, params, opt_state, xd, yd, tx=tx, spec=spec, backend=backend
    )
    losses = np.asarray(losses)
    if check_finite:
        _check_models(losses, p)
    s = program.finish(s, opt_state, None, spec, 0)  # each model's hyperparameters back
    return ManyResult(p, s, losses, history)


def _check_model_axis(params, data) -> None:
    leaves = jax.tree.leaves(params)
    m = jnp.shape(leaves[0])[0] if jnp.ndim(leaves[0]) else None
    arrays = [*(("params leaf", leaf) for leaf in leaves), ("x", data.x), ("y", data.y)]
    for name, a in arrays:
        if jnp.ndim(a) == 0 or jnp.shape(a)[0] != m:
            raise ValueError(
                f"fit_many: every params leaf, x and y need the same leading model axis; "
                f"got {name} of shape {jnp.shape(a)} for {m} models"
            )


def _check_models(losses: np.ndarray, params) -> None:
    bad = ~np.isfinite(losses).all(axis=1)
    for leaf in jax.tree.leaves(params):
        host = np.asarray(leaf)
        bad |= ~np.isfinite(host.reshape(host.shape[0], -1)).all(axis=1)
    if not bad.any():
        return
    models = np.flatnonzero(bad)
    first = [
        int(np.argmin(np.isfinite(losses[i]))) if not np.isfinite(losses[i]).all() else "last"
        for i in models[:5]
    ]
    raise DivergenceError(
        f"training diverged in {models.size} of {losses.shape[0]} models (models "
        f"{models[:5].tolist()}{'...' if models.size > 5 else ''}, first bad steps "
        f"{first}; 'last': the parameters became non-finite in the last update). The "
        "learning rate is probably too large for their data: try a smaller one. Pass "
        "check_finite=False to get the raw numbers."
    )


@functools.partial(jax.jit, static_argnames=("tx", "spec", "backend"))
def _run(objective, params, opt_state, x, y, *, tx, spec, backend):
    def one(p, s, xm, ym):
        return program.run(
            objective, p, s, xm, ym, None, None, None, 0, tx=tx, spec=spec, backend=backend
        )

    return jax.vmap(one)(params, opt_state, x, y)
