"""jaxreg.losses' class and likelihood losses against torch.nn.functional, values and gradients.

cross_entropy (class indices and class probabilities; weight, ignore_index,
label_smoothing), nll, poisson_nll, gaussian_nll and kl_div, each option and reduction, in
float64 and float32, compared with torch 2.13: the loss and its gradient w.r.t. every float
argument (the input; also a probability target, a variance). Then torch's validation.

Comparisons are normwise: the largest difference over an array, in ulps of the dtype,
relative to the array's largest |torch value| (`ulp_error`); every loss term here is a few
correctly rounded operations, a log or exp, and sums over at most `N * C` terms.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxreg as jr

L = jr.losses
DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]
REDUCTIONS = ["mean", "sum", "none"]
N, C = 24, 5

# Normwise bound. Both sides compute the same formula; each element is within a few ulps
# of exact (log_softmax: a max, an exp-sum of C terms, one log; the Stirling term: two
# logs), each reduction adds n = N (or N C) terms in its own order, within
# SUM_LAMBDA sqrt(n) ulps relative to sum |terms| <= n max |term| (see test_losses.py:
# SUM_LAMBDA = 5 is a 7e-6 chance of exceeding it), and torch's and XLA's exp/log differ by
# up to ~1 ulp. 4 + 5 sqrt(N C) = 4 + 5 * 11 = 59 ulp of the largest term, relative to the
# largest |value|; measured worst (see MEASURED): under 4 ulp.
NORM_ULPS = 4 + math.ceil(5 * math.sqrt(N * C))


def ulp_error(actual, expected) -> float:
    """max |actual - expected| / (eps * max |expected|), same dtype and shape, no NaN."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.isfinite(expected).all() and np.isfinite(actual).all()
    finfo = np.finfo(actual.dtype)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), float(finfo.tiny))
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    return float(np.max(diff, initial=0.0)) / (float(finfo.eps) * scale)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    z = 3 * rng.standard_normal((N, C))
    t = rng.integers(0, C, N)
    t[[3, 11]] = -100  # ignored by the default ignore_index
    t_ign = t.copy()
    t_ign[[3, 11]] = 2
    t_ign[[5, 6, 7]] = 4  # ignore_index=4 drops the class-4 samples
    p = rng.dirichlet(np.ones(C), N)
    w = rng.uniform(0.5, 2.0, C)
    counts = rng.poisson(3.0, (N, 1)).astype(np.float64)
    counts[:4, 0] = [0.0, 1.0, 2.0, 7.0]  # both sides of the Stirling mask
    return dict(
        z=z,
        t=t,
        t_ign=t_ign,
        p=p,
        w=w,
        rate=rng.uniform(0.1, 5.0, (N, 1)),
        counts=counts,
        mu=rng.standard_normal((N, 2)),
        y=rng.standard_normal((N, 2)),
        var=rng.uniform(0.1, 2.0, (N, 2)),
        var_row=rng.uniform(0.1, 2.0, (N,)),
        var_col=rng.uniform(0.1, 2.0, (N, 1)),
        logq=np.log(rng.dirichlet(np.ones(C), N)),
        q=rng.dirichlet(np.ones(C), N),
    )


# name -> (jaxreg fn, torch fn, the differentiated float arguments, the other arguments,
#          keyword arguments with arrays named by data key, reductions)
def _case(jfn, tfn, diff, other, kw=None, reductions=REDUCTIONS):
    return (jfn, tfn, diff, other, kw or {}, reductions)


