"""jaxreg.schedules against torch.optim.lr_scheduler: the same learning rates, to the bit."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optim_ref
import pytest

import jaxreg as jr
from jaxreg import schedules

EPOCHS = 60

CASES = [
    ("StepLR", schedules.StepLR, {"step_size": 7}),
    ("StepLR", schedules.StepLR, {"step_size": 1, "gamma": 0.5}),
    ("StepLR", schedules.StepLR, {"step_size": 10, "gamma": 0.3}),
    ("MultiStepLR", schedules.MultiStepLR, {"milestones": [5, 20, 40]}),
    # unsorted, a repeated milestone (gamma**2 there) and milestone 0 (applies at once)
    ("MultiStepLR", schedules.MultiStepLR, {"milestones": [30, 3, 3, 0], "gamma": 0.7}),
    ("MultiStepLR", schedules.MultiStepLR, {"milestones": []}),
    ("ExponentialLR", schedules.ExponentialLR, {"gamma": 0.9}),
    ("ExponentialLR", schedules.ExponentialLR, {"gamma": 0.999}),
    ("ExponentialLR", schedules.ExponentialLR, {"gamma": 1.05}),
    ("CosineAnnealingLR", schedules.CosineAnnealingLR, {"T_max": 10}),
    ("CosineAnnealingLR", schedules.CosineAnnealingLR, {"T_max": 25, "eta_min": 1e-3}),
    ("CosineAnnealingLR", schedules.CosineAnnealingLR, {"T_max": 1}),
    # several periods within EPOCHS: torch's "restart" branch at (e - 1 - T_max) % 2T_max == 0
    ("CosineAnnealingLR", schedules.CosineAnnealingLR, {"T_max": 7, "eta_min": 0.005}),
    ("LinearLR", schedules.LinearLR, {}),
    ("LinearLR", schedules.LinearLR, {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 30}),
    ("LinearLR", schedules.LinearLR, {"start_factor": 0.25, "end_factor": 0.75, "total_iters": 7}),
    ("LinearLR", schedules.LinearLR, {"end_factor": 0.0, "total_iters": 100}),  # not reached
]


def _case_id(case) -> str:
    name, _, kwargs = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


CASE_PARAMS = [pytest.param(*case, id=_case_id(case)) for case in CASES]


@pytest.mark.parametrize("base_lr", [0.1, 3e-4, 1.0])
@pytest.mark.parametrize("name, cls, kwargs", CASE_PARAMS)
def test_lrs_are_torchs_bits(name, cls, kwargs, base_lr):
    ours = cls(**kwargs).lrs(base_lr, EPOCHS)
    assert ours.dtype == np.float64 and ours.shape == (EPOCHS,)
    assert ours.tolist() == optim_ref.torch_lrs(name, kwargs, base_lr, EPOCHS)


@pytest.mark.parametrize("name, cls, kwargs", CASE_PARAMS)
def test_as_optax_follows_lrs(name, cls, kwargs):
    # torch's closed form against its recursion: equal up to rounding, which accumulates
    # over the epochs (about 1e-15 relative at 60 epochs); where both are 0, 1e-16 absolute.
    sched = cls(**kwargs)
    lrs = sched.lrs(0.1, EPOCHS)
    per_epoch = jax.vmap(sched.as_optax(0.1))(jnp.arange(EPOCHS))
    np.testing.assert_allclose(np.asarray(per_epoch), lrs, rtol=1e-12, atol=1e-16)
    per_step = jax.vmap(sched.as_optax(0.1, steps_per_epoch=3))(jnp.arange(3 * EPOCHS))
    np.testing.assert_allclose(np.asarray(per_step), np.repeat(lrs, 3), rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("name, cls, kwargs", CASE_PARAMS[::4])
def test_as_optax_compiles(name, cls, kwargs):
    sched = cls(**kwargs)
    value = jax.jit(sched.as_optax(0.1, steps_per_epoch=2))(jnp.int32(31))
    assert float(value) == pytest.approx(sched.lrs(0.1, 16)[15], rel=1e-12)


def test_as_optax_is_an_optax_schedule():
    lr = schedules.StepLR(step_size=2, gamma=0.5).as_optax(0.1)
    tx = optax.sgd(learning_rate=lr)
    params = jnp.array([1.0])
    state = tx.init(params)
    steps = []
    for _ in range(5):
        updates, state = tx.update(jnp.array([1.0]), state)
        steps.append(float(-updates[0]))
    np.testing.assert_allclose(steps, [0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-15)


def test_recursive_values_are_not_the_closed_form():
    # why lrs runs torch's recursion: its closed form rounds differently (the two agree
    # only to ~1e-16), so bitwise parity needs the recursion.
    sched = schedules.CosineAnnealingLR(T_max=25, eta_min=1e-3)
    closed = [1e-3 + (0.1 - 1e-3) * (1 + np.cos(np.pi * e / 25)) / 2 for e in range(EPOCHS)]
    assert sched.lrs(0.1, EPOCHS).tolist() != closed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_factor": 0},
        {"start_factor": 1.5},
        {"start_factor": -0.5},
        {"end_factor": 1.5},
        {"end_factor": -0.1},
    ],
)
def test_linear_lr_bad_factors_raise_torchs_error(kwargs):
    with pytest.raises(ValueError) as theirs:
        optim_ref.make_torch_scheduler("LinearLR", kwargs)
    with pytest.raises(ValueError) as ours:
        schedules.LinearLR(**kwargs)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "name, cls, kwargs, match",
    [
        ("StepLR", schedules.StepLR, {"step_size": 0}, "step_size must be an integer >= 1"),
        ("CosineAnnealingLR", schedules.CosineAnnealingLR, {"T_max": 0}, "T_max must be"),
    ],
)
def test_zero_periods_fail_at_construction_where_torch_fails_at_its_first_step(
    name, cls, kwargs, match
):
    with pytest.raises(ZeroDivisionError):
        optim_ref.torch_lrs(name, kwargs, 0.1, 2)
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: schedules.StepLR(3, gamma=-0.1), ValueError, "gamma must be >= 0"),
        (lambda: schedules.ExponentialLR(float("nan")), ValueError, "gamma must be finite"),
        (lambda: schedules.MultiStepLR([3, -1]), ValueError, "milestone must be an integer >= 0"),
        (lambda: schedules.MultiStepLR([2.5]), TypeError, "milestone must be an integer"),
        (lambda: schedules.MultiStepLR(5), TypeError, "milestones must be a list"),
        (lambda: schedules.StepLR(2.0), TypeError, "step_size must be an integer"),
        (lambda: schedules.CosineAnnealingLR(10, eta_min=-1e-3), ValueError, "eta_min"),
        (lambda: schedules.LinearLR(total_iters=0), ValueError, "total_iters must be"),
        (lambda: schedules.StepLR(3).lrs(-0.1, 5), ValueError, "base_lr must be >= 0"),
        (lambda: schedules.StepLR(3).lrs(0.1, -1), ValueError, "num_epochs must be"),
        (lambda: schedules.StepLR(3).lrs(0.1, 5.0), TypeError, "num_epochs must be an integer"),
        (lambda: schedules.StepLR(3).as_optax(0.1, 0), ValueError, "steps_per_epoch"),
    ],
)
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_schedules_are_frozen_hashable_values():
    assert schedules.StepLR(3) == schedules.StepLR(step_size=3, gamma=0.1)
    assert hash(schedules.StepLR(3)) == hash(schedules.StepLR(3, 0.1))
    assert schedules.MultiStepLR([3, 1]) == schedules.MultiStepLR((1, 3))
    assert schedules.MultiStepLR([3, 1]).milestones == (1, 3)
    assert schedules.StepLR(3) != schedules.StepLR(4)
    assert schedules.ExponentialLR(0.5) != schedules.StepLR(1, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedules.StepLR(3).gamma = 0.5


def test_zero_epochs_is_empty():
    lrs = schedules.CosineAnnealingLR(5).lrs(0.1, 0)
    assert lrs.shape == (0,) and lrs.dtype == np.float64


def test_per_batch_schedule_sets_the_lr_before_every_step():
    """fit with a per-batch schedule equals a make_step loop that sets lrs[step] first."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 2))
    y = x @ np.array([[1.0], [-2.0]])
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    params = jr.linear.zeros(2, dtype=jnp.float64)
    sched = jr.schedules.StepLR(step_size=2, gamma=0.5)
    res = jr.fit(
        loss_fn, jr.optim.sgd(0.1), params, x, y, epochs=3, batch_size=4, shuffle=False,
        schedule=jr.schedules.per_batch(sched),
    )  # fmt: skip
    lrs = sched.lrs(0.1, 9)
    assert lrs[0] != lrs[-1]  # the schedule changes within the run
    step, losses, k = jr.make_step(loss_fn, jr.optim.sgd(0.1)), [], 0
    state = jr.optim.sgd(0.1).init(params)
    for _ in range(3):
        for start in (0, 4, 8):
            state = jr.optim.set_lr(state, lrs[k])
            params, state, loss = step(params, state, x[start : start + 4], y[start : start + 4])
            losses.append(float(loss))
            k += 1
    np.testing.assert_array_equal(res.losses, losses)
    np.testing.assert_array_equal(res.params.weight, params.weight)


def test_per_batch_refuses_what_is_not_a_schedule():
    with pytest.raises(TypeError, match=r"per_batch takes a jaxreg\.schedules schedule"):
        jr.schedules.per_batch(lambda epoch: 0.1)
