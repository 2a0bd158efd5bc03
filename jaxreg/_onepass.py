"""Gradients of `Objective`s in one pass over the data.

`jax.value_and_grad` of `loss(x @ W.T + b, y)` computes the forward product `x @ W.T`,
then the backward product `dz.T @ x`: two reads of `x`, two dot kernels, and on XLA:CPU a
dozen small kernels per step, each with its own dispatch cost. For the models jaxreg
knows (a linear layer, optionally followed by a sigmoid) and a loss that is a sum or mean
of per-element terms, the same numbers come out of one pass over the rows:

    z_b = X_b @ W.T + b                     (the block's logits, (rows, out))
    l_b, dL/dz_b = vjp of the elementwise loss at z_b    (torch's gradient formulas)
    value += sum(l_b);  grad_W += dz_b.T @ X_b;  grad_b += sum(dz_b, axis=0)

Two formulations, chosen from static shapes:

- `small` (few features, small n: the tutorials): the forward product is written as
  `in_features` elementwise multiply-adds and every sum (the loss, each entry of grad_W,
  grad_b) is one operand of a single variadic `lax.reduce` over the rows: one kernel that
  reads each row once (a variadic reduce is also exempt from XLA:CPU's tree-reduction
  rewrite, which would add a second kernel). For losses with logs and exps the per-element
  losses and dL/dz are computed first by a kernel of their own (`_materialize`). With so
  few kernels per step, XLA:CPU's thunk executor runs a `lax.scan` body inline instead of
  on its thread pool (it does so for bodies of at most 8 kernels): 0.24 µs a step at
  n = 100 instead of ~1.1 µs. See benchmarks/NOTES.md.
- `large` (a million elements of x or more): the forward product is a dot, and the weight
  gradient `dz.T @ x` a broadcast product summed over the rows, which XLA:CPU emits as one
  fused, vectorised reduction streaming x at memory speed; its dot for that (1, n) @ (n, d)
  shape ran at half the speed. Two reads of x a step, not one: a row-blocked single pass
  (a scan over blocks, or unrolled static blocks) measured 1.3-4x slower than this on
  XLA:CPU, each block paying several kernel dispatches (benchmarks/NOTES.md).

Everything else (other predict or loss functions, `reduction="none"`, x with more than
two dimensions, dict params, sizes between the two) falls back to `jax.value_and_grad`.
Results equal the plain gradient up to float rounding (the summation order differs);
tests/test_onepass.py checks every loss, both models, with and without bias, several
outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg import linear, logistic, losses

# predict function -> activation applied to the logits z = x @ W.T + b.
_PREDICTS = {linear.predict: None, logistic.logits: None, logistic.predict: jax.nn.sigmoid}
# Losses that are a sum (or mean) of independent per-element terms, and accept
# reduction="none". `sse` is `mse(reduction="sum")`.
_SEPARABLE = {
    losses.mse,
    losses.l1,
    losses.huber,
    losses.smooth_l1,
    losses.bce,
    losses.bce_with_logits,
}

# `small` when the gradient has at most this many entries (one reduce operand each) ...
_SMALL_MAX_TERMS = 64
# ... and x has at most this many elements: the reduce kernel is scalar code, so beyond a
# few thousand elements XLA's vectorised kernels win despite their dispatches (measured:
# benchmarks/NOTES.md) ...
_SMALL_MAX_ELEMENTS = 1 << 13
# ... or, for losses with logs and exps, at most this many rows.
_SMALL_MAX_ROWS_COSTLY = 512
# `large` from this many elements of x. Measured (float32, ms per value_and_grad, plain ->
# large): 1e6 x 32 MSE 18.3 -> 13.0, BCE 48.8 -> 33.0; 1e5 x 32 MSE 1.30 -> 1.07, BCE 4.27
# -> 4.37; 1e4 x 16 MSE 0.09 -> 0.12. Below ~1e6 elements the two are within noise.
_LARGE_MIN_ELEMENTS = 1 << 20


def value_and_grad(objective, params, x, y):
    """`jax.value_and_grad(objective)(params, x, y)`, in one pass over x where possible."""
    plan = _plan(objective, params, x, y)
    if plan is None:
        return jax.value_and_grad(objective)(params, x, y)
    formulation, act, loss, kwargs, scale, costly = plan
    dtype = params.weight.dtype
    x = jnp.asarray(x).astype(dtype)
    y = jnp.asarray(y).astype(dtype)

    def elementwise(z, t):
        pred = z if act is None else act(z)
        return loss(pred, t, reduction="none", **kwargs)

    if formulation == "small":
        return _small(elementwise, scale, params, x, y, materialize_dz=costly)
    return _large(elementwise, scale, params, x, y)


def _plan(objective, params, x, y):
    """(formulation, activation, loss, kwargs, scale, costly) or None to fall back."""
    predict = getattr(objective, "predict", None)
    loss = getattr(objective, "loss", None)
    if predict not in _PREDICTS or loss not in (*_SEPARABLE, losses.sse):
        return None
    kwargs = dict(getattr(objective, "loss_kwargs", ()))
    if loss is losses.sse:
        if kwargs:
            return None
        loss, kwargs = losses.mse, {"reduction": "sum"}
    reduction = kwargs.pop("reduction", "mean")
    if reduction not in ("mean", "sum"):
        return None
    if not isinstance(params, linear.Params):
        return None
    w, b = params.weight, params.bias
    if jnp.ndim(w) != 2 or jnp.ndim(x) != 2 or jnp.ndim(y) != 2:
        return None
    dtype = jnp.result_type(w)
    if dtype not in (jnp.float32, jnp.float64) or (b is not None and jnp.result_type(b) != dtype):
        return None
    # Run the plain objective's shape and dtype checks (trace time only, no computation):
    # the one-pass path raises exactly the errors the plain path raises.
    jax.eval_shape(objective, params, x, y)
    n, d = jnp.shape(x)
    out = jnp.shape(w)[0]
    if jnp.shape(y) != (n, out):
        return None
    scale = 1.0 / (n * out) if reduction == "mean" else None
    act = _PREDICTS[predict]
    costly = act is not None or loss in (losses.bce, losses.bce_with_logits)
    small_enough = n <= _SMALL_MAX_ROWS_COSTLY if costly else n * d <= _SMALL_MAX_ELEMENTS
    if d * out <= _SMALL_MAX_TERMS and small_enough:
        formulation = "small"
    elif n * d >= _LARGE_MIN_ELEMENTS:
        formulation = "large"
    else:
        return None
    return formulation, act, loss, kwargs, scale, costly


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
    z = x @ w.T
    if b is not None:
        z = z + b[None, :]
    l, dz = _dz(elementwise, scale, z, y)
    value = _finish(jnp.sum(l), scale, n * out)
    # dz.T @ x written as a broadcast product summed over the rows: XLA:CPU emits one
    # fused, vectorised, multi-threaded reduction that streams x once, where its dot for
    # a (out, n) @ (n, d) product ran at half that speed (1e6 x 32 float32: 6.2 ms against
    # 13.2 ms; benchmarks/NOTES.md).
    # (One reduction per output: a single (n, out, d) product summed over axis 0 was
    # emitted as a strided loop, 50x slower.)
    gw = jnp.stack([jnp.sum(x * dz[:, k : k + 1], axis=0) for k in range(out)])
    gb = None if b is None else jnp.sum(dz, axis=0)
    return value, linear.Params(gw, gb)
