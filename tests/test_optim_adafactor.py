"""`jaxreg.optim.adafactor` against `torch.optim.Adafactor` (torch 2.13, CPU).

The comparisons of `test_optim_more.py` (regression: nn.Linear's (1, 3) weight, factored,
and its bias, a vector; gradient stream: a vector) plus a gradient stream on a (3, 4)
matrix, where the row and column factors are not trivial. Configurations: torch's own
(`optim_db`'s `optim_inputs_func` for Adafactor) plus ours. Deviation: `max_t ||ours_t -
torch_t||_inf / ||torch_t||_inf`, in ulps of the dtype.
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp
import numpy as np
import optax
import optim_ref
import pytest
import torch
from optim_ref import F32_EPS, F64_EPS
from test_optim import STEPS, jax_trajectories, max_relative_deviation

from jaxreg import optim as jro

# Both sides round each operation in the same order; what differs is the norms' summation
# order (torch's vectorised reduction against XLA's), torch's CPU sqrt in float32 (not
# correctly rounded), C `pow` against XLA's for `t ** beta2_decay`, and, in regression,
# the gradients' own last bits. Measured worst: 4.1 eps in float64 (weight_decay and
# maximize, regression), 5.9 eps in float32 (the same, gradient stream). Tolerances: 16 eps
# in float64, 32 eps in float32, as `test_optim_more.py`.
F64_RTOL = 16 * F64_EPS
F32_RTOL = 32 * F32_EPS


TORCH_CASES = optim_ref.torch_configurations("Adafactor")
OUR_CASES = [
    {"lr": 0.05, "eps": (1e-3, 1e-2), "d": 2.0},
    {"lr": 0.02, "beta2_decay": -0.5, "weight_decay": 0.05, "maximize": True},
]
CASES = [pytest.param(k, id=str(k)) for k in TORCH_CASES + OUR_CASES]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", CASES)
def test_trajectories_match_torch(kwargs, dtype):
    problem = optim_ref.regression_problem()
    params0, grads = optim_ref.gradient_stream(STEPS, 4)
    ref_regression = optim_ref.torch_regression("Adafactor", kwargs, problem, dtype, STEPS)
    ref_stream = optim_ref.torch_stream("Adafactor", kwargs, params0, grads, dtype)
    regression, stream = jax_trajectories(jro.adafactor, kwargs, problem, params0, grads, dtype)
    moved = max(np.max(np.abs(ref[-1] - ref[0])) for ref in (ref_regression, ref_stream))
    assert moved > 1e-3, "must move"
    rtol = F64_RTOL if dtype == np.float64 else F32_RTOL
    for what, ours, ref in [
        ("regression", regression, ref_regression),
        ("stream", stream, ref_stream),
    ]:
        dev = max_relative_deviation(ours, ref)
        assert dev <= rtol, f"{what}: {dev / np.finfo(dtype).eps:.1f} eps"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", CASES)
def test_a_matrix_parameter_matches_torch(kwargs, dtype):
    """A (3, 4) parameter: torch's factored second moment (row and column factors)."""
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal((3, 4)).astype(dtype)
    grads = (rng.standard_normal((60, 3, 4)) * np.exp(rng.standard_normal((60, 1, 1)))).astype(
        dtype
    )
    param = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.Adafactor([param], **kwargs)
    theirs = []
    for g in grads:
        param.grad = torch.tensor(g)
        opt.step()
        theirs.append(param.detach().numpy().reshape(-1).copy())
    tx = jro.adafactor(**kwargs)
    params = jnp.asarray(p0)
    state = tx.init(params)
    ours = []
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        ours.append(np.asarray(params).reshape(-1))
    dev = max_relative_deviation(np.array(ours), np.array(theirs))
    assert dev <= (F64_RTOL if dtype == np.float64 else F32_RTOL), dev / np.finfo(dtype).eps
    torch_state = opt.state[param]
    np.testing.assert_allclose(state.inner.row_var, torch_state["row_var"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(state.inner.col_var, torch_state["col_var"].numpy(), rtol=1e-5)


def test_torchs_configurations_are_covered():
    assert len(TORCH_CASES) >= 5


def test_arguments_and_defaults_are_torchs():
    ours = inspect.signature(jro.adafactor).parameters
    theirs = inspect.signature(torch.optim.Adafactor).parameters
    assert list(ours) == [n for n in theirs if n in ours]
    for name, param in ours.items():
        assert param.default == theirs[name].default, name
        assert param.kind == theirs[name].kind, name


BAD = [
    {"lr": -0.01},
    {"beta2_decay": 0.8},
    {"eps": (-1e-30, 1e-3)},
    {"eps": (None, -1.0)},
    {"d": 0.0},
    {"weight_decay": -0.1},
]


@pytest.mark.parametrize("kwargs", BAD, ids=str)
def test_bad_hyperparameters_raise_torchs_error(kwargs):
    with pytest.raises(ValueError) as theirs:
        optim_ref.make_torch_optimizer("Adafactor", kwargs)
    with pytest.raises(ValueError) as ours:
        jro.adafactor(**kwargs)
    assert str(ours.value) == str(theirs.value)


def test_the_tensor_lr_rule_is_torchs():
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        jro.adafactor(lr=np.array([0.01, 0.01]))


def test_update_needs_params():
    params = jnp.ones(3)
    tx = jro.adafactor()
    with pytest.raises(ValueError, match=r"needs params"):
        tx.update(params, tx.init(params))


def test_numbers_are_not_part_of_the_identity():
    assert jro.adafactor(lr=0.1, d=2.0) == jro.adafactor()
    assert jro.adafactor(eps=(1e-3, 1e-3)) != jro.adafactor()
    assert jro.adafactor(weight_decay=0.1) != jro.adafactor()
