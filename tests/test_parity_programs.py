"""parity.programs: the one torch loop and the one jaxreg run every parity comparison uses."""

import numpy as np
import pytest
import torch

import jaxreg as jr
from parity.programs import jax_loop, torch_loop

X = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
Y = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)


def _line_program(update_cls, lr=0.1):
    """SPEC workflow 1: W = b = zeros(1), hypothesis = x * W + b, mean squared error."""
    W = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    params = {"W": W, "b": b}
    update = update_cls([W, b], lr) if update_cls is not torch_loop.OptimizerUpdate else None
    if update is None:
        update = torch_loop.OptimizerUpdate(torch.optim.SGD([W, b], lr=lr))
    return torch_loop.Program(
        lambda x: x * W + b, lambda h, y: torch.mean((h - y) ** 2), params, update
    )


@pytest.mark.parametrize(
    "update", [torch_loop.OptimizerUpdate, torch_loop.DataUpdate, torch_loop.NoGradUpdate]
)
def test_a_record_is_the_loss_before_and_the_parameters_after_the_update(update):
    program = _line_program(update, lr=0.1)
    first, second = torch_loop.records(program, torch_loop.full_batch(X, Y), 2, record_grads=True)
    # step 0 at W = b = 0: loss mean(y**2) = 14/3; dL/dW = -2 mean(x y) = -28/3,
    # dL/db = -2 mean(y) = -4 (float64; 1e-15 relative: a few roundings of a 3-term mean)
    assert (first.epoch, first.batch) == (0, 0) and (second.epoch, second.batch) == (1, 0)
    np.testing.assert_allclose(first.loss, 14 / 3, rtol=1e-15)
    np.testing.assert_allclose(first.grads["W"], [-28 / 3], rtol=1e-15)
    np.testing.assert_allclose(first.grads["b"], [-4.0], rtol=1e-15)
    # every update form computes p - lr * g, one product and one difference: exact
    for k in ("W", "b"):
        assert first.params[k].tolist() == (0.0 - 0.1 * first.grads[k]).tolist()
        assert second.params[k].tolist() == (first.params[k] - 0.1 * second.grads[k]).tolist()
    assert second.loss < first.loss


def test_records_are_copies_not_views_of_the_live_tensors():
    program = _line_program(torch_loop.OptimizerUpdate)
    records = list(torch_loop.records(program, torch_loop.full_batch(X, Y), 3))
    assert len({r.params["W"].item() for r in records}) == 3


def test_lrs_are_set_before_each_epoch():
    """A program in phases: lr 0.1 for two epochs, then 0 (the parameters stop moving)."""
    for update in (torch_loop.OptimizerUpdate, torch_loop.DataUpdate, torch_loop.NoGradUpdate):
        program = _line_program(update, lr=123.0)  # overwritten before epoch 0
        rec = list(
            torch_loop.records(program, torch_loop.full_batch(X, Y), 4, lrs=[0.1] * 2 + [0.0] * 2)
        )
        w = [r.params["W"].item() for r in rec]
        assert w[0] != w[1] and w[1] == w[2] == w[3], (update.__name__, w)


def test_schedulers_step_after_every_epoch_and_batches_follow_the_loader():
    x = torch.arange(10.0, dtype=torch.float64)[:, None]
    y = 2 * x
    layer = torch.nn.Linear(1, 1).double()
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    seen_lrs = []

    def loss_fn(h, t):
        seen_lrs.append(opt.param_groups[0]["lr"])
        return torch.nn.functional.mse_loss(h, t)

    loader = torch_loop.data_loader(x, y, batch_size=4, shuffle=True, seed=0, drop_last=False)
    program = torch_loop.Program(
        layer, loss_fn, dict(layer.named_parameters()), torch_loop.OptimizerUpdate(opt), (sched,)
    )
    rec = list(torch_loop.records(program, torch_loop.loader_batches(loader), 3))
    assert [(r.epoch, r.batch) for r in rec] == [(e, b) for e in range(3) for b in range(3)]
    assert seen_lrs == [0.01] * 3 + [0.005] * 3 + [0.0025] * 3
    run = torch_loop.trajectory(rec, ["weight", "bias"])
    assert run.params["weight"].shape == (9, 1, 1) and run.params["bias"].shape == (9, 1)


