"""Bad input (SPEC "Bad input gets a clear error"): the checks and the public paths to them."""

import ast
import functools
import re
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr
from jaxreg import _checks

MSE = jr.objective(jr.linear.predict, jr.losses.mse)


def _data(n=6, d=2, dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)).astype(dtype), rng.normal(size=(n, 1)).astype(dtype)


# --- prediction/target shapes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "pred,target,hint",
    [
        ((4, 1), (4,), r"y\.reshape\(-1, 1\)"),
        ((4,), (4, 1), r"pred\.reshape\(-1, 1\)"),
        ((1, 4), (4,), r"transpose it \(pred\.T\)"),
        ((4,), (1, 4), r"y\.reshape\(-1\)"),
        ((2, 3), (3, 2), r"target\.reshape\(prediction\.shape\)"),
    ],
)
def test_check_same_shape_names_both_shapes_and_the_fix(pred, target, hint):
    with pytest.raises(ValueError, match=hint) as info:
        _checks.check_same_shape(jnp.zeros(pred), jnp.zeros(target), fn="f")
    msg = str(info.value)
    assert f"prediction shape {pred}" in msg and f"target shape {target}" in msg
    assert msg.startswith("f: ")


def test_check_same_shape_accepts_equal_shapes():
    _checks.check_same_shape(jnp.zeros((4, 1)), np.zeros((4, 1)), fn="f")


def test_objective_refuses_the_silent_n_by_n_broadcast():
    # torch: F.mse_loss(model(x) (n, 1), y (n,)) broadcasts to (n, n) with only a warning
    x, y = _data()
    p = jr.linear.zeros(2, dtype=jnp.float64)
    with pytest.raises(ValueError, match=r"\(6, 1\).*\(6,\).*reshape"):
        MSE(p, x, y.ravel())
    with pytest.raises(ValueError, match=r"\(6, 1\).*\(6,\)"):
        jr.fit(MSE, optax.sgd(0.1), p, x, y.ravel(), steps=2)
    step = jr.make_step(MSE, optax.sgd(0.1))
    with pytest.raises(ValueError, match=r"\(6, 1\).*\(6,\)"):
        step(p, optax.sgd(0.1).init(p), x, y.ravel())


# --- features -------------------------------------------------------------------------------


def test_check_features():
    with pytest.raises(ValueError, match=r"x has 3 column\(s\) \(shape \(5, 3\)\).*in_features=2"):
        _checks.check_features((5, 3), 2, fn="f")
    with pytest.raises(ValueError, match="got a scalar"):
        _checks.check_features((), 2, fn="f")
    _checks.check_features((5, 2), 2, fn="f")


def test_feature_mismatch_through_fit():
    x, y = _data(d=3)
    with pytest.raises(ValueError, match=r"3 column\(s\).*in_features=2"):
        jr.fit(MSE, optax.sgd(0.1), jr.linear.zeros(2, dtype=jnp.float64), x, y, steps=2)


# --- empty, NaN, inf ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0)])
def test_check_nonempty(shape):
    with pytest.raises(ValueError, match=re.escape(f"x is empty (shape {shape})")):
        _checks.check_nonempty("x", np.zeros(shape))
    _checks.check_nonempty("x", np.zeros((1, 1)))


@pytest.mark.parametrize(
    "bad,index,where",
    [
        (np.nan, (2, 1), "row 2, column 1"),
        (np.inf, (0, 0), "row 0, column 0"),
        (-np.inf, (4, 1), "row 4, column 1"),
    ],
)
def test_check_finite_says_where(bad, index, where):
    x = np.ones((5, 3))
    x[index] = bad
    x[4, 2] = np.nan  # a later bad value: the first one is reported, with the count
    with pytest.raises(ValueError) as info:
        _checks.check_finite("x", x)
    msg = str(info.value)
    assert msg.startswith("x contains 2 non-finite value(s)")
    assert f"at index {index} ({where})" in msg


