"""parity.verify: a user's own torch program against their jaxreg port."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxreg as jr
import parity

MSE = jr.objective(jr.linear.predict, jr.losses.mse)


def _data(n=40, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(dtype)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) - 1.0 + 0.1 * rng.normal(size=(n, 1))).astype(dtype)
    return x, y


def _model(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 1).to(dtype)


def test_a_faithful_port_passes():
    x, y = _data()
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    cmp = parity.verify(model, F.mse_loss, opt, MSE, jr.optim.adam(lr=0.01), x, y, steps=50)
    assert cmp.passed and cmp.steps == 50, cmp.summary()
    assert set(cmp.deviations) == {"loss", "weight", "bias"}
    assert cmp.tolerance.name == "float64"
    assert cmp.raise_if_failed() is cmp


def test_minibatches_and_schedule_float32():
    x, y = _data(50, np.float32)
    model = _model(torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    cmp = parity.verify(
        model,
        F.mse_loss,
        opt,
        MSE,
        jr.optim.sgd(lr=0.05, momentum=0.9),
        x,
        y,
        epochs=8,
        batch_size=16,
        seed=3,
        torch_scheduler=sched,
        jax_schedule=jr.schedules.StepLR(3, 0.5),
    )
    assert cmp.steps == 8 * 4 and cmp.passed, cmp.summary()
    assert cmp.tolerance.name == "float32-sgd"


def test_a_wrong_port_fails_and_says_where():
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cmp = parity.verify(model, F.mse_loss, opt, MSE, jr.optim.sgd(lr=0.1001), x, y, steps=20)
    assert not cmp.passed
    with pytest.raises(parity.ParityError, match="verify: FAIL"):
        cmp.raise_if_failed()


def test_dict_params_by_torch_names_and_explicit_tolerance():
    class Line(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
            self.b = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))

        def forward(self, x):
            return x * self.w + self.b

    def loss_fn(p, x, y):
        return jr.losses.mse(x * p["w"][None, :] + p["b"][None, :], y)

    x, y = _data()
    x, y = x[:, :1], y
    model = Line()
    params = {"w": np.array([0.5]), "b": np.array([0.0])}
    opt = torch.optim.SGD([model.w, model.b], lr=0.1)
    cmp = parity.verify(
        model,
        F.mse_loss,
        opt,
        loss_fn,
        jr.optim.sgd(lr=0.1),
        x,
        y,
        steps=30,
        params=params,
        tolerance=1e-13,
    )
    assert cmp.passed and cmp.tolerance.rtol == 1e-13, cmp.summary()
    assert set(cmp.deviations) == {"loss", "w", "b"}


def test_a_scenario_can_be_verified():
    assert parity.verify(parity.get("t5b-real-mean-manual-f64")).passed


def test_bad_calls():
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="steps="):
        parity.verify(model, F.mse_loss, opt, MSE, jr.optim.sgd(lr=0.1), x, y)
    with pytest.raises(ValueError, match="named_parameters"):
        parity.verify(
            model,
            F.mse_loss,
            opt,
            MSE,
            jr.optim.sgd(lr=0.1),
            x,
            y,
            steps=2,
            params={"nope": np.zeros(1)},
        )