CE, TCE = L.cross_entropy, F.cross_entropy
CASES = {
    "cross_entropy": _case(CE, TCE, ("z",), ("t",)),
    "cross_entropy-weight": _case(CE, TCE, ("z",), ("t",), {"weight": "w"}),
    "cross_entropy-ignore_index": _case(CE, TCE, ("z",), ("t_ign",), {"ignore_index": 4}),
    "cross_entropy-weight-ignore_index": _case(
        CE, TCE, ("z",), ("t_ign",), {"weight": "w", "ignore_index": 4}
    ),
    "cross_entropy-label_smoothing": _case(CE, TCE, ("z",), ("t",), {"label_smoothing": 0.1}),
    "cross_entropy-weight-label_smoothing": _case(
        CE, TCE, ("z",), ("t",), {"weight": "w", "label_smoothing": 0.25}
    ),
    "cross_entropy-probs": _case(CE, TCE, ("z", "p"), ()),
    "cross_entropy-probs-weight": _case(CE, TCE, ("z", "p"), (), {"weight": "w"}),
    "cross_entropy-probs-weight-label_smoothing": _case(
        CE, TCE, ("z", "p"), (), {"weight": "w", "label_smoothing": 0.3}
    ),
    "nll": _case(L.nll, F.nll_loss, ("logq",), ("t",)),
    "nll-weight-ignore_index": _case(
        L.nll, F.nll_loss, ("logq",), ("t_ign",), {"weight": "w", "ignore_index": 4}
    ),
    "poisson_nll": _case(L.poisson_nll, F.poisson_nll_loss, ("mu",), ("y",)),
    "poisson_nll-rate-full": _case(
        L.poisson_nll,
        F.poisson_nll_loss,
        ("rate",),
        ("counts",),
        {"log_input": False, "full": True},
    ),
    "poisson_nll-log-full": _case(
        L.poisson_nll, F.poisson_nll_loss, ("rate",), ("counts",), {"full": True}
    ),
    "poisson_nll-rate-eps": _case(
        L.poisson_nll, F.poisson_nll_loss, ("rate",), ("counts",), {"log_input": False, "eps": 0.5}
    ),
    "gaussian_nll": _case(L.gaussian_nll, F.gaussian_nll_loss, ("mu", "y", "var"), ()),
    "gaussian_nll-full-row": _case(
        L.gaussian_nll, F.gaussian_nll_loss, ("mu", "y", "var_row"), (), {"full": True}
    ),
    "gaussian_nll-column-eps": _case(
        L.gaussian_nll, F.gaussian_nll_loss, ("mu", "y", "var_col"), (), {"eps": 0.5}
    ),
    "kl_div": _case(
        L.kl_div, F.kl_div, ("logq", "q"), (), reductions=["mean", "batchmean", "sum", "none"]
    ),
    "kl_div-log_target": _case(
        L.kl_div,
        F.kl_div,
        ("logq", "z"),
        (),
        {"log_target": True},
        reductions=["mean", "batchmean", "sum", "none"],
    ),
}


def _cotangent(shape, dtype):
    return np.random.default_rng(1).uniform(0.5, 2.0, shape).astype(dtype)


def _arrays(name, dtype):
    data = _data()
    _, _, diff, other, kw, _ = CASES[name]
    cast = {k: (v if v.dtype.kind == "i" else v.astype(dtype)) for k, v in data.items()}
    return (
        [cast[k] for k in diff],
        [cast[k] for k in other],
        {k: (cast[v] if isinstance(v, str) else v) for k, v in kw.items()},
    )


@jax.jit
def _jax_all(inputs):
    """{(name, reduction): (value, grads)} for every case and reduction, one program."""
    out = {}
    for name, (diff, other, kw, cots) in inputs.items():
        fn, reductions = CASES[name][0], CASES[name][5]
        static = {k: v for k, v in CASES[name][4].items() if not isinstance(v, str)}
        kw = {**kw, **static}  # options as Python values, arrays as inputs
        for r in reductions:

            def f(*d, r=r, other=other, kw=kw, fn=fn):
                return fn(*d, *other, reduction=r, **kw)

            value, vjp = jax.vjp(f, *diff)
            out[name, r] = (value, vjp(cots[r]))
    return out


def _none_shape(name):
    diff = _arrays(name, np.float64)[0]
    return diff[0].shape[:1] if name.startswith(("cross_entropy", "nll")) else diff[0].shape


def _cots(name, dtype):
    return {
        r: (_cotangent(_none_shape(name), dtype) if r == "none" else np.ones((), dtype))
        for r in CASES[name][5]
    }


_RESULTS = {}


def jax_results(dtype):
    key = np.dtype(dtype).name
    if key not in _RESULTS:
        inputs = {}
        for name in CASES:
            diff, other, kw = _arrays(name, dtype)
            arrays = {k: v for k, v in kw.items() if isinstance(v, np.ndarray)}
            inputs[name] = (diff, other, arrays, _cots(name, dtype))
        _RESULTS[key] = jax.tree.map(np.asarray, _jax_all(inputs))
    return _RESULTS[key]


def torch_result(name, reduction, dtype):
    _, tfn, _, _, _, _ = CASES[name]
    diff, other, kw = _arrays(name, dtype)
    td = [torch.tensor(a, requires_grad=True) for a in diff]
    to = [torch.tensor(a) for a in other]
    tkw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    with warnings.catch_warnings():  # F.kl_div(reduction="mean") warns that it is not KL
        warnings.simplefilter("ignore", UserWarning)
        value = tfn(*td, *to, reduction=reduction, **tkw)
    value.backward(torch.tensor(_cots(name, dtype)[reduction]))
    return value.detach().numpy(), [t.grad.numpy() for t in td]