def test_check_finite_one_dimensional_and_integer():
    y = np.arange(5.0)
    y[3] = np.inf
    with pytest.raises(ValueError, match=r"y contains 1 non-finite value\(s\).*\(row 3\)"):
        _checks.check_finite("y", y)
    _checks.check_finite("y", np.arange(5))  # integers cannot be NaN
    _checks.check_finite("y", np.arange(5.0))


def _bad(x, index, value):
    x = x.copy()
    x[index] = value
    return x


@pytest.mark.parametrize("entry", ["fit", "make_step"])
@pytest.mark.parametrize(
    "which,index,value,match",
    [
        ("x", (3, 1), np.nan, r"x contains 1 non-finite .* \(row 3, column 1\)"),
        ("x", (0, 0), np.inf, r"x contains 1 non-finite .* \(row 0, column 0\)"),
        ("y", (5, 0), -np.inf, r"y contains 1 non-finite .* \(row 5, column 0\)"),
    ],
)
def test_nonfinite_data_through_the_public_api(entry, which, index, value, match):
    x, y = _data()
    if which == "x":
        x = _bad(x, index, value)
    else:
        y = _bad(y, index, value)
    p = jr.linear.zeros(2, dtype=jnp.float64)
    tx = optax.sgd(0.1)
    with pytest.raises(ValueError, match=match):
        if entry == "fit":
            jr.fit(MSE, tx, p, x, y, steps=2)
        else:
            jr.make_step(MSE, tx)(p, tx.init(p), jnp.asarray(x), jnp.asarray(y))


@pytest.mark.parametrize("entry", ["fit", "make_step"])
@pytest.mark.parametrize("which", ["x", "y"])
def test_empty_data_through_the_public_api(entry, which):
    x, y = _data()
    if which == "x":
        x = x[:0]
    else:
        y = y[:0]
    p = jr.linear.zeros(2, dtype=jnp.float64)
    tx = optax.sgd(0.1)
    with pytest.raises(ValueError, match=rf"{which} is empty"):
        if entry == "fit":
            jr.fit(MSE, tx, p, x, y, steps=2)
        else:
            jr.make_step(MSE, tx)(p, tx.init(p), x, y)


def test_row_count_mismatch_through_fit():
    x, y = _data()
    with pytest.raises(ValueError, match=r"same number of rows"):
        jr.fit(MSE, optax.sgd(0.1), jr.linear.zeros(2, dtype=jnp.float64), x, y[:5], steps=2)


# --- dtypes ---------------------------------------------------------------------------------


def test_float_dtype_of():
    assert _checks.float_dtype_of({"W": jnp.zeros(2, jnp.float32)}) == jnp.float32
    with pytest.raises(TypeError, match=r"\['W'\] has dtype int32"):
        _checks.float_dtype_of({"W": jnp.zeros(2, jnp.int32), "b": jnp.zeros(1)})
    with pytest.raises(ValueError, match="no arrays"):
        _checks.float_dtype_of({})


@pytest.mark.parametrize("entry", ["fit", "make_step"])
def test_integer_params_are_a_type_error_through_the_public_api(entry):
    x, y = _data()
    p = {"W": jnp.zeros((1, 2), jnp.int32), "b": jnp.zeros(1, jnp.int32)}
    tx = optax.sgd(0.1)

    def loss_fn(p, x, y):
        return jr.losses.mse(x @ p["W"].T + p["b"], y)

    with pytest.raises(TypeError, match="must be floating point"):
        if entry == "fit":
            jr.fit(loss_fn, tx, p, x, y, steps=2)
        else:
            jr.make_step(loss_fn, tx)(p, tx.init(p), x, y)


