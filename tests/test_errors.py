"""Careless and hostile input at the training entry points: never a silent wrong answer.

A table of bad calls of `fit`, `make_step`, `fit_many`, `objective` and the losses, with the
error type and the words of the message each must give (the argument's name, and the fix
or the row), so a new entry point or a new case is a new row. Below the table: the silent
wrong answers, each checked against the right number.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxreg as jr
from jaxreg.loop import progress

MSE = jr.objective(jr.linear.predict, jr.losses.mse)
BCE = jr.objective(jr.logistic.predict, jr.losses.bce)


def _data(n=8, d=2, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    return x, (x @ np.arange(1, d + 1, dtype=dtype)[:, None] + 0.5).astype(dtype)


def _labels(n=8, d=2):
    x, _ = _data(n, d)
    return x, (x[:, :1] > 0).astype(np.float64)


def _params(d=2, dtype=jnp.float64):
    return jr.linear.zeros(d, dtype=dtype)


class TorchStepLR:
    """Stands for a torch lr_scheduler (duck-typed as one, so the table runs without torch)."""

    optimizer = None

    def get_last_lr(self):
        return [0.1]


def _fit(**kw):
    x, y = kw.pop("xy", _data())
    return lambda: jr.fit(
        kw.pop("loss_fn", MSE), kw.pop("tx", jr.optim.sgd(0.1)), kw.pop("params", _params()),
        x, y, **{"steps": 3, **kw},
    )  # fmt: skip


# (id, call, error type, regex the message must match)
BAD = [
    ("tx-string", _fit(tx="sgd"), TypeError, r"tx.*jr\.optim\.sgd"),
    ("loss-fn-not-callable", _fit(loss_fn="mse"), TypeError, r"loss_fn.*jr\.objective"),
    ("x-ragged", _fit(xy=([[1.0, 2.0], [3.0]], [[1.0], [2.0]])), TypeError, r"^x could not"),
    ("x-strings", _fit(xy=(np.array([["a", "b"]] * 8), _data()[1])), TypeError, r"^x must hold"),
    ("x-complex", _fit(xy=(_data()[0] + 1j, _data()[1])), TypeError, r"x is complex"),
    (
        "x-nan-bf16",
        _fit(xy=(np.array([[np.nan, 1.0]] * 8, jnp.bfloat16), _data()[1])),
        ValueError,
        r"x contains .*\(row 0",
    ),
    ("rows-differ", _fit(xy=(_data()[0], _data()[1][:5])), ValueError, r"same number of rows"),
    (
        "x-overflows-float32",
        _fit(xy=(np.full((8, 2), 1e39), _data()[1]), params=_params(dtype=jnp.float32)),
        ValueError,
        r"x overflows float32: 1e\+39 at row 0",
    ),
    (
        "bce-targets-outside",
        _fit(loss_fn=BCE, xy=(_data()[0], 2 * _labels()[1] - 1)),
        ValueError,
        r"targets in \[0, 1\].* row \d",
    ),
    ("epochs-zero", _fit(steps=None, epochs=0), ValueError, r"^epochs must be a positive int"),
    ("steps-float", _fit(steps=3.0), TypeError, r"^steps must be a positive int"),
    ("steps-2**31", _fit(steps=2**31), ValueError, r"^steps must be a positive int of at most"),
    ("steps-1e9-history", _fit(steps=10**9), ValueError, r"steps=1000000000.*GiB.*record_history"),
    ("progress-yes", _fit(progress="yes"), TypeError, r"^progress must be"),
    ("key-string", _fit(steps=None, epochs=1, batch_size=4, key="0"), TypeError, r"^key must"),
    (
        "order-ragged",
        _fit(steps=None, epochs=2, batch_size=4, order=[list(range(8)), [0]]),
        ValueError,
        r"^order must",
    ),
    ("schedule-torch", _fit(schedule=TorchStepLR()), TypeError, r"torch scheduler.*jr\.schedules"),
    ("record-history-str", _fit(record_history="no"), TypeError, r"^record_history must"),
    ("check-finite-str", _fit(check_finite="no"), TypeError, r"^check_finite must"),
    (
        "many-steps-zero",
        lambda: jr.fit_many(
            MSE,
            jr.optim.sgd(0.1),
            jax.vmap(lambda _: _params())(jnp.arange(2)),
            np.stack([_data()[0]] * 2),
            np.stack([_data()[1]] * 2),
            steps=0,
        ),
        ValueError,
        r"^steps must",
    ),
    ("step-tx-string", lambda: jr.make_step(MSE, "sgd"), TypeError, r"tx"),
    (
        "step-bce-targets-outside",
        lambda: jr.make_step(BCE, jr.optim.sgd(0.1))(
            _params(), jr.optim.sgd(0.1).init(_params()), _data()[0], 2 * _labels()[1] - 1
        ),
        ValueError,
        r"targets in \[0, 1\].* row \d",
    ),
    (
        "objective-unhashable",
        lambda: jr.objective(jr.linear.predict, jr.losses.mse, opts={}),
        TypeError,
        r"loss argument opts",
    ),
    (
        "objective-model",
        lambda: jr.objective(jr.linear.predict, jr.losses.mse, model="tree"),
        ValueError,
        r"model must be one of",
    ),
    ("init-key-string", lambda: jr.linear.init("a", 2), TypeError, r"^key must be a JAX PRNG key"),
    (
        "predict-params-list",
        lambda: jr.linear.predict([1.0], np.ones((2, 1))),
        TypeError,
        r"params must be jr\.linear\.Params",
    ),
    (
        "mse-ragged-target",
        lambda: jr.losses.mse(np.ones((2, 1)), [[1.0], [2.0, 3.0]]),
        TypeError,
        r"^target could not be read",
    ),
    (
        "mse-ragged-pred",
        lambda: jr.losses.mse([[1.0], [2.0, 3.0]], np.ones((2, 1))),
        TypeError,
        r"^pred could not be read",
    ),
    (
        "lstsq-ragged",
        lambda: jr.solve.least_squares([[1.0], [2.0, 3.0]], [1.0, 2.0]),
        TypeError,
        r"^x could not be read",
    ),
    (
        "bce-eager-target",
        lambda: jr.losses.bce(jnp.array([[0.7], [0.2]]), jnp.array([[2.0], [-1.0]])),
        ValueError,
        r"target should be between 0 and 1",
    ),
    (
        "bce-eager-prob",
        lambda: jr.losses.bce(jnp.array([[1.7], [0.2]]), jnp.array([[1.0], [0.0]])),
        ValueError,
        r"prob should be between 0 and 1",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_linear_predictions_given_to_bce_name_the_row():
    """torch raises for probabilities outside [0, 1]; in a compiled loop the loss turns NaN,
    and fit names the cause instead of blaming the learning rate."""
    x, y = _labels()
    lin_bce = jr.objective(jr.linear.predict, jr.losses.bce)
    params = jr.linear.Params(jnp.array([[3.0, 0.0]]), jnp.array([0.0]))
    with pytest.raises(ValueError, match=r"predictions in \[0, 1\].*step 0.*row \d"):
        jr.fit(lin_bce, jr.optim.sgd(0.1), params, x, y, steps=3)


def test_a_step_does_not_reuse_data_converted_for_another_dtype():
    x, y = (jnp.asarray(a) for a in _data())
    step = jr.make_step(MSE, jr.optim.sgd(0.1))
    p32 = _params(dtype=jnp.float32)
    with pytest.warns(jr.PrecisionWarning, match="rounded to float32"):
        step(p32, jr.optim.sgd(0.1).init(p32), x, y)
    p64 = jr.linear.Params(jnp.array([[0.3, -0.2]]), jnp.array([0.1]))
    _, _, loss = step(p64, jr.optim.sgd(0.1).init(p64), x, y)
    fresh = jr.make_step(MSE, jr.optim.sgd(0.1))
    _, _, want = fresh(p64, jr.optim.sgd(0.1).init(p64), x, y)
    assert loss.dtype == jnp.float64 and float(loss) == float(want)
    # float32-rounded data moved this loss by ~1e-8 relative; float64 summation order by ~1e-16.
    np.testing.assert_allclose(loss, MSE(p64, x, y), rtol=1e-14)


def test_float64_data_with_float32_params_warns_and_trains_in_float32():
    x, y = _data()
    with pytest.warns(jr.PrecisionWarning, match="training runs in the parameters' dtype"):
        res = jr.fit(MSE, jr.optim.sgd(0.1), _params(dtype=jnp.float32), x, y, steps=2)
    assert res.params.weight.dtype == jnp.float32


def test_float64_params_with_x64_off_warn():
    code = textwrap.dedent(
        """
        import warnings, numpy as np, jaxreg as jr
        p = jr.linear.Params(np.zeros((1, 2)), np.zeros(1))
        x = np.ones((4, 2), np.float32); y = np.ones((4, 1), np.float32)
        o = jr.objective(jr.linear.predict, jr.losses.mse)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            jr.fit(o, jr.optim.sgd(0.1), p, x, y, steps=2)
        msgs = [str(i.message) for i in w]
        assert any("parameters are float64" in m for m in msgs), msgs
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_torch_tensors_are_data():
    x, y = _data()
    want = jr.fit(MSE, jr.optim.sgd(0.1), _params(), x, y, steps=5)
    got = jr.fit(
        MSE, jr.optim.sgd(0.1), _params(), torch.from_numpy(x), torch.from_numpy(y), steps=5
    )
    np.testing.assert_array_equal(got.losses, want.losses)


