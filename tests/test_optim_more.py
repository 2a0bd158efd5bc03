"""NAdam, RAdam, Adamax, Adadelta, ASGD and Rprop against torch.optim (torch 2.13, CPU).

The same two comparisons as `test_optim.py` (its `jax_trajectories`: one compiled program
per structure and dtype), over `STEPS` updates, parameters after every update:
*regression* (each side computes its own gradients of a 20x3 least-squares problem) and
*gradient stream* (both sides get the same gradients). The option sets are torch's own
(`optim_db`'s `optim_inputs_func`, the configurations torch tests each optimizer with),
plus a few of ours that combine options or change the numbers it leaves at defaults.
Deviation: `max_t ||ours_t - torch_t||_inf / ||torch_t||_inf`, in ulps of the dtype.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optim_ref
import pytest
import torch
from optim_ref import F32_EPS, F64_EPS
from test_optim import STEPS, jax_trajectories, max_relative_deviation

from jaxreg import optim as jro

# float64: both sides round every operation to float64 in the same order, with torch's
# Python-float scalars reproduced bit for bit; what differs is XLA's FMA contraction, its
# correctly rounded sqrt against torch's, and the update returned as `new - params` where
# torch writes the new parameters in place (exact unless a coordinate crosses a power of 2
# towards 0), and in regression the gradients' own last-bit differences. Measured worst
# over all cases below: 7.7 eps (RAdam, decoupled weight decay, regression); 6.2 eps on a
# gradient stream (ASGD); Rprop is bitwise. Tolerance 16 eps: a few ulps, 2x the worst.
F64_RTOL = 16 * F64_EPS

# float32: as above, plus the hyperparameters living in the state as float32 (torch keeps
# Python floats), so e.g. `1 - beta2` is `1 - float32(0.999)`, 1.3e-5 away in relative
# terms from torch's; RAdam's rectification `r_t` goes through `rho_inf = 2 / (1 - beta2)
# - 1` and carries it furthest. Regression also has the gradients' own last-bit
# differences (torch's matmul and mean against XLA's), which Rprop turns into a step-size
# decision now and then (20.1 eps; on the gradient stream it is bitwise). Measured worst:
# 26.4 eps (RAdam, decoupled weight decay, regression), 11.6 eps on the gradient stream
# (RAdam). Tolerance 32 eps, the one `test_optim.py` uses for the other optimizers.
F32_RTOL = 32 * F32_EPS


FACTORIES = {
    "NAdam": jro.nadam,
    "RAdam": jro.radam,
    "Adamax": jro.adamax,
    "Adadelta": jro.adadelta,
    "ASGD": jro.asgd,
    "Rprop": jro.rprop,
}
TORCH_ONLY = {"foreach", "fused", "capturable", "differentiable"}


def _torch_configurations() -> list[tuple[str, dict]]:
    found = []
    for info in optim_ref.optim_db():
        name = info.optim_cls.__name__
        if name in FACTORIES:
            for given in info.optim_inputs_func(device="cpu"):
                if not TORCH_ONLY & set(given.kwargs):
                    found.append((name, dict(given.kwargs)))
    return found


TORCH_CASES = _torch_configurations()
OUR_CASES = [
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("NAdam", {"lr": 0.02, "momentum_decay": 0.1, "maximize": True}),
    ("RAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.02, "betas": (0.8, 0.9), "eps": 1e-3, "maximize": True}),
    # lr 0.005: at 0.02 this Adamax hovers at the optimum within 100 steps, where its
    # sign-like steps amplify every rounding difference of the gradients (see test_optim).
    ("Adamax", {"lr": 0.005, "betas": (0.5, 0.9), "eps": 1e-3}),
    ("Adadelta", {"lr": 0.5, "rho": 0.5, "eps": 1e-3, "weight_decay": 0.1, "maximize": True}),
    ("ASGD", {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 20, "weight_decay": 0.1}),
    ("ASGD", {"lr": 0.02, "t0": 1, "maximize": True}),
    ("Rprop", {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.1)}),
]


def _case_id(name: str, kwargs: dict) -> str:
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


CASES = [pytest.param(n, k, id=_case_id(n, k)) for n, k in TORCH_CASES + OUR_CASES]


def test_torchs_configurations_cover_every_new_optimizer():
    assert {name for name, _ in TORCH_CASES} == set(FACTORIES)
    assert len(TORCH_CASES) >= 30


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("torch_name, kwargs", CASES)
def test_trajectories_match_torch(torch_name, kwargs, dtype):
    problem = optim_ref.regression_problem()
    params0, grads = optim_ref.gradient_stream(STEPS, 4)
    ref_regression = optim_ref.torch_regression(torch_name, kwargs, problem, dtype, STEPS)
    ref_stream = optim_ref.torch_stream(torch_name, kwargs, params0, grads, dtype)
    factory = FACTORIES[torch_name]
    regression, stream = jax_trajectories(factory, kwargs, problem, params0, grads, dtype)
    assert regression.dtype == stream.dtype == dtype
    assert regression.shape == ref_regression.shape == stream.shape == (STEPS, 4)
    # must move: by far more than the tolerance (torch's small-lr configurations, e.g.
    # Rprop(lr=0.0002), move by ~5e-4 in 100 steps, over 100x the float32 tolerance)
    moved = max(np.max(np.abs(ref[-1] - ref[0])) for ref in (ref_regression, ref_stream))
    assert moved > 1e-4, "must move"
    rtol = F64_RTOL if dtype == np.float64 else F32_RTOL
    eps = np.finfo(dtype).eps
    for what, ours, ref in [
        ("regression", regression, ref_regression),
        ("stream", stream, ref_stream),
    ]:
        dev = max_relative_deviation(ours, ref)
        assert dev <= rtol, f"{what}: deviation {dev:.3g} ({dev / eps:.1f} eps) > {rtol:.3g}"


X64_OFF_CASES = [
    ("NAdam", {"weight_decay": 0.1, "momentum_decay": 0.006, "decoupled_weight_decay": True}),
    ("RAdam", {"weight_decay": 0.1, "maximize": True}),
    ("Adamax", {"weight_decay": 0.1, "maximize": True}),
    ("Adadelta", {"rho": 0.95, "weight_decay": 0.9}),
    ("ASGD", {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 20, "weight_decay": 0.1}),
    ("Rprop", {"etas": (0.5, 1.5)}),
]


@pytest.mark.parametrize("torch_name, kwargs", X64_OFF_CASES)
def test_float32_trajectories_with_x64_off_match_torch(torch_name, kwargs):
    # Without x64 the per-step scalars (torch's Python floats) are float32 too; the same
    # tolerance holds (measured worst: within the x64-on numbers above).
    problem = optim_ref.regression_problem()
    params0, grads = optim_ref.gradient_stream(STEPS, 4)
    ref_regression = optim_ref.torch_regression(torch_name, kwargs, problem, np.float32, STEPS)
    ref_stream = optim_ref.torch_stream(torch_name, kwargs, params0, grads, np.float32)
    factory = FACTORIES[torch_name]
    with jax.enable_x64(False):
        regression, stream = jax_trajectories(factory, kwargs, problem, params0, grads, np.float32)
    assert max_relative_deviation(regression, ref_regression) <= F32_RTOL
    assert max_relative_deviation(stream, ref_stream) <= F32_RTOL


# ---------------------------------------------------------------------------------------
# State that torch keeps beside the parameters


def _torch_state(torch_name: str, kwargs: dict, params0, grads):
    param = torch.tensor(params0, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, torch_name)([param], **kwargs)
    for g in grads:
        param.grad = torch.tensor(g)
        opt.step()
    return opt.state[param]


def _jax_state(factory, kwargs: dict, params0, grads):
    tx = factory(**kwargs)
    params = jnp.asarray(params0)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    return state.inner


def test_nadam_mu_product_is_torchs_float32_tensor():
    params0, grads = optim_ref.gradient_stream(50, 3)
    kwargs = {"momentum_decay": 0.01}
    theirs = _torch_state("NAdam", kwargs, params0, grads)["mu_product"]
    ours = _jax_state(jro.nadam, kwargs, params0, grads).mu_product
    assert theirs.dtype == torch.float32 and ours.dtype == np.float32
    assert float(ours) == theirs.item()  # bitwise


def test_asgd_average_eta_and_mu_are_torchs():
    params0, grads = optim_ref.gradient_stream(50, 3)
    kwargs = {"lr": 0.05, "lambd": 0.01, "t0": 20}
    theirs = _torch_state("ASGD", kwargs, params0, grads)
    ours = _jax_state(jro.asgd, kwargs, params0, grads)
    assert float(ours.eta) == theirs["eta"].item() and float(ours.mu) == theirs["mu"].item()
    # the average of 30 parameter vectors, each a few ulps from torch's (F64_RTOL above)
    np.testing.assert_allclose(ours.ax, theirs["ax"].numpy(), rtol=F64_RTOL)


# ---------------------------------------------------------------------------------------
# set_lr: torch's `param_groups[0]["lr"] = ...` between steps


@pytest.mark.parametrize("torch_name", list(FACTORIES))
def test_set_lr_mid_run_matches_torch_changing_its_param_group(torch_name):
    """The lr halves after 30 of 60 steps on both sides. (Rprop reads lr only when its
    state is created, at the first step, in torch as here: the change does nothing.)"""
    params0, grads = optim_ref.gradient_stream(60, 4)
    lr = {"Adadelta": 1.0, "ASGD": 0.05}.get(torch_name, 0.02)
    param = torch.tensor(params0, requires_grad=True)
    opt = getattr(torch.optim, torch_name)([param], lr=lr)
    tx = FACTORIES[torch_name](lr=lr)
    params = jnp.asarray(params0)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t, g in enumerate(grads):
        if t == 30:
            opt.param_groups[0]["lr"] = lr / 2
            state = jro.set_lr(state, lr / 2)
        param.grad = torch.tensor(g)
        opt.step()
        updates, state = update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    theirs = param.detach().numpy()
    assert np.max(np.abs(params - theirs)) <= F64_RTOL * np.max(np.abs(theirs))
    if torch_name != "Rprop":  # the change mattered
        tx_fixed = FACTORIES[torch_name](lr=lr)
        fixed = jnp.asarray(params0)
        fixed_state = tx_fixed.init(fixed)
        for g in grads:
            updates, fixed_state = update(jnp.asarray(g), fixed_state, fixed)
            fixed = optax.apply_updates(fixed, updates)
        assert np.max(np.abs(fixed - theirs)) > 1e-6


# ---------------------------------------------------------------------------------------
# Arguments and checks, as torch's


@pytest.mark.parametrize("torch_name", list(FACTORIES))
def test_arguments_and_defaults_are_torchs(torch_name):
    """Same names, defaults and relative order. Where torch has a positional `foreach`
    (left out here) before `maximize`, ours is keyword-only: a positional call cannot
    then mean another argument than in torch."""
    ours = inspect.signature(FACTORIES[torch_name]).parameters
    theirs = inspect.signature(getattr(torch.optim, torch_name)).parameters
    assert list(ours) == [name for name in theirs if name in ours], "same relative order"
    positional = [n for n, p in theirs.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
    for name, param in ours.items():
        assert name in theirs, f"torch.optim.{torch_name} has no argument {name!r}"
        assert param.default == theirs[name].default, name
        skipped = "foreach" in positional and positional.index("foreach") < (
            positional.index(name) if name in positional else len(positional)
        )
        if skipped and theirs[name].kind == param.POSITIONAL_OR_KEYWORD:
            assert param.kind == param.KEYWORD_ONLY, name
        else:
            assert param.kind == theirs[name].kind, name


BAD = [
    ("NAdam", {"lr": -1e-3}),
    ("NAdam", {"eps": -1.0}),
    ("NAdam", {"betas": (1.0, 0.999)}),
    ("NAdam", {"betas": (0.9, -0.1)}),
    ("NAdam", {"weight_decay": -0.1}),
    ("NAdam", {"momentum_decay": -4e-3}),
    ("NAdam", {"eps": -1.0, "momentum_decay": -1.0}),  # the first failing check wins
    ("RAdam", {"lr": float("nan")}),
    ("RAdam", {"eps": -1e-8}),
    ("RAdam", {"betas": (0.9, 1.0)}),
    ("RAdam", {"weight_decay": -1}),
    ("Adamax", {"lr": -2e-3}),
    ("Adamax", {"eps": -1e-8}),
    ("Adamax", {"betas": (-0.5, 0.999)}),
    ("Adamax", {"weight_decay": -1}),
    ("Adadelta", {"lr": -1.0}),
    ("Adadelta", {"rho": 1.1}),
    ("Adadelta", {"rho": -0.1}),
    ("Adadelta", {"eps": -1e-6}),
    ("Adadelta", {"weight_decay": -0.1}),
    ("ASGD", {"lr": -0.01}),
    ("ASGD", {"weight_decay": -0.1}),
    ("Rprop", {"lr": -0.01}),
    ("Rprop", {"etas": (1.0, 1.2)}),
    ("Rprop", {"etas": (0.5, 0.9)}),
    ("Rprop", {"etas": (0.0, 1.2)}),
]


@pytest.mark.parametrize("torch_name, kwargs", [pytest.param(*b, id=_case_id(*b)) for b in BAD])
def test_bad_hyperparameters_raise_torchs_error(torch_name, kwargs):
    with pytest.raises(ValueError) as theirs:
        optim_ref.make_torch_optimizer(torch_name, kwargs)
    with pytest.raises(ValueError) as ours:
        FACTORIES[torch_name](**kwargs)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("torch_name", list(FACTORIES))
def test_what_torch_accepts_is_accepted(torch_name):
    """torch checks only what it checks: e.g. ASGD takes any lambd, alpha and t0."""
    kwargs = {
        "NAdam": {"betas": (0.0, 0.0), "momentum_decay": 0.0},
        "RAdam": {"betas": (0, 0.5)},
        "Adamax": {"eps": 0.0},
        "Adadelta": {"rho": 1.0},
        "ASGD": {"lambd": -1.0, "alpha": -2.0, "t0": -5.0},
        "Rprop": {"step_sizes": (5.0, 1.0)},
    }[torch_name]
    optim_ref.make_torch_optimizer(torch_name, kwargs)
    FACTORIES[torch_name](**kwargs)


@pytest.mark.parametrize(
    "tx",
    [
        jro.nadam(weight_decay=0.1),
        jro.radam(weight_decay=0.1),
        jro.adamax(weight_decay=0.1),
        jro.adadelta(weight_decay=0.1),
        jro.asgd(),
    ],
    ids=["nadam", "radam", "adamax", "adadelta", "asgd"],
)
def test_needs_params(tx):
    params = jnp.ones(3)
    with pytest.raises(ValueError, match=r"needs params .* tx.update\(grads, state, params\)"):
        tx.update(params, tx.init(params))


def test_nadam_without_params_adds_its_two_terms():
    params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
    tx = jro.nadam(lr=0.1)
    with_params, _ = tx.update(grads, tx.init(params), params)
    without, _ = tx.update(grads, tx.init(params))
    # the same step, rounded as a sum of terms rather than through p: within an ulp of p
    np.testing.assert_allclose(without, with_params, rtol=0, atol=4 * F64_EPS)


def test_update_with_another_optimizers_state_is_a_type_error():
    params = jnp.ones(2)
    with pytest.raises(TypeError, match=r"expects the state of nadam.*holding NAdamState"):
        jro.nadam().update(params, jro.radam().init(params), params)


# ---------------------------------------------------------------------------------------
# One compiled program for every hyperparameter value

SAME_STRUCTURE = [
    (jro.nadam, {}, {"lr": 0.1, "betas": (0.5, 0.6), "eps": 1e-3, "momentum_decay": 0.1}),
    (jro.radam, {"weight_decay": 0.1}, {"lr": 0.1, "betas": (0.5, 0.6), "weight_decay": 0.3}),
    (jro.adamax, {}, {"lr": 0.1, "betas": (0.5, 0.6), "eps": 1e-3}),
    (jro.adadelta, {}, {"lr": 0.1, "rho": 0.5, "eps": 1e-3}),
    (jro.asgd, {}, {"lr": 0.1, "lambd": 0.1, "alpha": 0.5, "t0": 3}),
    (jro.rprop, {}, {"lr": 0.1, "etas": (0.1, 2.0), "step_sizes": (0.01, 1.0)}),
]


@pytest.mark.parametrize("factory, a, b", SAME_STRUCTURE)
def test_numbers_are_not_part_of_the_transformations_identity(factory, a, b):
    tx_a, tx_b = factory(**a), factory(**b)
    assert tx_a == tx_b and hash(tx_a) == hash(tx_b)
    params = jnp.zeros(2)
    assert jro.get_hyperparams(tx_a.init(params)) != jro.get_hyperparams(tx_b.init(params))


@pytest.mark.parametrize(
    "tx_a, tx_b",
    [
        (jro.nadam(weight_decay=0.1), jro.nadam(weight_decay=0.1, decoupled_weight_decay=True)),
        (jro.nadam(), jro.nadam(maximize=True)),
        (jro.radam(), jro.radam(weight_decay=0.1)),
        (jro.adamax(), jro.adamax(weight_decay=0.1)),
        (jro.adadelta(), jro.adadelta(maximize=True)),
        (jro.asgd(), jro.asgd(weight_decay=0.1)),
        (jro.rprop(), jro.rprop(maximize=True)),
        (jro.nadam(), jro.radam()),
        (jro.adamax(), jro.adadelta()),
    ],
)
def test_structure_is_part_of_the_transformations_identity(tx_a, tx_b):
    assert tx_a != tx_b


@pytest.mark.parametrize("factory, a, b", SAME_STRUCTURE)
def test_jit_keyed_on_the_transformation_traces_once(factory, a, b):
    traces = []

    @functools.partial(jax.jit, static_argnames="tx")
    def step(params, state, grads, *, tx):
        traces.append(tx)  # runs only while tracing
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates)

    params, grads = jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0])
    results = []
    for kwargs in (a, b, {**b, "lr": 0.3}):
        tx = factory(**kwargs)
        results.append(step(params, tx.init(params), grads, tx=tx))
    assert len(traces) == 1
    assert not np.array_equal(results[0], results[1])  # the numbers came from the state
    assert not np.array_equal(results[1], results[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factory", list(FACTORIES.values()))
def test_hyperparameters_are_arrays_of_the_params_dtype(factory, dtype):
    params = {"w": jnp.ones((2, 3), dtype), "b": jnp.zeros(2, dtype)}
    hp = jro.get_hyperparams(factory(lr=0.25).init(params))
    assert hp["lr"] == 0.25
    for name, value in hp.items():
        assert value.shape == () and value.dtype == dtype, name