# Worst deviations measured against torch 2.13 (jax 0.10.x, CPU), in normwise ulps, for the
# README's coverage table; the test bound is NORM_ULPS.
MEASURED = {}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,reduction", [(n, r) for n, case in CASES.items() for r in case[5]])
def test_matches_torch(name, reduction, dtype):
    value, grads = jax_results(dtype)[name, reduction]
    tvalue, tgrads = torch_result(name, reduction, dtype)
    errs = [ulp_error(value, tvalue)] + [
        ulp_error(g, tg) for g, tg in zip(grads, tgrads, strict=True)
    ]
    MEASURED[name, reduction, np.dtype(dtype).name] = max(errs)
    assert max(errs) <= NORM_ULPS, (errs, value, tvalue)


def _torch_ce(z, t, **kw):
    zt = torch.tensor(z, requires_grad=True)
    loss = F.cross_entropy(zt, torch.tensor(t), **kw)
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), zt.grad.numpy()


SHAPES = {
    "one-sample": ((C,), ()),
    "spatial": ((4, C, 3), (4, 3)),
    "spatial2": ((4, C, 3, 2), (4, 3, 2)),
}
SMOOTHING = (0.0, 0.2)


def _shape_inputs(dtype):
    rng = np.random.default_rng(2)
    out = {}
    for name, (shape, target_shape) in SHAPES.items():
        z = rng.standard_normal(shape).astype(dtype)
        t = rng.integers(0, C, target_shape)
        p = rng.dirichlet(np.ones(C), target_shape).astype(dtype)
        p = np.moveaxis(p, -1, 0 if len(shape) == 1 else 1)
        out[name] = (z, t, p, rng.uniform(0.5, 2.0, C).astype(dtype))
    return out


@jax.jit
def _jax_shapes(inputs):
    """{(shape name, reduction, smoothing, target kind): (value, grad)}, one program."""
    out = {}
    for name, (z, t, p, w) in inputs.items():
        for r in REDUCTIONS:
            for s in SMOOTHING:
                for kind, target in (("index", t), ("prob", p)):

                    def f(zz, target=target, w=w, r=r, s=s):
                        return L.cross_entropy(zz, target, weight=w, reduction=r, label_smoothing=s)

                    value, vjp = jax.vjp(f, z)
                    out[name, r, s, kind] = (value, vjp(jnp.ones_like(value))[0])
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_other_input_shapes_match_torch(dtype):
    """torch's other layouts: one sample (C,) with a 0-d target, and (n, C, d1, ...)."""
    inputs = _shape_inputs(dtype)
    results = _jax_shapes(inputs)
    for (name, r, s, kind), (value, grad) in results.items():
        z, t, p, w = inputs[name]
        target = t if kind == "index" else p
        tvalue, tgrad = _torch_ce(z, target, reduction=r, weight=torch.tensor(w), label_smoothing=s)
        assert ulp_error(value, tvalue) <= NORM_ULPS, (name, r, s, kind)
        assert ulp_error(grad, tgrad) <= NORM_ULPS, (name, r, s, kind)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_extreme_logits_are_finite_and_match_torch(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [30.0, -30.0, 1e-8]], dtype)
    t = np.array([1, 0, 2])
    value, grad = jax.jit(jax.value_and_grad(lambda zz: L.cross_entropy(zz, t, reduction="sum")))(z)
    tvalue, tgrad = _torch_ce(z, t, reduction="sum")
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    assert ulp_error(value, tvalue) <= NORM_ULPS and ulp_error(grad, tgrad) <= NORM_ULPS


def test_every_target_ignored_gives_nan_like_torch():
    z, t = np.zeros((3, C)), np.full(3, -100)
    assert math.isnan(float(L.cross_entropy(z, t))) and math.isnan(float(L.nll(z, t)))
    assert math.isnan(F.cross_entropy(torch.tensor(z), torch.tensor(t)).item())
    assert float(L.cross_entropy(z, t, reduction="sum")) == 0.0


def test_int32_targets_equal_int64_targets():
    """torch takes int64 only; jaxreg any integer dtype (int32 is JAX's default)."""
    d = _data()
    t = d["t"]
    a = L.cross_entropy(d["z"], t.astype(np.int32), weight=d["w"], label_smoothing=0.1)
    b = L.cross_entropy(d["z"], t, weight=d["w"], label_smoothing=0.1)
    assert float(a) == float(b)


def test_cross_entropy_is_nll_of_log_softmax():
    d = _data()
    logp = jax.nn.log_softmax(d["z"])
    np.testing.assert_allclose(
        L.cross_entropy(d["z"], d["t"], weight=d["w"]),
        L.nll(logp, d["t"], weight=d["w"]),
        rtol=4 * np.finfo(np.float64).eps,  # two log_softmax implementations, ~2 ulp each
    )


