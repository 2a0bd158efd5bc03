"""`jaxreg.optim.muon` against `torch.optim.Muon` (torch 2.13, CPU).

Gradient streams on a wide (3, 4) and a tall (5, 3) matrix (the Newton-Schulz iteration
transposes a tall one), and torch's idiom for an `nn.Linear`: Muon for the weight, AdamW
for the bias, two torch optimizers stepped in one loop, against `jaxreg.fit` with
`optax.multi_transform`. Configurations: torch's own (`optim_db`'s `optim_inputs_func`
for Muon) plus ours. Deviation: `max_t ||ours_t - torch_t||_inf / ||torch_t||_inf`, in
ulps of the dtype, over 100 steps.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optim_ref
import pytest
import torch
from optim_ref import F32_EPS, F64_EPS
from test_optim import max_relative_deviation

import jaxreg as jr
from jaxreg import optim as jro
from parity.programs import torch_loop

STEPS = 100

# The Newton-Schulz iteration is bfloat16 on both sides and comes out bitwise torch's (its
# exact sums rounded once, as torch's float32 accumulations of a few exact bfloat16
# products round); what differs is the momentum's lerp and the parameters' update in the
# parameters' dtype (FMA choices) and, with multi_transform, AdamW's few ulps. Measured
# worst: 9.0 eps in float64, 8.2 eps in float32 (gradient streams), 3.0 eps through
# `fit`. Tolerances: 16 and 32 eps, as `test_optim_more.py`.
F64_RTOL = 16 * F64_EPS
F32_RTOL = 32 * F32_EPS


TORCH_CASES = optim_ref.torch_configurations("Muon")
OUR_CASES = [
    {"lr": 0.02, "nesterov": False, "adjust_lr_fn": "match_rms_adamw"},
    {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.0, "eps": 1e-3, "adjust_lr_fn": "original"},
]
CASES = [pytest.param(k, id=str(k)) for k in TORCH_CASES + OUR_CASES]


def _ours(kwargs: dict) -> dict:
    return {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _theirs(kwargs: dict, tdtype) -> dict:
    return {k: v.to(tdtype) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", CASES)
def test_gradient_streams_match_torch(kwargs, dtype):
    tdtype = optim_ref.TORCH_DTYPES[np.dtype(dtype)]
    tx = jro.muon(**_ours(kwargs))
    update = jax.jit(tx.update)
    for shape in [(3, 4), (5, 3)]:
        rng = np.random.default_rng(7)
        p0 = rng.standard_normal(shape).astype(dtype)
        scale = np.exp(rng.standard_normal((STEPS, 1, 1)))
        grads = (rng.standard_normal((STEPS, *shape)) * scale).astype(dtype)
        param = torch.tensor(p0, requires_grad=True)
        opt = torch.optim.Muon([param], **_theirs(kwargs, tdtype))
        params = jnp.asarray(p0)
        state = tx.init(params)
        theirs, ours = [], []
        for g in grads:
            param.grad = torch.tensor(g)
            opt.step()
            theirs.append(param.detach().numpy().reshape(-1).copy())
            updates, state = update(jnp.asarray(g), state, params)
            params = optax.apply_updates(params, updates)
            ours.append(np.asarray(params).reshape(-1))
        theirs, ours = np.array(theirs), np.array(ours)
        assert np.max(np.abs(theirs[-1] - p0.reshape(-1))) > 1e-3, "must move"
        dev = max_relative_deviation(ours, theirs)
        assert dev <= (F64_RTOL if dtype == np.float64 else F32_RTOL), (shape, dev)
        np.testing.assert_allclose(
            state.inner.momentum_buffer, opt.state[param]["momentum_buffer"].numpy(), rtol=1e-5
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear_regression_muon_weight_adamw_bias_matches_torchs_two_optimizers(dtype):
    """torch's idiom: `Muon([layer.weight])` and `AdamW([layer.bias])`, both stepped each
    batch; jaxreg: `optax.multi_transform` with those two, trained by `jr.fit`."""
    x, y, weight0, bias0 = optim_ref.regression_problem()
    tdtype = optim_ref.TORCH_DTYPES[np.dtype(dtype)]
    weight = torch.tensor(weight0, dtype=tdtype, requires_grad=True)
    bias = torch.tensor(bias0, dtype=tdtype, requires_grad=True)
    muon_opt = torch.optim.Muon([weight], lr=0.02)
    adamw_opt = torch.optim.AdamW([bias], lr=0.02)

    class BothOptimizers:
        def zero_grad(self):
            muon_opt.zero_grad()
            adamw_opt.zero_grad()

        def step(self):
            muon_opt.step()
            adamw_opt.step()

    program = torch_loop.Program(
        forward=lambda xb: xb @ weight.T + bias,
        loss_fn=torch.nn.functional.mse_loss,
        params={"weight": weight, "bias": bias},
        update=BothOptimizers(),
    )
    batches = torch_loop.full_batch(torch.tensor(x, dtype=tdtype), torch.tensor(y, dtype=tdtype))
    run = torch_loop.run(program, batches, STEPS)
    theirs = np.concatenate([run.params["weight"].reshape(STEPS, -1), run.params["bias"]], 1)

    tx = optax.multi_transform(
        {"muon": jro.muon(lr=0.02), "adamw": jro.adamw(lr=0.02)},
        jr.linear.Params(weight="muon", bias="adamw"),
    )
    params = jr.linear.Params(jnp.asarray(weight0, dtype), jnp.asarray(bias0, dtype))
    mse = jr.objective(jr.linear.predict, jr.losses.mse)
    res = jr.fit(mse, tx, params, jnp.asarray(x, dtype), jnp.asarray(y, dtype), steps=STEPS)
    ours = np.concatenate(
        [np.asarray(res.history.weight).reshape(STEPS, -1), np.asarray(res.history.bias)], 1
    )
    assert np.max(np.abs(theirs[-1] - theirs[0])) > 0.1, "must move"
    dev = max_relative_deviation(ours, theirs)
    assert dev <= (F64_RTOL if dtype == np.float64 else F32_RTOL), dev / np.finfo(dtype).eps


def test_a_bias_is_refused_with_torchs_message_and_the_torch_idiom():
    with pytest.raises(ValueError) as theirs:
        torch.optim.Muon(
            [torch.zeros(1, 3, requires_grad=True), torch.zeros(1, requires_grad=True)]
        )
    params = jr.linear.Params(jnp.zeros((1, 3)), jnp.zeros(1))
    with pytest.raises(ValueError) as ours:
        jro.muon().init(params)
    assert str(ours.value).startswith(str(theirs.value))
    assert "optax.multi_transform" in str(ours.value) and ".bias" in str(ours.value)


def test_torchs_configurations_are_covered():
    assert len(TORCH_CASES) >= 7


def test_arguments_and_defaults_are_torchs():
    ours = inspect.signature(jro.muon).parameters
    theirs = inspect.signature(torch.optim.Muon).parameters
    assert list(ours) == [n for n in theirs if n != "params"]
    for name, param in ours.items():
        assert param.default == theirs[name].default, name


BAD = [
    {"lr": -0.01},
    {"momentum": -0.5},
    {"weight_decay": -0.1},
    {"adjust_lr_fn": "arbitrary"},
]


@pytest.mark.parametrize("kwargs", BAD, ids=str)
def test_bad_hyperparameters_raise_torchs_error(kwargs):
    with pytest.raises(ValueError) as theirs:
        torch.optim.Muon([torch.zeros(2, 3, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError) as ours:
        jro.muon(**kwargs)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("kwargs", [{"ns_steps": 100}, {"ns_coefficients": (1.0, 2.0)}], ids=str)
def test_what_torch_refuses_at_its_first_step_is_refused_at_construction(kwargs):
    param = torch.ones(2, 3, requires_grad=True)
    opt = torch.optim.Muon([param], **kwargs)
    param.grad = torch.ones(2, 3)
    with pytest.raises(ValueError) as theirs:
        opt.step()
    with pytest.raises(ValueError) as ours:
        jro.muon(**kwargs)
    assert str(ours.value) == str(theirs.value)


def test_numbers_are_not_part_of_the_identity():
    assert jro.muon(lr=0.1, momentum=0.5, ns_coefficients=(3.0, -4.0, 2.0)) == jro.muon()
    assert jro.muon(ns_steps=6) != jro.muon()
    assert jro.muon(nesterov=False) != jro.muon()
