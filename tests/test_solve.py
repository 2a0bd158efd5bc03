"""jaxreg.solve: the closed-form least-squares reference."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.linear_model as sklearn_linear

from jaxreg import data, solve
from jaxreg.linear import Params

REGRESSION_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "regression.csv"

# Random Gaussian designs with n >> in are well conditioned (cond(A) ~ 2 here), and every
# solver below (SVD lstsq, sklearn's lstsq, Cholesky-free `solve` of the normal equations)
# is backward stable, so they agree to ~cond(A)^2 * eps ~ 1e-15. 1e-10 leaves a wide
# margin for BLAS differences while any formula error (a missing transpose, a dropped
# intercept) shows up at O(1).
RTOL = 1e-10


def random_problem(n=60, k=4, out=None, *, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k))
    shape = (n,) if out is None else (n, out)
    y = rng.standard_normal(shape) + 3.0  # the offset makes the intercept matter
    return x, y


def normal_equations(x, y, *, bias):
    a = np.c_[x, np.ones(len(x))] if bias else x
    y2 = y.reshape(len(y), -1)
    c = np.linalg.solve(a.T @ a, a.T @ y2)
    return (c[:-1].T, c[-1]) if bias else (c.T, None)


@pytest.mark.parametrize("out", [None, 1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_sklearn_and_the_normal_equations(out, bias):
    x, y = random_problem(out=out)
    p = solve.least_squares(x, y, bias=bias)
    n_out = 1 if out is None else out
    assert p.weight.shape == (n_out, 4)
    assert p.weight.dtype == np.float64

    ref = sklearn_linear.LinearRegression(fit_intercept=bias).fit(x, y)
    np.testing.assert_allclose(p.weight, np.reshape(ref.coef_, (n_out, 4)), rtol=RTOL)
    w, b = normal_equations(x, y, bias=bias)
    np.testing.assert_allclose(p.weight, w, rtol=RTOL)
    if bias:
        assert p.bias.shape == (n_out,)
        np.testing.assert_allclose(p.bias, np.reshape(ref.intercept_, (n_out,)), rtol=RTOL)
        np.testing.assert_allclose(p.bias, b, rtol=RTOL)
    else:
        assert p.bias is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_regression_csv(dtype):
    cols = data.load_csv(REGRESSION_CSV, dtype=dtype)
    x, y = cols["x"].reshape(-1, 1), cols["y"]
    p = solve.least_squares(x, y)
    assert isinstance(p, Params)
    assert p.weight.dtype == p.bias.dtype == dtype
    ref = sklearn_linear.LinearRegression().fit(x.astype(np.float64), y.astype(np.float64))
    # float32 results are the float64 solution rounded once: within float32's eps (6e-8).
    rtol = RTOL if dtype == np.float64 else 1.2e-7
    np.testing.assert_allclose(p.weight, [ref.coef_], rtol=rtol)
    np.testing.assert_allclose(p.bias, [ref.intercept_], rtol=rtol)
    # The design-matrix form of the same problem (tutorial 5's X = [1, x], no bias).
    q = solve.least_squares(data.design_matrix(x), y, bias=False)
    np.testing.assert_allclose(q.weight[0], [p.bias[0], p.weight[0, 0]], rtol=rtol)


def test_is_the_fixed_point_of_gradient_descent():
    # Tutorial 5(b): mean loss, alpha = 0.1 on X = [1, x]; run it to convergence.
    cols = data.load_csv(REGRESSION_CSV, dtype=np.float64)
    X, y = data.design_matrix(cols["x"]), cols["y"]
    w = np.array([-5.0, 10.0])
    for _ in range(2000):
        w = w - 0.1 * (2 / len(y)) * X.T @ (X @ w - y)
    p = solve.least_squares(X, y, bias=False)
    # GD contracts the error by |1 - 0.2 * lambda_min(X.T X / n)| per step; after 2000
    # steps it sits at the float64 rounding floor, ~1e-14 for weights of size ~5.
    np.testing.assert_allclose(p.weight[0], w, rtol=1e-12)
    # And the gradient of the mse vanishes there (relative to |X.T y|).
    grad = X.T @ (X @ p.weight[0] - y)
    assert np.abs(grad).max() < 1e-12 * np.abs(X.T @ y).max()


def test_rank_deficient_gives_the_minimum_norm_solution():
    x, y = random_problem(k=2)
    x = np.c_[x, x[:, 0]]  # a repeated column: infinitely many minimizers
    with pytest.warns(solve.RankDeficientWarning, match="rank 2 < 3"):
        p = solve.least_squares(x, y, bias=False)
    np.testing.assert_allclose(p.weight[0], np.linalg.pinv(x) @ y, rtol=RTOL)
    assert p.weight[0, 0] == pytest.approx(p.weight[0, 2], rel=RTOL)  # split evenly


def celsius_fahrenheit(dtype):
    """Tutorial 7's temperatures as two columns, C and F = C * 9/5 + 32: collinear.

    Returns (x in `dtype`, the same design computed exactly collinear in float64)."""
    c = data.celsius(20, seed=0, dtype=dtype).x
    c64 = c.astype(np.float64)
    x = np.stack([c, c * dtype(9) / dtype(5) + dtype(32)], axis=1)  # F rounded to dtype
    return x, np.stack([c64, c64 * 9 / 5 + 32], axis=1)


def collinear(kind):
    """(x as the user passes it, its exactly rank-deficient float64 version, bias)."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((30, 2))
    if kind == "celsius-fahrenheit-f32":
        return (*celsius_fahrenheit(np.float32), True)
    if kind == "celsius-fahrenheit-f64":
        return (*celsius_fahrenheit(np.float64), True)
    if kind == "design-matrix-and-bias":  # [1, x] and bias=True: two intercept columns
        return data.design_matrix(z), data.design_matrix(z), True
    if kind == "zero-column-f32":
        x = np.c_[z, np.zeros(30)].astype(np.float32)
        return x, x.astype(np.float64), True
    if kind == "integer-multiple":
        x = np.c_[np.arange(30) % 7, 3 * (np.arange(30) % 7)]  # int64, exact
        return x, x.astype(np.float64), False
    raise AssertionError(kind)


