"""Teacher forcing and the diagnosis of a wrong port (`parity.teacher`, `parity.verify`).

Each wrong port below is one a porter makes; each test asserts that the message names
the cause. Where the preflight can read the setting it refuses the port first
(`test_the_preflight_names_the_cause`); with `check_settings=False` (a port whose settings
parity cannot read) teacher forcing finds the first step and the component. The chaotic
case is a correct port whose free run drifts: it is reported as amplified rounding.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

import jaxreg as jr
import parity
from parity.names import NameMapError
from parity.preflight import SettingsError
from parity.testing import assert_port_matches

MSE = jr.objective(jr.linear.predict, jr.losses.mse)
BCE = jr.objective(jr.logistic.predict, jr.losses.bce)


def _data(n=40, d=3, out=1, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(dtype)
    w = rng.normal(size=(d, out))
    return x, (x @ w - 1.0 + 0.1 * rng.normal(size=(n, out))).astype(dtype)


def _linear(d=3, out=1, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(d, out).to(dtype)


def _chaotic():
    """A correct float64 RMSprop port on sigmoid + BCE whose free run drifts (found among
    60 random configurations: 16 drift past 1e-12; this one to ~1.5e-4 in 100 steps)."""
    rng = np.random.default_rng(6)
    n, d = int(rng.integers(20, 200)), int(rng.integers(1, 6))
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3)
    w = rng.normal(size=(d,)) * 2
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x @ w)))).astype(np.float64).reshape(n, 1)
    lr, alpha = float(10 ** rng.uniform(-3, -0.5)), float(rng.choice([0.9, 0.99]))
    torch.manual_seed(6)
    model = torch.nn.Sequential(torch.nn.Linear(d, 1), torch.nn.Sigmoid()).double()
    opt = torch.optim.RMSprop(model.parameters(), lr=lr, alpha=alpha)
    tx = jr.optim.rmsprop(lr=lr, alpha=alpha)
    return parity.verify(model, F.binary_cross_entropy, opt, BCE, tx, x, y, steps=100)


def test_a_chaotic_correct_port_is_reported_as_amplified_rounding():
    cmp = _chaotic()
    assert not cmp.free_passed and cmp.max_rel > 1e-6  # the free run alone would fail it
    assert cmp.teacher.passed and cmp.passed and cmp.amplified
    assert cmp.teacher.max_rel < 1e-14  # every step within a few u
    g = cmp.growth_factor()
    assert g is not None and g > 1.05
    text = cmp.summary()
    assert "PASS (amplified): each step agrees to within rounding" in text
    assert "the dynamics amplify it (growth factor" in text
    assert "first over tolerance: " in text and f"at step {cmp.first_failing_step} " in text
    cmp.raise_if_failed()


def test_the_summary_names_the_first_step_over_tolerance_not_the_worst():
    cmp = _chaotic()
    first = cmp.first_failing_step
    worst = cmp.worst.worst_step
    assert first is not None and first < worst
    assert f"at step {first} " in cmp.summary() and f"worst: {cmp.worst.name} at step {worst} " in (
        cmp.summary()
    )


def test_a_faithful_port_agrees_at_every_teacher_forced_step():
    x, y = _data()
    model = _linear()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    cmp = parity.verify(
        model, F.mse_loss, opt, MSE, jr.optim.adam(lr=0.01, amsgrad=True), x, y, steps=30
    )
    t = cmp.teacher
    assert cmp.passed and cmp.free_passed and t.passed, cmp.summary()
    assert list(t.groups) == ["predictions", "loss", "gradients", "optimizer update"]
    assert {"state.exp_avg[weight]", "state.max_exp_avg_sq[bias]", "update[weight]"} <= set(
        t.deviations
    )
    assert "every teacher-forced step agrees" in cmp.summary()


def _wrong(torch_opt, jax_tx, *, loss=MSE, steps=6, sched=None, **kw):
    x, y = _data()
    model = _linear()
    opt = torch_opt(model.parameters())
    ts = None if sched is None else sched(opt)
    return parity.verify(
        model,
        F.mse_loss,
        opt,
        loss,
        jax_tx,
        x,
        y,
        steps=steps,
        torch_scheduler=ts,
        check_settings=False,
        **kw,
    )


def _sum_loss(params, x, y):
    return jr.losses.mse(jr.linear.predict(params, x), y, reduction="sum")


WRONG = {
    "lr": (
        dict(torch_opt=lambda p: torch.optim.SGD(p, lr=0.01), jax_tx=jr.optim.sgd(lr=0.011)),
        0,
        r"the optimizer update differs .*learning rate at step 0: torch 0.01, jax 0.011",
    ),
    "missing schedule": (
        dict(
            torch_opt=lambda p: torch.optim.SGD(p, lr=0.01),
            jax_tx=jr.optim.sgd(lr=0.01),
            sched=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
        ),
        2,
        r"learning rate at step 2: torch 0.005, jax 0.01 \(it agreed before: a schedule "
        r"missing or different",
    ),
    "loss reduction": (
        dict(
            torch_opt=lambda p: torch.optim.SGD(p, lr=0.01),
            jax_tx=jr.optim.sgd(lr=0.01),
            loss=_sum_loss,
        ),
        0,
        r"the loss differs .*: jax's loss is 40 x torch's .*a sum where torch takes the mean",
    ),
    "betas": (
        dict(
            torch_opt=lambda p: torch.optim.Adam(p, lr=0.01),
            jax_tx=jr.optim.adam(lr=0.01, betas=(0.8, 0.999)),
        ),
        0,
        r"(?s)the optimizer update differs .*betas: torch Adam has \(0.9, 0.999\)",
    ),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_teacher_forcing_names_the_step_the_component_and_the_cause(case):
    kw, step, message = WRONG[case]
    cmp = _wrong(**kw)
    assert not cmp.passed and cmp.teacher.first_failing_step == step
    assert f"FAIL: implementation differs at step {step} (steps from 0)" in cmp.summary()
    assert cmp.teacher.diagnosis and re.search(message, cmp.summary()), cmp.summary()
    with pytest.raises(AssertionError, match=message):
        assert_port_matches(**_assert_args(case))


def _assert_args(case):
    kw, _, _ = WRONG[case]
    x, y = _data()
    model = _linear()
    opt = kw["torch_opt"](model.parameters())
    sched = kw.get("sched")
    return dict(
        torch_model=model,
        torch_loss_fn=F.mse_loss,
        torch_optimizer=opt,
        jax_loss_fn=kw.get("loss", MSE),
        jax_tx=kw["jax_tx"],
        x=x,
        y=y,
        steps=6,
        torch_scheduler=None if sched is None else sched(opt),
        check_settings=False,
    )


@pytest.mark.parametrize(
    ("torch_opt", "jax_tx", "sched", "loss", "message"),
    [
        (
            lambda p: torch.optim.SGD(p, lr=0.01),
            jr.optim.sgd(lr=0.011),
            None,
            MSE,
            r"lr: torch SGD has 0.01",
        ),
        (
            lambda p: torch.optim.SGD(p, lr=0.01),
            jr.optim.sgd(lr=0.01),
            lambda o: torch.optim.lr_scheduler.StepLR(o, 2),
            MSE,
            r"torch_scheduler is StepLR but jax_schedule is None",
        ),
        (
            lambda p: torch.optim.SGD(p, lr=0.01),
            jr.optim.sgd(lr=0.01),
            None,
            jr.objective(jr.linear.predict, jr.losses.sse),
            r"reduction: torch 'mean', jaxreg 'sum'",
        ),
        (
            lambda p: torch.optim.Adam(p),
            jr.optim.adam(betas=(0.8, 0.999)),
            None,
            MSE,
            r"betas: torch Adam has \(0.9, 0.999\)",
        ),
    ],
    ids=["lr", "missing schedule", "loss reduction", "betas"],
)
def test_the_preflight_names_the_cause(torch_opt, jax_tx, sched, loss, message):
    x, y = _data()
    model = _linear()
    opt = torch_opt(model.parameters())
    kw = dict(torch_scheduler=None if sched is None else sched(opt))
    with pytest.raises(SettingsError, match=message):
        parity.verify(model, F.mse_loss, opt, loss, jax_tx, x, y, steps=3, **kw)
    with pytest.raises(AssertionError, match=message):
        assert_port_matches(model, F.mse_loss, opt, loss, jax_tx, x, y, steps=3, **kw)


def test_a_transposed_weight_is_named():
    x, y = _data(d=3, out=1)
    model = _linear()
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    params = jr.linear.Params(np.array(w.T), np.array(b))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(NameMapError, match=r"weight.*\(1, 3\).*\(3, 1\): it is torch's transposed"):
        parity.verify(
            model, F.mse_loss, opt, MSE, jr.optim.sgd(lr=0.01), x, y, steps=3, params=params
        )
    # square: the shapes cannot tell; the starting values can
    x, y = _data(d=3, out=3)
    model = _linear(3, 3)
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(SettingsError, match=r"weight is torch's transposed"):
        parity.verify(
            model,
            F.mse_loss,
            opt,
            MSE,
            jr.optim.sgd(lr=0.01),
            x,
            y,
            steps=3,
            params=jr.linear.Params(np.array(w.T), np.array(b)),
        )


def test_a_predict_that_reads_the_weight_transposed_is_named():
    x, y = _data(d=3, out=3)
    model = _linear(3, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def predict(params, x):  # the porter's bug: x @ W where torch computes x @ W.T
        return x @ params.weight + params.bias[None, :]

    loss = jr.objective(predict, jr.losses.mse)
    cmp = parity.verify(model, F.mse_loss, opt, loss, jr.optim.sgd(lr=0.01), x, y, steps=3)
    assert not cmp.passed and cmp.teacher.first_failing_step == 0
    assert "the predictions differ" in cmp.summary()
    assert "they are torch's with weight transposed" in cmp.summary()


def test_a_missing_bias_is_named():
    x, y = _data()
    model = _linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    params = jr.linear.Params(np.array(model.weight.detach().numpy()), None)
    with pytest.raises(NameMapError, match=r"trains \['bias'\].*a missing bias"):
        parity.verify(
            model, F.mse_loss, opt, MSE, jr.optim.sgd(lr=0.01), x, y, steps=3, params=params
        )


class TwoLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.out = torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.fc(x)))


def _flax_style(model):
    """The model as a user's pytree: kernels (in, out), as flax lays them out."""
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return {
        "hidden": {"kernel": sd["fc.weight"].T, "bias": sd["fc.bias"]},
        "out": {"kernel": sd["out.weight"].T, "bias": sd["out.bias"]},
    }


