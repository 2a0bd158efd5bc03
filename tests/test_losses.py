"""jaxreg.losses against torch.nn.functional: values and gradients, edge cases, bad input.

Every loss is compared with its torch equivalent in float64 and float32, for every
reduction, on random data and at the points where implementations usually part ways
(extreme logits, probabilities of exactly 0 and 1, the Huber/smooth-L1 kinks, d = 0).
Gradients w.r.t. the prediction are torch autograd against `jax.vjp` (and, in float64,
against central finite differences).

Tolerances are in ulps of the dtype (`eps`) relative to a per-element magnitude, so one
constant serves float64 (4 ulp = 8.9e-16) and float32 (4 ulp = 4.8e-7).
"""

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numerics import FD_RTOL, FD_STEP

import jaxreg as jr

L = jr.losses
DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]
REDUCTIONS = ["mean", "sum", "none"]

# One element of a loss or of its gradient: both sides evaluate the same formula, a few
# correctly rounded operations plus at most one libm-level function (log, log1p, exp,
# sigmoid), each within ~1.5 ulp of exact. Where the formula's terms cancel, the ulps are
# of the terms' size (Loss.value_scale / grad_scale). Measured max against torch 2.13 (jax
# 0.10.2, CPU): 1.75 ulp (values), 1.74 ulp (gradients); BCELoss values were 117 ulp off
# before the log1p fix in losses._log1m.
ELEMENT_ULPS = 4

# "mean" and "sum" add up n terms in a different order on each side (torch: a vectorized
# cascade; XLA: its own reduction), which cannot agree to the last bit. Higham & Mary (2019):
# with rounding errors modelled as independent, each side is within lambda sqrt(n) u of
# exact, relative to sum |terms|, with probability >= 1 - 2 exp(-lambda²/2); SUM_LAMBDA = 5
# makes that 7e-6. Two sides at u = eps/2 each: SUM_LAMBDA sqrt(n) ulps. (The worst case,
# n eps, is 2x looser at n = 120; measured: 4.0 ulp.)
SUM_LAMBDA = 5


def reduction_ulps(n: int) -> int:
    return ELEMENT_ULPS + math.ceil(SUM_LAMBDA * math.sqrt(n))


