"""XLA:CPU formulations: an objective's value and gradient in one pass over the rows.

For a declared linear or logistic model (`Objective.model`) and a separable loss
(`Objective.separable()`), the gradient is

    z = X @ W.T + b;  l, dL/dz = vjp of the elementwise loss at z (torch's gradient formulas)
    value = sum(l);  grad_W = dz.T @ X;  grad_b = sum(dz, axis=0)

written in two forms that XLA:CPU runs faster than `jax.value_and_grad`'s:

- `small` (few features, small n: the tutorials): the forward product as `in_features`
  multiply-adds and every sum as one operand of a single variadic `lax.reduce`: few enough
  kernels that XLA:CPU runs a `lax.scan` body inline instead of on its thread pool.
- `large` (a million elements of x or more): the weight gradient as a broadcast product
  summed over the rows, which XLA:CPU emits as one fused, vectorised reduction (its dot for
  that shape ran at half the speed).

Why these forms and thresholds, with the measurements: benchmarks/NOTES.md ("Why the loop
at n = 100 cost ~1.1 µs/step", attempts 5-10, and the large-data section). They were
measured on XLA:CPU only: `jaxreg.gradients.select` uses them for the "cpu" backend.
"""

from __future__ import annotations

import types
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg import linear

# `small` when the gradient has at most this many entries (one reduce operand each) ...
_SMALL_MAX_TERMS = 64
# ... and x has at most this many elements (the reduce kernel is scalar code) ...
_SMALL_MAX_ELEMENTS = 1 << 13
# ... or, for losses with logs and exps, at most this many rows.
_SMALL_MAX_ROWS_COSTLY = 512
# `large` from this many elements of x (from fewer for logs and exps, whose per-element work
# the row layout speeds up most); below, the plain gradient is as fast.
_LARGE_MIN_ELEMENTS = 1 << 18
_LARGE_MIN_ELEMENTS_COSTLY = 1 << 11

_ACTIVATIONS = types.MappingProxyType({"linear": None, "logistic": jax.nn.sigmoid})


def plan(objective: Any, params: Any, x: Any, y: Any) -> str | None:
    """ "small", "large", or None (use the plain formulation); static information only."""
    found = terms(objective, params, x, y)
    if found is None:
        return None
    _, _, _, costly = found
    n, d = jnp.shape(x)
    out = jnp.shape(params.weight)[0]
    small_enough = n <= _SMALL_MAX_ROWS_COSTLY if costly else n * d <= _SMALL_MAX_ELEMENTS
    if d * out <= _SMALL_MAX_TERMS and small_enough:
        return "small"
    if n * d >= (_LARGE_MIN_ELEMENTS_COSTLY if costly else _LARGE_MIN_ELEMENTS):
        return "large"
    return None


def terms(objective: Any, params: Any, x: Any, y: Any):
    """(elementwise(z, t), scale, kwargs, costly) for a declared objective, else None."""
    model = getattr(objective, "model", None)
    separable = objective.separable() if model in _ACTIVATIONS else None
    if separable is None or not isinstance(params, linear.Params):
        return None
    decl, kwargs, reduction = separable
    if any(isinstance(v, jax.Array) or jnp.ndim(v) for v in kwargs.values()):
        return None  # per-element weights: the plain path
    w, b = params.weight, params.bias
    if jnp.ndim(w) != 2 or jnp.ndim(x) != 2 or jnp.ndim(y) != 2:
        return None
    dtype = jnp.result_type(w)
    if dtype not in (jnp.float32, jnp.float64) or (b is not None and jnp.result_type(b) != dtype):
        return None
    # The plain objective's shape and dtype checks (trace time only, no computation): the
    # formulations raise exactly the errors the plain path raises.
    jax.eval_shape(objective, params, x, y)
    n, _ = jnp.shape(x)
    out = jnp.shape(w)[0]
    if jnp.shape(y) != (n, out):
        return None
    act = _ACTIVATIONS[model]
    loss = decl.elementwise

    def elementwise(z, t):
        return loss(z if act is None else act(z), t, reduction="none", **kwargs)

    scale = 1.0 / (n * out) if reduction == "mean" else None
    costly = act is not None or decl.transcendental
    return elementwise, scale, kwargs, costly


def small(objective: Any, params: Any, x: Any, y: Any):
    """The `small` formulation: one variadic reduce over the rows."""
    elementwise, scale, _, costly = terms(objective, params, x, y)
    x, y = _cast(params, x, y)
    return _small(elementwise, scale, params, x, y, materialize_dz=costly)


def large(objective: Any, params: Any, x: Any, y: Any):
    """The `large` formulation: a dot forward, a fused broadcast reduction backward."""
    elementwise, scale, _, _ = terms(objective, params, x, y)
    x, y = _cast(params, x, y)
    return _large(elementwise, scale, params, x, y)


