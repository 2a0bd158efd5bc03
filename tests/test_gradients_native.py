"""The one-pass CPU kernel (`jaxreg.gradients.native`) equals `jax.value_and_grad`.

Tolerances (relative to the largest entry of each gradient, and to |value|):
- FLOAT64_RTOL = 1e-12: only the order of the sums differs (and exp/log from the C
  library's vector math, within 4 ulp of float64).
- FLOAT32_RTOL = 2e-5: the kernel adds each block of 256 rows in float32 (then blocks in
  float64): a sum of 256 terms of one sign moves by at most 256 eps = 1.5e-5 relative;
  XLA's own reduction order differs too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr
from jaxreg import gradients
from jaxreg.gradients import native

FLOAT64_RTOL = 1e-12
FLOAT32_RTOL = 2e-5

OBJECTIVES = {
    "mse": (jr.linear.predict, jr.losses.mse, {}, False),
    "mse-sum": (jr.linear.predict, jr.losses.mse, {"reduction": "sum"}, False),
    "sse": (jr.linear.predict, jr.losses.sse, {}, False),
    "bce": (jr.logistic.predict, jr.losses.bce, {}, True),
    "bce-sum": (jr.logistic.predict, jr.losses.bce, {"reduction": "sum"}, True),
    "bce_with_logits": (jr.logistic.logits, jr.losses.bce_with_logits, {}, True),
}


def _problem(n, d, bias, dtype, probs, seed=0, out=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    # large logits too, so that sigmoid saturates and bce's clamps are exercised
    w = (3 * rng.standard_normal((out, d)) / np.sqrt(d)).astype(dtype)
    b = rng.standard_normal(out).astype(dtype) if bias else None
    y = (rng.random((n, out)) < 0.5) if probs else rng.standard_normal((n, out))
    params = jr.linear.Params(jnp.asarray(w), None if b is None else jnp.asarray(b))
    return params, jnp.asarray(x), jnp.asarray(y.astype(dtype))


def _assert_close(got, want, rtol):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = max(float(np.max(np.abs(w))), np.finfo(w.dtype).tiny)
        np.testing.assert_allclose(g, w, rtol=0, atol=rtol * scale)


def test_the_kernel_builds_on_this_machine():
    got = native.status()
    assert got.available, got.detail


@pytest.mark.parametrize("name", list(OBJECTIVES))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    ("dtype", "rtol"), [(np.float64, FLOAT64_RTOL), (np.float32, FLOAT32_RTOL)], ids=["f64", "f32"]
)
# d: one vector exactly, padded rows, several vectors; n: a partial block and a partial
# group of rows (neither a multiple of 256 nor of the vector length)
@pytest.mark.parametrize(("n", "d"), [(3001, 16), (2999, 13), (1000, 40)])
# outputs: one (its own code), several, and as many as a vector's float64 lanes
@pytest.mark.parametrize("out", [1, 3, 8])
def test_matches_value_and_grad(name, bias, dtype, rtol, n, d, out):
    predict, loss, kwargs, probs = OBJECTIVES[name]
    obj = jr.objective(predict, loss, **kwargs)
    params, x, y = _problem(n, d, bias, dtype, probs, out=out)
    got = jax.jit(native.value_and_grad)(obj, params, x, y)
    want = jax.jit(jax.value_and_grad(obj))(params, x, y)
    _assert_close(got, want, rtol)


@pytest.mark.parametrize("out", [1, 3])
def test_several_chunks_and_threads_give_the_one_chunk_sums(out):
    """Rows past one chunk (32768) go to other threads; the result is the same however many
    threads ran (chunks are added in order), and equals the plain gradient."""
    obj = jr.objective(jr.logistic.predict, jr.losses.bce)
    params, x, y = _problem(100_003, 7, True, np.float64, True, out=out)
    got = jax.jit(native.value_and_grad)(obj, params, x, y)
    _assert_close(got, jax.jit(jax.value_and_grad(obj))(params, x, y), FLOAT64_RTOL)
    again = jax.jit(native.value_and_grad)(obj, params, x, y)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_select_takes_it_for_large_cpu_data(monkeypatch):
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    shape = jax.ShapeDtypeStruct
    params = jr.linear.Params(shape((1, 32), jnp.float32), shape((1,), jnp.float32))
    x, y = shape((1 << 15, 32), jnp.float32), shape((1 << 15, 1), jnp.float32)
    assert gradients.select(obj, params, x, y, backend="cpu").name == "native.onepass"
    assert gradients.select(obj, params, x, y, backend="gpu").name == "plain"
    # several outputs, up to a vector's lanes (16 float32): the kernel too
    wide = params._replace(weight=shape((16, 32), jnp.float32), bias=shape((16,), jnp.float32))
    y16 = shape((1 << 15, 16), jnp.float32)
    assert gradients.select(obj, wide, x, y16, backend="cpu").name == "native.onepass"
    # below the threshold, more outputs, or a loss it does not have: XLA's forms
    small = (shape((100, 32), jnp.float32), shape((100, 1), jnp.float32))
    assert gradients.select(obj, params, *small, backend="cpu").name != "native.onepass"
    wider = params._replace(weight=shape((17, 32), jnp.float32), bias=shape((17,), jnp.float32))
    y17 = shape((1 << 15, 17), jnp.float32)
    assert gradients.select(obj, wider, x, y17, backend="cpu").name == "xla_cpu.large"
    l1 = jr.objective(jr.linear.predict, jr.losses.l1)
    assert gradients.select(l1, params, x, y, backend="cpu").name == "xla_cpu.large"
    pos = jr.objective(jr.logistic.logits, jr.losses.bce_with_logits, pos_weight=2.0)
    assert gradients.select(pos, params, x, y, backend="cpu").name == "xla_cpu.large"
    monkeypatch.setenv("JAXREG_NATIVE", "0")
    assert not native.status().available
    assert gradients.select(obj, params, x, y, backend="cpu").name == "xla_cpu.large"


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_fit_follows_the_plain_trajectory(monkeypatch, model):
    if model == "linear":
        obj, probs = jr.objective(jr.linear.predict, jr.losses.mse), False
    else:
        obj, probs = jr.objective(jr.logistic.predict, jr.losses.bce), True
    params, x, y = _problem(20_000, 8, True, np.float64, probs)
    tx = jr.optim.adam(0.05)
    assert gradients.select(obj, params, x, y, backend="cpu").name == "native.onepass"
    fast = jr.fit(obj, tx, params, x, y, steps=30)
    monkeypatch.setenv("JAXREG_NATIVE", "0")
    jax.clear_caches()
    plain = jr.fit(obj, tx, params, x, y, steps=30)
    # 30 Adam steps amplify the last-bit differences of each gradient a little
    np.testing.assert_allclose(fast.losses, plain.losses, rtol=1e-10)
    _assert_close(fast.params, plain.params, 1e-10)


def test_under_vmap_each_model_gets_its_own_gradient():
    """fit_many vmaps the step over models: the kernel runs once per model."""
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    params, x, y = _problem(5000, 16, True, np.float64, False)
    many = jax.tree.map(lambda a: jnp.stack([a, 2 * a, -a]), params)
    got = jax.jit(jax.vmap(native.value_and_grad, in_axes=(None, 0, None, None)))(obj, many, x, y)
    for k in range(3):
        one = jax.tree.map(lambda a, k=k: a[k], many)
        want = jax.value_and_grad(obj)(one, x, y)
        _assert_close(jax.tree.map(lambda a, k=k: a[k], got), want, FLOAT64_RTOL)


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [
        (np.float32, (5000, 13)),
        (np.float64, (5000, 3)),
        (np.int32, (5000,)),
        ("bfloat16", (5000, 1)),
    ],
)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gather_rows_is_xlas_gather(dtype, shape, index_dtype):
    """The mini-batch gather copies rows: bit for bit `a[idx]`, any dtype and row shape,
    int32 or int64 indices (repeats allowed)."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=shape) * 100).astype(dtype)
    w = jnp.asarray(rng.uniform(size=shape[0]))
    idx = rng.integers(0, shape[0], 777)
    with jax.enable_x64(index_dtype == np.int64):
        i = jnp.asarray(idx, index_dtype)
        assert i.dtype == index_dtype
        got = jax.jit(native.gather_rows)([a, w], i)
    for g, want in zip(got, (a[idx], w[idx]), strict=True):
        assert g.dtype == want.dtype and g.shape == want.shape
        np.testing.assert_array_equal(np.asarray(g), np.asarray(want))


