"""`jaxreg.gradients.gram`: full-batch least squares from sufficient statistics.

Checked: the formulation against the plain reference (every reduction, with and without
bias, one and three outputs); the loss against exact sums on adversarial data, within
`gram.error_bound` (and a textbook Gram form that is not); `fit(gram=True)` trajectories
against torch (nn.Linear + F.mse_loss + torch.optim) in float64; float32's warning and
bound; where the path refuses (`ValueError` naming `gram`) and where "auto" takes it; the
statistics computed once per Dataset; record_history and schedules.

Tolerances:
- PLAIN_RTOL = 1e-12: the formulation against `jax.value_and_grad` on well-conditioned data
  (`error_bound` <= 1e-12 there, asserted): the two differ by the rounding of different
  sums of a few hundred terms, relative to the largest entry of each leaf.
- TORCH_RTOL = 1e-10: the float64 promise of `fit(gram=...)` against torch, per step, for
  the losses (relative to each loss) and the parameters (relative to each leaf's largest
  entry). Measured: a few 1e-14.
- The adversarial-data test has no tolerance of its own: the measured error must be within
  `error_bound(stats)`, the estimate `fit` relies on.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

import jaxreg as jr
from jaxreg import gradients
from jaxreg.gradients import gram, plain

PLAIN_RTOL = 1e-12
TORCH_RTOL = 1e-10

REDUCTIONS = {
    "mse-mean": (jr.losses.mse, {}),
    "mse-sum": (jr.losses.mse, {"reduction": "sum"}),
    "sse": (jr.losses.sse, {}),
}


def _data(n, d, out, *, seed=0, noise=0.5, offset=2.0, dtype=np.float64):
    """Well-conditioned regression data: standard normal columns around `offset`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) + offset
    y = x @ rng.standard_normal((d, out)) + 1.5 + noise * rng.standard_normal((n, out))
    return x.astype(dtype), y.astype(dtype)


def _params(d, out, bias, *, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.standard_normal((out, d)).astype(dtype))
    b = jnp.asarray(rng.standard_normal(out).astype(dtype)) if bias else None
    return jr.linear.Params(w, b)


def _assert_close(got, want, rtol):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=0, atol=rtol * float(np.max(np.abs(w))))


# --- the formulation against the plain reference -----------------------------------------


