"""`jaxreg.optim.lbfgs` against `torch.optim.LBFGS` (torch 2.13, CPU): `jr.fit` with lbfgs
against torch's loop `for step: loss = optimizer.step(closure)` (parity's torch loop, which
steps a closure optimizer that way).

Two problems: the 20x3 least-squares regression of `optim_ref` (MSE) and a 40x3 logistic
regression (logits, `binary_cross_entropy_with_logits`), `STEPS` steps each, parameters
after every step. The configurations are torch's own (`optim_db`'s `optim_inputs_func`
for LBFGS) plus ours that exercise the history ring buffer, `max_eval` and the line
search with small learning rates. Deviation: `max_t ||ours_t - torch_t||_inf /
||torch_t||_inf`, in ulps of the dtype.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optim_ref
import pytest
import torch
from optim_ref import F32_EPS, F64_EPS
from test_optim import max_relative_deviation

import jaxreg as jr
from jaxreg import optim as jro
from parity.programs import torch_loop

STEPS = 100

# float64: every operation rounded as torch rounds it, in its order; what differs is the
# gradients' and losses' last bits (torch's matmul, mean and log1p against XLA's), the
# dot products' summation order (torch's BLAS ddot against XLA's loop), and FMA where XLA
# fuses a product the way torch's `add(alpha=)` kernel does. L-BFGS divides by `y . s`,
# so these reach the parameters amplified by the curvature ratio. Measured worst: 57.7 eps
# (Tensor lr=0.001, logistic; torch against itself under a last-bit change, below: 29.9
# eps), 14.1 eps on the regression. Tolerance 128 eps, 2x the worst.
F64_RTOL = 128 * F64_EPS

# Near the optimum, L-BFGS with a fixed step (or a line search on a flat loss) builds its
# direction from `y = g - g_prev` and `y . s` at the gradients' rounding level: the run is
# chaotic there, and torch against itself, with the loss computed as `sum / n` instead of
# `mean` (the same number up to its last bit) and the first weight one ulp up, parts by
# up to 1e-4 relative (lr=0.01, logistic, float64). Where ours is outside the tolerance,
# torch's own spread under that last-bit change is computed, and ours must be within
# `SPREAD_FACTOR` times it (measured: ours at most 2.3x torch's spread, 882 eps against
# 391 eps, strong-Wolfe max_eval=6 on the logistic problem).
SPREAD_FACTOR = 4.0

# float32: the same, plus L-BFGS's decisions turning on float32 noise: the line search's
# cubic interpolation (`d1**2 - g1*g2` is a cancellation below the loss's rounding when a
# first step is short) and the memory update's `y . s > 1e-10` (at the gradients' rounding
# level near the optimum). There torch's own float32 run is far from its float64 run
# (1.2e6 eps, strong-Wolfe lr=0.01), as ours is from it: ours is held to 32 eps, or to
# `SPREAD_FACTOR` times torch's float32-vs-float64 spread (measured: at most 2.2x).
F32_RTOL = 32 * F32_EPS


TORCH_CASES = optim_ref.torch_configurations("LBFGS")
OUR_CASES = [
    {"lr": 0.1, "max_iter": 3},
    {"lr": 0.5, "max_iter": 5, "history_size": 2},  # the ring buffer wraps
    {"lr": 0.01, "max_iter": 2, "line_search_fn": "strong_wolfe"},
    {"lr": 0.3, "max_iter": 4, "max_eval": 6, "line_search_fn": "strong_wolfe", "history_size": 3},
    {"tolerance_change": 1e-3, "tolerance_grad": 1e-3},
]
CASES = [pytest.param(k, id=str(k)) for k in TORCH_CASES + OUR_CASES]


def logistic_problem(seed: int = 3) -> tuple[np.ndarray, ...]:
    """x (40, 3), labels y (40, 1) in {0, 1} drawn from a logistic model (not separable),
    weight0 (1, 3), bias0 (1,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((40, 3))
    logits = x @ np.array([[1.0], [-1.5], [0.5]]) - 0.2
    y = (rng.random((40, 1)) < 1 / (1 + np.exp(-logits))).astype(np.float64)
    return x, y, 0.3 * rng.standard_normal((1, 3)), 0.3 * rng.standard_normal(1)


def torch_run(kwargs: dict, problem, dtype, model: str, *, perturbed: bool = False):
    """torch's parameters after each `step(closure)`, rows `[w0, w1, w2, b]`, and the
    losses. `perturbed`: the loss as `sum / n` (the mean up to its last bit) and the first
    weight one ulp up."""
    tdtype = optim_ref.TORCH_DTYPES[np.dtype(dtype)]
    x, y, weight0, bias0 = (torch.tensor(a, dtype=tdtype) for a in problem)
    if perturbed:
        weight0[0, 0] = torch.nextafter(weight0[0, 0], torch.tensor(np.inf, dtype=tdtype))
    weight = weight0.clone().requires_grad_(True)
    bias = bias0.clone().requires_grad_(True)
    kwargs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    if isinstance(kwargs.get("lr"), torch.Tensor):  # optim_db's Tensor lr is float32
        kwargs["lr"] = kwargs["lr"].to(tdtype)
    opt = torch.optim.LBFGS([weight, bias], **kwargs)
    if model == "linear":
        loss_fn = torch.nn.functional.mse_loss
    else:
        loss_fn = torch.nn.functional.binary_cross_entropy_with_logits
    if perturbed:
        mean = loss_fn

        def loss_fn(h, yb):
            return mean(h, yb, reduction="sum") / yb.shape[0]

    program = torch_loop.Program(
        forward=lambda xb: xb @ weight.T + bias,
        loss_fn=loss_fn,
        params={"weight": weight, "bias": bias},
        update=torch_loop.OptimizerUpdate(opt),
    )
    run = torch_loop.run(program, torch_loop.full_batch(x, y), STEPS)
    rows = [run.params["weight"].reshape(STEPS, -1), run.params["bias"]]
    return np.concatenate(rows, axis=1), run.losses


def jax_run(kwargs: dict, problem, dtype, model: str) -> tuple[np.ndarray, np.ndarray]:
    """`jr.fit` with `lbfgs`: rows like `torch_run`'s, and the per-step losses."""
    kwargs = {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    x, y, weight0, bias0 = (jnp.asarray(a, dtype) for a in problem)
    params = jr.linear.Params(weight0, bias0)
    if model == "linear":
        loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    else:
        loss_fn = jr.objective(jr.logistic.logits, jr.losses.bce_with_logits)
    res = jr.fit(loss_fn, jro.lbfgs(**kwargs), params, x, y, steps=STEPS, gram=False)
    rows = [np.asarray(res.history.weight).reshape(STEPS, -1), np.asarray(res.history.bias)]
    return np.concatenate(rows, axis=1), np.asarray(res.losses)


def test_torchs_configurations_are_covered():
    assert len(TORCH_CASES) >= 5
    assert any(k.get("line_search_fn") == "strong_wolfe" for k in TORCH_CASES)


def within_torchs_own_spread(ours, ref, kwargs, problem, dtype, model, rtol) -> None:
    """`ours` (params rows, losses) within `rtol` of torch's run `ref`, or, where torch's own
    run moves further than that under a last-bit change of its loss (chaotic near the
    optimum), within `SPREAD_FACTOR` times that spread."""
    devs = [max_relative_deviation(ours[0], ref[0]), _loss_deviation(ours[1], ref[1])]
    if max(devs) <= rtol:
        return
    alt = torch_run(kwargs, problem, dtype, model, perturbed=True)
    spreads = [max_relative_deviation(alt[0], ref[0]), _loss_deviation(alt[1], ref[1])]
    eps = np.finfo(dtype).eps
    for what, dev, spread in zip(["params", "losses"], devs, spreads, strict=True):
        if dev > rtol:
            assert spread > rtol, f"{what}: {dev / eps:.1f} eps; torch's spread {spread / eps:.1f}"
            assert dev <= SPREAD_FACTOR * spread, (what, dev / eps, spread / eps)


def _loss_deviation(ours, ref) -> float:
    return float(np.max(np.abs(ours - ref) / np.abs(ref)))


@pytest.mark.parametrize("model", ["linear", "logistic"])
@pytest.mark.parametrize("kwargs", CASES)
def test_float64_trajectories_match_torch(kwargs, model):
    problem = optim_ref.regression_problem() if model == "linear" else logistic_problem()
    ref = torch_run(kwargs, problem, np.float64, model)
    ours = jax_run(kwargs, problem, np.float64, model)
    start = np.concatenate([problem[2].reshape(-1), problem[3]])
    assert np.max(np.abs(ref[0][-1] - start)) > 0.05, "must move"
    # losses: each step's is torch's step(closure) return, the loss before the update
    within_torchs_own_spread(ours, ref, kwargs, problem, np.float64, model, F64_RTOL)


# tolerance_change=1e-3 stops a step on `|loss - prev_loss|` where the float32 memory
# update's `y . s > 1e-10` decided (on noise) how far the step went: ours stops one step
# later than torch's float32 run (measured 3.7e4 eps; torch's float64 run stops with it)
# (and, to keep the test time small, torch's float-lr cases and two of ours)
F32_CASES = [
    pytest.param(k, id=str(k))
    for k in [
        {},
        {"lr": 0.01},
        {"line_search_fn": "strong_wolfe"},
        {"lr": 0.01, "max_iter": 2, "line_search_fn": "strong_wolfe"},
        {
            "lr": 0.3,
            "max_iter": 4,
            "max_eval": 6,
            "line_search_fn": "strong_wolfe",
            "history_size": 3,
        },
    ]
]


@pytest.mark.parametrize("kwargs", F32_CASES)
def test_float32_runs_are_as_close_as_torchs_own_float32_and_float64(kwargs):
    problem = optim_ref.regression_problem()
    ref32 = torch_run(kwargs, problem, np.float32, "linear")
    ref64 = torch_run(kwargs, problem, np.float64, "linear")
    ours = jax_run(kwargs, problem, np.float32, "linear")
    assert ours[0].dtype == np.float32
    spread = max_relative_deviation(ref32[0], ref64[0])
    dev = max_relative_deviation(ours[0], ref32[0])
    assert dev <= max(F32_RTOL, SPREAD_FACTOR * spread), (dev / F32_EPS, spread / F32_EPS)


def test_a_converged_run_stops_as_torchs_does():
    """Defaults (lr=1, max_iter=20) solve least squares in the first step; every later step
    finds the gradient below tolerance_grad (or stops on tolerance_change) and returns at
    once, on both sides: the same evaluation and iteration counts."""
    problem = optim_ref.regression_problem()
    x, y, weight0, bias0 = (torch.tensor(a) for a in problem)
    weight, bias = weight0.clone().requires_grad_(True), bias0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias])

    def closure():
        opt.zero_grad()
        loss = torch.mean((x @ weight.T + bias - y) ** 2)
        loss.backward()
        return loss

    for _ in range(10):
        opt.step(closure)
    theirs = opt.state[weight]
    params = jr.linear.Params(*(jnp.asarray(a) for a in problem[2:]))
    mse = jr.objective(jr.linear.predict, jr.losses.mse)
    res = jr.fit(mse, jro.lbfgs(), params, jnp.asarray(problem[0]), jnp.asarray(problem[1]),
                 steps=10, gram=False)  # fmt: skip
    ours = res.opt_state.inner
    assert int(ours.func_evals) == theirs["func_evals"]
    assert int(ours.n_iter) == theirs["n_iter"]
    np.testing.assert_allclose(np.asarray(res.history.weight)[-1], weight.detach(), rtol=F64_RTOL)