def ulp_error(actual, expected, scale=None) -> float:
    """max |actual - expected| / (eps * scale); elementwise scale, default |expected|.

    Dtypes and shapes must agree and infinities must match exactly. XLA on CPU flushes
    subnormal results to zero where torch keeps them, so differences below the smallest
    normal number (`tiny`) count as zero.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    finfo = np.finfo(actual.dtype)
    assert not np.isnan(actual).any() and not np.isnan(expected).any()
    inf = np.isinf(expected)
    np.testing.assert_array_equal(actual[inf], expected[inf])
    a, e = actual[~inf].astype(np.float64), expected[~inf].astype(np.float64)
    s = np.abs(e) if scale is None else np.broadcast_to(scale, actual.shape)[~inf]
    err = np.maximum(np.abs(a - e) - finfo.tiny, 0.0)
    return float(np.max(err / (finfo.eps * np.maximum(s, finfo.tiny)), initial=0.0))


def assert_ulps(actual, expected, ulps, scale=None):
    err = ulp_error(actual, expected, scale)
    assert err <= ulps, f"{err:.3g} ulp apart (allowed {ulps})\n{actual}\n{expected}"


# --- the losses, jax side and torch side -------------------------------------------------


def _sigmoid64(z):
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, np.float64)))  # no overflow at -1e4


def _bce_logits_value_scale(z, t, extra):
    """Size of the two terms of (1 - t) z - ((pw - 1) t + 1) log_sigmoid(z): they cancel
    (z = -30, t = 0: -30 - (-30 - 9e-14)), and both sides round each of them."""
    pw = extra.get("pos_weight", 1.0)
    t = np.asarray(t, np.float64)
    return np.abs((1 - t) * z) + np.abs((pw - 1) * t + 1) * np.logaddexp(0, -z)


def _bce_logits_grad_scale(z, t, extra):
    """Size of the two terms of (pw t + 1 - t) sigmoid(z) - pw t before they cancel."""
    pw = extra.get("pos_weight", 1.0)
    t = np.asarray(t, np.float64)
    return (pw * t + 1 - t) * _sigmoid64(z) + pw * np.abs(t)


@dataclasses.dataclass(frozen=True)
class Loss:
    """A jaxreg loss and its torch twin, both `(pred, target, reduction, extra)`.

    kind: which data it takes ("regression", "probability", "logit").
    extra: extra arrays, name -> "elementwise" (pred's shape) or "column" (one per column).
    kink: |d| where a regression loss changes formula (edge cases are taken around it).
    value_scale, grad_scale: per-element magnitudes, before weights and reduction, for
      comparing values and gradients whose terms cancel (None: |value|, |grad|).
    """

    jax: Callable
    torch: Callable
    kind: str
    extra: dict = dataclasses.field(default_factory=dict)
    kink: float = 0.0
    value_scale: Callable | None = None
    grad_scale: Callable | None = None


def _regression(jax_fn, torch_fn, kink=0.0):
    return Loss(
        lambda p, t, r, e: jax_fn(p, t, reduction=r),
        lambda p, t, r, e: torch_fn(p, t, reduction=r),
        "regression",
        kink=kink,
    )


LOSSES = {
    "mse": _regression(L.mse, F.mse_loss),
    "l1": _regression(L.l1, F.l1_loss),
    "huber": _regression(L.huber, F.huber_loss, kink=1.0),
    "huber_delta2.5": _regression(
        functools.partial(L.huber, delta=2.5), functools.partial(F.huber_loss, delta=2.5), 2.5
    ),
    "smooth_l1": _regression(L.smooth_l1, F.smooth_l1_loss, kink=1.0),
    "smooth_l1_beta0.3": _regression(
        functools.partial(L.smooth_l1, beta=0.3),
        functools.partial(F.smooth_l1_loss, beta=0.3),
        kink=0.3,
    ),
    "smooth_l1_beta0": _regression(
        functools.partial(L.smooth_l1, beta=0.0), functools.partial(F.smooth_l1_loss, beta=0.0)
    ),
    "bce": Loss(
        lambda p, t, r, e: L.bce(p, t, reduction=r),
        lambda p, t, r, e: F.binary_cross_entropy(p, t, reduction=r),
        "probability",
    ),
    "bce_weight": Loss(
        lambda p, t, r, e: L.bce(p, t, weight=e["weight"], reduction=r),
        lambda p, t, r, e: F.binary_cross_entropy(p, t, weight=e["weight"], reduction=r),
        "probability",
        {"weight": "elementwise"},
    ),
    "bce_weight_per_column": Loss(
        lambda p, t, r, e: L.bce(p, t, weight=e["weight"], reduction=r),
        lambda p, t, r, e: F.binary_cross_entropy(p, t, weight=e["weight"], reduction=r),
        "probability",
        {"weight": "column"},
    ),
    "bce_with_logits": Loss(
        lambda p, t, r, e: L.bce_with_logits(p, t, reduction=r),
        lambda p, t, r, e: F.binary_cross_entropy_with_logits(p, t, reduction=r),
        "logit",
        value_scale=_bce_logits_value_scale,
        grad_scale=_bce_logits_grad_scale,
    ),
    "bce_with_logits_weight": Loss(
        lambda p, t, r, e: L.bce_with_logits(p, t, weight=e["weight"], reduction=r),
        lambda p, t, r, e: F.binary_cross_entropy_with_logits(
            p, t, weight=e["weight"], reduction=r
        ),
        "logit",
        {"weight": "elementwise"},
        value_scale=_bce_logits_value_scale,
        grad_scale=_bce_logits_grad_scale,
    ),
    "bce_with_logits_pos_weight": Loss(
        lambda p, t, r, e: L.bce_with_logits(p, t, pos_weight=e["pos_weight"], reduction=r),
        lambda p, t, r, e: F.binary_cross_entropy_with_logits(
            p, t, pos_weight=e["pos_weight"], reduction=r
        ),
        "logit",
        {"pos_weight": "column"},
        value_scale=_bce_logits_value_scale,
        grad_scale=_bce_logits_grad_scale,
    ),
    "bce_with_logits_weight_and_pos_weight": Loss(
        lambda p, t, r, e: L.bce_with_logits(
            p, t, weight=e["weight"], pos_weight=e["pos_weight"], reduction=r
        ),
        lambda p, t, r, e: F.binary_cross_entropy_with_logits(
            p, t, weight=e["weight"], pos_weight=e["pos_weight"], reduction=r
        ),
        "logit",
        {"weight": "column", "pos_weight": "column"},
        value_scale=_bce_logits_value_scale,
        grad_scale=_bce_logits_grad_scale,
    ),
}

SHAPE = (40, 3)

# Edge cases, each crossed with the targets listed after it.
EXTREME_LOGITS = [1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 1e-8, 0.0, -0.0]
# p = 0 and 1 hit torch's log clamp (-100) and gradient clamp; 0.3642..0.4142 is where
# XLA's float64 log1p is 120 ulp off (see losses._log1m); 0.3 is _log1m's switch point.
PROBABILITIES = [0.0, 1.0, 1e-30, 1e-7, 0.5, 1 - 2**-20, 0.3, 0.3642, 0.39, 0.4142]


def _kink_points(k: float) -> list[float]:
    """d at +-k, one float64 and one float32 ulp either side of +-k, and at +-0.

    (The float64 neighbours round back to +-k in the float32 runs; the float32 ones are
    exact in both.) For k = 0 the neighbours are +-1e-30 rather than the next floats, which
    are subnormal (XLA on CPU flushes subnormals to zero; torch does not).
    """
    if k == 0:
        return [1e-30, -1e-30, 0.0, -0.0]
    pts = [k, -k, 0.0, -0.0]
    for dtype in (np.float64, np.float32):
        for kk in (dtype(k), dtype(-k)):
            pts += [float(np.nextafter(kk, dtype(0))), float(np.nextafter(kk, 2 * kk))]
    return pts


def make_case(name: str, case: str):
    """(pred, target, extra, cotangent for reduction='none'), float64 arrays of SHAPE."""
    loss = LOSSES[name]
    rng = np.random.default_rng(0)
    if case == "random":
        shape = SHAPE
        if loss.kind == "regression":
            # |d| up to ~8: both sides of every Huber/smooth-L1 kink (delta, beta <= 2.5)
            pred, target = 2 * rng.normal(size=shape), 2 * rng.normal(size=shape)
        else:
            if loss.kind == "probability":
                pred = rng.uniform(0.001, 0.999, size=shape)
            else:
                pred = 5 * rng.normal(size=shape)
            # soft targets, and hard 0/1 ones (the usual case) in the first column
            target = rng.uniform(size=shape)
            target[:, 0] = rng.integers(0, 2, size=shape[0])
    else:  # "edge": every edge point at least once, tiled to SHAPE (one compiled program)
        shape = SHAPE
        if loss.kind == "regression":
            pred = np.resize(_kink_points(loss.kink), shape)
            target = np.zeros(shape)  # pred - target == d exactly
        else:
            values = PROBABILITIES if loss.kind == "probability" else EXTREME_LOGITS
            targets = [0.0, 1.0, 0.5] if loss.kind == "probability" else [0.0, 1.0, 0.25]
            pred, target = (np.resize(a, shape) for a in np.meshgrid(values, targets))
    extra = {
        k: rng.uniform(0.5, 2.0, size=shape if how == "elementwise" else shape[-1:])
        for k, how in loss.extra.items()
    }
    return pred, target, extra, rng.uniform(0.5, 2.0, size=shape)


CASES = ["random", "edge"]


@jax.jit
def _jax_side(inputs):
    """{(name, case): {reduction: (loss, vjp w.r.t. pred)}} for every loss in one program.

    Jitted because that is how training runs the losses; one program for everything
    because compiling it is several times faster than 50 small ones or op-by-op dispatch
    (`test_eager_equals_jit` covers eager mode).
    """
    out = {}
    for (name, case), (pred, target, extra, cotangent) in inputs.items():
        fn = LOSSES[name].jax
        out[name, case] = {}
        for r in REDUCTIONS:
            value, vjp = jax.vjp(lambda p, r=r, t=target, e=extra, f=fn: f(p, t, r, e), pred)
            (grad,) = vjp(cotangent if r == "none" else jnp.ones((), pred.dtype))
            out[name, case][r] = (value, grad)
    return out


@functools.cache
def jax_results(dtype) -> dict:
    inputs = {}
    for name in LOSSES:
        for case in CASES:
            pred, target, extra, cot = make_case(name, case)
            jextra = {k: jnp.asarray(v, dtype) for k, v in extra.items()}
            inputs[name, case] = (
                pred.astype(dtype),
                target.astype(dtype),
                jextra,
                cot.astype(dtype),
            )
    return jax.tree.map(np.asarray, _jax_side(inputs))


def compare(name: str, case: str, dtype, reduction: str):
    """(value, grad, torch value, torch grad, value scale, grad scale); scales may be None."""
    loss = LOSSES[name]
    pred, target, extra, cot = make_case(name, case)
    value, grad = jax_results(dtype)[name, case][reduction]

    textra = {k: torch.tensor(v.astype(dtype)) for k, v in extra.items()}
    tp = torch.tensor(pred.astype(dtype), requires_grad=True)
    tvalue = loss.torch(tp, torch.tensor(target.astype(dtype)), reduction, textra)
    tcot = (
        torch.tensor(cot.astype(dtype)) if reduction == "none" else torch.ones((), dtype=tp.dtype)
    )
    tvalue.backward(tcot)

    norm = 1.0 / pred.size if reduction == "mean" else 1.0
    weight = np.abs(extra.get("weight", 1.0))
    value_scale = grad_scale = None
    if loss.value_scale is not None:
        value_scale = np.broadcast_to(loss.value_scale(pred, target, extra) * weight, pred.shape)
        if reduction != "none":
            value_scale = value_scale.sum() * norm
    if loss.grad_scale is not None:
        w = weight * (np.abs(cot) if reduction == "none" else 1.0)
        grad_scale = loss.grad_scale(pred, target, extra) * w * norm
    return value, grad, tvalue.detach().numpy(), tp.grad.numpy(), value_scale, grad_scale


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_matches_torch(name, case, reduction, dtype):
    value, grad, tvalue, tgrad, value_scale, grad_scale = compare(name, case, dtype, reduction)
    assert value.dtype == grad.dtype == dtype
    assert value.shape == tvalue.shape
    assert value.shape == (grad.shape if reduction == "none" else ())
    # torch's log clamp at -100 and its 1e-12 gradient clamp keep everything finite
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    ulps = ELEMENT_ULPS if reduction == "none" else reduction_ulps(grad.size)
    assert_ulps(value, tvalue, ulps, value_scale)
    # each gradient element is elementwise on both sides (no sum involved)
    assert_ulps(grad, tgrad, ELEMENT_ULPS, grad_scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sse_is_torch_sum_of_squares(dtype):
    pred, target, _, _ = make_case("mse", "random")
    pred, target = pred.astype(dtype), target.astype(dtype)
    value, grad = jax.jit(jax.value_and_grad(L.sse))(pred, target)
    tp = torch.tensor(pred, requires_grad=True)
    tvalue = F.mse_loss(tp, torch.tensor(target), reduction="sum")
    tvalue.backward()
    assert_ulps(value, tvalue.detach().numpy(), reduction_ulps(pred.size))
    assert_ulps(grad, tp.grad.numpy(), ELEMENT_ULPS)
    # ... and the tutorial's hand-written torch.sum((y - X @ What) ** 2)
    assert_ulps(value, np.sum((pred - target) ** 2), reduction_ulps(pred.size))


@pytest.mark.parametrize("name", ["bce"])
def test_eager_equals_jit(name):
    pred, target, _, _ = make_case(name if name.startswith("bce") else "mse", "random")
    fn = jax.value_and_grad(getattr(L, name))
    eager, jitted = fn(pred, target), jax.jit(fn)(pred, target)
    for a, b in zip(eager, jitted, strict=True):
        # XLA may fuse the jitted program differently: a few roundings, no more
        assert_ulps(a, b, reduction_ulps(pred.size))


@pytest.mark.parametrize("name", ["mse", "l1", "huber", "smooth_l1", "bce", "bce_with_logits"])
def test_default_reduction_is_mean(name):
    pred, target, _, _ = make_case("bce", "random")
    fn = getattr(L, name)
    np.testing.assert_array_equal(fn(pred, target), fn(pred, target, reduction="mean"))
    assert fn(pred, target, reduction="none").shape == pred.shape


@pytest.mark.parametrize("name", ["huber", "smooth_l1"])
def test_default_delta_and_beta_is_one(name):
    pred, target, _, _ = make_case("mse", "random")
    fn = getattr(L, name)
    kw = {"delta": 1.0} if name == "huber" else {"beta": 1.0}
    np.testing.assert_array_equal(fn(pred, target), fn(pred, target, **kw))


# --- edge cases in closed form -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_with_logits_extreme_logits_closed_form(dtype):
    z = jnp.asarray([1e4, -1e4, 1e4, -1e4], dtype)
    t = jnp.asarray([1.0, 0.0, 0.0, 1.0], dtype)
    f = jax.jit(jax.value_and_grad(lambda z, t: L.bce_with_logits(z, t, reduction="sum")))
    loss, grad = f(z, t)
    # right with certainty costs nothing; wrong by 1e4 costs 1e4; the gradient saturates
    assert float(loss) == 2e4
    np.testing.assert_array_equal(grad, np.array([0.0, 0.0, 1.0, -1.0], dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_clamps_closed_form(dtype):
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.0], dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5], dtype)
    elementwise, vjp = jax.vjp(lambda p: L.bce(p, t, reduction="none"), p)
    (grad,) = vjp(jnp.ones_like(elementwise))
    # -log clamped at 100: a certain, wrong prediction costs 100, a right one 0
    np.testing.assert_array_equal(elementwise, np.array([100, 100, 0, 0, 50], dtype))
    # torch's backward (p - t) / max(p (1 - p), 1e-12), its 1e-12 a C++ float in any dtype
    eps = dtype(np.float32(1e-12))
    np.testing.assert_array_equal(grad, np.array([-1, 1, 0, 0, -0.5], dtype) / eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_target_gradient_matches_torch(dtype):
    # torch differentiates BCELoss w.r.t. the target too: -logit(p), +-inf at p = 0 and 1.
    p, t = (a.reshape(-1) for a in np.meshgrid([0.0, 1.0, 0.5, 1e-30, 0.2, 0.9], [0, 1, 0.3]))
    p, t = p.astype(dtype), t.astype(dtype)
    grad_t = jax.jit(jax.grad(lambda t, p: L.bce(p, t, reduction="sum")))(t, p)
    tt = torch.tensor(t, requires_grad=True)
    F.binary_cross_entropy(torch.tensor(p), tt, reduction="sum").backward()
    assert_ulps(grad_t, tt.grad.numpy(), ELEMENT_ULPS)
    assert np.isinf(grad_t).sum() == 6
    # that infinite target derivative must not leak into the prediction's (inf * 0 = NaN),
    # in reverse mode or in forward mode (where a non-differentiated target's zero tangent
    # would meet it unless it stays symbolic)
    grad_p = jax.jit(jax.grad(lambda p, t: L.bce(p, t, reduction="sum")))(p, t)
    assert np.isfinite(grad_p).all()
    jac_fwd = jax.jit(jax.jacfwd(lambda p, t: L.bce(p, t, reduction="sum")))(p, t)
    np.testing.assert_array_equal(jac_fwd, grad_p)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", ["bce_with_logits", "bce_with_logits_pos_weight"])
def test_bce_with_logits_target_gradient_matches_torch(name, dtype):
    z, t, extra, _ = make_case(name, "random")
    z, t = z.astype(dtype), t.astype(dtype)
    jextra = {k: jnp.asarray(v, dtype) for k, v in extra.items()}
    fn = LOSSES[name].jax
    grad = jax.jit(jax.grad(lambda t, z, e: fn(z, t, "sum", e)))(t, z, jextra)
    tt = torch.tensor(t, requires_grad=True)
    textra = {k: torch.tensor(v.astype(dtype)) for k, v in extra.items()}
    LOSSES[name].torch(torch.tensor(z), tt, "sum", textra).backward()
    # -z + (pw - 1)(-log_sigmoid(z)): terms of either sign, compared on their sizes
    scale = np.abs(z) + (extra.get("pos_weight", 1.0) + 1) * np.logaddexp(0, -z)
    assert_ulps(grad, tt.grad.numpy(), ELEMENT_ULPS, scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_huber_at_the_boundary(dtype):
    delta = 1.5
    d = jnp.asarray([delta, -delta, 0.0], dtype)
    f = jax.jit(jax.value_and_grad(lambda d: L.huber(d, jnp.zeros_like(d), delta=delta)))
    value, grad = f(d)
    # 0.5 delta² from either formula; the gradient takes the linear branch: +-delta (/ n)
    assert float(value) == 2 * 0.5 * delta**2 / 3
    np.testing.assert_array_equal(grad, np.array([delta, -delta, 0.0], dtype) / dtype(3))


@pytest.mark.parametrize("fn", [L.l1, functools.partial(L.smooth_l1, beta=0.0)])
def test_l1_gradient_at_zero_is_zero(fn):
    # torch's sign(0) = 0; jax.grad(jnp.abs)(0.0) is 1, which would bias l1 training.
    pred = jnp.asarray([0.0, 2.0, -2.0, 0.0])
    target = jnp.asarray([0.0, 1.0, -1.0, -0.0])
    for g in (jax.grad(fn)(pred, target), jax.jit(jax.grad(fn))(pred, target)):
        np.testing.assert_array_equal(g, [0.0, 0.25, -0.25, 0.0])


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_smooth_l1_is_huber_over_beta(beta):
    pred, target, _, _ = make_case("mse", "random")
    np.testing.assert_allclose(
        L.smooth_l1(pred, target, beta=beta, reduction="none"),
        L.huber(pred, target, delta=beta, reduction="none") / beta,
        rtol=ELEMENT_ULPS * np.finfo(np.float64).eps,
    )


def test_bce_with_logits_agrees_with_bce_of_sigmoid():
    z, t, _, _ = make_case("bce_with_logits", "random")
    z = z / 5  # |z| <~ 3: sigmoid(z) stays far from 0 and 1, where bce(sigmoid(z)) is accurate
    np.testing.assert_allclose(
        L.bce_with_logits(z, t, reduction="none"),
        L.bce(jax.nn.sigmoid(z), t, reduction="none"),
        # bce(sigmoid(z)) rounds sigmoid(z), then log amplifies that by 1/min(p, 1-p) < 25
        rtol=25 * ELEMENT_ULPS * np.finfo(np.float64).eps,
    )


# --- finite differences (float64) -----------------------------------------------------------


FD_DIRECTIONS = 3


def _fd_point(name: str):
    """A float64 point off every kink and clamp, and FD_DIRECTIONS random directions."""
    loss = LOSSES[name]
    pred, target, extra, _ = make_case(name, "random")
    if loss.kind == "probability":
        pred = np.clip(pred, 0.05, 0.95)  # off torch's clamps (where its gradient is torch's)
    if loss.kind == "regression":
        # off the kinks by 100 steps, where the one-sided slopes differ
        assert np.min(np.abs(np.abs(pred - target) - loss.kink)) > 100 * FD_STEP
        assert np.min(np.abs(pred - target)) > 100 * FD_STEP
    directions = np.random.default_rng(4).normal(size=(FD_DIRECTIONS, *pred.shape))
    return pred, target, extra, directions


@jax.jit
def _fd_side(inputs):
    """{name: (f, grad . v, f(x + h v), f(x - h v))} for every loss ("mean"), one program."""
    out = {}
    for name, (pred, target, extra, v) in inputs.items():

        def f(p, name=name, target=target, extra=extra):
            return LOSSES[name].jax(p, target, "mean", extra)

        value, grad = jax.value_and_grad(f)(pred)
        directional = jnp.sum(grad[None] * v, axis=(1, 2))
        out[name] = (
            value,
            directional,
            jax.vmap(f)(pred[None] + FD_STEP * v),
            jax.vmap(f)(pred[None] - FD_STEP * v),
        )
    return out


@functools.cache
def fd_results() -> dict:
    return jax.tree.map(np.asarray, _fd_side({name: _fd_point(name) for name in LOSSES}))


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_matches_finite_differences(name):
    # "mean" only: the reductions' scaling of the gradient is checked against torch above
    value, directional, f_plus, f_minus = fd_results()[name]
    fd = (f_plus - f_minus) / (2 * FD_STEP)
    scale = np.maximum(max(1.0, abs(float(value))), np.abs(directional))
    assert np.all(np.abs(fd - directional) <= FD_RTOL * scale), (fd, directional)


# --- bad input ------------------------------------------------------------------------------

ALL_LOSSES = {
    "mse": L.mse,
    "sse": L.sse,
    "l1": L.l1,
    "huber": L.huber,
    "smooth_l1": L.smooth_l1,
    "bce": L.bce,
    "bce_with_logits": L.bce_with_logits,
}

MISMATCHES = [((5,), (5, 1)), ((5, 1), (5,)), ((1, 5), (5,)), ((5,), (1, 5)), ((3, 2), (2, 3))]


@pytest.mark.parametrize("pred_shape,target_shape", MISMATCHES)
@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_shape_mismatch_names_both_shapes_and_the_fix(name, pred_shape, target_shape):
    pred, target = np.full(pred_shape, 0.5), np.full(target_shape, 0.5)
    with pytest.raises(ValueError) as info:
        ALL_LOSSES[name](pred, target)
    msg = str(info.value)
    assert f"prediction shape {pred_shape}" in msg and f"target shape {target_shape}" in msg
    assert "reshape" in msg
    assert msg.startswith(f"{name}:")


@pytest.mark.parametrize("pred_shape,target_shape", MISMATCHES[:4])
@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_shape_mismatch_raises_at_trace_time_under_jit(name, pred_shape, target_shape):
    # Traced from abstract shapes alone: the error needs no values and costs nothing later.
    fn = jax.jit(ALL_LOSSES[name])
    args = (
        jax.ShapeDtypeStruct(pred_shape, jnp.float32),
        jax.ShapeDtypeStruct(target_shape, jnp.float32),
    )
    with pytest.raises(ValueError, match=r"prediction shape .* and target shape .* differ"):
        fn.trace(*args)


@pytest.mark.parametrize("bad", ["avg", "elementwise_mean", None, "MEAN"])
@pytest.mark.parametrize("name", [n for n in ALL_LOSSES if n != "sse"])
def test_bad_reduction(name, bad):
    x = np.full((4, 1), 0.5)
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none'") as info:
        ALL_LOSSES[name](x, x, reduction=bad)
    assert f"got {bad!r}" in str(info.value)


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan")])
def test_huber_delta_must_be_positive(delta):
    x = np.ones((3, 1))
    with pytest.raises(ValueError, match="delta must be positive"):
        L.huber(x, x, delta=delta)
    if not math.isnan(delta):  # torch refuses these too
        with pytest.raises(RuntimeError, match="delta"):
            F.huber_loss(torch.ones(3), torch.ones(3), delta=delta)


@pytest.mark.parametrize("beta", [-1.0, -1e-12, float("nan")])
def test_smooth_l1_beta_must_be_non_negative(beta):
    x = np.ones((3, 1))
    with pytest.raises(ValueError, match="beta must be non-negative"):
        L.smooth_l1(x, x, beta=beta)
    if not math.isnan(beta):
        with pytest.raises(RuntimeError, match="beta"):
            F.smooth_l1_loss(torch.ones(3), torch.ones(3), beta=beta)


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_integer_prediction_is_a_type_error(name):
    with pytest.raises(TypeError, match="floating point"):
        ALL_LOSSES[name](jnp.ones((3, 1), jnp.int32), jnp.ones((3, 1)))


@pytest.mark.parametrize(
    "name,dtype,target_dtype",
    [(name, np.float64, np.int32) for name in ALL_LOSSES]
    + [("mse", np.float32, np.bool_), ("bce", np.float32, np.int64)],
)
def test_integer_target_is_promoted_to_the_prediction_dtype(name, dtype, target_dtype):
    pred = jnp.asarray([[0.2], [0.7], [0.9]], dtype)
    target = np.array([[0], [1], [1]], target_dtype)
    out = ALL_LOSSES[name](pred, target)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, ALL_LOSSES[name](pred, jnp.asarray(target, dtype)))


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_float64_target_follows_a_float32_prediction(name):
    # the prediction's dtype (the parameters') wins, as for integer targets
    pred = jnp.asarray([[0.2], [0.7], [0.9]], jnp.float32)
    out = ALL_LOSSES[name](pred, np.array([[0.0], [1.0], [1.0]]))
    assert out.dtype == jnp.float32


@pytest.mark.parametrize("name", ["bce", "bce_with_logits"])
def test_weight_that_does_not_broadcast_is_a_clear_error(name):
    pred, target = np.full((5, 1), 0.5), np.ones((5, 1))
    with pytest.raises(ValueError, match=r"weight shape \(5,\) does not broadcast.*\(5, 1\)"):
        ALL_LOSSES[name](pred, target, weight=np.ones(5))


def test_pos_weight_never_grows_the_loss():
    # torch broadcasts pos_weight (n,) against a target (n, 1) to an (n, n) loss, silently.
    z, t = np.zeros((5, 1)), np.ones((5, 1))
    with pytest.raises(ValueError, match=r"pos_weight shape \(5,\) does not broadcast"):
        L.bce_with_logits(z, t, pos_weight=np.ones(5))
    # one value per output column (the documented use) is fine: -3 log(sigmoid(0)) each
    out = L.bce_with_logits(z, t, pos_weight=np.array([3.0]), reduction="none")
    assert out.shape == (5, 1)
    np.testing.assert_allclose(out, 3 * np.log(2.0), rtol=ELEMENT_ULPS * np.finfo(float).eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mean_divides_like_torch(dtype):
    # torch's mean is sum / n, correctly rounded; XLA turns a division by the constant n
    # into a multiplication by 1/n, 1 ulp off for about a quarter of n (3/5 -> 0.6000...01)
    x = np.array([1.0, 0.0, 1.0, 1.0, 0.0], dtype)
    assert float(jax.jit(L.mean)(x)) == float(torch.tensor(x).mean()) == float(dtype(0.6))
    assert float(jax.jit(L.mse)(x, np.zeros_like(x))) == float(dtype(0.6))
    rng = np.random.default_rng(7)
    mean_and_sum = jax.jit(lambda x: (L.mean(x), jnp.sum(x)))
    for n in (3, 7, 10, 13):  # each n is a compile; 30 draws each
        for x in rng.uniform(size=(30, n)).astype(dtype):
            mean, total = mean_and_sum(x)
            assert mean == np.asarray(total) / dtype(n)  # NumPy's division: correctly rounded
