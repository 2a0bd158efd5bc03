"""parity.verify: a user's own torch program against their jaxreg port.

A faithful port passes; a wrong one fails, and where the difference can be read before
training (a hyperparameter, a flag, the schedule, the loss's reduction, a dtype) it is
refused before any work with an error naming both values: a short run can stay within
tolerance with `eps` 1e-6 instead of 1e-8. NaN or inf on both sides is a failure.
"""

import functools

import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

import jaxreg as jr
import parity
from parity.preflight import SettingsError

MSE = jr.objective(jr.linear.predict, jr.losses.mse)
LS = torch.optim.lr_scheduler


class HandWrittenSGD(torch.optim.Optimizer):
    """A torch optimizer of one's own (every torch.optim class has a vocab row)."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})


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


def test_a_per_batch_schedule_steps_the_torch_scheduler_after_every_batch():
    x, y = _data(50)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = LS.StepLR(opt, step_size=3, gamma=0.5)
    args = (model, F.mse_loss, opt, MSE, jr.optim.sgd(lr=0.05, momentum=0.9), x, y)
    kw = dict(epochs=4, batch_size=16, seed=1, torch_scheduler=sched)
    cmp = parity.verify(
        *args, **kw, jax_schedule=jr.schedules.per_batch(jr.schedules.StepLR(3, 0.5))
    )
    assert cmp.steps == 16 and cmp.passed, cmp.summary()
    assert sched.last_epoch == 16  # stepped once per batch
    assert opt.param_groups[0]["lr"] == 0.05 * 0.5**5


def test_minibatches_and_schedule_float32():
    x, y = _data(50, np.float32)
    model = _model(torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = LS.StepLR(opt, step_size=3, gamma=0.5)
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


# Ports that compute the same thing although written differently: preflight lets them
# through and the trajectories agree.
EQUIVALENT = {
    # torch's AdamW is Adam with decoupled_weight_decay=True, and so is jr.optim.adamw
    "AdamW = adam(decoupled_weight_decay=True)": (
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
        jr.optim.adam(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        {},
    ),
    # LinearLR changes the group's lr when it is built: the base lr is `initial_lr`
    "LinearLR starts from initial_lr": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.sgd(lr=0.1),
        {"schedule": (LS.LinearLR, dict(start_factor=0.5, total_iters=4))},
    ),
    "nn.MSELoss(reduction='sum') = jr.losses.sse": (
        lambda p: torch.optim.SGD(p, lr=0.001),
        jr.optim.sgd(lr=0.001),
        {
            "torch_loss": torch.nn.MSELoss(reduction="sum"),
            "jax_loss": jr.objective(jr.linear.predict, jr.losses.sse),
        },
    ),
    "partial(F.huber_loss, delta=0.5) = huber(delta=0.5)": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.sgd(lr=0.1),
        {
            "torch_loss": functools.partial(F.huber_loss, delta=0.5),
            "jax_loss": jr.objective(jr.linear.predict, jr.losses.huber, delta=0.5),
        },
    ),
}


def _run(torch_opt, jax_tx, *, schedule=None, torch_loss=F.mse_loss, jax_loss=MSE, **kw):
    x, y = _data()
    model = _model()
    opt = torch_opt(model.parameters())
    sched = jax_sched = None
    if schedule is not None:
        cls, args = schedule
        sched = cls(opt, **args)
        jax_sched = getattr(jr.schedules, cls.__name__)(**args)
    kw.setdefault("steps", 30)
    return parity.verify(
        model,
        torch_loss,
        opt,
        jax_loss,
        jax_tx,
        x,
        y,
        torch_scheduler=sched,
        jax_schedule=jax_sched,
        **kw,
    )


@pytest.mark.parametrize(("torch_opt", "jax_tx", "kw"), EQUIVALENT.values(), ids=EQUIVALENT)
def test_equivalent_ports_pass(torch_opt, jax_tx, kw):
    cmp = _run(torch_opt, jax_tx, **kw)
    assert cmp.passed, cmp.summary()


# (torch optimizer, jaxreg transformation, extra arguments, the error's message): each a
# port that differs from its torch program, refused before training. Every message names
# the setting and both values.
WRONG_PORTS = {
    "amsgrad": (
        lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True),
        jr.optim.adam(lr=0.01),
        {},
        r"amsgrad: torch Adam has True, jaxreg False",
    ),
    "eps": (
        lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-8),
        jr.optim.adam(lr=0.01, eps=1e-6),
        {},
        r"eps: torch Adam has 1e-08, jaxreg 1e-06",
    ),
    "weight_decay": (
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-4),
        jr.optim.adam(lr=0.01),
        {},
        r"weight_decay: torch Adam has 0.0001, jaxreg 0.0",
    ),
    "betas": (
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.99)),
        jr.optim.adam(lr=0.01),
        {},
        r"betas: torch Adam has \(0.9, 0.99\), jaxreg \(0.9 .*, 0.999 ",
    ),
    "lr": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.sgd(lr=0.1001),
        {},
        r"lr: torch SGD has 0.1, jaxreg 0.1001",
    ),
    "nesterov": (
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        jr.optim.sgd(lr=0.1, momentum=0.9),
        {},
        r"nesterov: torch SGD has True, jaxreg False",
    ),
    "dampening": (
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1),
        jr.optim.sgd(lr=0.1, momentum=0.9),
        {},
        r"dampening: torch SGD has 0.1, jaxreg 0.0",
    ),
    "maximize": (
        lambda p: torch.optim.SGD(p, lr=0.1, maximize=True),
        jr.optim.sgd(lr=0.1),
        {},
        r"maximize: torch SGD has True, jaxreg False",
    ),
    "rmsprop centered and alpha": (
        lambda p: torch.optim.RMSprop(p, lr=0.01, centered=True, alpha=0.9),
        jr.optim.rmsprop(lr=0.01),
        {},
        r"alpha: torch RMSprop has 0.9, jaxreg 0.99[\s\S]*centered: torch RMSprop has True",
    ),
    "adagrad initial_accumulator_value": (
        lambda p: torch.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.1),
        jr.optim.adagrad(lr=0.1),
        {},
        r"initial_accumulator_value: torch Adagrad has 0.1, jaxreg 0",
    ),
    "another optimizer": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.adam(lr=0.1),
        {},
        r"torch.optim.SGD but jax_tx is not jaxreg's sgd .*AdamState",
    ),
    "Adam against adamw": (
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01),
        jr.optim.adamw(lr=0.01),
        {},
        r"decoupled_weight_decay: torch Adam has False, jaxreg True",
    ),
    "an optax transformation parity cannot read": (
        lambda p: torch.optim.Adam(p, lr=0.01),
        optax.adam(0.01),
        {},
        r"not a jaxreg.optim optimizer.*check_settings=False",
    ),
    "a torch optimizer without a vocab row": (
        lambda p: HandWrittenSGD(p, lr=0.01),
        jr.optim.adam(lr=0.01),
        {},
        r"no row for torch optimizer HandWrittenSGD.*check_settings=False",
    ),
    "two param groups": (
        lambda p: torch.optim.SGD([{"params": [next(p)], "lr": 0.1}, {"params": list(p)}], lr=0.2),
        jr.optim.sgd(lr=0.1),
        {},
        r"param_groups 0 and 1 differ in \['lr'\]",
    ),
    "schedule missing on the jax side": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.sgd(lr=0.1),
        {"schedule": (LS.StepLR, dict(step_size=3)), "jax_schedule": None},
        r"torch_scheduler is StepLR but jax_schedule is None",
    ),
    "another schedule": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.sgd(lr=0.1),
        {
            "schedule": (LS.StepLR, dict(step_size=3)),
            "jax_schedule": jr.schedules.ExponentialLR(0.5),
        },
        r"torch_scheduler is StepLR but jax_schedule is jr.schedules.ExponentialLR",
    ),
    "schedule arguments": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.sgd(lr=0.1),
        {
            "schedule": (LS.MultiStepLR, dict(milestones=[2, 5], gamma=0.5)),
            "jax_schedule": jr.schedules.MultiStepLR([2, 6], 0.5),
        },
        r"milestones: torch \[2, 5\], jaxreg \[2, 6\]",
    ),
    "per-batch schedule arguments": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.sgd(lr=0.1),
        {
            "schedule": (LS.StepLR, dict(step_size=3, gamma=0.5)),
            "jax_schedule": jr.schedules.per_batch(jr.schedules.StepLR(3, 0.1)),
        },
        r"gamma: torch 0.5, jaxreg 0.1",
    ),
    "loss function": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.sgd(lr=0.1),
        {"jax_loss": jr.objective(jr.linear.predict, jr.losses.l1)},
        r"torch loss is F.mse_loss but the jax loss computes F.l1_loss",
    ),
    "loss reduction": (
        lambda p: torch.optim.SGD(p, lr=0.01),
        jr.optim.sgd(lr=0.01),
        {"torch_loss": torch.nn.MSELoss(reduction="sum")},
        r"reduction: torch 'sum', jaxreg 'mean'",
    ),
    "sse against a mean": (
        lambda p: torch.optim.SGD(p, lr=0.01),
        jr.optim.sgd(lr=0.01),
        {"jax_loss": jr.objective(jr.linear.predict, jr.losses.sse)},
        r"reduction: torch 'mean', jaxreg 'sum'",
    ),
    "loss option": (
        lambda p: torch.optim.SGD(p, lr=0.1),
        jr.optim.sgd(lr=0.1),
        {
            "torch_loss": functools.partial(F.smooth_l1_loss, beta=0.5),
            "jax_loss": jr.objective(jr.linear.predict, jr.losses.smooth_l1),
        },
        r"beta: torch 0.5, jaxreg 1.0",
    ),
}


def _wrong(torch_opt, jax_tx, kw):
    """(model, torch optimizer, a call of verify with the port `jax_tx`)."""
    x, y = _data()
    model = _model()
    opt = torch_opt(model.parameters())
    sched = jax_sched = None
    if "schedule" in kw:
        cls, args = kw["schedule"]
        sched = cls(opt, **args)
        jax_sched = kw["jax_schedule"]
    return (
        model,
        opt,
        lambda: parity.verify(
            model,
            kw.get("torch_loss", F.mse_loss),
            opt,
            kw.get("jax_loss", MSE),
            jax_tx,
            x,
            y,
            steps=5,
            torch_scheduler=sched,
            jax_schedule=jax_sched,
        ),
    )


def _untouched(model, opt, before):
    """Nothing was trained: the model's numbers are as they were, the optimizer took no step
    (torch's Adagrad builds its state in its constructor, with step 0)."""
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]), name
    assert all(float(s.get("step", 0)) == 0 for s in opt.state.values()), opt.state