@pytest.mark.parametrize("dtype,x_dtype", [(jnp.float32, np.int32), (jnp.float64, np.bool_)])
def test_integer_data_is_promoted_through_fit(dtype, x_dtype):
    x = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], x_dtype)
    y = np.array([[1], [2], [3], [0]], x_dtype if x_dtype != np.bool_ else np.int32)
    p = jr.linear.zeros(2, dtype=dtype)
    res = jr.fit(MSE, optax.sgd(0.1), p, x, y, steps=3)
    assert res.params.weight.dtype == dtype and res.params.bias.dtype == dtype
    ref = jr.fit(MSE, optax.sgd(0.1), p, x.astype(dtype), y.astype(dtype), steps=3)
    np.testing.assert_array_equal(res.losses, ref.losses)


def test_as_data():
    out = _checks.as_data("x", np.arange(3), jnp.float32)
    assert out.dtype == jnp.float32 and out.shape == (3,)
    np.testing.assert_array_equal(out, [0.0, 1.0, 2.0])


# --- float64 data while x64 is off ----------------------------------------------------------


@pytest.fixture
def x64_off():
    # jax.enable_x64 is a context manager in jax 0.10 (jax.experimental.disable_x64 is gone)
    with jax.enable_x64(False):
        assert not _checks.x64_enabled()
        yield


def test_float64_data_warns_when_x64_is_off(x64_off):
    p = jr.linear.zeros(2)  # float32
    x, y = _data()  # float64 NumPy
    with pytest.warns(jr.PrecisionWarning, match="x is float64 but JAX's x64 mode is off"):
        out = jr.linear.predict(p, x)
    assert out.dtype == jnp.float32
    with pytest.warns(jr.PrecisionWarning, match="target is float64"):
        loss = jr.losses.mse(out, y)
    assert loss.dtype == jnp.float32
    with pytest.warns(jr.PrecisionWarning, match="pred is float64"):
        jr.losses.mse(np.asarray(out, np.float64), y.astype(np.float32))
    with pytest.warns(jr.PrecisionWarning, match="float64"):
        res = jr.fit(MSE, optax.sgd(0.1), p, x, y, steps=2)
    assert res.params.weight.dtype == jnp.float32


def test_float32_data_does_not_warn_when_x64_is_off(x64_off):
    p = jr.linear.zeros(2)
    x, y = _data(dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jr.losses.mse(jr.linear.predict(p, x), y)
        jr.fit(MSE, optax.sgd(0.1), p, x, y, steps=2)


def test_float64_data_does_not_warn_when_x64_is_on():
    assert _checks.x64_enabled()  # conftest turns it on
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = jr.linear.predict(jr.linear.zeros(2, dtype=jnp.float64), _data()[0])
    assert out.dtype == jnp.float64


# --- import hygiene -------------------------------------------------------------------------

_FORBIDDEN = ("torch", "matplotlib")

# One subprocess (a fresh interpreter: this one has torch loaded), three snapshots of the
# forbidden top-level packages in sys.modules: after `import jaxreg`, after using the core
# and every lazy submodule, and after importing matplotlib (which shows the probe works).
_IMPORT_PROBE = f"""
import sys
def loaded():
    return sorted({{m.split('.')[0] for m in sys.modules}} & set({_FORBIDDEN!r}))
import jaxreg
print(loaded())
import numpy as np, jaxreg as jr
p = jr.linear.zeros(2)
jr.losses.bce_with_logits(jr.logistic.logits(p, np.ones((4, 2), np.float32)), np.ones((4, 1)))
for name in ('optim', 'schedules', 'data', 'io', 'solve'):
    getattr(jr, name)
print(loaded())
import matplotlib
print(loaded())
"""


@functools.cache
def _import_snapshots() -> list[list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [ast.literal_eval(line) for line in out.stdout.strip().splitlines()[-3:]]


def test_import_jaxreg_does_not_import_torch_or_matplotlib():
    assert _import_snapshots()[0] == []


def test_using_the_core_and_lazy_submodules_does_not_import_them():
    assert _import_snapshots()[1] == []


def test_the_import_probe_can_fail():
    assert _import_snapshots()[2] == ["matplotlib"]