def test_batch_schedulers_step_after_every_update():
    x = torch.arange(10.0, dtype=torch.float64)[:, None]
    layer = torch.nn.Linear(1, 1).double()
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    seen_lrs = []

    def loss_fn(h, t):
        seen_lrs.append(opt.param_groups[0]["lr"])
        return torch.nn.functional.mse_loss(h, t)

    loader = torch_loop.data_loader(x, 2 * x, batch_size=5, shuffle=False, seed=0, drop_last=False)
    program = torch_loop.Program(
        layer,
        loss_fn,
        dict(layer.named_parameters()),
        torch_loop.OptimizerUpdate(opt),
        batch_schedulers=(sched,),
    )
    assert len(list(torch_loop.records(program, torch_loop.loader_batches(loader), 3))) == 6
    assert seen_lrs == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025]


def test_run_restores_torchs_thread_count():
    before = torch.get_num_threads()
    torch_loop.run(_line_program(torch_loop.OptimizerUpdate), torch_loop.full_batch(X, Y), 2)
    assert torch.get_num_threads() == before


def _jax_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 2))
    y = x @ np.array([[1.0], [-1.0]]) + 0.5
    return (
        jr.objective(jr.linear.predict, jr.losses.mse),
        jr.linear.zeros(2, dtype=np.float64),
        x,
        y,
    )


def test_fit_and_the_make_step_loop_follow_the_same_trajectory():
    """Both jaxreg entry points, mini-batches in a replayed order and a schedule: the same
    trajectory to float64 rounding (1e-12, parity's float64 bound: the two may sum the
    gradient in other orders, a few u per step)."""
    loss_fn, params, x, y = _jax_problem()
    order = np.stack([np.random.default_rng(e).permutation(10) for e in range(4)])
    runs = [
        jax_loop.run(
            loss_fn,
            jr.optim.sgd(lr=0.1, momentum=0.5),
            params,
            x,
            y,
            epochs=4,
            batch_size=4,
            order=order,
            schedule=jr.schedules.StepLR(2, 0.5),
            base_lr=0.1,
            loop=loop,
        )
        for loop in jax_loop.LOOPS
    ]
    (p1, l1, h1), (p2, l2, h2) = runs
    np.testing.assert_allclose(np.asarray(p1.bias), np.asarray(p2.bias), rtol=1e-12)
    assert l1.shape == l2.shape == (4 * 3,)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(h1.weight), np.asarray(h2.weight), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(p1.weight), np.asarray(h2.weight)[-1], rtol=1e-12)


def test_a_per_batch_schedule_in_both_jax_loops():
    loss_fn, params, x, y = _jax_problem()
    runs = [
        jax_loop.run(
            loss_fn,
            jr.optim.sgd(lr=0.1),
            params,
            x,
            y,
            epochs=3,
            batch_size=4,
            shuffle=False,
            schedule=jr.schedules.per_batch(jr.schedules.StepLR(2, 0.5)),
            base_lr=0.1,
            loop=loop,
        )
        for loop in jax_loop.LOOPS
    ]
    (_, l1, h1), (_, l2, h2) = runs
    np.testing.assert_allclose(l1, l2, rtol=1e-12)  # the bound of the test above
    np.testing.assert_allclose(np.asarray(h1.weight), np.asarray(h2.weight), rtol=1e-12)


def test_jax_loop_errors():
    loss_fn, params, x, y = _jax_problem()
    with pytest.raises(ValueError, match="loop must be one of fit, make_step; got 'scan'"):
        jax_loop.run(loss_fn, jr.optim.sgd(lr=0.1), params, x, y, epochs=1, loop="scan")
    with pytest.raises(ValueError, match="needs base_lr"):
        jax_loop.run(
            loss_fn,
            jr.optim.sgd(lr=0.1),
            params,
            x,
            y,
            epochs=1,
            schedule=jr.schedules.StepLR(1, 0.5),
            loop="make_step",
        )