def test_an_int_key_is_a_seed():
    x, y = _data(n=12)
    kw = {"epochs": 2, "batch_size": 4}
    want = jr.fit(MSE, jr.optim.sgd(0.1), _params(), x, y, key=jax.random.key(3), **kw)
    got = jr.fit(MSE, jr.optim.sgd(0.1), _params(), x, y, key=3, **kw)
    np.testing.assert_array_equal(got.losses, want.losses)


def test_fit_many_checks_parameters_that_overflow():
    """Losses finite at every step, parameters inf after the last update: an error."""
    x, y = _data()
    params = jax.vmap(lambda _: _params())(jnp.arange(2))
    xs, ys = np.stack([x, x * 1e150]), np.stack([y, y * 1e150])
    with pytest.raises(jr.DivergenceError, match=r"1 of 2 models.*\[1\]"):
        jr.fit_many(MSE, jr.optim.sgd(1e150), params, xs, ys, steps=1)


def test_donated_params_used_again_is_a_clear_error():
    x, y = _data()
    step = jr.make_step(MSE, jr.optim.sgd(0.1), donate=True)
    p = jr.linear.Params(jnp.zeros((1, 2)), jnp.zeros(1))
    s = jr.optim.sgd(0.1).init(p)
    step(p, s, x, y)
    with pytest.raises(ValueError, match=r"params.*donated.*donate=False"):
        step(p, s, x, y)