def test_weight_is_an_input_not_a_constant():
    """A new weight array reuses the compiled loss (no recompile per value)."""
    d = _data()
    f = jax.jit(lambda z, t, w: L.cross_entropy(z, t, weight=w))
    f(d["z"], d["t"], d["w"])
    before = f._cache_size()
    f(d["z"], d["t"], d["w"] * 2)
    assert f._cache_size() == before


# --- validation: torch's errors, with jaxreg's messages ------------------------------------

Z, T_OK = np.zeros((4, 3)), np.array([0, 1, 2, 1])


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: L.cross_entropy(Z, T_OK[:3]), ValueError, "class indices of shape"),
        (lambda: L.cross_entropy(Z, T_OK[:, None].astype(float)), ValueError, r"\(4,\)"),
        (lambda: L.cross_entropy(Z, np.zeros(4)), TypeError, "must be integers"),
        (lambda: L.cross_entropy(Z, np.zeros((4, 3), int)), TypeError, "floating point"),
        (lambda: L.cross_entropy(Z, np.array([0, 1, 3, 1])), ValueError, "out of bounds"),
        (lambda: L.nll(Z, np.array([0, -1, 2, 1])), ValueError, "Target -1 is out of bounds"),
        (lambda: L.cross_entropy(Z, T_OK, weight=np.ones(4)), ValueError, "all 3 classes"),
        (lambda: L.cross_entropy(Z, T_OK, label_smoothing=1.5), ValueError, "between 0.0"),
        (lambda: L.cross_entropy(Z, T_OK, label_smoothing=-0.1), ValueError, "between 0.0"),
        (lambda: L.cross_entropy(Z, np.full((4, 3), 1 / 3), ignore_index=0), ValueError, "ignore"),
        (lambda: L.cross_entropy(Z, T_OK, reduction="avg"), ValueError, "reduction"),
        (lambda: L.cross_entropy(Z, T_OK, ignore_index=1.0), TypeError, "ignore_index"),
        (lambda: L.cross_entropy(Z.astype(int), T_OK), TypeError, "floating point"),
        (lambda: L.cross_entropy(np.zeros(()), np.array(0)), ValueError, "class axis"),
        (lambda: L.nll(Z, np.full((4, 3), 1 / 3)), ValueError, "class indices of shape"),
        (lambda: L.gaussian_nll(Z, Z, -1.0), ValueError, "negative"),
        (lambda: L.gaussian_nll(Z, Z, -np.ones((4, 3))), ValueError, "negative"),
        (lambda: L.gaussian_nll(Z, Z, np.ones((4, 2))), ValueError, "incorrect size"),
        (lambda: L.gaussian_nll(Z, Z, np.ones((2, 3))), ValueError, "incorrect size"),
        (lambda: L.gaussian_nll(Z, Z, 1.0, reduction="batchmean"), ValueError, "not valid"),
        (lambda: L.kl_div(Z, Z, reduction="avg"), ValueError, "batchmean"),
        (lambda: L.kl_div(Z, Z[:, :2]), ValueError, "shape"),
        (lambda: L.poisson_nll(Z, Z[:, 0]), ValueError, "shape"),
        (lambda: L.poisson_nll(Z, Z, full=1), TypeError, "full"),
        (lambda: L.poisson_nll(Z, Z, reduction="batchmean"), ValueError, "reduction"),
    ],
)
def test_validation(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: F.cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, 3, 1])),
        lambda: F.cross_entropy(
            torch.zeros(4, 3), torch.tensor([0, 1, 2, 1]), weight=torch.ones(4)
        ),
        lambda: F.cross_entropy(torch.zeros(4, 3), torch.full((4, 3), 1 / 3), ignore_index=0),
        lambda: F.gaussian_nll_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(4, 2)),
        lambda: F.gaussian_nll_loss(torch.zeros(4, 3), torch.zeros(4, 3), -torch.ones(4, 3)),
    ],
)
def test_torch_refuses_these_too(call):
    """The cases above that are torch's own errors (others are jaxreg's stricter shapes)."""
    with pytest.raises((RuntimeError, ValueError, IndexError)):
        call()


def test_label_smoothing_one_is_accepted_like_torch():
    d = _data()
    value = L.cross_entropy(d["z"], d["t"], label_smoothing=1.0)
    tvalue = F.cross_entropy(torch.tensor(d["z"]), torch.tensor(d["t"]), label_smoothing=1.0)
    assert ulp_error(value, tvalue.numpy()) <= NORM_ULPS


def test_out_of_range_targets_inside_jit_give_nan_not_garbage():
    """Values are not checked inside a compiled program: a bad class index makes the loss
    NaN (fit then raises DivergenceError) rather than reading another class's logit."""
    f = jax.jit(lambda z, t: L.cross_entropy(z, t))
    assert math.isnan(float(f(Z, np.array([0, 1, 3, 1]))))