@pytest.mark.parametrize("reduction", sorted(REDUCTIONS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("out", [1, 3])
def test_formulation_equals_plain(reduction, bias, out):
    loss, kwargs = REDUCTIONS[reduction]
    obj = jr.objective(jr.linear.predict, loss, **kwargs)
    x, y = _data(400, 5, out)
    stats = gram.statistics(x, y, bias=bias)
    assert gram.error_bound(stats) <= PLAIN_RTOL  # what makes PLAIN_RTOL a fair bound
    for seed in range(3):  # far from the solution, and two points near it
        p = _params(5, out, bias, seed=seed)
        if seed:
            scale = 10.0 ** -(3 * seed)
            p = jr.linear.Params(
                stats.ref_weight + scale * p.weight,
                None if p.bias is None else stats.ref_bias + scale * p.bias,
            )
        want = plain.value_and_grad(obj, p, jnp.asarray(x), jnp.asarray(y))
        got = gram.value_and_grad(obj, p, stats, None)
        np.testing.assert_allclose(got[0], want[0], rtol=PLAIN_RTOL, atol=0)
        scale = _grad_terms(x, y, p, reduction)
        for g, w in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True):
            np.testing.assert_allclose(g, w, rtol=0, atol=PLAIN_RTOL * scale)
        # the same through the seam, and through the objective a loop takes
        f = gradients.select(obj, p, stats, None, backend="cpu")
        assert f.name == "gram"
        wrapped = gram.FromStatistics(obj)
        assert f.value_and_grad(wrapped, p, stats, None)[0] == got[0]
        assert wrapped(p, stats) == got[0]
        # the hand-written gradient is the derivative of the loss form
        autodiff = jax.tree.leaves(jax.grad(wrapped)(p, stats))
        for g, w in zip(autodiff, jax.tree.leaves(got[1]), strict=True):
            np.testing.assert_allclose(g, w, rtol=0, atol=PLAIN_RTOL * scale)


def _grad_terms(x, y, p, reduction):
    """The size of the terms a gradient entry sums, `max Σ_i |x_i| (|x_i| |W| + |b| + |y_i|)`
    (times 2/N for a mean): its rounding is relative to them, not to the gradient itself,
    which goes to 0 at the solution."""
    w = np.abs(np.asarray(p.weight))
    b = 0 if p.bias is None else np.abs(np.asarray(p.bias))[None, :]
    terms = np.abs(x) @ w.T + b + np.abs(y)  # (n, out)
    total = float(max(np.max(np.abs(x).T @ terms), np.max(terms.sum(0))))
    return 2 * total / (y.size if reduction == "mse-mean" else 1)


def test_statistics_are_the_sufficient_statistics():
    x, y = _data(1000, 4, 2, offset=50.0)
    stats = gram.statistics(x, y, bias=True)
    xc, yc = x - x.mean(0), y - y.mean(0)
    np.testing.assert_allclose(stats.x_mean, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(stats.xx, xc.T @ xc, rtol=1e-12)
    np.testing.assert_allclose(stats.xy, xc.T @ yc, rtol=1e-12)
    np.testing.assert_allclose(stats.yy, (yc * yc).sum(0), rtol=1e-12)
    ref, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    np.testing.assert_allclose(stats.ref_weight, ref[:-1].T, rtol=1e-9)
    # blocks: more than one, and a partial last one, give the same numbers
    # blocks (three, and a partial last one) give the same numbers, to rounding (1e-11,
    # relative to each field's largest entry; the gradient terms at the reference point
    # are rounding themselves, so relative to the terms they sum: xy and n |y|)
    blocked = gram._statistics(x, y, bias=True, block=300)
    scales = stats._replace(
        ref_grad_weight=np.abs(stats.xy).max(), ref_grad_bias=len(y) * np.abs(y).max()
    )
    for a, b, scale in zip(blocked, stats, scales, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-11 * float(np.max(np.abs(scale))))


def test_statistics_refuse_bad_shapes_and_dtypes():
    x, y = _data(10, 2, 1)
    with pytest.raises(ValueError, match="x must be"):
        gram.statistics(x[:, 0], y, bias=True)
    with pytest.raises(TypeError, match="float32 or both float64"):
        gram.statistics(x, y.astype(np.float32), bias=True)


# --- accuracy on adversarial data against exact sums ------------------------------------


def _two_prod(a, b):
    """a * b = p + e exactly (Dekker's split; no FMA needed)."""
    p = a * b
    split = 134217729.0  # 2**27 + 1
    ca, cb = split * a, split * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _exact_loss(x, y, params):
    """mean((x W' + b - y)²), each residual correctly rounded (math.fsum of exact products),
    so relative to ~1e-16 whatever the cancellation."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    w = np.asarray(params.weight, np.float64)
    b = np.zeros(w.shape[0]) if params.bias is None else np.asarray(params.bias, np.float64)
    squares = []
    for k in range(w.shape[0]):
        p, e = _two_prod(x, w[k][None, :])
        terms = np.concatenate([p, e, np.full((len(x), 1), b[k]), -y[:, k : k + 1]], axis=1)
        r = np.array([math.fsum(row) for row in terms])
        squares.append(r * r)
    return math.fsum(np.concatenate(squares)) / y.size


def _adversarial(kind, n, d, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    noise = 1e-3
    if kind == "collinear":  # correlation eigenvalues down to 1e-6
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        x = z @ np.diag(np.geomspace(1, 1e-3, d)) @ q.T
    elif kind == "offset":  # |mean| / std = 1e4
        x = z + 1e4 * rng.choice([-1, 1], d)
    elif kind == "sorted":  # each column sorted: strongly correlated, offset
        x = np.sort(z, axis=0) + 10
    elif kind == "scaled":  # column scales 1e-3 .. 1e3
        x = z * np.geomspace(1e-3, 1e3, d)
    else:  # "near-exact": residual 1e-6 of y
        x, noise = z, 1e-6
    y = x @ rng.standard_normal((d, 1)) + 3 + noise * rng.standard_normal((n, 1))
    return x, y


def _probe_params(stats, bias, rng):
    """Points from far to very near the reference point, in a random direction, along the
    least-determined direction of x, and moving the bias only."""
    v, c = np.asarray(stats.ref_weight), np.asarray(stats.ref_bias)
    _, q = np.linalg.eigh(np.asarray(stats.xx, np.float64))
    scale = max(1.0, float(np.abs(v).max()))
    for t in (1.0, 1e-2, 1e-4, 1e-6, 1e-8, 0.0):
        for kind in ("random", "weak", "bias"):
            if kind == "random":
                dw, db = rng.standard_normal(v.shape), 10 * rng.standard_normal(c.shape)
            elif kind == "weak":
                dw = np.tile(q[:, 0], (v.shape[0], 1))
                db = -dw @ np.asarray(stats.x_mean)
            else:
                dw, db = np.zeros(v.shape), 10 * rng.standard_normal(c.shape)
            w = (v + t * scale * dw).astype(v.dtype)
            b = (c + t * scale * db).astype(v.dtype)
            yield jr.linear.Params(jnp.asarray(w), jnp.asarray(b) if bias else None)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["collinear", "offset", "sorted", "scaled", "near-exact"])
def test_loss_within_error_bound_on_adversarial_data(kind, bias, dtype):
    x, y = _adversarial(kind, 600, 6, seed=0)
    x, y = x.astype(dtype), y.astype(dtype)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    stats = gram.statistics(x, y, bias=bias)
    bound = gram.error_bound(stats)
    assert math.isfinite(bound)
    rng = np.random.default_rng(1)
    worst = 0.0
    for p in _probe_params(stats, bias, rng):
        exact = _exact_loss(x, y, p)
        value, _ = gram.value_and_grad(obj, p, stats, None)
        worst = max(worst, abs(float(value) - exact) / exact)
    assert worst <= bound, f"{kind}: error {worst:.2e} > estimate {bound:.2e}"


@pytest.mark.parametrize("kind", ["offset", "near-exact"])
def test_textbook_gram_form_exceeds_the_bound(kind):
    """The bound has teeth: `w G w' - 2 w X'y + y'y` from raw sums (no centring, no
    reference residual) breaks it on the data it is meant to guard."""
    x, y = _adversarial(kind, 600, 6, seed=0)
    stats = gram.statistics(x, y, bias=True)
    bound = gram.error_bound(stats)
    a = np.c_[x, np.ones(len(x))]
    g, c, yy = a.T @ a, a.T @ y[:, 0], y[:, 0] @ y[:, 0]
    worst = 0.0
    for p in _probe_params(stats, True, np.random.default_rng(1)):
        wb = np.r_[np.asarray(p.weight)[0], np.asarray(p.bias)]
        naive = (wb @ g @ wb - 2 * wb @ c + yy) / len(x)
        exact = _exact_loss(x, y, p)
        worst = max(worst, abs(naive - exact) / exact)
    assert worst > 10 * bound


def test_error_bound_refuses_constant_column_and_perfect_fit():
    x, y = _data(50, 3, 1)
    x[:, 1] = 2.0
    assert gram.error_bound(gram.statistics(x, y, bias=True)) == math.inf
    x, _ = _data(50, 3, 1)
    y = x[:, :1] * 1.0  # a perfect fit: the reference residual is rounding only
    assert gram.error_bound(gram.statistics(x, y, bias=False)) > gram.AUTO_MAX_ERROR


# --- fit against torch (float64) ----------------------------------------------------------


def _torch_run(x, y, p0, reduction, optimizer, lr, steps, schedule_gamma=None):
    """torch.nn.Linear + F.mse_loss + torch.optim in float64: (losses, params per step)."""
    out, d = p0.weight.shape
    layer = torch.nn.Linear(d, out, bias=p0.bias is not None, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(np.asarray(p0.weight)))
        if p0.bias is not None:
            layer.bias.copy_(torch.tensor(np.asarray(p0.bias)))
    if optimizer == "sgd":
        opt = torch.optim.SGD(layer.parameters(), lr=lr)
    elif optimizer == "momentum":
        opt = torch.optim.SGD(layer.parameters(), lr=lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.Adam(layer.parameters(), lr=lr)
    sched = None
    if schedule_gamma is not None:
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=schedule_gamma)
    xt, yt = torch.tensor(x), torch.tensor(y)
    losses, weights, biases = [], [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(layer(xt), yt, reduction=reduction)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
        weights.append(layer.weight.detach().numpy().copy())
        if p0.bias is not None:
            biases.append(layer.bias.detach().numpy().copy())
    history = jr.linear.Params(np.stack(weights), np.stack(biases) if biases else None)
    return np.array(losses), history


def _jax_tx(optimizer, lr):
    if optimizer == "sgd":
        return jr.optim.sgd(lr)
    if optimizer == "momentum":
        return jr.optim.sgd(lr, momentum=0.9, nesterov=True)
    return jr.optim.adam(lr)


@pytest.mark.parametrize(
    "optimizer,lr,reduction",
    [("sgd", 0.02, "mean"), ("momentum", 0.002, "mean"), ("adam", 0.05, "mean"),
     ("sgd", 1e-5, "sum")],
)  # fmt: skip
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("out", [1, 3])
def test_fit_matches_torch_float64(optimizer, lr, reduction, bias, out):
    x, y = _data(500, 6, out, seed=3)
    p0 = _params(6, out, bias, seed=4)
    obj = jr.objective(jr.linear.predict, jr.losses.mse, reduction=reduction)
    want_losses, want_history = _torch_run(x, y, p0, reduction, optimizer, lr, steps=150)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # well-conditioned float64: no PrecisionWarning
        res = jr.fit(obj, _jax_tx(optimizer, lr), p0, x, y, steps=150, gram=True)
    np.testing.assert_allclose(res.losses, want_losses, rtol=TORCH_RTOL, atol=0)
    for step in range(150):
        _assert_close(jax.tree.map(lambda h, s=step: h[s], res.history),
                      jax.tree.map(lambda h, s=step: h[s], want_history), TORCH_RTOL)  # fmt: skip
    assert want_losses[-1] < want_losses[0] / 2  # the runs train


def test_fit_with_schedule_and_history_matches_torch():
    x, y = _data(500, 6, 2, seed=5)
    p0 = _params(6, 2, True, seed=6)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    want_losses, want_history = _torch_run(x, y, p0, "mean", "sgd", 0.03, 120, 0.5)
    sched = jr.schedules.StepLR(step_size=20, gamma=0.5)
    res = jr.fit(obj, jr.optim.sgd(0.03), p0, x, y, steps=120, gram=True, schedule=sched)
    np.testing.assert_allclose(res.losses, want_losses, rtol=TORCH_RTOL, atol=0)
    _assert_close(jax.tree.map(lambda h: h[-1], res.history),
                  jax.tree.map(lambda h: h[-1], want_history), TORCH_RTOL)  # fmt: skip
    # progress chunks and record_history=False give the same run
    chunked = jr.fit(obj, jr.optim.sgd(0.03), p0, x, y, steps=120, gram=True, schedule=sched,
                     record_history=False, progress=3)  # fmt: skip
    assert chunked.history is None
    np.testing.assert_array_equal(chunked.losses, res.losses)


@pytest.mark.parametrize(
    "tx", [jr.optim.rmsprop(0.01), jr.optim.adagrad(0.1), jr.optim.adamw(0.05)],
    ids=["rmsprop", "adagrad", "adamw"],
)  # fmt: skip
def test_every_optimizer_trains_like_the_plain_path(tx):
    x, y = _data(500, 6, 1, seed=7)
    p0 = _params(6, 1, True, seed=8)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    got = jr.fit(obj, tx, p0, x, y, steps=100, gram=True)
    want = jr.fit(obj, tx, p0, x, y, steps=100, gram=False)
    np.testing.assert_allclose(got.losses, want.losses, rtol=TORCH_RTOL, atol=0)
    _assert_close(got.history, want.history, TORCH_RTOL)


def test_divergence_is_reported():
    x, y = _data(200, 4, 1)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    with pytest.raises(jr.DivergenceError, match="diverged"):
        jr.fit(obj, jr.optim.sgd(10.0), _params(4, 1, True), x, y, steps=500, gram=True)


# --- float32: a warning and the documented bound -----------------------------------------


def test_float32_warns_and_losses_stay_within_the_bound():
    x, y = _data(2000, 8, 1, seed=9, dtype=np.float32)
    p0 = _params(8, 1, True, seed=10, dtype=np.float32)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    data = jr.Dataset(x, y)
    with pytest.warns(jr.PrecisionWarning, match="gram=True.*float32.*estimated relative error"):
        res = jr.fit(obj, jr.optim.sgd(0.02), p0, data, steps=60, gram=True)
    bound = gram.error_bound(data.statistics(np.float32, bias=True))
    assert 1e-11 < bound < 1e-3
    starts = [p0] + [jax.tree.map(lambda h, s=s: h[s], res.history) for s in range(59)]
    for loss, p in zip(res.losses, starts, strict=True):
        exact = _exact_loss(x, y, p)  # the loss at the params this step saw
        assert abs(float(loss) - exact) <= bound * exact


def test_auto_never_takes_float32(monkeypatch):
    monkeypatch.setattr(gram, "AUTO_MIN_WORK", 0)
    x, y = _data(300, 4, 1, dtype=np.float32)
    data = jr.Dataset(x, y)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    jr.fit(obj, jr.optim.sgd(0.01), _params(4, 1, True, dtype=np.float32), data, steps=50)
    assert not data._statistics


# --- where the path applies -----------------------------------------------------------------


def _dict_predict(q, x):
    return x @ q["weight"].T + q["bias"][None, :]


def _refusals():
    mse = jr.objective(jr.linear.predict, jr.losses.mse)
    p = _params(3, 1, True)
    weights = np.ones((40, 1))
    return {
        "mini-batch": (mse, p, {"batch_size": 8, "shuffle": False}, "mini-batches"),
        "weight": (
            jr.objective(jr.linear.predict, jr.losses.bce_with_logits, weight=weights),
            p,
            {},
            "bce_with_logits, not mse",
        ),
        "l1": (jr.objective(jr.linear.predict, jr.losses.l1), p, {}, "l1, not mse"),
        "huber": (jr.objective(jr.linear.predict, jr.losses.huber), p, {}, "huber, not mse"),
        "bce": (jr.objective(jr.logistic.predict, jr.losses.bce), p, {}, "'logistic'"),
        "dict": (
            jr.objective(_dict_predict, jr.losses.mse, model="linear"),
            {"weight": p.weight, "bias": p.bias},
            {},
            "dict, not jaxreg.linear",
        ),
        "function": (lambda q, x, y: jnp.mean((x @ q.weight.T - y) ** 2), p, {}, "objective"),
    }


@pytest.mark.parametrize("case", sorted(_refusals()))
def test_gram_true_refuses_what_it_cannot_do(case, monkeypatch):
    # "auto" looks at these small fits too (20 steps: the cost model's other half passes)
    monkeypatch.setattr(gram, "AUTO_MIN_WORK", 0)
    obj, p, kwargs, why = _refusals()[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = (rng.random((40, 1)) < 0.5).astype(np.float64)
    kwargs = {"epochs" if "batch_size" in kwargs else "steps": 20, **kwargs}
    with pytest.raises(ValueError, match=f"gram=True: .*{why}"):
        jr.fit(obj, jr.optim.sgd(0.01), p, x, y, gram=True, **kwargs)
    # "auto" trains them on the plain path, as gram=False does
    got = jr.fit(obj, jr.optim.sgd(0.01), p, x, y, gram="auto", **kwargs)
    want = jr.fit(obj, jr.optim.sgd(0.01), p, x, y, gram=False, **kwargs)
    np.testing.assert_array_equal(got.losses, want.losses)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_gram_argument_is_checked(bad):
    x, y = _data(20, 2, 1)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    with pytest.raises(ValueError, match="gram must be 'auto', True or False"):
        jr.fit(obj, jr.optim.sgd(0.01), _params(2, 1, True), x, y, steps=2, gram=bad)


def test_auto_takes_well_conditioned_float64_and_refuses_ill_conditioned(monkeypatch):
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    tx = jr.optim.sgd(0.01)
    # large enough for the cost model: 2 * 2000 steps * 20000 rows * 16 features >= 2**30
    x, y = _data(20000, 16, 1, seed=11)
    p0 = _params(16, 1, True, seed=12)
    data = jr.Dataset(x, y)
    auto = jr.fit(obj, tx, p0, data, steps=2000, record_history=False)
    assert set(data._statistics) == {(np.dtype(np.float64), True)}
    forced = jr.fit(obj, tx, p0, data, steps=2000, record_history=False, gram=True)
    np.testing.assert_array_equal(auto.losses, forced.losses)
    # small fits stay on the plain path
    small = jr.Dataset(*_data(300, 4, 1))
    jr.fit(obj, tx, _params(4, 1, True), small, steps=100)
    assert not small._statistics
    # ill-conditioned: the statistics are computed, the estimate refuses them, no warning
    monkeypatch.setattr(gram, "AUTO_MIN_WORK", 0)
    xs, ys = _adversarial("collinear", 600, 6, seed=0)
    bad = jr.Dataset(xs, ys)
    p6 = _params(6, 1, True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = jr.fit(obj, tx, p6, bad, steps=50)
    assert gram.error_bound(bad.statistics(np.float64, bias=True)) > gram.AUTO_MAX_ERROR
    want = jr.fit(obj, tx, p6, bad, steps=50, gram=False)
    np.testing.assert_array_equal(got.losses, want.losses)
    with pytest.warns(jr.PrecisionWarning, match="gram=True"):
        jr.fit(obj, tx, p6, bad, steps=50, gram=True)


# --- the statistics are the Dataset's, computed once ----------------------------------------


def test_statistics_computed_once_per_dataset_dtype_and_bias(monkeypatch):
    calls = []
    compute = gram.statistics

    def counting(x, y, *, bias):
        calls.append((np.dtype(x.dtype), bias))
        return compute(x, y, bias=bias)

    monkeypatch.setattr(gram, "statistics", counting)
    x, y = _data(300, 4, 1)
    data = jr.Dataset(x, y)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    tx = jr.optim.sgd(0.01)
    first = jr.fit(obj, tx, _params(4, 1, True), data, steps=20, gram=True)
    second = jr.fit(obj, tx, _params(4, 1, True), data, steps=20, gram=True)
    assert calls == [(np.dtype(np.float64), True)]
    np.testing.assert_array_equal(first.losses, second.losses)
    jr.fit(obj, tx, _params(4, 1, False), data, steps=20, gram=True)
    with pytest.warns(jr.PrecisionWarning):
        jr.fit(obj, tx, _params(4, 1, True, dtype=np.float32), data, steps=20, gram=True)
    assert calls == [
        (np.dtype(np.float64), True),
        (np.dtype(np.float64), False),
        (np.dtype(np.float32), True),
    ]
    # a new Dataset of the same arrays computes its own
    jr.fit(obj, tx, _params(4, 1, True), x, y, steps=20, gram=True)
    assert len(calls) == 4


def test_lbfgs_line_search_reads_the_statistics_loss():
    """A transformation with extra arguments gets `value_fn` on the statistics too."""
    x, y = _data(300, 4, 1)
    p0 = _params(4, 1, True)
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    got = jr.fit(obj, optax.lbfgs(), p0, x, y, steps=20, gram=True)
    a = np.c_[x, np.ones(len(x))]
    best = np.mean((a @ np.linalg.lstsq(a, y, rcond=None)[0] - y) ** 2)
    assert abs(got.losses[-1] - best) <= 1e-9 * best
