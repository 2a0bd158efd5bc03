"""A port written as the user's own optax loop (`parity.verify(jax_step=...)`).

Teacher forcing fills the user's optax state with torch's optimizer state at every step
(`parity.optax_state`); the preflight checks what a step function lets it read
(`parity.step_preflight`). Each wrong port is one a porter makes with optax; each test
asserts the message names the cause. All in float32, the dtype an optax user trains in.
"""

import dataclasses
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

import parity
from parity import optax_state
from parity.names import build
from parity.preflight import SettingsError


def _data(n=40, d=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=(d, 1)) - 1.0 + 0.1 * rng.normal(size=(n, 1))
    return x.astype(np.float32), y.astype(np.float32)


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def _params(model):
    return {k: v.detach().numpy().copy() for k, v in model.named_parameters()}


def mse(params, x, y):
    return jnp.mean((x @ params["weight"].T + params["bias"][None, :] - y) ** 2)


def sse(params, x, y):
    return jnp.sum((x @ params["weight"].T + params["bias"][None, :] - y) ** 2)


def optax_step(tx, loss_fn=mse):
    """The training step an optax user writes."""

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


ADAM = (torch.optim.Adam, {"lr": 0.01})
SGD_MOMENTUM = (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9})


def _verify(torch_opt, tx, *, loss_fn=mse, steps=10, **kwargs):
    x, y = _data()
    model = _model()
    opt = torch_opt[0](model.parameters(), **torch_opt[1])
    params = _params(model)
    return parity.verify(
        model,
        F.mse_loss,
        opt,
        None,
        None,
        x,
        y,
        steps=steps,
        params=params,
        jax_step=kwargs.pop("jax_step", None) or optax_step(tx, loss_fn),
        jax_opt_state=kwargs.pop("jax_opt_state", None) or tx.init(params),
        **kwargs,
    )


@pytest.mark.parametrize(
    "torch_opt, tx, buffer",
    [
        (ADAM, optax.adam(0.01), "exp_avg_sq"),
        (SGD_MOMENTUM, optax.sgd(0.05, momentum=0.9), "momentum_buffer"),
    ],
    ids=["adam", "sgd-momentum"],
)
def test_a_correct_optax_port_is_teacher_forced_optimizer_state_included(torch_opt, tx, buffer):
    cmp = _verify(torch_opt, tx)
    assert cmp.passed and cmp.teacher.complete and cmp.teacher.passed, cmp.summary()
    assert f"state.{buffer}[weight]" in cmp.teacher.deviations  # torch's buffer went in
    assert "not checked: the hyperparameters" in cmp.summary()  # optax.adam's closure


WRONG = {
    "b2": (
        ADAM,
        optax.adam(0.01, b2=0.99),
        0,
        "the port's exp_avg_sq (optax's b2) moves with b2 = 0.99 where torch's betas[1] is 0.999",
    ),
    "b1": (
        ADAM,
        optax.adam(0.01, b1=0.8),
        0,
        "moves with b1 = 0.8 where torch's betas[0] is 0.9",
    ),
    "lr": (
        ADAM,
        optax.adam(0.011),
        0,
        "a learning rate of 0.011 where torch's lr is 0.01",
    ),
    "momentum": (  # momentum acts from step 1: at step 0 both buffers are the gradient
        SGD_MOMENTUM,
        optax.sgd(0.05, momentum=0.8),
        1,
        "moves with momentum = 0.8 where torch's momentum is 0.9",
    ),
    "sgd lr": (SGD_MOMENTUM, optax.sgd(0.1, momentum=0.9), 0, "a learning rate of 0.1 "),
    "adagrad initial accumulator": (  # optax's default 0.1, torch's 0: caught at step 0
        (torch.optim.Adagrad, {"lr": 0.1}),
        optax.adagrad(0.1),
        0,
        "is not torch's (0): it initialises its optimizer state differently",
    ),
    "adamw weight decay": (  # optax's default 1e-4, torch's 0.01: 1e-4 of a parameter
        (torch.optim.AdamW, {"lr": 0.01}),
        optax.adamw(0.01),
        0,
        "not by one factor: its update rule, or a setting other than the learning rate",
    ),
}


@pytest.mark.parametrize("case", WRONG)
def test_a_wrong_optax_port_is_diagnosed_with_its_cause(case):
    torch_opt, tx, step, cause = WRONG[case]
    cmp = _verify(torch_opt, tx)
    assert not cmp.passed and cmp.teacher.first_failing_step == step
    text = cmp.summary()
    assert f"implementation differs at step {step}" in text and "the step differs" in text
    # the factor is recovered from float32 numbers: compare it to 4 significant digits
    found = re.sub(r"(\d\.\d{4})\d*", r"\1", text)
    assert re.sub(r"(\d\.\d{4})\d*", r"\1", cause) in found, text


def test_a_wrong_loss_reduction_is_found_before_training_and_by_teacher_forcing():
    with pytest.raises(SettingsError, match=r"a sum where torch takes the mean"):
        _verify(ADAM, optax.adam(0.01), loss_fn=sse)
    cmp = _verify(ADAM, optax.adam(0.01), loss_fn=sse, check_settings=False)
    assert cmp.teacher.first_failing_step == 0
    assert "the step's loss is 40 x torch's (the batch's element count)" in cmp.summary()