@pytest.mark.parametrize(
    ("torch_opt", "jax_tx", "kw", "message"), WRONG_PORTS.values(), ids=WRONG_PORTS
)
def test_a_port_set_up_differently_is_refused_before_training(torch_opt, jax_tx, kw, message):
    model, opt, call = _wrong(torch_opt, jax_tx, kw)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    with pytest.raises(SettingsError, match=message):
        call()
    _untouched(model, opt, before)


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize(
    ("torch_opt", "jax_tx"),
    [
        (lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-8), jr.optim.adam(lr=0.01, eps=1e-6)),
        (lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-4), jr.optim.adam(lr=0.01)),
        (lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True), jr.optim.adam(lr=0.01)),
    ],
    ids=["eps", "weight_decay", "amsgrad"],
)
def test_short_float32_runs_of_wrong_ports_pass_the_comparison_alone(torch_opt, jax_tx):
    """Why the preflight exists: with check_settings=False these wrong float32 ports stay
    within tolerance over a short free run, where the trajectories cannot tell them apart
    (teacher forcing may still catch one: tests/test_parity_teacher.py)."""
    x, y = _data(dtype=np.float32)
    model = _model(torch.float32)
    opt = torch_opt(model.parameters())
    cmp = parity.verify(model, F.mse_loss, opt, MSE, jax_tx, x, y, steps=5, check_settings=False)
    assert cmp.free_passed, cmp.summary()


