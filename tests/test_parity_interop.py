"""parity.interop: torch nn.Linear / state dicts <-> jaxreg Params, exact both ways."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxreg as jr
from parity.interop import find_linear, params_from_torch, params_to_torch


class Wrapped(torch.nn.Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x):
        return self.linear(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (4, 2)])
def test_round_trip_is_bit_exact(dtype, bias, shape):
    torch.manual_seed(0)
    layer = torch.nn.Linear(*shape, bias=bias).to(dtype)
    params = params_from_torch(layer)
    assert isinstance(params, jr.linear.Params)
    assert params.weight.shape == (shape[1], shape[0])
    assert params.weight.dtype == (jnp.float32 if dtype == torch.float32 else jnp.float64)
    assert (params.bias is None) == (not bias)
    sd = params_to_torch(params)
    assert set(sd) == ({"weight", "bias"} if bias else {"weight"})
    for name, value in sd.items():
        assert value.dtype == dtype
        assert torch.equal(value, getattr(layer, name).detach())


def test_same_predictions_as_torch():
    torch.manual_seed(1)
    layer = torch.nn.Linear(3, 2).double()
    x = np.random.default_rng(0).normal(size=(5, 3))
    ours = jr.linear.predict(params_from_torch(layer), jnp.asarray(x))
    theirs = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-15, atol=0)


def test_module_and_state_dict_with_prefix():
    torch.manual_seed(2)
    model = Wrapped(2, 1)
    a = params_from_torch(model)
    b = params_from_torch(model.state_dict())  # keys "linear.weight", "linear.bias"
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert find_linear(model) is model.linear


def test_dtype_argument_converts():
    layer = torch.nn.Linear(2, 1)
    assert params_from_torch(layer, dtype=jnp.float64).weight.dtype == jnp.float64


def test_params_to_torch_loads_into_module_in_place():
    torch.manual_seed(3)
    model = Wrapped(3, 1)
    weight_tensor = model.linear.weight
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    new = jr.linear.Params(jnp.arange(3.0, dtype=jnp.float32)[None], jnp.array([7.0], jnp.float32))
    assert params_to_torch(new, model) is model
    assert model.linear.weight is weight_tensor  # the optimizer still holds the same tensor
    assert opt.param_groups[0]["params"][0] is weight_tensor
    assert model.linear.weight.tolist() == [[0.0, 1.0, 2.0]]
    assert model.linear.bias.tolist() == [7.0]


def test_errors_are_clear():
    two = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match=r"2 nn\.Linear layers"):
        params_from_torch(two)
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        params_from_torch(torch.nn.ReLU())
    with pytest.raises(TypeError, match=r"nn\.Module or a state dict"):
        params_from_torch([1, 2])
    with pytest.raises(ValueError, match="exactly one"):
        params_from_torch({"bias": torch.zeros(1)})
    with pytest.raises(ValueError, match="not one linear layer"):
        params_from_torch({"weight": torch.zeros(1, 2), "other": torch.zeros(1)})
    layer = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="shape"):
        params_to_torch(jr.linear.Params(jnp.zeros((1, 3)), jnp.zeros(1)), layer)
    with pytest.raises(ValueError, match="bias"):
        params_to_torch(jr.linear.Params(jnp.zeros((1, 2)), None), layer)
    with pytest.raises(TypeError, match="float32"):  # no silent float64 -> float32
        params_to_torch(
            jr.linear.Params(jnp.zeros((1, 2), jnp.float64), jnp.zeros(1, jnp.float64)), layer
        )
