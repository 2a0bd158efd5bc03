"""jaxreg.softmax: softmax regression trained like torch's nn.Linear(d, k) + CrossEntropyLoss.

Per-step agreement with a torch loop (full batch and mini-batches, SGD and Adam, float64
and float32); the prediction helpers against torch's softmax and argmax; the trunk's
integer class-index targets (Dataset, mini-batch gathers, the formulation choice); and the
optimum against scikit-learn's multinomial LogisticRegression on its iris and digits data.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import jaxreg as jr
import parity
from parity.preflight import SettingsError

N, D, K = 60, 4, 3

# Per-step parameters after 40 updates, relative to max |param|. float64: each update
# rounds a few dozen operations (a (60, 4) @ (4, 3) product, a log_softmax, sums over 60
# rows) to within ~60 u of the exact step on both sides, and gradient descent on a convex
# loss does not amplify differences (the steps are contractions near the optimum): 40
# steps x 2 sides x ~60 u ~ 5e-13; measured 2e-15. float32: the same count in float32 u
# (6e-8) is 3e-4 worst case; measured 4e-7 (Adam's 1/sqrt(v) divides small gradients).
TRAJECTORY_RTOL = {np.float64: 1e-12, np.float32: 1e-5}


def _blobs(dtype, n=N, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    centers = rng.standard_normal((K, D)) * 2
    x = centers[y] + rng.standard_normal((n, D))
    return x.astype(dtype), y


def _torch_run(x, y, optimizer, lr, steps_or_orders, batch_size=None, seed=0):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(D, K, dtype=torch.float64 if x.dtype == np.float64 else torch.float32)
    w0, b0 = layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()
    opt = getattr(torch.optim, optimizer)(layer.parameters(), lr=lr)
    xt, yt = torch.tensor(x), torch.tensor(y, dtype=torch.int64)  # CrossEntropyLoss: int64
    losses, weights = [], []
    batches = (
        [slice(None)] * steps_or_orders
        if batch_size is None
        else [o[i : i + batch_size] for o in steps_or_orders for i in range(0, len(o), batch_size)]
    )
    for rows in batches:
        opt.zero_grad()
        loss = F.cross_entropy(layer(xt[rows]), yt[rows])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        weights.append(layer.weight.detach().numpy().copy())
    return (w0, b0), np.asarray(losses), np.stack(weights)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "optimizer,lr,batch_size",
    [("SGD", 0.1, None), ("Adam", 0.05, 16)],
    ids=["sgd-full", "adam-mini"],
)
def test_fit_matches_torch_per_step(optimizer, lr, batch_size, dtype):
    x, y = _blobs(dtype)
    if batch_size is None:
        schedule, kwargs = 40, dict(steps=40)
    else:
        g = torch.Generator().manual_seed(0)
        order = np.stack([torch.randperm(N, generator=g).numpy() for _ in range(10)])
        schedule, kwargs = order, dict(epochs=10, batch_size=batch_size, order=order)
    (w0, b0), tlosses, tweights = _torch_run(x, y, optimizer, lr, schedule, batch_size)
    tx = getattr(jr.optim, optimizer.lower())(lr=lr)
    loss_fn = jr.objective(jr.softmax.logits, jr.losses.cross_entropy)
    res = jr.fit(loss_fn, tx, jr.linear.Params(w0, b0), x, y, **kwargs)
    assert res.history.weight.dtype == dtype
    rtol = TRAJECTORY_RTOL[dtype]
    scale = np.abs(tweights).max()
    np.testing.assert_allclose(res.history.weight, tweights, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(res.losses, tlosses, rtol=rtol)


def test_prediction_helpers_match_torch():
    x, y = _blobs(np.float64)
    params = jr.softmax.init(0, D, K, dtype=jnp.float64)
    z = torch.tensor(np.asarray(jr.softmax.logits(params, x)))
    # softmax and log_softmax: a few ulps (exp, a sum of K terms, a log or division)
    np.testing.assert_allclose(jr.softmax.predict_proba(params, x), F.softmax(z, 1), rtol=1e-15)
    np.testing.assert_allclose(
        jr.softmax.log_proba(params, x), F.log_softmax(z, 1), rtol=1e-15, atol=1e-15
    )
    pred = jr.softmax.predict(params, x)
    assert pred.dtype == jnp.int32 and np.array_equal(pred, z.argmax(1).numpy())
    assert float(jr.softmax.accuracy(params, x, y)) == float((z.argmax(1).numpy() == y).mean())
    with pytest.raises(TypeError, match="integer class indices"):
        jr.softmax.accuracy(params, x, y.astype(float))
    with pytest.raises(ValueError, match="one class index per row"):
        jr.softmax.accuracy(params, x, y[:, None])


def test_dataset_keeps_class_indices_integer():
    x, y = _blobs(np.float32)
    xd, yd = jr.Dataset(x, y).arrays(np.float32)
    assert xd.dtype == np.float32 and yd.dtype == np.int32 and np.array_equal(yd, y)
    _, y2 = jr.Dataset(x, y[:, None]).arrays(np.float32)  # (n, 1) labels: floats, as before
    assert y2.dtype == np.float32
    _, y3 = jr.Dataset(x.astype(np.float64), jnp.asarray(y, jnp.int64)).arrays(np.float64)
    assert y3.dtype == jnp.int32


def test_mini_batches_gather_integer_targets():
    """A mini-batch fit and the same batches fed to make_step agree exactly."""
    x, y = _blobs(np.float64)
    loss_fn = jr.objective(jr.softmax.logits, jr.losses.cross_entropy, label_smoothing=0.1)
    p0 = jr.softmax.zeros(D, K, dtype=jnp.float64)
    order = np.stack([np.random.default_rng(e).permutation(N) for e in range(3)])
    res = jr.fit(loss_fn, jr.optim.sgd(lr=0.3), p0, x, y, epochs=3, batch_size=16, order=order)
    step = jr.make_step(loss_fn, jr.optim.sgd(lr=0.3))
    p, s = p0, jr.optim.sgd(lr=0.3).init(p0)
    losses = []
    for o in order:
        for i in range(0, N, 16):
            p, s, loss = step(p, s, x[o[i : i + 16]], y[o[i : i + 16]])
            losses.append(float(loss))
    # The same arithmetic in two compiled programs: equal to a few ulps (XLA may fuse
    # differently inside the loop).
    np.testing.assert_allclose(res.losses, losses, rtol=1e-14)
    np.testing.assert_allclose(res.params.weight, p.weight, rtol=1e-13, atol=1e-15)


def test_formulation_is_the_plain_gradient():
    """No fast formulation covers a loss over classes: `select` falls back to the plain
    `jax.value_and_grad`, also when the logits are declared a "linear" model."""
    x, y = _blobs(np.float64)
    p = jr.softmax.init(1, D, K, dtype=jnp.float64)
    for loss_fn in (
        jr.objective(jr.softmax.logits, jr.losses.cross_entropy),
        jr.objective(jr.linear.predict, jr.losses.cross_entropy, weight=np.ones(K)),
        jr.objective(jr.logistic.logits, jr.losses.nll),
    ):
        for backend in ("cpu", "gpu"):
            form = jr.gradients.select(loss_fn, p, x, y.astype(np.int32), backend=backend)
            assert form.name == "plain"
        value, grad = form.value_and_grad(loss_fn, p, x, y)
        ref_value, ref_grad = jax.value_and_grad(loss_fn)(p, x, y)
        assert float(value) == float(ref_value)
        assert np.array_equal(grad.weight, ref_grad.weight)


def test_fit_refuses_float_class_indices_and_negative_classes():
    x, y = _blobs(np.float64)
    loss_fn = jr.objective(jr.softmax.logits, jr.losses.cross_entropy)
    p0 = jr.softmax.zeros(D, K, dtype=jnp.float64)
    with pytest.raises(TypeError, match=r"cross_entropy takes class indices.*astype\(int\)"):
        jr.fit(loss_fn, jr.optim.sgd(lr=0.1), p0, x, y.astype(np.float64), steps=2)
    bad = y.copy()
    bad[7] = -1
    with pytest.raises(ValueError, match="the first -1 at row 7"):
        jr.fit(loss_fn, jr.optim.sgd(lr=0.1), p0, x, bad, steps=2)
    bad[7] = -100  # torch's default ignore_index: allowed, the row contributes nothing
    res = jr.fit(loss_fn, jr.optim.sgd(lr=0.1), p0, x, bad, steps=2)
    keep = np.arange(N) != 7
    res2 = jr.fit(loss_fn, jr.optim.sgd(lr=0.1), p0, x[keep], y[keep], steps=2)
    np.testing.assert_allclose(res.params.weight, res2.params.weight, rtol=1e-14)
    bad[7] = K  # beyond the classes: NaN loss inside the program, reported as divergence
    with pytest.raises(jr.DivergenceError):
        jr.fit(loss_fn, jr.optim.sgd(lr=0.1), p0, x, bad, steps=2)


# --- scikit-learn's multinomial LogisticRegression at the optimum --------------------------


def _standardize(x):
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def _fit_both(x, y, C, steps):
    """jaxreg softmax regression and sklearn's LogisticRegression(C) on the same objective:
    sklearn minimizes C sum_i CE_i + |W|²/2 (intercept unpenalized), i.e. mean CE +
    |W|² / (2 C n): trained here with Nesterov SGD to the optimum, in float64."""
    n, d = x.shape
    k = int(y.max()) + 1
    with threadpool_limits(1):  # BLAS threads on a shared machine: 0.3 s instead of 25 s
        sk = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(x, y)
    lam = 1.0 / (C * n)

    def loss_fn(params, xb, yb):
        ce = jr.losses.cross_entropy(jr.softmax.logits(params, xb), yb)
        return ce + 0.5 * lam * jnp.sum(params.weight**2)

    tx = jr.optim.sgd(lr=0.5, momentum=0.9, nesterov=True)
    p0 = jr.softmax.zeros(d, k, dtype=jnp.float64)
    res = jr.fit(loss_fn, tx, p0, x, y, steps=steps, record_history=False)
    return res.params, sk


# Distance from the optimum after the fixed number of steps (both solvers stop near it):
# iris (C = 1, 3000 steps): coefficients 3e-7, probabilities 8e-8 measured; digits (C = 0.1,
# 1500 steps): coefficients 9e-6, probabilities 5e-6. 10x margin for other BLAS and CPUs.
OPTIMUM_TOL = {"iris": (3e-6, 1e-6), "digits": (1e-4, 5e-5)}


@pytest.mark.parametrize(
    "name,loader,C,steps", [("iris", load_iris, 1.0, 3000), ("digits", load_digits, 0.1, 1500)]
)
def test_optimum_matches_sklearn(name, loader, C, steps):
    x, y = loader(return_X_y=True)
    x = _standardize(x)
    params, sk = _fit_both(x, y, C, steps)
    coef_tol, proba_tol = OPTIMUM_TOL[name]
    np.testing.assert_allclose(params.weight, sk.coef_, rtol=0, atol=coef_tol)
    # softmax is unchanged by a shift of every intercept: compare them centred
    b = np.asarray(params.bias)
    np.testing.assert_allclose(
        b - b.mean(), sk.intercept_ - sk.intercept_.mean(), rtol=0, atol=10 * coef_tol
    )
    proba = jr.softmax.predict_proba(params, x)
    np.testing.assert_allclose(proba, sk.predict_proba(x), rtol=0, atol=proba_tol)
    assert np.array_equal(jr.softmax.predict(params, x), sk.predict(x))
    assert float(jr.softmax.accuracy(params, x, y)) == sk.score(x, y)


def test_parity_verify_checks_a_softmax_port():
    """`parity.verify` takes int64 class indices as the torch program does: a faithful port
    passes, a label_smoothing the torch loss does not have is named before training."""
    x, y = _blobs(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Linear(D, K)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    port = jr.objective(jr.softmax.logits, jr.losses.cross_entropy)
    cmp = parity.verify(model, F.cross_entropy, opt, port, jr.optim.sgd(lr=0.1), x, y, steps=10)
    assert cmp.passed, cmp.summary()
    smoothed = jr.objective(jr.softmax.logits, jr.losses.cross_entropy, label_smoothing=0.1)
    with pytest.raises(SettingsError, match=r"label_smoothing: torch 0\.0, jaxreg 0\.1"):
        parity.verify(model, F.cross_entropy, opt, smoothed, jr.optim.sgd(lr=0.1), x, y, steps=3)
