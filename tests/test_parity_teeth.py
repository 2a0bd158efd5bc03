"""The comparison has teeth: a deliberately wrong jaxreg fails, the right one passes.

Three errors far smaller than any a port would make by accident, applied on the jax side
only (`parity.Perturbation`): a learning rate off by 0.1%, every prediction off by 1e-4,
the loss scaled by 1.0001. Each must turn PASS into FAIL. The one exemption, and why, is
in `parity.tolerances`: in the float32 Celsius run the targets are ~50, so a 1e-4 offset
is a 2e-6 relative change, inside float32's own error for that run; its float64 twin must
(and does) catch it. `test_every_scenario_has_teeth` runs all three over every scenario
(opt-in: PARITY_ALL_TEETH=1, three full runs).
"""

import functools
import os

import jax
import jax.numpy as jnp
import pytest

import jaxreg as jr
import parity
from parity import NO_PERTURBATION, Perturbation, jax_side, torch_side
from parity import __main__ as cli
from parity.compare import compare
from parity.problem import materialize

TRAINING = [
    "t1-line-optim-sgd-f32",
    "t2-line-nn-module-f64",
    "t4-mv-manual-data-f32",
    "t4-mv-nn-linear-mseloss-view-as-f64",
    "t5a-real-sum-manual-f32",
    "t5g-real-tensors-optim-sgd-b-w-f64",
    "t7-celsius-broadcast-no-grad-f64",
    "m-sgd-nesterov-linear-smooth_l1-CosineAnnealingLR-full-f64",
    "m-adam-amsgrad-linear-huber-const-mb16-f64",
    "m-adamw-amsgrad-logits-bce_with_logits-ExponentialLR-mb16-f32",
    "m-rmsprop-momentum-logistic-bce-const-full-f64",
    "m-adagrad-weight_decay-eps-logits-bce_with_logits-CosineAnnealingLR-full-f32",
]
LESSONS = ["t3-line-2x-lesson-grad-2w2+5-f32", "t4-mv-lesson-grad-sum-mv-f64"]

PERTURBATIONS = {
    "lr off 0.1%": Perturbation(lr_factor=1.001),
    "prediction off 1e-4": Perturbation(pred_offset=1e-4),
    "loss scaled 1.0001": Perturbation(loss_scale=1.0001),
}


@functools.cache
def _torch_run(name):
    """(problem, torch trajectory) once per scenario; torch still runs in this session."""
    scenario = parity.get(name)
    problem = materialize(scenario)
    return problem, torch_side.run(scenario, problem)


def _compare(name, perturb=NO_PERTURBATION):
    scenario = parity.get(name)
    problem, torch_traj = _torch_run(name)
    jax_traj = jax_side.run(scenario, problem, perturb=perturb)
    return compare(name, torch_traj, jax_traj, parity.tolerance_for(scenario))


@pytest.mark.parametrize("name", TRAINING)
def test_perturbed_jaxreg_fails_where_the_right_one_passes(name):
    right = _compare(name)
    assert right.passed, right.summary()
    for what, perturb in PERTURBATIONS.items():
        wrong = _compare(name, perturb)
        assert not wrong.passed, f"{what} went unnoticed: {wrong.summary()}"


@pytest.mark.parametrize("name", LESSONS)
def test_perturbed_lesson_value_fails(name):
    assert _compare(name).passed
    assert not _compare(name, PERTURBATIONS["loss scaled 1.0001"]).passed


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


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("linear", "t5d-real-nn-linear-optim-sgd-f32"),
        ("logistic", "m-adam-logistic-bce-StepLR-full-f64"),
    ],
)
def test_replacing_jaxreg_predict_is_noticed(fresh_traces, monkeypatch, module, name):
    """The jax side really calls jaxreg's public functions: replace one with a version off
    by 0.01% and the scenario fails. (jaxreg's fused gradient recognises its own predict
    functions by identity and then computes the model itself, so a replaced
    `linear.predict` is not seen *through* an unreplaced `logistic.predict`: each
    scenario's own function is replaced.)"""
    assert _compare(name).passed
    right = getattr(jr, module).predict
    monkeypatch.setattr(getattr(jr, module), "predict", lambda p, x: right(p, x) * (1 + 1e-4))
    assert not _compare(name).passed


def test_replacing_a_jaxreg_loss_is_noticed(fresh_traces, monkeypatch):
    right = jr.losses.mse
    monkeypatch.setattr(
        jr.losses, "mse", lambda p, t, **kw: right(p, t, **kw) * jnp.float32(1.0001)
    )
    assert not parity.run(parity.get("t5d-real-nn-linear-optim-sgd-f32")).passed


def test_cli_perturb_fails_with_exit_status_1(capsys):
    assert cli.main(["--only", "t5g-*", "--perturb", "lr=1.001"]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") >= 3 and "perturbed" in out  # two rows and the FAILED line


# The learning-rate perturbation over every scenario, through the CLI as a user runs it:
# it goes through jaxreg's production gradient path. The prediction and loss perturbations
# are checked on representative scenarios above (each full sweep costs a parity run);
# PARITY_ALL_TEETH=1 adds their sweeps too.
TEETH_SWEEPS = ("lr=1.001",) + (
    ("pred=1e-4", "loss=1.0001") if os.environ.get("PARITY_ALL_TEETH") else ()
)


@pytest.mark.slow
def test_every_scenario_has_teeth(tmp_path):
    """Perturbations over every scenario (the CLI, as a user would run it)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    exempt = {("pred", "t7-celsius-broadcast-no-grad-f32")}  # see the module docstring
    for spec in TEETH_SWEEPS:
        out = tmp_path / f"{spec}.json"
        proc = subprocess.run(
            [sys.executable, "-m", "parity", "-j", "2", "--perturb", spec, "--json", str(out)],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        kind = spec.split("=")[0]
        for row in json.loads(out.read_text()):
            lesson = "-lesson-" in row["name"]
            if (kind, row["name"]) in exempt or (lesson and kind != "loss"):
                continue  # no learning rate or prediction in a lesson
            assert not row["passed"], f"{spec} unnoticed in {row['name']}: {row['max_rel_dev']}"