# The data are collinear only up to rounding x to its dtype (float32 F has a relative
# error of 6e-8). The minimum-norm solution moves by ~ eps * cond(A restricted to its
# range) * |C| (cond ~ 20 here), so ~1e-6 relative in float32 and ~1e-14 in float64;
# 1e-5 leaves a margin of ten for float32. Without a dtype-aware cut-off the float32
# case returns weights ~1e3 to 1e4 (relative error ~1e3), which any bound here catches.
COLLINEAR_RTOL = 1e-5


@pytest.mark.parametrize(
    "kind",
    [
        "celsius-fahrenheit-f32",
        "celsius-fahrenheit-f64",
        "design-matrix-and-bias",
        "zero-column-f32",
        "integer-multiple",
    ],
)
def test_collinear_columns_give_the_minimum_norm_solution_and_warn(kind):
    x, exact, bias = collinear(kind)
    y = 1.8 * exact[:, 0] + 32 + np.random.default_rng(5).standard_normal(len(x))
    a = np.c_[exact, np.ones(len(x))] if bias else exact
    ref, _, rank, _ = np.linalg.lstsq(a, y, rcond=None)  # float64, truly rank-deficient
    assert rank == a.shape[1] - 1
    with pytest.warns(solve.RankDeficientWarning, match=f"rank {rank} < {a.shape[1]}"):
        p = solve.least_squares(x, y, bias=bias)
    got = np.r_[p.weight[0], p.bias] if bias else p.weight[0]
    assert np.linalg.norm(got - ref) <= COLLINEAR_RTOL * np.linalg.norm(ref)
    # And it fits as well as the minimum-norm solution (not 1.9% worse).
    ref_mse = np.mean((a @ ref - y) ** 2)
    assert np.mean((a @ got.astype(np.float64) - y) ** 2) <= ref_mse * (1 + COLLINEAR_RTOL)
    with pytest.warns(solve.RankDeficientWarning):
        floor = solve.mse_at_optimum(x, y, bias=bias)
    assert floor == pytest.approx(ref_mse, rel=COLLINEAR_RTOL)


