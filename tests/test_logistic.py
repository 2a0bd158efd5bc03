"""jaxreg.logistic against torch: sigmoid(nn.Linear), the logistic-regression tutorial's grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numerics import assert_directional_derivative, assert_within, dot_ulps, sum_ulps

import jaxreg as jr

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]

# sigmoid on each side (XLA's logistic, ATen's vectorized 1 / (1 + exp(-z))) is within
# ~1.5 ulp of exact; measured max 1.4 ulp (float64) and 1.6 ulp (float32) apart.
SIGMOID_ULPS = 4


def _problem(n, in_f, out_f, dtype, logit_scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, in_f)).astype(dtype)
    w = (logit_scale * rng.normal(size=(out_f, in_f))).astype(dtype)
    b = rng.normal(size=(out_f,)).astype(dtype)
    return x, w, b


def test_reexports_the_linear_layer():
    assert jr.logistic.Params is jr.linear.Params
    assert jr.logistic.init is jr.linear.init
    assert jr.logistic.zeros is jr.linear.zeros


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("logit_scale", [1.0, 20.0])  # |z| up to ~100: saturated sigmoids
@pytest.mark.parametrize("in_f,out_f", [(1, 1), (4, 3)])
def test_predict_is_sigmoid_of_torch_linear(in_f, out_f, logit_scale, dtype):
    x, w, b = _problem(64, in_f, out_f, dtype, logit_scale)
    p = jr.logistic.Params(jnp.asarray(w), jnp.asarray(b))
    logits = jr.logistic.logits(p, x)
    prob = jr.logistic.predict(p, x)
    tz = F.linear(torch.tensor(x), torch.tensor(w), torch.tensor(b))
    tprob = torch.sigmoid(tz).numpy()

    np.testing.assert_array_equal(logits, jr.linear.predict(p, x))
    z_scale = np.abs(x) @ np.abs(w).T + np.abs(b)
    assert_within(logits, tz.numpy(), dot_ulps(in_f), z_scale, subnormals_flushed=True)
    assert prob.dtype == dtype and prob.shape == (64, out_f)
    # |d sigmoid| <= sigmoid (1 - sigmoid) |dz|, plus sigmoid's own rounding
    s = tprob.astype(np.float64)
    scale = s * (1 - s) * z_scale * dot_ulps(in_f) / SIGMOID_ULPS + s
    assert_within(prob, tprob, SIGMOID_ULPS, scale, subnormals_flushed=True)
    assert np.all((np.asarray(prob) >= 0) & (np.asarray(prob) <= 1))


def test_predict_saturates_like_torch():
    p = jr.logistic.Params(jnp.asarray([[1.0]]), jnp.asarray([0.0]))
    z = np.array([[-1e4], [-745.0], [-700.0], [-40.0], [0.0], [40.0], [1e4]])
    prob = np.asarray(jr.logistic.predict(p, z))
    tprob = torch.sigmoid(torch.tensor(z)).numpy()
    assert_within(prob, tprob, SIGMOID_ULPS, tprob, subnormals_flushed=True)
    assert prob[0, 0] == prob[1, 0] == 0.0 and prob[4, 0] == 0.5 and prob[-1, 0] == 1.0
    assert 0 < prob[2, 0] < 1e-300  # still a (normal) positive number at z = -700


def test_accuracy():
    p = jr.logistic.Params(jnp.asarray([[1.0]]), jnp.asarray([0.0]))
    x = np.array([[-2.0], [-1.0], [0.0], [1.0], [2.0]])
    y = np.array([[0.0], [1.0], [1.0], [1.0], [0.0]])
    # predicted classes (sigmoid(z) >= 0.5, i.e. z >= 0): 0 0 1 1 1 -> 3 of 5 right
    assert float(jr.logistic.accuracy(p, x, y)) == 0.6
    assert float(jr.logistic.accuracy(p, x, y.astype(np.int32))) == 0.6
    with pytest.raises(ValueError, match=r"\(5, 1\).*\(5,\)"):
        jr.logistic.accuracy(p, x, y.ravel())


# --- the logistic-regression tutorial's losses: gradients against torch --------------------


def _tutorial_data(n, dtype):
    """x = linspace(-1, 1, n), y ~ bernoulli(sigmoid(-1 + 5x)); l1: weight 1, bias -1."""
    x = np.linspace(-1, 1, n).reshape(n, 1)
    v = 1 / (1 + np.exp(-(-1 + 5 * x)))
    y = (np.random.default_rng(0).uniform(size=v.shape) < v).astype(float)
    return x.astype(dtype), y.astype(dtype)


TUTORIAL_LOSSES = {
    # name: (jaxreg objective, torch loss of (l1(x), y))
    "mse_on_probabilities": (
        jr.objective(jr.logistic.predict, jr.losses.mse),
        lambda z, y: torch.mean((y - torch.sigmoid(z)) ** 2),
    ),
    "bce_on_probabilities": (
        jr.objective(jr.logistic.predict, jr.losses.bce),
        lambda z, y: torch.nn.BCELoss()(torch.sigmoid(z), y),
    ),
    "bce_with_logits": (
        jr.objective(jr.logistic.logits, jr.losses.bce_with_logits),
        lambda z, y: torch.nn.BCEWithLogitsLoss()(z, y),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(TUTORIAL_LOSSES))
def test_tutorial_gradients_match_torch(name, dtype):
    n = 200
    x, y = _tutorial_data(n, dtype)
    loss_fn, torch_loss = TUTORIAL_LOSSES[name]
    p = jr.logistic.Params(jnp.asarray([[1.0]], dtype), jnp.asarray([-1.0], dtype))
    value, grads = jax.jit(jax.value_and_grad(loss_fn))(p, x, y)

    l1 = torch.nn.Linear(1, 1, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        l1.weight.fill_(1.0)
        l1.bias.fill_(-1.0)
    tvalue = torch_loss(l1(torch.tensor(x)), torch.tensor(y))
    tvalue.backward()

    # Running-error scales: every per-row term made positive. Each row's loss and its
    # derivative w.r.t. z are O(1) here (|z| <= 6: no clamping, no cancellation blow-up).
    s = 1 / (1 + np.exp(-(x.astype(np.float64) - 1)))
    row_loss = np.abs(s) + np.abs(y) + np.abs(np.log(s)) + np.abs(np.log1p(-s))
    row_grad = (s + np.abs(y) + 1) / n  # |dL/dz| terms per row, before they are summed
    # n rows summed, after the logit (a 2-term dot) and a sigmoid per row
    ulps = sum_ulps(n) + dot_ulps(1) + SIGMOID_ULPS
    assert_within(value, tvalue.detach().numpy(), ulps, row_loss.sum() / n, subnormals_flushed=True)
    assert_within(
        grads.weight,
        l1.weight.grad.numpy(),
        ulps,
        np.sum(row_grad * np.abs(x)),
        subnormals_flushed=True,
    )
    assert_within(grads.bias, l1.bias.grad.numpy(), ulps, np.sum(row_grad), subnormals_flushed=True)


@pytest.mark.parametrize("name", list(TUTORIAL_LOSSES))
def test_tutorial_gradients_match_finite_differences(name):
    x, y = _tutorial_data(200, np.float64)
    loss_fn = TUTORIAL_LOSSES[name][0]
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    p = jr.logistic.Params(jnp.asarray([[1.0]]), jnp.asarray([-1.0]))
    for dw, db in [(1.0, 0.0), (0.0, 1.0), (0.6, -0.8)]:
        v = jr.logistic.Params(jnp.asarray([[dw]]), jnp.asarray([db]))
        assert_directional_derivative(value_and_grad, p, x, y, v)


def test_bce_of_predict_equals_bce_with_logits_of_logits():
    x, y = _tutorial_data(200, np.float64)
    p = jr.logistic.Params(jnp.asarray([[1.0]]), jnp.asarray([-1.0]))
    a = jr.losses.bce(jr.logistic.predict(p, x), y)
    b = jr.losses.bce_with_logits(jr.logistic.logits(p, x), y)
    # |z| <= 2: sigmoid's rounding, amplified by at most 1/min(p, 1 - p) < 10 through the log
    np.testing.assert_allclose(a, b, rtol=10 * SIGMOID_ULPS * np.finfo(float).eps)


def test_target_shape_mismatch_through_the_model():
    x, y = _tutorial_data(20, np.float32)
    p = jr.logistic.zeros(1)
    with pytest.raises(ValueError, match=r"\(20, 1\).*\(20,\).*reshape"):
        jr.losses.bce(jr.logistic.predict(p, x), y.ravel())
    with pytest.raises(ValueError, match="in_features=1"):
        jr.logistic.predict(p, np.ones((20, 2), np.float32))