def test_gather_rows_refuses_an_index_out_of_range():
    a = jnp.arange(12.0).reshape(6, 2)
    with pytest.raises(Exception, match="row index out of range"):
        jax.block_until_ready(jax.jit(native.gather_rows)([a], jnp.asarray([0, 6])))


def test_gather_rows_under_vmap():
    a = jnp.arange(24.0).reshape(2, 6, 2)  # two models' data
    idx = jnp.asarray([[5, 0], [1, 1]])
    got = jax.vmap(lambda a, i: native.gather_rows([a], i)[0])(a, idx)
    np.testing.assert_array_equal(got, np.stack([a[0][idx[0]], a[1][idx[1]]]))


def test_shuffled_fit_takes_it_from_a_megabyte_and_gives_the_same_bits(monkeypatch):
    """A shuffled mini-batch fit on data of GATHER_MIN_BYTES or more gathers its rows with
    the kernel; the trajectory is the XLA gather's, bit for bit."""
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    params, x, y = _problem(1 << 15, 8, True, np.float32, False)  # 1 MiB of x
    assert native.gather_plan([x, y], "cpu")
    assert not native.gather_plan([x[:1000], y[:1000]], "cpu")
    calls = []
    real = native.gather_rows
    monkeypatch.setattr(native, "gather_rows", lambda *a: calls.append(1) or real(*a))
    w = np.linspace(0.5, 2, 1 << 15, dtype=np.float32)
    kw = dict(epochs=2, batch_size=512, key=3, sample_weight=w)
    fast = jr.fit(obj, jr.optim.sgd(0.05, momentum=0.9), params, x, y, **kw)
    assert calls  # traced with the kernel's gather
    monkeypatch.setattr(native, "gather_plan", lambda arrays, backend: False)
    jax.clear_caches()
    plain = jr.fit(obj, jr.optim.sgd(0.05, momentum=0.9), params, x, y, **kw)
    np.testing.assert_array_equal(fast.losses, plain.losses)
    for a, b in zip(jax.tree.leaves(fast.history), jax.tree.leaves(plain.history), strict=True):
        np.testing.assert_array_equal(a, b)