@pytest.mark.parametrize(
    ("x", "dtype"),
    [
        (np.arange(12).reshape(6, 2) ** 2, np.float32),
        (np.arange(12.0, dtype=np.float32).reshape(6, 2) ** 2, np.float32),
        (jnp.arange(12.0, dtype=jnp.float64).reshape(6, 2) ** 2, np.float64),
        # Full rank at bfloat16's precision (the smallest relative singular value of
        # [x, 1] is 0.09, above the cut-off 6 * 2**-7 = 0.047).
        (jnp.asarray([[0, 5], [1, 1], [2, 4], [3, 0], [4, 3], [5, 2]], jnp.bfloat16), jnp.bfloat16),
    ],
)
def test_result_dtype_follows_x(x, dtype):
    p = solve.least_squares(x, np.arange(6.0))
    assert p.weight.dtype == p.bias.dtype == dtype
    assert isinstance(p.weight, np.ndarray)


def test_mse_at_optimum():
    x, y = random_problem(out=2)
    p = solve.least_squares(x, y)
    floor = solve.mse_at_optimum(x, y)
    assert isinstance(floor, float)
    assert floor == pytest.approx(np.mean((x @ p.weight.T + p.bias - y) ** 2), rel=RTOL)
    # Any other parameters do worse.
    rng = np.random.default_rng(1)
    for _ in range(5):
        w = p.weight + 0.01 * rng.standard_normal(p.weight.shape)
        assert np.mean((x @ w.T + p.bias - y) ** 2) > floor


def test_mse_at_optimum_is_the_noise_variance():
    n = 10_000
    d = data.multivariate(n, seed=4)
    floor = solve.mse_at_optimum(d.x, d.y, bias=False)
    # E[floor] = 0.25 * (n - 3) / n; the mean of n squared N(0, 0.5^2) has standard error
    # 0.25 * sqrt(2 / n) = 0.0035; the bound is ~5 of them.
    assert abs(floor - 0.25) < 0.018
    # And the fit recovers the true weights: standard error 0.5 / sqrt(n) = 0.005 each.
    np.testing.assert_allclose(
        solve.least_squares(d.x, d.y, bias=False).weight[0], d.true_w, atol=0.025
    )


@pytest.mark.parametrize(
    ("x", "y", "error", "match"),
    [
        (np.ones(5), np.ones(5), ValueError, r"shape \(n, in_features\).*reshape\(-1, 1\)"),
        (np.ones((5, 2, 1)), np.ones(5), ValueError, r"got \(5, 2, 1\)"),
        (np.ones((5, 2)), np.ones((5, 1, 1)), ValueError, r"y must have shape"),
        (np.ones((5, 2)), np.ones(4), ValueError, r"x has 5 rows .* y has 4"),
        (np.ones((0, 2)), np.ones(0), ValueError, "x is empty"),
        (np.ones((5, 2)), np.array([1.0, 2.0, np.inf, 4.0, 5.0]), ValueError, r"y .*\(row 2\)"),
        (np.array([[1.0, 2.0], [3.0, np.nan]]), np.ones(2), ValueError, r"x .* \(1, 1\)"),
        (np.ones((5, 2), complex), np.ones(5), TypeError, "real numbers"),
        (np.ones((5, 2)), np.array(["a"] * 5), TypeError, "y must hold numbers"),
    ],
)
@pytest.mark.parametrize("fn", [solve.least_squares, solve.mse_at_optimum])
def test_bad_input(fn, x, y, error, match):
    with pytest.raises(error, match=match):
        fn(x, y)