def test_donating_one_buffer_twice_works():
    x, y = _data()
    zeros = jnp.zeros(2)
    params = {"a": zeros, "b": zeros}

    def loss(p, x, y):
        return jnp.mean((x @ (p["a"] + p["b"])[:, None] - y) ** 2)

    step = jr.make_step(loss, jr.optim.sgd(0.1), donate=True)
    out, _, _ = step(params, jr.optim.sgd(0.1).init(params), x, y)
    fresh = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
    want, _, _ = jr.make_step(loss, jr.optim.sgd(0.1))(fresh, jr.optim.sgd(0.1).init(fresh), x, y)
    np.testing.assert_array_equal(out["a"], want["a"])


class _RecordingBar:
    """tqdm's interface, counting what each bar is told."""

    def __init__(self, total, **_):
        self.total, self.n = total, 0
        _RecordingBar.made.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        pass


def test_two_threads_fitting_with_progress_see_their_own_bars(monkeypatch):
    _RecordingBar.made = []
    monkeypatch.setattr(progress, "tqdm", _RecordingBar)
    x, y = _data(n=20)
    runs = {"a": (0.05, 40), "b": (0.01, 70)}
    want = {
        k: jr.fit(MSE, jr.optim.sgd(lr), _params(), x, y, steps=s) for k, (lr, s) in runs.items()
    }
    got = {}

    def work(k):
        lr, s = runs[k]
        got[k] = jr.fit(MSE, jr.optim.sgd(lr), _params(), x, y, steps=s, progress=7)

    threads = [threading.Thread(target=work, args=(k,)) for k in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in runs:
        np.testing.assert_array_equal(got[k].losses, want[k].losses)
    assert sorted((b.total, b.n) for b in _RecordingBar.made) == [(40, 40), (70, 70)]


def test_bfloat16_params_train_as_a_make_step_loop_does():
    """bfloat16 parameters (an AssertionError before): fit equals the same steps by hand."""
    x, y = (a.astype(jnp.bfloat16) for a in _data())
    p0 = _params(dtype=jnp.bfloat16)
    res = jr.fit(MSE, jr.optim.sgd(0.1), p0, x, y, steps=4)
    step, p, s = jr.make_step(MSE, jr.optim.sgd(0.1)), p0, jr.optim.sgd(0.1).init(p0)
    for want in res.losses:
        p, s, loss = step(p, s, x, y)
        assert float(loss) == float(want)
    assert res.params.weight.dtype == jnp.bfloat16
    np.testing.assert_array_equal(res.params.weight, p.weight)


def test_an_int_seed_initialises_as_its_key():
    a, b = jr.linear.init(3, 4, 2), jr.linear.init(jax.random.key(3), 4, 2)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)


def test_the_optimizer_passed_trains_not_the_states_numbers():
    """issue 14's four cases, through fit and make_step (jaxreg.optim.adopt at the boundary)."""
    x, y = _data()
    p0 = _params()

    def run(tx, **kw):
        return jr.fit(MSE, tx, p0, x, y, steps=4, **kw)

    fresh = run(jr.optim.sgd(lr=0.001))
    other = run(jr.optim.sgd(lr=0.001), opt_state=jr.optim.sgd(lr=1.0).init(p0))
    np.testing.assert_array_equal(other.losses, fresh.losses)

    adamw = run(jr.optim.adamw(weight_decay=0.5))
    from_adam = run(jr.optim.adamw(weight_decay=0.5), opt_state=jr.optim.adam(0.1).init(p0))
    np.testing.assert_array_equal(from_adam.losses, adamw.losses)

    first = run(jr.optim.adam(lr=0.1))
    cont = jr.fit(
        MSE, jr.optim.adam(lr=1e-4), first.params, x, y, steps=2, opt_state=first.opt_state
    )
    assert float(jr.optim.get_hyperparams(cont.opt_state)["lr"]) == pytest.approx(1e-4)

    tx = jr.optim.sgd(0.1, momentum=0.5)
    step = jr.make_step(MSE, tx)
    got, want = (p0, jr.optim.sgd(0.1, momentum=0.9).init(p0)), (p0, tx.init(p0))
    for _ in range(3):
        *got, _ = step(*got, x, y)
        *want, _ = step(*want, x, y)
    np.testing.assert_array_equal(got[0].weight, want[0].weight)