def test_a_wrong_port_fails_the_comparison_and_says_where():
    """With the preflight off, the comparison itself still catches a wrong learning rate."""
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cmp = parity.verify(
        model, F.mse_loss, opt, MSE, jr.optim.sgd(lr=0.1001), x, y, steps=20, check_settings=False
    )
    assert not cmp.passed
    with pytest.raises(parity.ParityError, match="verify: FAIL"):
        cmp.raise_if_failed()


def test_an_optax_port_is_compared_with_check_settings_off():
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cmp = parity.verify(
        model, F.mse_loss, opt, MSE, optax.sgd(0.1), x, y, steps=20, check_settings=False
    )
    assert cmp.passed, cmp.summary()


def test_both_sides_diverging_is_a_failure_not_a_pass():
    """lr 100 on this problem blows both programs up the same way: inf, then NaN, on each."""
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=100.0)
    cmp = parity.verify(model, F.mse_loss, opt, MSE, jr.optim.sgd(lr=100.0), x, y, steps=300)
    assert not np.isfinite(model.weight.detach().numpy()).all()  # torch did diverge
    assert not cmp.passed and cmp.max_rel == np.inf
    with pytest.raises(parity.ParityError, match="NaN or inf"):
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


# (arguments changed from a good call, the exception, what its message names). Every one
# is refused before any work: the model is not trained, the optimizer has no state.
BAD_CALLS = {
    "steps=0": ({"steps": 0}, ValueError, r"steps must be >= 1, got 0"),
    "steps=-1": ({"steps": -1}, ValueError, r"steps must be >= 1, got -1"),
    "steps=2.5": ({"steps": 2.5}, TypeError, r"steps must be an integer, got 2.5"),
    "steps=True": ({"steps": True}, TypeError, r"steps must be an integer, got True"),
    "steps='10'": ({"steps": "10"}, TypeError, r"steps must be an integer"),
    "no steps": ({"steps": None}, TypeError, r"steps="),
    "steps and epochs differ": ({"epochs": 3}, ValueError, r"steps \(5\) and epochs \(3\)"),
    "epochs=0 with batches": (
        {"steps": None, "epochs": 0, "batch_size": 8},
        ValueError,
        r"epochs must be >= 1, got 0",
    ),
    "steps with batches": ({"batch_size": 8}, ValueError, r"pass epochs="),
    "batch_size=0": ({"steps": None, "epochs": 2, "batch_size": 0}, ValueError, r"batch_size"),
    "batch_size=1.5": (
        {"steps": None, "epochs": 2, "batch_size": 1.5},
        TypeError,
        r"batch_size must be an integer",
    ),
    "drop_last leaves nothing": (
        {"steps": None, "epochs": 2, "batch_size": 100, "drop_last": True},
        ValueError,
        r"leaves no batch",
    ),
    "tolerance=-1": ({"tolerance": -1}, ValueError, r"tolerance .* >= 0; got -1"),
    "tolerance=nan": ({"tolerance": float("nan")}, ValueError, r"tolerance"),
    "tolerance='1e-5'": ({"tolerance": "1e-5"}, TypeError, r"tolerance must be"),
    "shuffle='yes'": ({"shuffle": "yes"}, TypeError, r"shuffle must be True or False"),
    "drop_last=1": ({"drop_last": 1}, TypeError, r"drop_last must be True or False"),
    "check_settings=None": ({"check_settings": None}, TypeError, r"check_settings must be"),
    "seed=-1": ({"seed": -1}, ValueError, r"seed must be >= 0"),
    "name=3": ({"name": 3}, TypeError, r"name must be a string"),
    "torch_model not a module": ({"torch_model": "model"}, TypeError, r"torch_model must be"),
    "torch_loss_fn missing": ({"torch_loss_fn": None}, TypeError, r"needs torch_loss_fn"),
    "torch_loss_fn not callable": ({"torch_loss_fn": 3}, TypeError, r"torch_loss_fn must be"),
    "torch_optimizer not an optimizer": (
        {"torch_optimizer": object()},
        TypeError,
        r"torch_optimizer must be a torch.optim.Optimizer",
    ),
    "jax_loss_fn missing": ({"jax_loss_fn": None}, TypeError, r"needs jax_loss_fn"),
    "jax_tx not a transformation": (
        {"jax_tx": jr.optim.sgd},
        TypeError,
        r"jax_tx must be an optax GradientTransformation",
    ),
    "no data": ({"x": None}, TypeError, r"needs the data x and y"),
    "integer x": ({"x": np.ones((40, 3), np.int64)}, TypeError, r"x must be floating point"),
    "rows differ": ({"y": np.ones((39, 1))}, ValueError, r"x has 40 rows and y 39"),
    "empty x": ({"x": np.ones((0, 3)), "y": np.ones((0, 1))}, ValueError, r"at least one row"),
    "jax_data not a pair": ({"jax_data": np.ones(3)}, TypeError, r"jax_data must be a pair"),
    "jax_data other numbers": (
        {"jax_data": (np.ones((40, 2)), np.ones((40, 1)))},
        ValueError,
        r"jax_data\[0\] has shape \(40, 2\)",
    ),
    "float32 x for a float64 model": (
        {"x": _data()[0].astype(np.float32)},
        ValueError,
        r"parameters are float64 but x is float32",
    ),
    "float32 jax params for a float64 model": (
        {"params": jr.linear.zeros(3, dtype=np.float32)},
        ValueError,
        r"parameters are float64 but the jax params are float32",
    ),
    "params whose leaves match no torch name": (
        {"params": [1.0]},
        ValueError,
        r"jax params \['0'\] are not parameters of the torch model.*names=",
    ),
}


@pytest.mark.parametrize(("change", "error", "message"), BAD_CALLS.values(), ids=BAD_CALLS)
def test_bad_arguments_are_refused_before_any_work(change, error, message):
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    args = {
        "torch_model": model,
        "torch_loss_fn": F.mse_loss,
        "torch_optimizer": opt,
        "jax_loss_fn": MSE,
        "jax_tx": jr.optim.sgd(lr=0.1),
        "x": x,
        "y": y,
        "steps": 5,
    }
    args.update(change)
    with pytest.raises(error, match=message):
        parity.verify(**args)
    _untouched(model, opt, before)


def test_unknown_param_names_are_refused():
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
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
