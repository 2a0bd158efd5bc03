"""Every formulation of `jaxreg.gradients` equals `jax.value_and_grad` of the objective,
and `select` chooses from the objective's declaration, the shapes and the backend.

Tolerances:
- FLOAT64_RTOL = 1e-12: the two differ only in summation order; in float64 over a few
  hundred terms that moves the last ~3 digits of 16.
- FLOAT32_RTOL = 2e-5: the same in float32 (eps 6e-8). Reordering a sum of n terms of one
  sign changes it by at most ~n eps relative; n = 300 here gives 1.8e-5. Relative to the
  largest entry of each gradient (and to |value| for the loss).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr
from jaxreg import gradients
from jaxreg.gradients import xla_cpu

FLOAT64_RTOL = 1e-12
FLOAT32_RTOL = 2e-5

# (name, predict, loss, loss kwargs, targets are probabilities)
OBJECTIVES = [
    ("mse", jr.linear.predict, jr.losses.mse, {}, False),
    ("mse-sum", jr.linear.predict, jr.losses.mse, {"reduction": "sum"}, False),
    ("sse", jr.linear.predict, jr.losses.sse, {}, False),
    ("l1", jr.linear.predict, jr.losses.l1, {}, False),
    ("huber", jr.linear.predict, jr.losses.huber, {"delta": 0.7}, False),
    ("smooth_l1", jr.linear.predict, jr.losses.smooth_l1, {"beta": 0.5}, False),
    ("bce", jr.logistic.predict, jr.losses.bce, {}, True),
    ("bce-sum", jr.logistic.predict, jr.losses.bce, {"reduction": "sum"}, True),
    ("bce_with_logits", jr.logistic.logits, jr.losses.bce_with_logits, {}, True),
    (
        "bce_with_logits-pw",
        jr.logistic.logits,
        jr.losses.bce_with_logits,
        {"pos_weight": 2.0},
        True,
    ),
    ("sigmoid-mse", jr.logistic.predict, jr.losses.mse, {}, True),
]


def _problem(n, d, out, bias, dtype, probs, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    w = (rng.standard_normal((out, d)) / np.sqrt(d)).astype(dtype)
    b = rng.standard_normal(out).astype(dtype) if bias else None
    if probs:
        y = (rng.random((n, out)) < 0.5).astype(dtype)
    else:
        y = rng.standard_normal((n, out)).astype(dtype)
    return jr.linear.Params(jnp.asarray(w), None if b is None else jnp.asarray(b)), x, y


def _force(monkeypatch, formulation):
    if formulation == "small":
        monkeypatch.setattr(xla_cpu, "_SMALL_MAX_ELEMENTS", 1 << 30)
        monkeypatch.setattr(xla_cpu, "_SMALL_MAX_ROWS_COSTLY", 1 << 30)
    else:
        monkeypatch.setattr(xla_cpu, "_SMALL_MAX_TERMS", 0)
        monkeypatch.setattr(xla_cpu, "_LARGE_MIN_ELEMENTS", 0)
        monkeypatch.setattr(xla_cpu, "_LARGE_MIN_ELEMENTS_COSTLY", 0)


def _cpu_value_and_grad(obj, params, x, y):
    """The value and gradient by the formulation `select` picks on XLA:CPU."""
    f = gradients.select(obj, params, x, y, backend="cpu")
    return f.value_and_grad(obj, params, x, y)


def _assert_close(got, want, rtol):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = max(float(np.max(np.abs(w))), np.finfo(w.dtype).tiny)
        np.testing.assert_allclose(g, w, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("formulation", ["small", "large"])
@pytest.mark.parametrize("out", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    ("name", "predict", "loss", "kwargs", "probs"), OBJECTIVES, ids=[o[0] for o in OBJECTIVES]
)
@pytest.mark.parametrize(
    ("dtype", "rtol"),
    [(np.float64, FLOAT64_RTOL), (np.float32, FLOAT32_RTOL)],
    ids=["float64", "float32"],
)
def test_matches_value_and_grad(
    monkeypatch, formulation, out, bias, name, predict, loss, kwargs, probs, dtype, rtol
):
    _force(monkeypatch, formulation)
    obj = jr.objective(predict, loss, **kwargs)
    params, x, y = _problem(300, 4, out, bias, dtype, probs)
    assert xla_cpu.plan(obj, params, x, y) == formulation  # the path under test ran
    got = jax.jit(_cpu_value_and_grad)(obj, params, x, y)
    want = jax.jit(jax.value_and_grad(obj))(params, x, y)
    _assert_close(got, want, rtol)


@pytest.mark.parametrize("n", [1, 5, 31, 100, 129])
def test_small_any_row_count(n):
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    params, x, y = _problem(n, 3, 1, True, np.float64, False)
    assert xla_cpu.plan(obj, params, x, y) == "small"
    _assert_close(
        _cpu_value_and_grad(obj, params, x, y),
        jax.value_and_grad(obj)(params, x, y),
        FLOAT64_RTOL,
    )


def test_large_is_chosen_from_its_thresholds():
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    bce = jr.objective(jr.logistic.predict, jr.losses.bce)
    shape = jax.ShapeDtypeStruct
    params = jr.linear.Params(shape((1, 32), jnp.float32), shape((1,), jnp.float32))
    big = (shape((1 << 15, 32), jnp.float32), shape((1 << 15, 1), jnp.float32))
    assert xla_cpu.plan(obj, params, *big) == "large"
    mid = (shape((10_000, 16), jnp.float32), shape((10_000, 1), jnp.float32))
    assert xla_cpu.plan(obj, params._replace(weight=shape((1, 16), jnp.float32)), *mid) is None
    # logs and exps gain from the row layout from a few thousand elements
    assert xla_cpu.plan(bce, params._replace(weight=shape((1, 16), jnp.float32)), *mid) == "large"


def test_falls_back_for_what_it_does_not_know():
    params, x, y = _problem(20, 2, 1, True, np.float64, False)
    custom = jr.objective(lambda p, x: x @ p.weight.T, jr.losses.mse)
    assert xla_cpu.plan(custom, params, x, y) is None
    as_dict = {"weight": params.weight, "bias": params.bias}
    obj = jr.objective(lambda p, x: x @ p["weight"].T + p["bias"][None, :], jr.losses.mse)
    assert xla_cpu.plan(obj, as_dict, x, y) is None
    v, g = _cpu_value_and_grad(obj, as_dict, x, y)
    v2, g2 = jax.value_and_grad(obj)(as_dict, x, y)
    assert v == v2 and all(np.array_equal(g[k], g2[k]) for k in g)


def test_shape_errors_are_the_plain_ones():
    params, x, y = _problem(20, 2, 1, True, np.float64, False)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    with pytest.raises(ValueError, match=r"\(20,\)"):
        _cpu_value_and_grad(obj, params, x, y[:, 0])
    with pytest.raises(ValueError):
        _cpu_value_and_grad(obj, params, x[:, :1], y)


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_fit_unchanged_by_one_pass(monkeypatch, model):
    """fit with the one-pass gradient follows the plain-gradient trajectory."""
    if model == "linear":
        obj, probs = jr.objective(jr.linear.predict, jr.losses.mse), False
    else:
        obj, probs = jr.objective(jr.logistic.predict, jr.losses.bce), True
    params, x, y = _problem(100, 3, 1, True, np.float64, probs)
    tx = jr.optim.sgd(0.1)
    fast = jr.fit(obj, tx, params, x, y, steps=50)
    monkeypatch.setattr(xla_cpu, "plan", lambda *a: None)
    jax.clear_caches()
    plain = jr.fit(obj, tx, params, x, y, steps=50)
    np.testing.assert_allclose(fast.losses, plain.losses, rtol=1e-12)
    _assert_close(fast.params, plain.params, 1e-12)
    _assert_close(fast.history, plain.history, 1e-12)


def _manual(obj, tx, params, batches):
    """The torch loop, one `update` at a time: losses and params after each update."""
    state = tx.init(params)
    losses, history = [], []
    for xb, yb in batches:
        params, state, loss = jr.update(obj, tx, params, state, xb, yb)
        losses.append(loss)
        history.append(params)
    return np.asarray(losses), jax.tree.map(lambda *a: np.stack(a), *history), params


@pytest.mark.parametrize("tx_name", ["sgd", "sgd-momentum", "adam", "optax.sgd"])
def test_fit_history_is_params_after_each_update(tx_name):
    txs = {
        "sgd": jr.optim.sgd(0.05),
        "sgd-momentum": jr.optim.sgd(0.05, momentum=0.9),
        "adam": jr.optim.adam(0.01),
        "optax.sgd": optax.sgd(0.05),
    }
    tx = txs[tx_name]
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    params, x, y = _problem(10, 2, 1, True, np.float64, False)
    res = jr.fit(obj, tx, params, x, y, steps=7)
    losses, history, last = _manual(obj, tx, params, [(x, y)] * 7)
    np.testing.assert_allclose(res.losses, losses, rtol=1e-12)
    _assert_close(res.history, history, 1e-12)
    _assert_close(res.params, last, 1e-12)


def test_fit_minibatch_history_with_remainder():
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    tx = jr.optim.sgd(0.05)
    params, x, y = _problem(10, 2, 1, True, np.float64, False)
    res = jr.fit(obj, tx, params, x, y, epochs=3, batch_size=4, shuffle=False)
    batches = [(x[i : i + 4], y[i : i + 4]) for i in (0, 4, 8)] * 3
    losses, history, last = _manual(obj, tx, params, batches)
    np.testing.assert_allclose(res.losses, losses, rtol=1e-12)
    _assert_close(res.history, history, 1e-12)
    _assert_close(res.params, last, 1e-12)


def test_fit_mixed_dtype_and_dict_params():
    """Params the loop cannot pack into one vector take the per-leaf path."""
    x = np.random.default_rng(0).standard_normal((8, 2))
    y = x @ np.array([[1.0], [2.0]])

    def loss(p, x, y):
        return jnp.mean((x @ p["w"].astype(jnp.float64) + p["b"][None, :] - y) ** 2)

    params = {"w": jnp.zeros((2, 1), jnp.float32), "b": jnp.zeros((1,), jnp.float64)}
    res = jr.fit(loss, optax.sgd(0.1), params, x, y, steps=5)
    assert res.history["w"].shape == (5, 2, 1) and res.history["w"].dtype == jnp.float32
    assert res.history["b"].shape == (5, 1) and res.losses.shape == (5,)
    np.testing.assert_array_equal(res.history["w"][-1], res.params["w"])


def test_selection_reads_the_declaration_not_the_function():
    """A user's wrapper of linear.predict takes the fast path once it declares the model;
    undeclared, it takes the plain one (never a fast path it did not ask for)."""
    params, x, y = _problem(20, 2, 1, True, np.float64, False)

    def my_predict(p, x):
        return jr.linear.predict(p, x)

    undeclared = jr.objective(my_predict, jr.losses.mse)
    declared = jr.objective(my_predict, jr.losses.mse, model="linear")
    assert gradients.select(undeclared, params, x, y, backend="cpu").name == "plain"
    assert gradients.select(declared, params, x, y, backend="cpu").name == "xla_cpu.small"
    _assert_close(
        _cpu_value_and_grad(declared, params, x, y),
        jax.value_and_grad(undeclared)(params, x, y),
        FLOAT64_RTOL,
    )


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_xla_cpu_formulations_stay_on_the_cpu(backend):
    """Thresholds measured on XLA:CPU do not apply elsewhere: plain gradient, no packing."""
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    params, x, y = _problem(20, 2, 1, True, np.float64, False)
    assert gradients.select(obj, params, x, y, backend="cpu").name == "xla_cpu.small"
    assert gradients.select(obj, params, x, y, backend=backend).name == "plain"
    assert gradients.pack_carry("cpu") and not gradients.pack_carry(backend)


def test_per_sample_weights_through_objective():
    """An array loss argument (bce's weight) is an input of the program, not a static."""
    params, x, y = _problem(30, 2, 1, True, np.float64, True)
    w = np.random.default_rng(1).random((30, 1))
    obj = jr.objective(jr.logistic.predict, jr.losses.bce, weight=w)
    res = jr.fit(obj, jr.optim.sgd(0.1), params, x, y, steps=5)
    want = jr.losses.bce(jr.logistic.predict(params, x), y, weight=w)
    np.testing.assert_allclose(res.losses[0], want, rtol=FLOAT64_RTOL)
    other = jr.objective(jr.logistic.predict, jr.losses.bce, weight=2 * w)
    res2 = jr.fit(other, jr.optim.sgd(0.1), params, x, y, steps=5)
    np.testing.assert_allclose(res2.losses[0], 2 * want, rtol=FLOAT64_RTOL)