def test_arguments_and_defaults_are_torchs():
    import inspect

    ours = inspect.signature(jro.lbfgs).parameters
    theirs = inspect.signature(torch.optim.LBFGS).parameters
    assert list(ours) == [n for n in theirs if n != "params"]
    for name, param in ours.items():
        assert param.default == theirs[name].default, name


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": -0.5}, {"lr": np.array([0.001, 0.001])}],
    ids=["negative lr", "2-element lr"],
)
def test_bad_hyperparameters_raise_torchs_error(kwargs):
    theirs_kwargs = {
        k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()
    }
    with pytest.raises(ValueError) as theirs:
        optim_ref.make_torch_optimizer("LBFGS", theirs_kwargs)
    with pytest.raises(ValueError) as ours:
        jro.lbfgs(**kwargs)
    assert str(ours.value) == str(theirs.value)


def test_an_unknown_line_search_is_torchs_message_at_construction():
    param = torch.ones(1, requires_grad=True)
    opt = torch.optim.LBFGS([param], line_search_fn="backtracking")

    def closure():
        opt.zero_grad()
        loss = (param**2).sum()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError) as theirs:
        opt.step(closure)
    with pytest.raises(ValueError) as ours:  # here when it is built, not at the first step
        jro.lbfgs(line_search_fn="backtracking")
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("name", ["max_iter", "max_eval", "history_size"])
def test_counts_below_one_are_refused(name):
    with pytest.raises(ValueError, match=f"lbfgs: {name} must be an integer >= 1, got 0"):
        jro.lbfgs(**{name: 0})


def test_update_without_value_fn_says_how_to_call_it():
    params = jnp.ones(3)
    tx = jro.lbfgs()
    with pytest.raises(ValueError, match="needs params and value_fn"):
        tx.update(params, tx.init(params), params)


def test_numbers_are_not_part_of_the_identity_but_counts_are():
    assert jro.lbfgs(lr=0.1, tolerance_grad=1e-5) == jro.lbfgs(lr=1.0)
    assert jro.lbfgs(max_iter=5) != jro.lbfgs(max_iter=6)
    assert jro.lbfgs(history_size=5) != jro.lbfgs()
    assert jro.lbfgs(line_search_fn="strong_wolfe") != jro.lbfgs()