FORMULATIONS = types.MappingProxyType({"small": small, "large": large})


def _cast(params, x, y):
    dtype = params.weight.dtype
    return jnp.asarray(x).astype(dtype), jnp.asarray(y).astype(dtype)


def _dz(elementwise, scale, z, t):
    """Per-element losses and dL/dz (cotangent 1/N for a mean, as `jnp.mean`'s VJP)."""
    l, vjp = jax.vjp(lambda z: elementwise(z, t), z)
    ct = jnp.full(z.shape, 1.0 if scale is None else scale, z.dtype)
    (dz,) = vjp(ct)
    return l, dz


def _finish(total, scale, n_elements):
    # A true division, as `losses.mean` (and torch) computes it: a plain `/ n` would be
    # rewritten by XLA into `* (1/n)`, 1 ulp off for about a quarter of n.
    if scale is None:
        return total
    return total / jax.lax.optimization_barrier(jnp.asarray(n_elements, total.dtype))


def _small(elementwise, scale, params, x, y, materialize_dz):
    w, b = params.weight, params.bias
    n, d = x.shape
    out = w.shape[0]
    cols = [x[:, j] for j in range(d)]
    zs = []
    for k in range(out):
        zk = cols[0] * w[k, 0]
        for j in range(1, d):
            zk = zk + cols[j] * w[k, j]
        zs.append(zk if b is None else zk + b[k])
    z = jnp.stack(zs, axis=1)  # (n, out)
    l, dz = _dz(elementwise, scale, z, y)
    if materialize_dz:
        # A variadic reduce evaluates its fused producer once per operand: computed inside
        # it, a sigmoid's exp, the logs and the divisions of dL/dz would run d + 2 times a
        # row. Computed first, in a kernel of their own, they run once.
        l, dz = _materialize(l, dz)
    loss_rows = l[:, 0]
    for k in range(1, out):
        loss_rows = loss_rows + l[:, k]
    terms = [loss_rows]
    terms += [dz[:, k] * cols[j] for k in range(out) for j in range(d)]
    if b is not None:
        terms += [dz[:, k] for k in range(out)]
    sums = _variadic_sum(terms)
    value = _finish(sums[0], scale, n * out)
    grad_w = jnp.stack(sums[1 : 1 + out * d]).reshape(out, d)
    grad_b = None if b is None else jnp.stack(sums[1 + out * d :])
    return value, linear.Params(grad_w, grad_b)


def _materialize(*arrays):
    """`arrays`, computed together by one kernel of their own.

    XLA:CPU never fuses a reduction's result into its consumer, so a variadic sum over
    pairs (a, 0) ends a fusion (`optimization_barrier` does not survive XLA:CPU's pipeline,
    and exact zeros leave every value unchanged).
    """
    pairs = tuple(jnp.stack([a, jnp.zeros_like(a)]) for a in arrays)
    zeros = tuple(jnp.zeros((), a.dtype) for a in arrays)
    return lax.reduce(
        pairs, zeros, lambda p, q: tuple(u + v for u, v in zip(p, q, strict=True)), (0,)
    )


def _variadic_sum(terms):
    """Sums of equal-length 1-D arrays in one variadic reduce: one kernel, rows in order.

    (XLA:CPU rewrites a plain sum over more than 32 elements into two kernels, a windowed
    partial sum and its sum; it leaves variadic reductions alone.)
    """
    zeros = tuple(jnp.zeros((), t.dtype) for t in terms)
    return lax.reduce(
        tuple(terms), zeros, lambda a, b: tuple(p + q for p, q in zip(a, b, strict=True)), (0,)
    )


def _large(elementwise, scale, params, x, y):
    w, b = params.weight, params.bias
    n, _ = x.shape
    out = w.shape[0]
    # The logits laid out (out, n): the per-element loss work on rows runs at vector speed
    # on XLA:CPU, where the (n, out) columns of nn.Linear's layout ran up to 20x slower
    # (benchmarks/NOTES.md, "Layout").
    if out == 1:
        zt = (x @ w[0])[None]
    else:  # one product for every output, transposed (a product per output reads X each)
        zt = (x @ w.T).T
    if b is not None:
        zt = zt + b[:, None]
    l, dzt = _dz(elementwise, scale, zt, y.T)
    value = _finish(jnp.sum(l), scale, n * out)
    if out == 1:
        # dz.T @ x as a broadcast product summed over the rows: XLA:CPU's dot for the
        # (1, n) @ (n, d) shape ran at half the speed (benchmarks/NOTES.md).
        gw = jnp.sum(x * dzt[0][:, None], axis=0)[None]
    else:  # a matrix product: one read of X for all outputs ("Several outputs")
        gw = dzt @ x
    gb = None if b is None else jnp.sum(dzt, axis=1)
    return value, linear.Params(gw, gb)
