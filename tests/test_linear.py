"""jaxreg.linear against torch.nn.Linear: init distribution, predict, gradients, bad input."""

import math

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

# Kolmogorov-Smirnov tests at significance KS_ALPHA: a correct implementation fails for one
# key/seed in a million, while U(-b, b) against a wrong bound (kaiming's default a=0 gives
# sqrt(6) b: D ~ 0.3) or a normal of the same variance (D ~ 0.057) is rejected at these
# sample sizes: 320k weights (critical D 0.005 one-sample, 0.007 two-sample) and 20k biases
# (0.019, 0.027).
KS_ALPHA = 1e-6
KS_C = math.sqrt(-math.log(KS_ALPHA / 2) / 2)  # asymptotic critical value, D * sqrt(n) > c


def ks_against_uniform(samples, low, high) -> float:
    """One-sample KS statistic of `samples` against U(low, high)."""
    u = np.sort((np.ravel(samples).astype(np.float64) - low) / (high - low))
    n = u.size
    return float(max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n)))


def ks_two_sample(a, b) -> float:
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


# --- init and zeros -----------------------------------------------------------------------


# (random draws compile per shape and dtype: few cases, shared with the tests below)
@pytest.mark.parametrize(
    "in_f,out_f,bias,dtype", [(1, 1, True, np.float64), (5, 4, True, np.float32)]
)
def test_init_shapes_dtype_and_bounds(in_f, out_f, bias, dtype):
    p = jr.linear.init(jax.random.key(0), in_f, out_f, bias=bias, dtype=dtype)
    assert isinstance(p, jr.linear.Params)
    assert p.weight.shape == (out_f, in_f) and p.weight.dtype == dtype
    assert (p.in_features, p.out_features) == (in_f, out_f)
    # torch's nn.Linear: weight and bias both U(-1/sqrt(in), 1/sqrt(in))
    bound = dtype(1 / math.sqrt(in_f))
    assert np.all(np.abs(np.asarray(p.weight)) <= bound)
    if bias:
        assert p.bias.shape == (out_f,) and p.bias.dtype == dtype
        assert np.all(np.abs(np.asarray(p.bias)) <= bound)
    else:
        assert p.bias is None
        assert len(jax.tree.leaves(p)) == 1  # None is not a leaf: Params is a clean pytree


def test_init_is_deterministic_in_the_key():
    a = jr.linear.init(jax.random.key(0), 5, 4)
    b = jr.linear.init(jax.random.key(0), 5, 4)
    c = jr.linear.init(jax.random.key(1), 5, 4)
    legacy = jr.linear.init(jax.random.PRNGKey(0), 5, 4)  # raw uint32 keys work as well
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c), strict=True):
        assert not np.array_equal(x, y)
    assert legacy.weight.shape == (4, 5)
    # weight and bias come from different streams
    assert not np.isin(np.asarray(a.bias), np.asarray(a.weight)).any()


def test_init_distribution_matches_torch_nn_linear():
    in_f, out_f = 16, 20_000
    p = jr.linear.init(jax.random.key(2024), in_f, out_f)
    torch.manual_seed(2024)
    layer = torch.nn.Linear(in_f, out_f)
    b = 1 / math.sqrt(in_f)
    for ours, theirs in ((p.weight, layer.weight), (p.bias, layer.bias)):
        ours, theirs = np.asarray(ours), theirs.detach().numpy()
        n, m = ours.size, theirs.size
        # the bound is attained: max |w| < 0.999 b has probability 0.999**n < 3e-9
        assert 0.999 * b < np.max(np.abs(ours)) <= b
        assert ks_against_uniform(ours, -b, b) * math.sqrt(n) < KS_C
        assert ks_against_uniform(theirs, -b, b) * math.sqrt(m) < KS_C  # the premise
        assert ks_two_sample(ours, theirs) * math.sqrt(n * m / (n + m)) < KS_C