def test_inject_hyperparams_are_checked_before_training():
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.01, b2=0.99)
    with pytest.raises(
        SettingsError, match=r"b2: torch Adam's betas\[1\] is 0.999, the port's 0.99"
    ):
        _verify(ADAM, tx)
    cmp = _verify(ADAM, tx, check_settings=False)  # teacher forcing names it as well
    assert "b2: torch Adam's betas[1] is 0.999" in cmp.teacher.diagnosis
    good = optax.inject_hyperparams(optax.adam)(learning_rate=0.01)
    cmp = _verify(ADAM, good)
    assert cmp.passed and "not checked" not in cmp.summary(), cmp.summary()


@pytest.mark.parametrize(
    "torch_opt, tx, message",
    [
        (ADAM, optax.sgd(0.01), "torch's optimizer is Adam, whose state optax keeps in"),
        (SGD_MOMENTUM, optax.sgd(0.05), "momentum=0.9 but the port's state keeps no momentum"),
        (
            (torch.optim.Adam, {"lr": 0.01, "amsgrad": True}),
            optax.adam(0.01),
            "amsgrad=True but the port's state holds no ScaleByAmsgradState",
        ),
        (
            (torch.optim.RMSprop, {"lr": 0.01, "centered": True}),
            optax.rmsprop(0.01),
            "centered=True but the port's state holds ScaleByRmsState",
        ),
    ],
    ids=["adam-vs-sgd", "no-momentum", "amsgrad", "centered"],
)
def test_another_optimizer_family_is_refused_before_training(torch_opt, tx, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        _verify(torch_opt, tx)


def test_a_state_in_another_dtype_is_refused_before_training():
    tx = optax.adam(0.01, mu_dtype=jnp.bfloat16)
    with pytest.raises(SettingsError, match=r"holds torch's exp_avg of .* as bfloat16"):
        _verify(ADAM, tx)


class TrainState(NamedTuple):
    """Shaped like flax.training.train_state.TrainState (flax is not a dependency)."""

    step: Any
    params: Any
    opt_state: Any


def test_a_flax_train_state_shaped_container_is_filled():
    """The user's step reads everything from its TrainState (params included): teacher
    forcing puts torch's parameters, optimizer state and step count into it."""
    tx = optax.adam(0.01)

    @jax.jit
    def train_step(params, state, x, y):
        del params  # a flax user's step trains state.params
        loss, grads = jax.value_and_grad(mse)(state.params, x, y)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = optax.apply_updates(state.params, updates)
        return new, TrainState(state.step + 1, new, opt_state), loss

    model = _model()
    params = _params(model)
    state = TrainState(jnp.asarray(0), params, tx.init(params))
    cmp = _verify(ADAM, tx, jax_step=train_step, jax_opt_state=state)
    assert cmp.passed and cmp.teacher.complete and cmp.teacher.passed, cmp.summary()
    assert "state.exp_avg[bias]" in cmp.teacher.deviations


class MomentumState(NamedTuple):
    buf: Any


def _my_momentum(lr, momentum):
    """A hand-written optimizer whose state parity.optax_state does not know."""

    def init(params):
        return MomentumState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        buf = jax.tree.map(lambda b, g: momentum * b + g, state.buf, grads)
        return jax.tree.map(lambda b: -lr * b, buf), MomentumState(buf)

    return optax.GradientTransformation(init, update)


def test_an_unknown_state_runs_free_with_a_warning_or_is_filled_by_a_hook():
    tx = _my_momentum(0.05, 0.8)  # wrong momentum
    with pytest.warns(optax_state.NotTeacherForced, match=r"holds a MomentumState at the top"):
        cmp = _verify(SGD_MOMENTUM, tx, check_settings=False)
    assert cmp.teacher is None and not cmp.passed  # the free run decides, and fails
    assert "not checked: teacher forcing of the optimizer" in cmp.summary()

    def hook(template, buffers, step):
        return MomentumState(buffers.get("momentum_buffer", template.buf))

    cmp = _verify(SGD_MOMENTUM, tx, check_settings=False, state_from_torch=hook)
    assert cmp.teacher.complete and cmp.teacher.first_failing_step == 1
    assert "implementation differs at step 1" in cmp.summary()
    good = _my_momentum(0.05, 0.9)
    cmp = _verify(SGD_MOMENTUM, good, check_settings=False, state_from_torch=hook)
    assert cmp.passed and cmp.teacher.complete, cmp.summary()


def test_fill_and_read_walk_chains_inject_hyperparams_and_dataclasses():
    params = {"w": np.ones((2, 3), np.float32), "b": np.ones(2, np.float32)}
    names = build({"w": (2, 3), "b": (2,)}, params)
    torch_state = {
        n: {"step": np.float32(7), "grad_avg": 1 + p, "square_avg": 2 + p, "momentum_buffer": 3 + p}
        for n, p in params.items()
    }

    @dataclasses.dataclass
    class Holder:
        inner: Any
        label: str = "static"

    tx = optax.inject_hyperparams(optax.rmsprop)(learning_rate=0.1, centered=True, momentum=0.9)
    state = Holder(tx.init(params))
    filled = optax_state.fill(state, torch_state, names, 7, params)
    inner = filled.inner.inner_state
    assert int(filled.inner.count) == 7 and filled.label == "static"
    assert np.array_equal(inner[0].mu["w"], torch_state["w"]["grad_avg"])
    assert np.array_equal(inner[0].nu["b"], torch_state["b"]["square_avg"])
    assert np.array_equal(inner[2].trace["w"], torch_state["w"]["momentum_buffer"])
    back = optax_state.read(filled, names)
    assert np.array_equal(back["square_avg"]["w"], torch_state["w"]["square_avg"])
    assert optax_state.kinds(filled)[0] is optax.ScaleByRStdDevState
    assert float(optax_state.hyperparams(filled)["momentum"]) == pytest.approx(0.9)
