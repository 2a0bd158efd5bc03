"""`jaxreg.optim.sparse_adam` against `torch.optim.SparseAdam` (torch 2.13, CPU).

torch's SparseAdam takes sparse gradients only; the torch side here gets each dense
gradient as `p.grad = g.to_sparse()` (the nonzero entries), which is what `sparse_adam`
does with a dense gradient. Two comparisons over 100 steps: a gradient stream on a (4, 5)
matrix whose gradients are zero at random entries (about half), so the untouched entries'
moments and values must stay, and the 20x3 least-squares regression (`p.grad` of the
weight and bias turned sparse after `backward`). Configurations: torch's own (`optim_db`'s
`optim_inputs_func` for SparseAdam) plus ours. Deviation: `max_t ||ours_t - torch_t||_inf
/ ||torch_t||_inf`, in ulps of the dtype.
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

from jaxreg import optim as jro

STEPS = 100

# Each operation in torch's order and rounding (the moment updates as `m + (g - m)(1 -
# beta1)`, the step as a rounded tensor added to the parameters); what differs is XLA's
# FMA choices inside the moments and, in regression, the gradients' last bits. Measured
# worst: see README. Tolerances: 16 and 32 eps, as `test_optim_more.py`.
F64_RTOL = 16 * F64_EPS
F32_RTOL = 32 * F32_EPS

# The moments after 100 steps: in float64 a few ulps as the parameters; in float32 the
# second moment carries `1 - beta2` computed from the state's float32 beta2 (torch: from
# its Python float), 1.3e-5 relative for beta2=0.999 (as in test_optim.py). Measured worst:
# 1.3e-5. Tolerances: F64_RTOL, and 3e-5 in float32.
MOMENTS_RTOL = {np.dtype(np.float64): F64_RTOL, np.dtype(np.float32): 3e-5}


TORCH_CASES = optim_ref.torch_configurations("SparseAdam")
OUR_CASES = [{"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-4, "maximize": True}]
CASES = [pytest.param(k, id=str(k)) for k in TORCH_CASES + OUR_CASES]


def _ours(kwargs: dict) -> dict:
    return {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _theirs(kwargs: dict, tdtype) -> dict:
    return {k: v.to(tdtype) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _sparse_stream(dtype):
    rng = np.random.default_rng(11)
    p0 = rng.standard_normal((4, 5)).astype(dtype)
    grads = rng.standard_normal((STEPS, 4, 5)) * np.exp(rng.standard_normal((STEPS, 1, 1)))
    grads[rng.random(grads.shape) < 0.5] = 0.0
    return p0, grads.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", CASES)
def test_a_sparse_gradient_stream_matches_torch(kwargs, dtype):
    p0, grads = _sparse_stream(dtype)
    param = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.SparseAdam(
        [param], **_theirs(kwargs, optim_ref.TORCH_DTYPES[np.dtype(dtype)])
    )
    tx = jro.sparse_adam(**_ours(kwargs))
    update = jax.jit(tx.update)
    params = jnp.asarray(p0)
    state = tx.init(params)
    theirs, ours = [], []
    for g in grads:
        param.grad = torch.tensor(g).to_sparse()
        opt.step()
        theirs.append(param.detach().numpy().reshape(-1).copy())
        updates, state = update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        ours.append(np.asarray(params).reshape(-1))
    theirs, ours = np.array(theirs), np.array(ours)
    assert np.max(np.abs(theirs[-1] - p0.reshape(-1))) > 1e-3, "must move"
    dev = max_relative_deviation(ours, theirs)
    assert dev <= (F64_RTOL if dtype == np.float64 else F32_RTOL), dev / np.finfo(dtype).eps
    # an entry whose gradient was zero at a step kept its moments (torch's sparse_mask)
    torch_state = opt.state[param]
    rtol = MOMENTS_RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(state.inner.exp_avg, torch_state["exp_avg"].numpy(), rtol=rtol)
    np.testing.assert_allclose(state.inner.exp_avg_sq, torch_state["exp_avg_sq"].numpy(), rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", CASES)
def test_regression_with_sparse_gradients_matches_torch(kwargs, dtype):
    tdtype = optim_ref.TORCH_DTYPES[np.dtype(dtype)]
    x, y, weight0, bias0 = optim_ref.regression_problem()
    xt, yt = torch.tensor(x, dtype=tdtype), torch.tensor(y, dtype=tdtype)
    weight = torch.tensor(weight0, dtype=tdtype, requires_grad=True)
    bias = torch.tensor(bias0, dtype=tdtype, requires_grad=True)
    opt = torch.optim.SparseAdam([weight, bias], **_theirs(kwargs, tdtype))
    theirs = []
    for _ in range(STEPS):
        opt.zero_grad()
        torch.mean((xt @ weight.T + bias - yt) ** 2).backward()
        for p in (weight, bias):
            p.grad = p.grad.to_sparse()
        opt.step()
        theirs.append(np.concatenate([weight.detach().numpy().reshape(-1), bias.detach().numpy()]))
    ours, _ = _jax_regression(jro.sparse_adam(**_ours(kwargs)), (x, y, weight0, bias0), dtype)
    theirs = np.array(theirs)
    assert np.max(np.abs(theirs[-1] - theirs[0])) > 1e-3, "must move"
    dev = max_relative_deviation(ours, theirs)
    assert dev <= (F64_RTOL if dtype == np.float64 else F32_RTOL), dev / np.finfo(dtype).eps


def _jax_regression(tx, problem, dtype):
    x, y, weight0, bias0 = (jnp.asarray(a, dtype) for a in problem)
    params = {"weight": weight0, "bias": bias0}

    @jax.jit
    def run(params, state):
        def loss(p):
            return jnp.mean((x @ p["weight"].T + p["bias"][None, :] - y) ** 2)

        def step(carry, _):
            p, s = carry
            updates, s = tx.update(jax.grad(loss)(p), s, p)
            p = optax.apply_updates(p, updates)
            return (p, s), jnp.concatenate([p["weight"].reshape(-1), p["bias"]])

        return jax.lax.scan(step, (params, state), None, length=STEPS)

    (_, state), rows = run(params, tx.init(params))
    return np.asarray(rows), state


def test_torchs_configurations_are_covered():
    assert len(TORCH_CASES) >= 4


def test_torch_refuses_dense_gradients_which_is_why_the_reference_sparsifies_them():
    param = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SparseAdam([param])
    param.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients"):
        opt.step()


def test_arguments_and_defaults_are_torchs():
    ours = inspect.signature(jro.sparse_adam).parameters
    theirs = inspect.signature(torch.optim.SparseAdam).parameters
    assert list(ours) == [n for n in theirs if n != "params"]
    for name, param in ours.items():
        assert param.default == theirs[name].default, name


BAD = [
    {"lr": 0.0},
    {"lr": -1e-3},
    {"eps": 0.0},
    {"lr": 1e-2, "betas": (1.0, 0.0)},
    {"betas": (0.9, 1.0)},
]


@pytest.mark.parametrize("kwargs", BAD, ids=str)
def test_bad_hyperparameters_raise_torchs_error(kwargs):
    with pytest.raises(ValueError) as theirs:
        optim_ref.make_torch_optimizer("SparseAdam", kwargs)
    with pytest.raises(ValueError) as ours:
        jro.sparse_adam(**kwargs)
    assert str(ours.value) == str(theirs.value)


def test_numbers_are_not_part_of_the_identity():
    assert jro.sparse_adam(lr=0.1, betas=(0.5, 0.6)) == jro.sparse_adam()
    assert jro.sparse_adam(maximize=True) != jro.sparse_adam()