def test_ks_check_has_power():
    # the test above would catch the classic mistakes
    in_f, n = 16, 320_000
    b = 1 / math.sqrt(in_f)
    rng = np.random.default_rng(0)
    wrong_bound = rng.uniform(-math.sqrt(6) * b, math.sqrt(6) * b, n)  # kaiming_uniform_(a=0)
    same_variance_normal = rng.normal(0, b / math.sqrt(3), n)
    for sample in (wrong_bound, same_variance_normal):
        assert ks_against_uniform(sample, -b, b) * math.sqrt(n) > 10 * KS_C


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_zeros(bias, dtype):
    p = jr.linear.zeros(3, 2, bias=bias, dtype=dtype)
    assert p.weight.shape == (2, 3) and p.weight.dtype == dtype
    assert not np.any(p.weight)
    if bias:
        assert p.bias.shape == (2,) and p.bias.dtype == dtype and not np.any(p.bias)
    else:
        assert p.bias is None
    d = jr.linear.zeros(1)
    assert d.weight.shape == (1, 1) and d.weight.dtype == jnp.float32 and d.bias.shape == (1,)


@pytest.mark.parametrize("fn", ["init", "zeros"])
@pytest.mark.parametrize("in_f,out_f", [(0, 1), (-1, 1), (2, 0), (1.5, 1), (True, 1), (2, "1")])
def test_bad_sizes(fn, in_f, out_f):
    args = (jax.random.key(0),) if fn == "init" else ()
    with pytest.raises(ValueError, match="must be a positive int"):
        getattr(jr.linear, fn)(*args, in_f, out_f)


@pytest.mark.parametrize("fn", ["init", "zeros"])
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_dtype_is_a_type_error(fn, dtype):
    args = (jax.random.key(0),) if fn == "init" else ()
    with pytest.raises(TypeError, match="float dtype"):
        getattr(jr.linear, fn)(*args, 3, dtype=dtype)


# --- predict against torch.nn.functional.linear -------------------------------------------