def _mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"][None, :])
    return jnp.mean((h @ params["out"]["kernel"] + params["out"]["bias"][None, :] - y) ** 2)


NAMES = {
    "fc.weight": "hidden.kernel",
    "fc.bias": "hidden.bias",
    "out.weight": "out.kernel",
    "out.bias": "out.bias",
}


def test_any_module_any_pytree_and_a_users_optax_step():
    x, y = _data()
    torch.manual_seed(0)
    model = TwoLayer().double()
    params = _flax_style(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tx = jr.optim.sgd(lr=0.05, momentum=0.9)
    cmp = parity.verify(
        model,
        F.mse_loss,
        opt,
        _mlp_loss,
        tx,
        x,
        y,
        steps=20,
        params=params,
        param_names=NAMES,
        check_settings=False,
    )
    assert cmp.passed and cmp.free_passed, cmp.summary()
    assert set(cmp.deviations) == {"loss", *NAMES}

    # the same port as the user's own step function (their optax loop)
    torch.manual_seed(0)
    model = TwoLayer().double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step = jax_step(_mlp_loss, tx)
    cmp = parity.verify(
        model,
        F.mse_loss,
        opt,
        None,
        None,
        x,
        y,
        steps=20,
        params=params,
        param_names=NAMES,
        jax_step=step,
        jax_opt_state=tx.init(params),
    )
    assert cmp.passed and cmp.teacher.passed, cmp.summary()
    assert list(cmp.teacher.groups) == ["step"]
    assert "state.momentum_buffer[fc.weight]" in cmp.teacher.deviations

    torch.manual_seed(0)
    model = TwoLayer().double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    bad = jr.optim.sgd(lr=0.05, momentum=0.8)
    cmp = parity.verify(
        model,
        F.mse_loss,
        opt,
        None,
        None,
        x,
        y,
        steps=20,
        params=params,
        param_names=NAMES,
        jax_step=jax_step(_mlp_loss, bad),
        jax_opt_state=bad.init(params),
    )
    assert not cmp.passed and cmp.teacher.first_failing_step == 1  # momentum acts from step 1
    assert "implementation differs at step 1" in cmp.summary()
    assert "the step differs" in cmp.summary()


def jax_step(loss_fn, tx):
    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def test_comparison_plot_writes_a_png(tmp_path):
    cmp = _wrong(**WRONG["lr"][0])
    path = cmp.plot(tmp_path / "cmp.png")
    data = (tmp_path / "cmp.png").read_bytes()
    assert path == tmp_path / "cmp.png" and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_assert_port_matches_passes_a_faithful_port():
    x, y = _data()
    model = _linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    cmp = assert_port_matches(model, F.mse_loss, opt, MSE, jr.optim.sgd(lr=0.05), x, y, steps=5)
    assert cmp.passed


def test_an_optax_transformation_is_teacher_forced_and_a_wrong_lr_named():
    """jax_tx=optax.adam: its ScaleByAdamState is filled with torch's exp_avg, exp_avg_sq
    and step (`parity.optax_state`), so the optimizer is teacher-forced too."""
    x, y = _data()
    model = _linear()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    cmp = parity.verify(
        model, F.mse_loss, opt, MSE, optax.adam(0.011), x, y, steps=10, check_settings=False
    )
    assert cmp.teacher.complete and cmp.teacher.first_failing_step == 0
    assert not cmp.passed and not cmp.amplified
    assert "implementation differs at step 0" in cmp.summary()
    assert "a learning rate of 0.011 where torch's lr is 0.01" in cmp.summary()
