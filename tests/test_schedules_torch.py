"""The schedules beyond the first five against torch 2.13: LambdaLR, MultiplicativeLR,
ConstantLR, PolynomialLR, CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR, SequentialLR,
ChainedScheduler (their learning rates and momenta, to the bit), ReduceLROnPlateau (its
learning rates for any metric stream, to the bit), torch's argument messages, and each
through a float64 fit next to torch's training loop (>= 100 steps)."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import optax
import pytest
import torch

import jaxreg as jr
import parity
from parity.programs import jax_loop, torch_loop

S = jr.schedules
T = torch.optim.lr_scheduler
STEPS = 130  # > 100 values per schedule, several cycles of each periodic one

# A float64 fit against torch's: the losses' and gradients' sums round in another order in
# XLA than in torch (about 1e-16 relative per step); over 100-160 steps the trajectories
# stayed within 1e-14. 1e-12 keeps two orders of margin, while a learning rate or momentum
# off by one step moves the weights by more than 1e-4.
FIT_ATOL = 1e-12


def decay(epoch: int) -> float:
    return 0.95**epoch


def inverse(epoch: int) -> float:
    return 1 / (epoch + 1)


def keep_97(epoch: int) -> float:
    return 0.97


def halve(x: float) -> float:
    return 1 / x


def shrink(x: float) -> float:
    return 1 / (1 + x / 10)


def torch_values(build, base_lr, n, opt="SGD", opt_kwargs=None, per=None):
    """(lr, momentum or beta1) torch's param group holds during each of n steps."""
    param = torch.zeros(1, requires_grad=True)
    optimizer = getattr(torch.optim, opt)([param], lr=base_lr, **(opt_kwargs or {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # step(epoch)'s deprecation warning
        scheduler = build(optimizer)
        out = []
        for k in range(n):
            group = optimizer.param_groups[0]
            out.append((group["lr"], group["betas"][0] if "betas" in group else group["momentum"]))
            optimizer.step()
            if per is None:
                scheduler.step()
            else:
                epoch, i = divmod(k, per)
                scheduler.step(epoch + i / per)
    return out


MOMENTUM = {"momentum": 0.9}
CASES = [  # (id, torch builder, jaxreg schedule, torch optimizer, its kwargs)
    ("LambdaLR", lambda o: T.LambdaLR(o, decay), S.LambdaLR(decay), "SGD", {}),
    ("LambdaLR-list", lambda o: T.LambdaLR(o, [inverse]), S.LambdaLR([inverse]), "SGD", {}),
    (
        "MultiplicativeLR",
        lambda o: T.MultiplicativeLR(o, keep_97),
        S.MultiplicativeLR(keep_97),
        "SGD",
        {},
    ),
    ("ConstantLR", lambda o: T.ConstantLR(o, 0.3, 17), S.ConstantLR(0.3, 17), "SGD", {}),
    ("ConstantLR-0", lambda o: T.ConstantLR(o, 0.5, 0), S.ConstantLR(0.5, 0), "SGD", {}),
    ("PolynomialLR", lambda o: T.PolynomialLR(o, 90, 2.0), S.PolynomialLR(90, 2.0), "SGD", {}),
    ("PolynomialLR-.5", lambda o: T.PolynomialLR(o, 50, 0.5), S.PolynomialLR(50, 0.5), "SGD", {}),
    (
        "CAWR",
        lambda o: T.CosineAnnealingWarmRestarts(o, 10, 2, 1e-3),
        S.CosineAnnealingWarmRestarts(10, 2, 1e-3),
        "SGD",
        {},
    ),
    (
        "CAWR-1",
        lambda o: T.CosineAnnealingWarmRestarts(o, 7),
        S.CosineAnnealingWarmRestarts(7),
        "SGD",
        {},
    ),
    *[
        (
            f"CyclicLR-{mode}",
            lambda o, mode=mode: T.CyclicLR(o, 0.01, 0.1, 10, 15, mode=mode, gamma=0.99),
            S.CyclicLR(0.01, 0.1, 10, 15, mode=mode, gamma=0.99),
            "SGD",
            MOMENTUM,
        )
        for mode in ("triangular", "triangular2", "exp_range")
    ],
    (
        "CyclicLR-scale_fn-cycle",
        lambda o: T.CyclicLR(o, 0.01, 0.1, 7, scale_fn=halve),
        S.CyclicLR(0.01, 0.1, 7, scale_fn=halve),
        "SGD",
        MOMENTUM,
    ),
    (
        "CyclicLR-scale_fn-iterations",
        lambda o: T.CyclicLR(o, 0.01, 0.1, 7, scale_fn=shrink, scale_mode="iterations"),
        S.CyclicLR(0.01, 0.1, 7, scale_fn=shrink, scale_mode="iterations"),
        "SGD",
        MOMENTUM,
    ),
    (
        "CyclicLR-adam-beta1",
        lambda o: T.CyclicLR(o, 1e-3, 1e-2, 8, base_momentum=0.85, max_momentum=0.95),
        S.CyclicLR(1e-3, 1e-2, 8, base_momentum=0.85, max_momentum=0.95),
        "Adam",
        {},
    ),
    (
        "OneCycleLR-cos",
        lambda o: T.OneCycleLR(o, 0.1, total_steps=STEPS),
        S.OneCycleLR(0.1, total_steps=STEPS),
        "SGD",
        MOMENTUM,
    ),
    (
        "OneCycleLR-linear-three_phase",
        lambda o: T.OneCycleLR(
            o,
            0.2,
            epochs=13,
            steps_per_epoch=10,
            anneal_strategy="linear",
            three_phase=True,
            div_factor=10.0,
            final_div_factor=100.0,
        ),
        S.OneCycleLR(
            0.2,
            epochs=13,
            steps_per_epoch=10,
            anneal_strategy="linear",
            three_phase=True,
            div_factor=10.0,
            final_div_factor=100.0,
        ),
        "Adam",
        {},
    ),
    (
        "OneCycleLR-no-momentum",
        lambda o: T.OneCycleLR(o, 0.1, total_steps=200, cycle_momentum=False, pct_start=0.25),
        S.OneCycleLR(0.1, total_steps=200, cycle_momentum=False, pct_start=0.25),
        "SGD",
        {},
    ),
    (
        "SequentialLR",
        lambda o: T.SequentialLR(
            o, [T.LinearLR(o, 0.1, total_iters=10), T.ExponentialLR(o, 0.97)], [10]
        ),
        S.SequentialLR([S.LinearLR(0.1, total_iters=10), S.ExponentialLR(0.97)], [10]),
        "SGD",
        {},
    ),
    (
        "SequentialLR-3",
        lambda o: T.SequentialLR(
            o,
            [T.ConstantLR(o, 0.5, 5), T.CosineAnnealingLR(o, 20, 1e-3), T.StepLR(o, 10, 0.5)],
            [8, 60],
        ),
        S.SequentialLR(
            [S.ConstantLR(0.5, 5), S.CosineAnnealingLR(20, 1e-3), S.StepLR(10, 0.5)], [8, 60]
        ),
        "SGD",
        {},
    ),
    (
        "SequentialLR-functions-restarts",
        lambda o: T.SequentialLR(
            o,
            [
                T.LambdaLR(o, decay),
                T.MultiplicativeLR(o, keep_97),
                T.CosineAnnealingWarmRestarts(o, 5),
            ],
            [20, 40],
        ),
        S.SequentialLR(
            [S.LambdaLR(decay), S.MultiplicativeLR(keep_97), S.CosineAnnealingWarmRestarts(5)],
            [20, 40],
        ),
        "SGD",
        {},
    ),
    (
        "ChainedScheduler",
        lambda o: T.ChainedScheduler([T.ConstantLR(o, 0.1, 4), T.ExponentialLR(o, 0.9)]),
        S.ChainedScheduler([S.ConstantLR(0.1, 4), S.ExponentialLR(0.9)]),
        "SGD",
        {},
    ),
    (
        "ChainedScheduler-3",
        lambda o: T.ChainedScheduler(
            [T.StepLR(o, 10, 0.5), T.PolynomialLR(o, 100, 1.5), T.MultiStepLR(o, [30, 70])]
        ),
        S.ChainedScheduler([S.StepLR(10, 0.5), S.PolynomialLR(100, 1.5), S.MultiStepLR([30, 70])]),
        "SGD",
        {},
    ),
    (
        "ChainedScheduler-cyclic",
        lambda o: T.ChainedScheduler([T.CyclicLR(o, 0.01, 0.1, 5), T.ExponentialLR(o, 0.99)]),
        S.ChainedScheduler([S.CyclicLR(0.01, 0.1, 5), S.ExponentialLR(0.99)]),
        "SGD",
        {"momentum": 0.5},
    ),
    (
        "SequentialLR-onecycle",
        lambda o: T.SequentialLR(
            o, [T.ConstantLR(o, 0.5, 100), T.OneCycleLR(o, 0.1, total_steps=100)], [30]
        ),
        S.SequentialLR([S.ConstantLR(0.5, 100), S.OneCycleLR(0.1, total_steps=100)], [30]),
        "SGD",
        {"momentum": 0.5},
    ),
]


@pytest.mark.parametrize(
    "build, ours, opt, opt_kwargs", [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_values_are_torchs_bits(build, ours, opt, opt_kwargs):
    theirs = torch_values(build, 0.1, STEPS, opt, opt_kwargs)
    got = ours.lrs(0.1, STEPS)
    assert got.dtype == np.float64
    if ours.cycles_momentum:
        assert got.shape == (STEPS, 2)
        assert got.tolist() == [list(v) for v in theirs]
    else:
        assert got.tolist() == [lr for lr, _ in theirs]


@pytest.mark.parametrize("t0, mult, per", [(3, 2, 4), (2, 1, 3), (5, 3, 7)])
def test_warm_restarts_with_fractional_epochs_are_torchs_bits(t0, mult, per):
    """torch's documented `scheduler.step(epoch + i / iters)` after batch i."""
    theirs = torch_values(
        lambda o: T.CosineAnnealingWarmRestarts(o, t0, mult, 1e-3), 0.1, STEPS, per=per
    )
    ours = S.per_batch(S.CosineAnnealingWarmRestarts(t0, mult, 1e-3), steps_per_epoch=per)
    assert ours.lrs(0.1, STEPS).tolist() == [lr for lr, _ in theirs]


def test_one_cycle_refuses_steps_past_total_steps_as_torch():
    with pytest.raises(ValueError) as theirs:
        torch_values(lambda o: T.OneCycleLR(o, 0.1, total_steps=10), 0.1, 11)
    with pytest.raises(ValueError) as ours:
        S.OneCycleLR(0.1, total_steps=10).lrs(0.1, 11)
    assert str(ours.value) == str(theirs.value)
    assert S.OneCycleLR(0.1, total_steps=10).lrs(0.1, 10).shape == (10, 2)


def _sgd():
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)


@pytest.mark.parametrize(
    "theirs, ours",
    [
        (lambda o: T.LambdaLR(o, [decay, decay]), lambda: S.LambdaLR([decay, decay])),
        (lambda o: T.MultiplicativeLR(o, 0.5), lambda: S.MultiplicativeLR(0.5)),
        (lambda o: T.ConstantLR(o, factor=1.5), lambda: S.ConstantLR(factor=1.5)),
        (lambda o: T.CosineAnnealingWarmRestarts(o, 0), lambda: S.CosineAnnealingWarmRestarts(0)),
        (
            lambda o: T.CosineAnnealingWarmRestarts(o, 2.5),
            lambda: S.CosineAnnealingWarmRestarts(2.5),
        ),
        (
            lambda o: T.CosineAnnealingWarmRestarts(o, 5, 0),
            lambda: S.CosineAnnealingWarmRestarts(5, 0),
        ),
        (
            lambda o: T.CosineAnnealingWarmRestarts(o, 5, eta_min="0"),
            lambda: S.CosineAnnealingWarmRestarts(5, eta_min="0"),
        ),
        (lambda o: T.CyclicLR(o, 0.01, 0.1, mode="up"), lambda: S.CyclicLR(0.01, 0.1, mode="up")),
        (lambda o: T.OneCycleLR(o, 0.1), lambda: S.OneCycleLR(0.1)),
        (lambda o: T.OneCycleLR(o, 0.1, total_steps=0), lambda: S.OneCycleLR(0.1, total_steps=0)),
        (
            lambda o: T.OneCycleLR(o, 0.1, epochs=0, steps_per_epoch=3),
            lambda: S.OneCycleLR(0.1, epochs=0, steps_per_epoch=3),
        ),
        (
            lambda o: T.OneCycleLR(o, 0.1, epochs=2, steps_per_epoch=-1),
            lambda: S.OneCycleLR(0.1, epochs=2, steps_per_epoch=-1),
        ),
        (
            lambda o: T.OneCycleLR(o, 0.1, total_steps=9, pct_start=1),
            lambda: S.OneCycleLR(0.1, total_steps=9, pct_start=1),
        ),
        (
            lambda o: T.OneCycleLR(o, 0.1, total_steps=9, anneal_strategy="exp"),
            lambda: S.OneCycleLR(0.1, total_steps=9, anneal_strategy="exp"),
        ),
        (lambda o: T.SequentialLR(o, [], []), lambda: S.SequentialLR([], [])),
        (
            lambda o: T.SequentialLR(o, [T.StepLR(o, 2), T.StepLR(o, 3)], [1, 2]),
            lambda: S.SequentialLR([S.StepLR(2), S.StepLR(3)], [1, 2]),
        ),
        (
            lambda o: T.SequentialLR(o, [T.StepLR(o, 2), T.ReduceLROnPlateau(o)], [1]),
            lambda: S.SequentialLR([S.StepLR(2), S.ReduceLROnPlateau()], [1]),
        ),
        (lambda o: T.ChainedScheduler([]), lambda: S.ChainedScheduler([])),
        (
            lambda o: T.ChainedScheduler([T.ReduceLROnPlateau(o)]),
            lambda: S.ChainedScheduler([S.ReduceLROnPlateau()]),
        ),
        (lambda o: T.ReduceLROnPlateau(o, factor=1.0), lambda: S.ReduceLROnPlateau(factor=1.0)),
        (lambda o: T.ReduceLROnPlateau(o, mode="up"), lambda: S.ReduceLROnPlateau(mode="up")),
        (
            lambda o: T.ReduceLROnPlateau(o, threshold_mode="x"),
            lambda: S.ReduceLROnPlateau(threshold_mode="x"),
        ),
    ],
)
def test_bad_arguments_raise_torchs_error(theirs, ours):
    with pytest.raises((TypeError, ValueError)) as expected:
        theirs(_sgd())
    with pytest.raises(type(expected.value)) as got:
        ours()
    assert str(got.value) == str(expected.value)


def test_cycle_momentum_needs_a_momentum_as_in_torch():
    adagrad = torch.optim.Adagrad([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError) as theirs:
        T.OneCycleLR(adagrad, 0.1, total_steps=10)
    x, y = np.ones((4, 1)), np.ones((4, 1))
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    params = jr.linear.zeros(1, dtype=np.float64)
    one_cycle = S.OneCycleLR(0.1, total_steps=3)
    with pytest.raises(ValueError) as ours:
        jr.fit(loss_fn, jr.optim.adagrad(0.1), params, x, y, steps=3, schedule=one_cycle)
    assert str(ours.value) == str(theirs.value)
    # SGD without momentum has no buffer for the momentum torch would switch on
    with pytest.raises(ValueError, match=r"built with momentum=0 .* cycle_momentum=False"):
        jr.fit(loss_fn, jr.optim.sgd(0.1), params, x, y, steps=3, schedule=one_cycle)
    no_momentum = S.OneCycleLR(0.1, total_steps=3, cycle_momentum=False)
    jr.fit(loss_fn, jr.optim.sgd(0.1), params, x, y, steps=3, schedule=no_momentum)


def test_functions_run_on_the_host_before_the_loop():
    calls = []

    def factor(epoch):
        calls.append(epoch)
        return 0.9**epoch

    lrs = S.LambdaLR(factor).lrs(0.1, 5)
    assert calls == [0, 1, 2, 3, 4, 5]  # the constructor's step, then one per epoch
    assert lrs.tolist() == [0.1 * 0.9**e for e in range(5)]


def test_per_batch_fractional_epochs_only_for_warm_restarts():
    with pytest.raises(TypeError, match=r"fractional epochs.*CosineAnnealingWarmRestarts only"):
        S.per_batch(S.StepLR(3), steps_per_epoch=4)
    with pytest.raises(ValueError, match="steps_per_epoch must be an integer >= 1"):
        S.per_batch(S.CosineAnnealingWarmRestarts(3), steps_per_epoch=0)


# ---------------------------------------------------------------------------------------
# ReduceLROnPlateau


def _metrics(n: int, seed: int) -> list[float]:
    """A falling, then flat and noisy, then rising metric: improvements, plateaus, cooldowns."""
    rng = np.random.default_rng(seed)
    trend = np.concatenate(
        [np.linspace(5, 1, n // 3), np.full(n // 3, 1.0), np.linspace(1, 3, n - 2 * (n // 3))]
    )
    return (trend + 0.01 * rng.standard_normal(n)).tolist()


PLATEAUS = [
    {},
    {"mode": "min", "factor": 0.5, "patience": 2, "threshold": 1e-2, "cooldown": 3},
    {"mode": "max", "factor": 0.7, "patience": 4, "threshold": 0.05, "threshold_mode": "abs"},
    {"mode": "max", "factor": 0.3, "patience": 1, "threshold": 1e-3, "min_lr": 0.02},
    {"mode": "min", "factor": 0.9, "patience": 0, "threshold_mode": "abs", "eps": 0.01},
]


@pytest.mark.parametrize("kwargs", PLATEAUS)
@pytest.mark.parametrize("per_epoch", [1, 3])
def test_plateau_lrs_are_torchs_bits_for_any_metric(kwargs, per_epoch):
    """The transformation fed each epoch's losses; torch's scheduler their mean."""
    epochs = 120
    losses = _metrics(epochs * per_epoch, seed=len(kwargs))
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = T.ReduceLROnPlateau(optimizer, **kwargs)
    theirs = []
    for e in range(epochs):
        theirs.append(optimizer.param_groups[0]["lr"])
        epoch_losses = losses[e * per_epoch : (e + 1) * per_epoch]
        scheduler.step(sum(epoch_losses) / len(epoch_losses))
    with jax.enable_x64(True):
        tx = S.ReduceLROnPlateau(**kwargs).wrap(jr.optim.sgd(0.1), steps_per_epoch=per_epoch)
        params = np.zeros(1)
        state = tx.init(params)
        update = jax.jit(lambda s, v: tx.update(np.zeros(1), s, params, value=v)[1])
        ours = []
        for k, loss in enumerate(losses):
            if k % per_epoch == 0:
                ours.append(float(state.lr))
            state = update(state, np.float64(loss))
    assert ours == theirs
    assert len(set(theirs)) >= 3 or kwargs.get("eps") == 0.01  # it reduced several times


def test_plateau_values_do_not_recompile():
    tx = jr.optim.sgd(0.1)
    a = S.ReduceLROnPlateau(factor=0.5, patience=2).wrap(tx, steps_per_epoch=2)
    b = S.ReduceLROnPlateau(factor=0.2, patience=7, cooldown=1).wrap(tx, steps_per_epoch=5)
    assert a == b and hash(a.init) == hash(b.init)  # numbers live in the state
    assert S.ReduceLROnPlateau(mode="max").wrap(tx) != a  # the mode chooses the arithmetic
    with pytest.raises(TypeError, match=r"fit as schedule=\.\.\. \(fit wraps the optimizer\)"):
        S.ReduceLROnPlateau().lrs(0.1, 3)
    with pytest.raises(TypeError, match="needs a jaxreg optimizer"):
        S.ReduceLROnPlateau().wrap(optax.sgd(0.1))


# ---------------------------------------------------------------------------------------
# Through a fit, next to torch's training loop


def _problem(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    y = x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.5 * rng.standard_normal((n, 1))
    return x, y, 0.5 * rng.standard_normal((1, 3)), 0.5 * rng.standard_normal(1)


def _compare(opt, opt_kwargs, tx, build, schedule, epochs, batch=None, per_batch=False, loop="fit"):
    """Train with torch (parity's loop) and jaxreg; returns torch's lr after each epoch."""
    x, y, w0, b0 = _problem()
    w, b = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    optimizer = getattr(torch.optim, opt)([w, b], **opt_kwargs)
    scheduler = build(optimizer)
    lrs = []

    class Watch:  # records the lr at each epoch's end, after the epoch's schedulers
        def step(self):
            lrs.append(optimizer.param_groups[0]["lr"])

    program = torch_loop.Program(
        lambda xb: xb @ w.T + b,
        torch.nn.functional.mse_loss,
        {"weight": w, "bias": b},
        torch_loop.OptimizerUpdate(optimizer),
        schedulers=((Watch(),) if per_batch else (scheduler, Watch())),
        batch_schedulers=(scheduler,) if per_batch else (),
    )
    xt, yt = torch.tensor(x), torch.tensor(y)
    if batch is None:
        batches = torch_loop.full_batch(xt, yt)
    else:
        rows = [(xt[i : i + batch], yt[i : i + batch]) for i in range(0, len(x), batch)]

        def batches(epoch):
            return rows

    traj = torch_loop.run(program, batches, epochs)
    assert len(traj.losses) >= 100
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    _, losses, history = jax_loop.run(
        loss_fn,
        tx,
        jr.linear.Params(w0, b0),
        x,
        y,
        epochs=epochs,
        batch_size=batch,
        shuffle=False,
        schedule=schedule,
        base_lr=opt_kwargs["lr"],
        loop=loop,
    )
    np.testing.assert_allclose(losses, traj.losses, rtol=0, atol=FIT_ATOL)
    np.testing.assert_allclose(history.weight, traj.params["weight"], rtol=0, atol=FIT_ATOL)
    np.testing.assert_allclose(history.bias, traj.params["bias"], rtol=0, atol=FIT_ATOL)
    return lrs


@pytest.mark.parametrize("loop", jax_loop.LOOPS)
def test_one_cycle_with_sgd_momentum_per_batch_fit(loop):
    with jax.enable_x64(True):
        lrs = _compare(
            "SGD",
            {"lr": 0.1, "momentum": 0.9},
            jr.optim.sgd(0.1, momentum=0.9),
            lambda o: T.OneCycleLR(o, 0.1, total_steps=100),
            S.OneCycleLR(0.1, total_steps=100),
            epochs=25,
            batch=10,
            per_batch=True,
            loop=loop,
        )
    assert lrs[-1] < 1e-4 < 0.09 < max(lrs)


def test_cyclic_lr_cycles_adams_beta1_in_a_fit():
    with jax.enable_x64(True):
        _compare(
            "Adam",
            {"lr": 0.01},
            jr.optim.adam(0.01),
            lambda o: T.CyclicLR(o, 0.001, 0.05, 7, mode="triangular2"),
            S.CyclicLR(0.001, 0.05, 7, mode="triangular2"),
            epochs=120,
        )


@pytest.mark.parametrize(
    "build, schedule",
    [
        (lambda o: T.LambdaLR(o, decay), S.LambdaLR(decay)),
        (
            lambda o: T.SequentialLR(o, [T.ConstantLR(o, 0.5, 10), T.PolynomialLR(o, 100)], [20]),
            S.SequentialLR([S.ConstantLR(0.5, 10), S.PolynomialLR(100)], [20]),
        ),
        (
            lambda o: T.ChainedScheduler(
                [T.MultiplicativeLR(o, keep_97), T.CosineAnnealingWarmRestarts(o, 9)]
            ),
            S.ChainedScheduler([S.MultiplicativeLR(keep_97), S.CosineAnnealingWarmRestarts(9)]),
        ),
    ],
)
def test_epoch_schedules_in_a_fit(build, schedule):
    with jax.enable_x64(True):
        _compare("SGD", {"lr": 0.05}, jr.optim.sgd(0.05), build, schedule, epochs=110)


def test_warm_restarts_with_fractional_epochs_in_a_minibatch_fit():
    per = 4  # 40 rows in batches of 10

    class Fractional:  # torch's documented scheduler.step(epoch + i / iters) after batch i
        def __init__(self, optimizer):
            self.inner, self.k = T.CosineAnnealingWarmRestarts(optimizer, 3, 2, 1e-3), 0

        def step(self):
            epoch, i = divmod(self.k, per)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.inner.step(epoch + i / per)
            self.k += 1

    with jax.enable_x64(True):
        _compare(
            "SGD",
            {"lr": 0.05, "momentum": 0.5},
            jr.optim.sgd(0.05, momentum=0.5),
            Fractional,
            S.per_batch(S.CosineAnnealingWarmRestarts(3, 2, 1e-3), steps_per_epoch=per),
            epochs=30,
            batch=10,
            per_batch=True,
        )


@pytest.mark.parametrize(
    "batch, loop", [(None, "fit"), (10, "fit"), (10, "make_step")], ids=["full", "mb", "mb-step"]
)
def test_reduce_lr_on_plateau_in_a_fit_reduces_several_times(batch, loop):
    """lr 0.5 on a noisy regression: the loss stalls at the noise floor, and with patience
    2 the lr halves again and again (as in torch, to the bit)."""
    kwargs = {"patience": 2, "factor": 0.5, "threshold": 1e-3, "cooldown": 2}
    with jax.enable_x64(True):
        lrs = _compare(
            "SGD",
            {"lr": 0.5},
            jr.optim.sgd(0.5),
            lambda o: T.ReduceLROnPlateau(o, **kwargs),
            S.ReduceLROnPlateau(**kwargs),
            epochs=120 if batch is None else 40,
            batch=batch,
            loop=loop,
        )
    assert len(set(lrs)) >= 4, lrs


@pytest.mark.parametrize("batch", [None, 10], ids=["full", "mb"])
def test_fit_wraps_the_optimizer_in_a_plateau_schedule(batch):
    """fit(schedule=ReduceLROnPlateau(...)) is fit(tx=....wrap(tx, batches per epoch)):
    the same numbers to the bit, the lr reduced, and the state it returns goes on."""
    x, y, w0, b0 = _problem()
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    plateau = S.ReduceLROnPlateau(patience=2, factor=0.5, threshold=1e-3)
    per_epoch = 1 if batch is None else -(-len(x) // batch)
    with jax.enable_x64(True):
        params = jr.linear.Params(w0, b0)
        mb = {} if batch is None else {"batch_size": batch, "shuffle": False}
        given = jr.fit(loss_fn, jr.optim.sgd(0.5), params, x, y, epochs=40, schedule=plateau, **mb)
        wrapped = plateau.wrap(jr.optim.sgd(0.5), steps_per_epoch=per_epoch)
        by_hand = jr.fit(loss_fn, wrapped, params, x, y, epochs=40, **mb)
        np.testing.assert_array_equal(given.losses, by_hand.losses)
        np.testing.assert_array_equal(given.params.weight, by_hand.params.weight)
        assert float(given.opt_state.lr) < 0.5 / 2  # reduced at least twice
        more = jr.fit(
            loss_fn, jr.optim.sgd(0.5), given.params, x, y, epochs=5, schedule=plateau,
            opt_state=given.opt_state, **mb,
        )  # fmt: skip
        assert float(more.opt_state.lr) <= float(given.opt_state.lr)


def test_plateau_state_is_returned_and_goes_on():
    """fit's returned state carries the reduced lr and torch's counters: a second fit from
    it goes on as one longer run does."""
    x, y, w0, b0 = _problem()
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    with jax.enable_x64(True):
        tx = S.ReduceLROnPlateau(patience=2, factor=0.5, threshold=1e-3).wrap(jr.optim.sgd(0.5))
        params = jr.linear.Params(w0, b0)
        whole = jr.fit(loss_fn, tx, params, x, y, steps=120)
        first = jr.fit(loss_fn, tx, params, x, y, steps=60)
        second = jr.fit(loss_fn, tx, first.params, x, y, steps=60, opt_state=first.opt_state)
        assert float(whole.opt_state.lr) < 0.5 / 4
        assert float(second.opt_state.lr) == float(whole.opt_state.lr)
        np.testing.assert_array_equal(second.params.weight, whole.params.weight)


def test_per_epoch_steps_a_per_batch_schedule_once_an_epoch():
    """torch loops that call OneCycleLR's step() once per epoch (total_steps = epochs)."""
    with jax.enable_x64(True):
        lrs = _compare(
            "SGD", {"lr": 0.1, "momentum": 0.9}, jr.optim.sgd(0.1, momentum=0.9),
            lambda o: T.OneCycleLR(o, 0.1, total_steps=26),
            S.per_epoch(S.OneCycleLR(0.1, total_steps=26)), epochs=25, batch=10,
        )  # fmt: skip
    assert len(set(lrs)) == 25
    with pytest.raises(TypeError, match=r"per_epoch takes a jaxreg\.schedules schedule"):
        S.per_epoch(lambda epoch: 0.1)


def _verify_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    return x, x @ np.array([[1.0], [-2.0], [0.5]]) - 1.0 + 0.1 * rng.normal(size=(50, 1))


def test_parity_verify_one_cycle_with_momentum_is_teacher_forced_with_both():
    """A port as torch holds the optimizer after OneCycleLR's constructor (lr max_lr / 25,
    momentum max_momentum) passes, free and teacher-forced (lr and momentum each step)."""
    x, y = _verify_data()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = T.OneCycleLR(opt, 0.1, total_steps=16)
    cmp = parity.verify(
        model, torch.nn.functional.mse_loss, opt,
        jr.objective(jr.linear.predict, jr.losses.mse), jr.optim.sgd(0.1 / 25, momentum=0.95),
        x, y, epochs=4, batch_size=16, seed=1, torch_scheduler=sched,
        jax_schedule=S.OneCycleLR(0.1, total_steps=16),
    )  # fmt: skip
    assert cmp.passed and cmp.teacher is not None, cmp.summary()
    assert sched.last_epoch == 16  # stepped after every batch


def test_parity_verify_reduce_lr_on_plateau():
    x, y = _verify_data()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    kwargs = {"patience": 1, "factor": 0.5, "threshold": 1e-2}
    cmp = parity.verify(
        model, torch.nn.functional.mse_loss, opt,
        jr.objective(jr.linear.predict, jr.losses.mse), jr.optim.sgd(0.5), x, y, epochs=30,
        batch_size=16, seed=1, torch_scheduler=T.ReduceLROnPlateau(opt, **kwargs),
        jax_schedule=S.ReduceLROnPlateau(**kwargs),
    )  # fmt: skip
    assert cmp.passed, cmp.summary()
    assert opt.param_groups[0]["lr"] < 0.5 / 2**5  # reduced several times


@pytest.mark.parametrize(
    "opt, opt_kwargs, tx",
    [
        ("NAdam", {"lr": 0.01}, jr.optim.nadam(0.01)),
        ("RAdam", {"lr": 0.01}, jr.optim.radam(0.01)),
        ("Adamax", {"lr": 0.01}, jr.optim.adamax(0.01)),
        ("AdamW", {"lr": 0.01}, jr.optim.adamw(0.01)),
        ("RMSprop", {"lr": 0.01, "momentum": 0.5}, jr.optim.rmsprop(0.01, momentum=0.5)),
    ],
)
def test_one_cycle_cycles_every_optimizers_momentum_or_beta1(opt, opt_kwargs, tx):
    """torch cycles `betas[0]` of every optimizer that has betas, `momentum` of the rest."""
    with jax.enable_x64(True):
        _compare(
            opt, opt_kwargs, tx, lambda o: T.OneCycleLR(o, 0.05, total_steps=110),
            S.OneCycleLR(0.05, total_steps=110), epochs=110, per_batch=True,
        )  # fmt: skip
