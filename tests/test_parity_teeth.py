"""The comparison has teeth: a deliberately wrong jaxreg fails, the right one passes.

Three errors far smaller than any a port would make by accident, applied on the jax side
only (`parity.Perturbation`): a learning rate off by 0.1%, every prediction off by 1e-4,
the loss scaled by 1.0001. Each must turn PASS into FAIL on the scenarios it is relevant
to. The one exemption, and why, is in `parity.tolerances`: in the float32 Celsius run the
targets are ~50, so a 1e-4 offset is a 2e-6 relative change, inside float32's own error
for that run; its float64 twin must (and does) catch it.
"""

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import jaxreg as jr
import parity
from parity import Perturbation

ROOT = Path(__file__).resolve().parents[1]

TRAINING = [
    "t1-line-optim-sgd-f32",
    "t2-line-nn-module-f64",
    "t4-mv-manual-data-f32",
    "t4-nn-linear-mseloss-view-as-f64",
    "t5a-real-sum-manual-f32",
    "t5g-real-tensors-optim-sgd-b-w-f64",
    "t7-celsius-broadcast-no-grad-f64",
    "m-sgd-nesterov-linear-smooth_l1-CosineAnnealingLR-full-f64",
    "m-adam-amsgrad-linear-huber-const-mb16-f64",
    "m-adamw-amsgrad-logits-bce_with_logits-ExponentialLR-mb16-f32",
    "m-rmsprop-momentum-logistic-bce-const-full-f64",
    "m-adagrad-weight_decay-eps-logits-bce_with_logits-CosineAnnealingLR-full-f32",
]
LESSONS = ["t3-lesson-grad-2w2+5-f32", "t4-lesson-grad-sum-mv-f64"]

PERTURBATIONS = {
    "lr off 0.1%": Perturbation(lr_factor=1.001),
    "prediction off 1e-4": Perturbation(pred_offset=1e-4),
    "loss scaled 1.0001": Perturbation(loss_scale=1.0001),
}


@pytest.mark.parametrize("name", TRAINING)
@pytest.mark.parametrize("what", list(PERTURBATIONS))
def test_perturbed_jaxreg_fails(name, what):
    scenario = parity.get(name)
    assert parity.run(scenario).passed
    res = parity.run(scenario, perturb=PERTURBATIONS[what])
    assert not res.passed, f"{what} went unnoticed: {res.comparison.summary()}"


@pytest.mark.parametrize("name", LESSONS)
def test_perturbed_lesson_value_fails(name):
    res = parity.run(parity.get(name), perturb=PERTURBATIONS["loss scaled 1.0001"])
    assert not res.passed


def test_float32_celsius_prediction_offset_is_below_float32_resolution():
    """The documented exemption: measured, not assumed; its float64 twin catches it."""
    res = parity.run(
        parity.get("t7-celsius-broadcast-no-grad-f32"), perturb=PERTURBATIONS["prediction off 1e-4"]
    )
    assert res.comparison.max_rel < 1e-4 / 50 * 3  # ~ offset / |target|
    twin = parity.run(
        parity.get("t7-celsius-broadcast-no-grad-f64"), perturb=PERTURBATIONS["prediction off 1e-4"]
    )
    assert not twin.passed


@pytest.fixture
def fresh_traces():
    """jit caches key on the objective, not on the functions it calls: a replaced
    `linear.predict` inside an unchanged `logistic.predict` needs a new trace, and the
    traces made with the replacement must not outlive the test."""
    jax.clear_caches()
    yield
    jax.clear_caches()


def test_replacing_jaxreg_linear_predict_is_noticed(fresh_traces, monkeypatch):
    """The jax side really calls jaxreg: a wrong `jaxreg.linear.predict` fails linear and
    logistic scenarios alike (logistic.predict goes through it)."""
    right = jr.linear.predict

    def wrong(params, x):
        return right(params, x) * (1 + 1e-4)

    names = ["t5d-real-nn-linear-optim-sgd-f32", "m-adam-logistic-bce-StepLR-full-f64"]
    assert all(parity.run(parity.get(n)).passed for n in names)
    monkeypatch.setattr(jr.linear, "predict", wrong)
    for n in names:
        assert not parity.run(parity.get(n)).passed, n


def test_replacing_a_jaxreg_loss_is_noticed(fresh_traces, monkeypatch):
    right = jr.losses.mse
    monkeypatch.setattr(
        jr.losses, "mse", lambda p, t, **kw: right(p, t, **kw) * jnp.float32(1.0001)
    )
    assert not parity.run(parity.get("t5d-real-nn-linear-optim-sgd-f32")).passed


def test_cli_perturb_fails_with_exit_status_1():
    out = subprocess.run(
        [sys.executable, "-m", "parity", "--only", "t5g-*", "--perturb", "lr=1.001"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.count("FAIL") >= 2 and "perturbed" in out.stdout
