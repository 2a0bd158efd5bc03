"""`fit_many` trains each model exactly as `fit` trains it alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr
from jaxreg.many import fit_many

# vmap batches the same kernels; in float64 the results agree to rounding of reordered sums.
FLOAT64_RTOL = 1e-12


def _models(m=5, n=30, d=2, probs=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n, d))
    w = rng.standard_normal((m, d, 1))
    z = x @ w
    y = (rng.random((m, n, 1)) < 1 / (1 + np.exp(-z))).astype(float) if probs else z
    params = jax.vmap(lambda k: jr.linear.init(k, d, dtype=jnp.float64))(
        jax.random.split(jax.random.key(0), m)
    )
    return params, x, y


@pytest.mark.parametrize("model", ["linear", "logistic"])
@pytest.mark.parametrize("tx_name", ["sgd", "adam"])
def test_each_model_equals_its_own_fit(model, tx_name):
    probs = model == "logistic"
    obj = (
        jr.objective(jr.linear.predict, jr.losses.mse)
        if not probs
        else jr.objective(jr.logistic.predict, jr.losses.bce)
    )
    tx = jr.optim.sgd(0.1) if tx_name == "sgd" else jr.optim.adam(0.05)
    params, x, y = _models(probs=probs)
    res = fit_many(obj, tx, params, x, y, steps=20, record_history=True)
    assert res.losses.shape == (5, 20)
    assert res.history.weight.shape == (5, 20, 1, 2)
    for m in range(5):
        alone = jr.fit(obj, tx, jax.tree.map(lambda a, m=m: a[m], params), x[m], y[m], steps=20)
        one = res.model(m)
        np.testing.assert_allclose(one.losses, alone.losses, rtol=FLOAT64_RTOL)
        for a, b in zip(
            jax.tree.leaves((one.params, one.history)),
            jax.tree.leaves((alone.params, alone.history)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=FLOAT64_RTOL, atol=1e-15)


def test_leading_axes_must_agree():
    params, x, y = _models()
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    with pytest.raises(ValueError, match="leading model axis"):
        fit_many(obj, jr.optim.sgd(0.1), params, x[:4], y[:4], steps=3)
    with pytest.raises(ValueError, match="steps"):
        fit_many(obj, jr.optim.sgd(0.1), params, x, y, steps=0)


def test_divergence_names_the_models():
    params, x, y = _models()
    x = x.copy()
    x[3] *= 1e3  # model 3 diverges at this learning rate
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    with pytest.raises(jr.DivergenceError, match=r"models \[3\]"):
        fit_many(obj, jr.optim.sgd(0.5), params, x, y, steps=30)
    res = fit_many(obj, jr.optim.sgd(0.5), params, x, y, steps=30, check_finite=False)
    assert not np.isfinite(res.losses[3]).all() and np.isfinite(res.losses[0]).all()


def test_class_indices_train_each_softmax_model_as_fit_does():
    """(M, n) integer targets are class indices for cross_entropy (fit's (n,)), not floats."""
    rng = np.random.default_rng(3)
    m, n, d, k = 3, 40, 4, 3
    x = rng.standard_normal((m, n, d))
    y = rng.integers(0, k, size=(m, n))
    params = jax.vmap(lambda key: jr.softmax.init(key, d, k, dtype=jnp.float64))(
        jax.random.split(jax.random.key(1), m)
    )
    obj = jr.objective(jr.softmax.logits, jr.losses.cross_entropy, label_smoothing=0.1)
    with jax.enable_x64(True):
        res = fit_many(obj, jr.optim.adam(0.05), params, x, y, steps=15)
        for j in range(m):
            alone = jr.fit(
                obj, jr.optim.adam(0.05), jax.tree.map(lambda a, j=j: a[j], params), x[j], y[j],
                steps=15,
            )  # fmt: skip
            np.testing.assert_allclose(res.model(j).losses, alone.losses, rtol=FLOAT64_RTOL)
            for a, b in zip(
                jax.tree.leaves(res.model(j).params), jax.tree.leaves(alone.params), strict=True
            ):
                np.testing.assert_allclose(a, b, rtol=FLOAT64_RTOL, atol=1e-15)
    with pytest.raises(TypeError, match=r"y \(M, n\) must be integers"):
        fit_many(obj, jr.optim.sgd(0.1), params, x, y.astype(float), steps=2)
    bad = y.copy()
    bad[2, 7] = -3
    with pytest.raises(ValueError, match="the first -3 at model 2, row 7"):
        fit_many(obj, jr.optim.sgd(0.1), params, x, bad, steps=2)