PREDICT_CASES = [
    # (x shape, in, out, bias)
    ((3,), 3, 2, True),  # one sample, 1-D as torch allows
    ((3,), 3, 1, False),
    ((100, 1), 1, 1, True),  # the tutorials' nn.Linear(1, 1)
    ((100, 3), 3, 1, False),  # the design-matrix tutorial: nn.Linear(3, 1, bias=False)
    ((64, 7), 7, 4, True),  # multi-output
    ((5, 300), 300, 2, True),  # long dot products
    ((2, 5, 3), 3, 2, True),  # (*, in) batches
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("x_shape,in_f,out_f,bias", PREDICT_CASES)
def test_predict_matches_torch_linear(x_shape, in_f, out_f, bias, dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=x_shape).astype(dtype)
    w = rng.normal(size=(out_f, in_f)).astype(dtype)
    b = rng.normal(size=(out_f,)).astype(dtype) if bias else None
    p = jr.linear.Params(jnp.asarray(w), None if b is None else jnp.asarray(b))
    ours = jr.linear.predict(p, x)
    theirs = F.linear(
        torch.tensor(x), torch.tensor(w), None if b is None else torch.tensor(b)
    ).numpy()
    assert ours.shape == theirs.shape == (*x_shape[:-1], out_f)
    scale = np.abs(x) @ np.abs(w).T + (0 if b is None else np.abs(b))
    assert_within(ours, theirs, dot_ulps(in_f), scale)
    if x_shape == (64, 7):  # and as training runs it (one case: each jit is a compile)
        assert_within(jax.jit(jr.linear.predict)(p, x), theirs, dot_ulps(in_f), scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_predict_is_the_tutorial_formula(dtype):
    # tutorial 1: hypothesis = x * W + b with x = [[1], [2], [3]]
    p = jr.linear.Params(jnp.asarray([[2.0]], dtype), jnp.asarray([0.5], dtype))
    out = jr.linear.predict(p, np.array([[1.0], [2.0], [3.0]], dtype))
    np.testing.assert_array_equal(out, np.array([[2.5], [4.5], [6.5]], dtype))
    assert out.dtype == dtype


def test_predict_works_with_rank_promotion_raise():
    # conftest sets jax_numpy_rank_promotion="raise": (n, out) + (out,) must be explicit
    assert jax.config.jax_numpy_rank_promotion == "raise"
    p = jr.linear.Params(jnp.ones((2, 3), jnp.float32), jnp.ones(2, jnp.float32))
    assert jr.linear.predict(p, np.ones((4, 3), np.float32)).shape == (4, 2)
    assert jr.linear.predict(p, np.ones((2, 4, 3), np.float32)).shape == (2, 4, 2)


# --- gradients of predict-based objectives ------------------------------------------------

OBJECTIVES = {
    "mse": (jr.losses.mse, lambda pred, y: F.mse_loss(pred, y)),
    "sse": (jr.losses.sse, lambda pred, y: F.mse_loss(pred, y, reduction="sum")),
    "l1": (jr.losses.l1, lambda pred, y: F.l1_loss(pred, y)),
    "huber": (jr.losses.huber, lambda pred, y: F.huber_loss(pred, y)),
}


def _regression_problem(n, in_f, out_f, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, in_f)).astype(dtype)
    y = rng.normal(size=(n, out_f)).astype(dtype)
    w = rng.normal(size=(out_f, in_f)).astype(dtype)
    b = rng.normal(size=(out_f,)).astype(dtype)
    return x, y, w, b


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_gradients_match_torch_autograd(name, dtype):
    n, in_f, out_f = 50, 3, 2
    x, y, w, b = _regression_problem(n, in_f, out_f, dtype)
    loss, torch_loss = OBJECTIVES[name]
    loss_fn = jr.objective(jr.linear.predict, loss)
    params = jr.linear.Params(jnp.asarray(w), jnp.asarray(b))
    value, grads = jax.jit(jax.value_and_grad(loss_fn))(params, x, y)

    layer = torch.nn.Linear(in_f, out_f, dtype=torch.float64 if dtype == np.float64 else None)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
        layer.bias.copy_(torch.tensor(b))
    tvalue = torch_loss(layer(torch.tensor(x)), torch.tensor(y))
    tvalue.backward()

    # Magnitudes with every sign made positive (a running-error bound): the loss is a sum
    # over n * out residuals, each an (in + 1)-term dot product minus y; the gradients are
    # n-term sums of (dloss/dpred) x. Elementwise derivative bounds |dloss/dpred| <= |2r|.
    resid = np.abs(x) @ np.abs(w).T + np.abs(b) + np.abs(y)
    norm = 1.0 if name == "sse" else 1.0 / (n * out_f)
    dscale = 2 * resid * norm
    # + 2: the elementwise loss and its derivative, a rounding or two each
    ulps = sum_ulps(n * out_f) + dot_ulps(in_f) + 2
    assert value.dtype == dtype and grads.weight.dtype == dtype
    assert_within(value, tvalue.detach().numpy(), ulps, norm * np.sum(resid**2))
    assert_within(grads.weight, layer.weight.grad.numpy(), ulps, dscale.T @ np.abs(x))
    assert_within(grads.bias, layer.bias.grad.numpy(), ulps, dscale.sum(0))


def test_design_matrix_gradient_is_column_sums():
    # tutorial 4's autograd lesson: d sum(torch.mv(x, a)) / da = x.sum(0)
    x = np.random.default_rng(0).normal(size=(100, 3))
    p = jr.linear.Params(jnp.asarray([[1.0, 2.0, 3.0]]))
    g = jax.grad(lambda p: jnp.sum(jr.linear.predict(p, x)))(p)
    np.testing.assert_allclose(g.weight[0], x.sum(0), rtol=4 * 100 * np.finfo(float).eps)
    assert g.bias is None


@pytest.mark.parametrize("name", ["mse", "sse", "l1", "huber", "bce_with_logits"])
def test_objective_gradients_match_finite_differences(name):
    x, y, w, b = _regression_problem(30, 3, 2, np.float64, seed=5)
    if name == "bce_with_logits":
        y = (y > 0).astype(np.float64)
    loss_fn = jr.objective(jr.linear.predict, getattr(jr.losses, name))
    params = jr.linear.Params(jnp.asarray(w), jnp.asarray(b))
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    rng = np.random.default_rng(6)
    for _ in range(3):
        v = jax.tree.map(lambda a: rng.normal(size=a.shape), params)
        assert_directional_derivative(value_and_grad, params, x, y, v)


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("x_shape,in_f", [((5, 3), 2), ((5, 1), 3), ((4,), 3), ((2, 5, 4), 3)])
def test_feature_mismatch_names_both(x_shape, in_f):
    p = jr.linear.zeros(in_f)
    with pytest.raises(ValueError) as info:
        jr.linear.predict(p, np.ones(x_shape, np.float32))
    msg = str(info.value)
    assert f"{x_shape[-1]} column(s)" in msg and f"in_features={in_f}" in msg
    assert str(x_shape) in msg


def test_feature_mismatch_hint_for_a_flat_vector():
    with pytest.raises(ValueError, match=r"x\.reshape\(-1, 1\)"):
        jr.linear.predict(jr.linear.zeros(1), np.ones(5, np.float32))


def test_feature_mismatch_raises_at_trace_time_under_jit():
    p = jr.linear.zeros(2)
    with pytest.raises(ValueError, match=r"in_features=2"):
        jax.jit(jr.linear.predict).trace(p, jax.ShapeDtypeStruct((5, 3), jnp.float32))


def test_scalar_x_is_refused():
    with pytest.raises(ValueError, match="got a scalar"):
        jr.linear.predict(jr.linear.zeros(1), np.float32(1.0))


@pytest.mark.parametrize("x_dtype", [np.int32, np.int64, np.uint8, np.bool_])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_integer_data_is_promoted_to_the_params_dtype(dtype, x_dtype):
    w = np.random.default_rng(0).normal(size=(2, 3))
    p = jr.linear.Params(jnp.asarray(w, dtype), jnp.asarray([0.5, -0.25], dtype))
    x = np.array([[1, 0, 1], [0, 1, 1]], x_dtype)
    out = jr.linear.predict(p, x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, jr.linear.predict(p, x.astype(dtype)))


def test_float64_data_follows_float32_params():
    # the parameters' dtype wins (x64 is on here; torch's F.linear would refuse the mix)
    p = jr.linear.Params(jnp.ones((2, 3), jnp.float32), jnp.zeros(2, jnp.float32))
    assert jr.linear.predict(p, np.ones((4, 3), np.float64)).dtype == jnp.float32


@pytest.mark.parametrize(
    "weight,bias,where",
    [
        (jnp.ones((1, 3), jnp.int32), jnp.zeros(1), ".weight"),
        (jnp.ones((1, 3)), jnp.zeros(1, jnp.int32), ".bias"),
        (jnp.ones((1, 3), jnp.bool_), None, ".weight"),
    ],
)
def test_integer_params_are_a_type_error(weight, bias, where):
    with pytest.raises(TypeError, match="must be floating point") as info:
        jr.linear.predict(jr.linear.Params(weight, bias), np.ones((2, 3)))
    assert where in str(info.value)


def test_malformed_params():
    with pytest.raises(ValueError, match=r"weight must have shape \(out_features, in_features\)"):
        jr.linear.predict(jr.linear.Params(jnp.ones(3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        jr.linear.predict(jr.linear.Params(jnp.ones((2, 3)), jnp.ones(3)), np.ones((2, 3)))
