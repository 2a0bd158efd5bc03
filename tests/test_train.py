"""objective, make_step and fit: semantics, caching and validation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr

# fit and a Python loop over make_step run the same jitted arithmetic in float64 (the loop
# body is the same `update`); XLA may fuse a scan body differently from a standalone step,
# so allow a few ulps of float64 over the run rather than demanding bit equality.
LOOP_VS_STEPS_RTOL = 1e-13

# Against torch in float64: rounding differs only in summation order, a few ulps a step.
TORCH_F64_RTOL = 1e-12

# A jitted loss against the same loss run op by op: XLA rewrites x / n as x * (1 / n) and
# fuses differently, a few float64 ulps.
JIT_VS_EAGER_RTOL = 4 * np.finfo(np.float64).eps

MSE = jr.objective(jr.linear.predict, jr.losses.mse)


def _data(n=10, d=2, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (x @ np.arange(1, d + 1) + 0.5 + 0.1 * rng.normal(size=n)).astype(dtype)[:, None]
    return x, y


class CountingLoss:
    """MSE that counts how often it is traced.

    A compile traces the loss once or more (a scan may trace its body twice); a cache hit
    traces nothing. So "no recompile" is asserted as "no new traces".
    """

    def __init__(self):
        self.traces = 0

    def __call__(self, params, x, y):
        self.traces += 1
        return MSE(params, x, y)


def _params(d=2, dtype=jnp.float64):
    return jr.linear.Params(jnp.full((1, d), 0.3, dtype), jnp.full((1,), -0.2, dtype))


def _step_loop(loss_fn, tx, params, batches):
    """Reference: a Python loop over the jitted step, one (x, y) batch per update."""
    step = jr.make_step(loss_fn, tx)
    state = tx.init(params)
    losses, history = [], []
    for xb, yb in batches:
        params, state, loss = step(params, state, xb, yb)
        losses.append(float(loss))
        history.append(params)
    return params, np.array(losses), jax.tree.map(lambda *a: jnp.stack(a), *history)


def _assert_close_tree(a, b, rtol):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=0)


def test_objective_is_hashable_by_value():
    a = jr.objective(jr.linear.predict, jr.losses.huber, delta=2.0)
    b = jr.objective(jr.linear.predict, jr.losses.huber, delta=2.0)
    c = jr.objective(jr.linear.predict, jr.losses.huber, delta=3.0)
    assert a == b and hash(a) == hash(b)
    assert a != c
    x, y = _data()
    p = _params()
    expected = jr.losses.huber(jr.linear.predict(p, x), y, delta=2.0)
    assert float(a(p, x, y)) == float(expected)


def test_step_is_one_sgd_update_with_loss_before_it():
    x, y = _data()
    p = _params()
    lr = 0.05
    tx = optax.sgd(lr)
    step = jr.make_step(MSE, tx)
    new_p, _, loss = step(p, tx.init(p), x, y)
    grads = jax.grad(MSE)(p, x, y)
    np.testing.assert_allclose(loss, MSE(p, x, y), rtol=JIT_VS_EAGER_RTOL)
    _assert_close_tree(new_p, jax.tree.map(lambda a, g: a - lr * g, p, grads), rtol=1e-15)


def test_step_does_not_recompile():
    x, y = _data()
    p = _params()
    tx = optax.sgd(0.1)
    loss = CountingLoss()
    step = jr.make_step(loss, tx)
    s = tx.init(p)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    p, s, _ = step(p, s, xj, yj)
    traced = loss.traces
    for _ in range(3):
        p, s, _ = step(p, s, xj, yj)
    x2, y2 = _data(seed=1)  # new values, same shapes, host arrays: same program
    p, s, _ = step(p, s, x2, y2)
    assert loss.traces == traced


def test_step_promotes_integer_data_without_retracing():
    p = _params(d=1)
    tx = optax.sgd(0.01)
    loss_fn = CountingLoss()
    step = jr.make_step(loss_fn, tx)
    xi = jnp.arange(3).reshape(3, 1)
    yi = 2 * xi
    s = tx.init(p)
    p1, s, loss = step(p, s, xi, yi)
    traced = loss_fn.traces
    step(p1, s, xi, yi)
    assert loss.dtype == jnp.float64
    assert loss_fn.traces == traced
    expected = MSE(p, np.arange(3.0).reshape(3, 1), 2 * np.arange(3.0).reshape(3, 1))
    np.testing.assert_allclose(loss, expected, rtol=JIT_VS_EAGER_RTOL)


@pytest.mark.parametrize("where", ["x", "y"])
@pytest.mark.parametrize("kind", ["numpy", "jax"])
def test_step_rejects_nonfinite_data(where, kind):
    x, y = _data()
    (x if where == "x" else y)[3, 0] = np.nan
    if kind == "jax":
        x, y = jnp.asarray(x), jnp.asarray(y)
    tx = optax.sgd(0.1)
    p = _params()
    with pytest.raises(ValueError, match=rf"{where} contains 1 non-finite.*row 3"):
        jr.make_step(MSE, tx)(p, tx.init(p), x, y)


def test_fit_equals_python_loop_over_steps():
    x, y = _data()
    p0 = _params()
    tx = optax.sgd(0.05, momentum=0.9)
    res = jr.fit(MSE, tx, p0, x, y, steps=50)
    ref_p, ref_losses, ref_hist = _step_loop(MSE, tx, p0, [(x, y)] * 50)
    np.testing.assert_allclose(res.losses, ref_losses, rtol=LOOP_VS_STEPS_RTOL)
    _assert_close_tree(res.history, ref_hist, LOOP_VS_STEPS_RTOL)
    _assert_close_tree(res.params, ref_p, LOOP_VS_STEPS_RTOL)
    assert res.losses.shape == (50,)
    assert res.history.weight.shape == (50, 1, 2)
    # losses[0] is the loss at the initial parameters; history[-1] is the final params.
    np.testing.assert_allclose(res.losses[0], MSE(p0, x, y), rtol=JIT_VS_EAGER_RTOL)
    _assert_close_tree(jax.tree.map(lambda a: a[-1], res.history), res.params, rtol=0)


def test_fit_accepts_dict_params_and_matches_the_torch_tutorial():
    # The first tutorial, in float64: hypothesis = x * W + b with W, b of shape (1,).
    import torch

    x = np.array([[1.0], [2.0], [3.0]])
    y = np.array([[1.0], [2.0], [3.0]])
    W = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([W, b], lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    torch_costs = []
    for _ in range(1001):
        cost = torch.mean((xt * W + b - yt) ** 2)
        torch_costs.append(cost.item())
        opt.zero_grad()
        cost.backward()
        opt.step()

    def cost_fn(p, x, y):
        # torch broadcasts (3, 1) * (1,); with rank promotion off we say it explicitly.
        return jnp.mean((x * p["W"][None, :] + p["b"][None, :] - y) ** 2)

    p0 = {"W": jnp.zeros(1), "b": jnp.zeros(1)}
    res = jr.fit(cost_fn, optax.sgd(0.01), p0, x, y, steps=1001)
    # float64, 1001 steps of plain SGD: torch and XLA round a few operations differently
    # (sum order inside the mean), so equal to ~1e-13 relative, not bit for bit.
    np.testing.assert_allclose(res.losses, torch_costs, rtol=TORCH_F64_RTOL)
    np.testing.assert_allclose(res.params["W"], W.detach().numpy(), rtol=TORCH_F64_RTOL)
    np.testing.assert_allclose(res.params["b"], b.detach().numpy(), rtol=TORCH_F64_RTOL)


def test_fit_does_not_recompile_for_new_values():
    x, y = _data(n=12)
    tx = optax.sgd(0.01)
    loss = CountingLoss()
    jr.fit(loss, tx, _params(), x, y, steps=20)
    traced = loss.traces
    x2, y2 = _data(n=12, seed=5)
    jr.fit(loss, tx, jax.tree.map(lambda a: a + 1, _params()), x2, y2, steps=20)
    jr.fit(loss, tx, _params(), jnp.asarray(x2), jnp.asarray(y2), steps=20)
    assert loss.traces == traced


def test_fit_record_history_off():
    x, y = _data()
    res = jr.fit(MSE, optax.sgd(0.01), _params(), x, y, steps=5, record_history=False)
    assert res.history is None
    full = jr.fit(MSE, optax.sgd(0.01), _params(), x, y, steps=5)
    _assert_close_tree(res.params, full.params, rtol=0)


def test_fit_continues_from_opt_state():
    x, y = _data()
    tx = optax.sgd(0.02, momentum=0.5)
    whole = jr.fit(MSE, tx, _params(), x, y, steps=20)
    first = jr.fit(MSE, tx, _params(), x, y, steps=8)
    rest = jr.fit(MSE, tx, first.params, x, y, steps=12, opt_state=first.opt_state)
    _assert_close_tree(rest.params, whole.params, LOOP_VS_STEPS_RTOL)
    np.testing.assert_allclose(
        np.concatenate([first.losses, rest.losses]), whole.losses, rtol=LOOP_VS_STEPS_RTOL
    )


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last"), [(10, 3, False), (10, 5, False), (10, 3, True), (4, 8, False)]
)
def test_fit_sequential_minibatches(n, batch_size, drop_last):
    x, y = _data(n=n)
    tx = optax.sgd(0.05)
    res = jr.fit(
        MSE,
        tx,
        _params(),
        x,
        y,
        epochs=3,
        batch_size=batch_size,
        shuffle=False,
        drop_last=drop_last,
    )
    starts = range(0, n, batch_size)
    batches = [(x[s : s + batch_size], y[s : s + batch_size]) for s in starts]
    if drop_last:
        batches = [b for b in batches if b[0].shape[0] == batch_size]
    _, ref_losses, ref_hist = _step_loop(MSE, tx, _params(), batches * 3)
    np.testing.assert_allclose(res.losses, ref_losses, rtol=LOOP_VS_STEPS_RTOL)
    _assert_close_tree(res.history, ref_hist, LOOP_VS_STEPS_RTOL)


def test_fit_replays_an_explicit_order():
    n, bs, epochs = 10, 4, 3
    x, y = _data(n=n)
    rng = np.random.default_rng(7)
    order = np.stack([rng.permutation(n) for _ in range(epochs)])
    tx = optax.adam(0.01)
    res = jr.fit(MSE, tx, _params(), x, y, epochs=epochs, batch_size=bs, order=order)
    batches = [(x[o[s : s + bs]], y[o[s : s + bs]]) for o in order for s in range(0, n, bs)]
    _, ref_losses, ref_hist = _step_loop(MSE, tx, _params(), batches)
    np.testing.assert_allclose(res.losses, ref_losses, rtol=LOOP_VS_STEPS_RTOL)
    _assert_close_tree(res.history, ref_hist, LOOP_VS_STEPS_RTOL)


def test_fit_shuffles_with_the_documented_key_rule():
    n, bs, epochs = 9, 4, 2
    x, y = _data(n=n)
    key = jax.random.key(3)
    tx = optax.sgd(0.05)
    shuffled = jr.fit(MSE, tx, _params(), x, y, epochs=epochs, batch_size=bs, key=key)
    order = np.stack([np.asarray(jr.fitting.epoch_permutation(key, e, n)) for e in range(epochs)])
    assert all(sorted(o) == list(range(n)) for o in order)
    assert not np.array_equal(order[0], order[1])
    replay = jr.fit(MSE, tx, _params(), x, y, epochs=epochs, batch_size=bs, order=order)
    _assert_close_tree(shuffled.history, replay.history, rtol=0)
    again = jr.fit(MSE, tx, _params(), x, y, epochs=epochs, batch_size=bs, key=key)
    np.testing.assert_array_equal(shuffled.losses, again.losses)


def test_fit_reports_divergence_with_the_first_bad_step():
    x = np.array([[1.0], [2.0], [3.0]]) * 100
    y = np.array([[1.0], [2.0], [3.0]])
    p0 = jr.linear.zeros(1, dtype=jnp.float64)
    with pytest.raises(jr.DivergenceError, match=r"step \d+.*smaller") as err:
        jr.fit(MSE, optax.sgd(1.0), p0, x, y, steps=400)
    raw = jr.fit(MSE, optax.sgd(1.0), p0, x, y, steps=400, check_finite=False)
    first_bad = int(np.argmin(np.isfinite(raw.losses)))
    assert not np.isfinite(raw.losses).all()
    assert f"step {first_bad}" in str(err.value)
    assert np.isfinite(raw.losses[:first_bad]).all()


def test_fit_progress_bar_gives_the_same_result(capsys):
    x, y = _data()
    plain = jr.fit(MSE, optax.sgd(0.01), _params(), x, y, steps=57)
    shown = jr.fit(MSE, optax.sgd(0.01), _params(), x, y, steps=57, progress=10)
    _assert_close_tree(plain.history, shown.history, rtol=0)
    np.testing.assert_array_equal(plain.losses, shown.losses)
    assert "57/57" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs steps"),
        ({"steps": 0}, "positive int"),
        ({"steps": 5, "epochs": 6}, "same thing"),
        ({"steps": 5, "order": np.zeros((5, 10), int)}, "only apply with batch_size"),
        ({"epochs": 2, "batch_size": 3}, "need a key"),
        ({"epochs": 2, "batch_size": 3, "order": np.zeros((3, 10), int)}, r"shape \(epochs, n\)"),
        ({"epochs": 1, "batch_size": 3, "order": np.full((1, 10), 10)}, "outside"),
        ({"steps": 7, "batch_size": 3, "shuffle": False}, "whole number of epochs"),
        ({"epochs": 1, "batch_size": 30, "drop_last": True, "shuffle": False}, "leaves no batch"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs, message):
    x, y = _data()
    with pytest.raises(ValueError, match=message):
        jr.fit(MSE, optax.sgd(0.1), _params(), x, y, **kwargs)


def test_fit_rejects_mismatched_rows_and_shapes():
    x, y = _data()
    with pytest.raises(ValueError, match="same number of rows"):
        jr.fit(MSE, optax.sgd(0.1), _params(), x, y[:-1], steps=2)
    with pytest.raises(ValueError, match=r"\(10, 1\).*\(10,\)"):
        jr.fit(MSE, optax.sgd(0.1), _params(), x, y[:, 0], steps=2)
    with pytest.raises(ValueError, match="in_features=2"):
        jr.fit(MSE, optax.sgd(0.1), _params(), x[:, :1], y, steps=2)
    with pytest.raises(ValueError, match="empty"):
        jr.fit(MSE, optax.sgd(0.1), _params(), x[:0], y[:0], steps=2)


def test_fit_rejects_integer_params():
    x, y = _data()
    p = jr.linear.Params(jnp.ones((1, 2), jnp.int32), jnp.zeros((1,), jnp.int32))
    with pytest.raises(TypeError, match="floating point"):
        jr.fit(MSE, optax.sgd(0.1), p, x, y, steps=2)


def test_fit_does_not_recompile_when_the_optimizer_is_rebuilt():
    x, y = _data(n=12)
    loss = CountingLoss()
    losses = []

    def run(lr, momentum, schedule=None):
        tx = jr.optim.sgd(lr=lr, momentum=momentum)
        res = jr.fit(loss, tx, _params(), x, y, steps=10, schedule=schedule)
        losses.append(float(res.losses[-1]))

    run(0.1, 0.9)
    traced = loss.traces
    run(0.01, 0.5)
    run(0.3, 0.7)
    assert loss.traces == traced  # another lr and momentum: the same program
    run(0.05, 0.9, jr.schedules.StepLR(step_size=3, gamma=0.5))
    traced = loss.traces  # a schedule is another program: its lrs are an input array
    run(0.05, 0.9, jr.schedules.ExponentialLR(gamma=0.9))
    run(0.2, 0.9, jr.schedules.CosineAnnealingLR(T_max=10))
    assert loss.traces == traced
    assert len(set(losses)) == len(losses)  # ... and the numbers really are the new ones


def test_fit_schedule_matches_torch_stepping_per_epoch():
    import torch

    n, bs, epochs = 12, 5, 6
    x, y = _data(n=n)
    rng = np.random.default_rng(1)
    order = np.stack([rng.permutation(n) for _ in range(epochs)])
    p0 = _params()
    model = torch.nn.Linear(2, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(np.asarray(p0.weight)))
        model.bias.copy_(torch.tensor(np.asarray(p0.bias)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    torch_losses = []
    for e in range(epochs):
        for s in range(0, n, bs):
            idx = torch.from_numpy(order[e, s : s + bs])
            loss = torch.nn.functional.mse_loss(model(xt[idx]), yt[idx])
            torch_losses.append(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    res = jr.fit(
        MSE,
        jr.optim.sgd(lr=0.1, momentum=0.9, nesterov=True),
        p0,
        x,
        y,
        epochs=epochs,
        batch_size=bs,
        order=order,
        schedule=jr.schedules.MultiStepLR([2, 4], gamma=0.3),
    )
    np.testing.assert_allclose(res.losses, torch_losses, rtol=TORCH_F64_RTOL)
    np.testing.assert_allclose(
        res.params.weight, model.weight.detach().numpy(), rtol=TORCH_F64_RTOL
    )
    np.testing.assert_allclose(res.params.bias, model.bias.detach().numpy(), rtol=TORCH_F64_RTOL)


def _minibatch_loop(loss_fn, tx, params, x, y, orders, batch_size, *, drop_last, schedule=None):
    """Reference: a Python loop over `jr.make_step` on the batches of each epoch's order
    (`batch_indices`, the rows a torch DataLoader yields), `set_lr` where torch's
    scheduler would step (before each epoch, or before each update when per batch)."""
    step = jr.make_step(loss_fn, tx)
    state = tx.init(params)
    n = x.shape[0]
    per_epoch = len(list(jr.loop.batches.batch_indices(n, batch_size, drop_last=drop_last)))
    per_batch = schedule is not None and schedule.interval == "batch"
    lr0 = jr.optim.hyperparams_of(tx)["lr"]
    count = len(orders) * (per_epoch if per_batch else 1)
    lrs = None if schedule is None else schedule.lrs(lr0, count)
    losses, history = [], []
    for epoch, order in enumerate(orders):
        if lrs is not None and not per_batch:
            state = jr.optim.set_lr(state, lrs[epoch])
        for idx in jr.loop.batches.batch_indices(n, batch_size, order=order, drop_last=drop_last):
            if lrs is not None and per_batch:
                state = jr.optim.set_lr(state, lrs[len(losses)])
            params, state, loss = step(params, state, x[idx], y[idx])
            losses.append(float(loss))
            history.append(params)
    return np.array(losses), jax.tree.map(lambda *a: jnp.stack(a), *history)


def _key_orders(key, epochs, n):
    """The documented order of a shuffled fit, epoch by epoch (jax.random.permutation)."""
    return [np.asarray(jr.fitting.epoch_permutation(key, e, n)) for e in range(epochs)]


# n < 1024 shuffles with XLA's sort, n >= 1024 with the host sort
# (`jaxreg.gradients.host_shuffle`); both
# with a smaller last batch, dropped, and a batch larger than the data.
@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last"),
    [(9, 4, False), (9, 4, True), (1100, 256, False), (1100, 256, True), (1100, 2000, False)],
)
def test_fit_shuffled_minibatches_equal_a_step_loop(n, batch_size, drop_last):
    x, y = _data(n=n, seed=2)
    key = jax.random.key(8)
    tx = jr.optim.sgd(lr=0.05, momentum=0.5)
    res = jr.fit(
        MSE, tx, _params(), x, y, epochs=3, batch_size=batch_size, key=key, drop_last=drop_last
    )
    orders = _key_orders(key, 3, n)
    ref_losses, ref_hist = _minibatch_loop(
        MSE, tx, _params(), x, y, orders, batch_size, drop_last=drop_last
    )
    np.testing.assert_allclose(res.losses, ref_losses, rtol=LOOP_VS_STEPS_RTOL)
    _assert_close_tree(res.history, ref_hist, LOOP_VS_STEPS_RTOL)


@pytest.mark.parametrize("interval", ["epoch", "batch"])
@pytest.mark.parametrize("mode", ["key", "order", "sequential"])
def test_fit_minibatch_schedule_equals_a_step_loop(mode, interval):
    n, bs, epochs = 1100, 256, 3
    x, y = _data(n=n, seed=3)
    schedule = jr.schedules.StepLR(step_size=2, gamma=0.5)
    if interval == "batch":
        schedule = jr.schedules.per_batch(schedule)
    tx = jr.optim.sgd(lr=0.05, momentum=0.9)
    key = jax.random.key(1)
    rng = np.random.default_rng(4)
    orders = {
        "key": _key_orders(key, epochs, n),
        "order": [rng.permutation(n) for _ in range(epochs)],
        "sequential": [np.arange(n)] * epochs,
    }[mode]
    kwargs = {
        "key": {"key": key},
        "order": {"order": np.stack(orders)},
        "sequential": {"shuffle": False},
    }[mode]
    res = jr.fit(
        MSE, tx, _params(), x, y, epochs=epochs, batch_size=bs, schedule=schedule, **kwargs
    )
    ref_losses, ref_hist = _minibatch_loop(
        MSE, tx, _params(), x, y, orders, bs, drop_last=False, schedule=schedule
    )
    np.testing.assert_allclose(res.losses, ref_losses, rtol=LOOP_VS_STEPS_RTOL)
    _assert_close_tree(res.history, ref_hist, LOOP_VS_STEPS_RTOL)


@pytest.mark.parametrize("n", [9, 1100])
@pytest.mark.parametrize("mode", ["key", "order"])
def test_fit_epoch_order_does_not_depend_on_progress_chunks(mode, n):
    # With progress= the loop runs in chunks of epochs, each from its `epoch0`: epoch e
    # must see the same rows and learning rate as in one run, bit for bit.
    x, y = _data(n=n, seed=5)
    epochs, bs = 7, 4 if n < 100 else 256
    kwargs = (
        {"key": jax.random.key(6)}
        if mode == "key"
        else {"order": np.stack([np.random.default_rng(e).permutation(n) for e in range(epochs)])}
    )
    tx = jr.optim.sgd(lr=0.02, momentum=0.5)
    schedule = jr.schedules.per_batch(jr.schedules.ExponentialLR(gamma=0.99))

    def run(**more):
        return jr.fit(
            MSE,
            tx,
            _params(),
            x,
            y,
            epochs=epochs,
            batch_size=bs,
            schedule=schedule,
            **kwargs,
            **more,
        )

    whole, chunked = run(), run(progress=3)  # chunks of 3, 3 and 1 epochs
    np.testing.assert_array_equal(chunked.losses, whole.losses)
    _assert_close_tree(chunked.history, whole.history, rtol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_replayed_order_trains_on_the_rows_that_slicing_gives(dtype):
    # order= gathers each batch's rows inside the step; training on the same rows laid
    # out in that order (sequential slices) is the same arithmetic: bit for bit.
    n, bs = 1100, 256
    x, y = _data(n=n, seed=7, dtype=dtype)
    o = np.random.default_rng(8).permutation(n)
    p0 = _params(dtype=dtype)
    tx = jr.optim.sgd(lr=0.05)
    gathered = jr.fit(MSE, tx, p0, x, y, epochs=1, batch_size=bs, order=o[None])
    sliced = jr.fit(MSE, tx, p0, x[o], y[o], epochs=1, batch_size=bs, shuffle=False)
    np.testing.assert_array_equal(gathered.losses, sliced.losses)
    _assert_close_tree(gathered.history, sliced.history, rtol=0)


def test_fit_shuffled_minibatches_do_not_recompile_for_a_new_key():
    x, y = _data(n=1100)
    loss = CountingLoss()
    tx = optax.sgd(0.01)
    first = jr.fit(loss, tx, _params(), x, y, epochs=2, batch_size=256, key=0)
    traced = loss.traces
    second = jr.fit(loss, tx, _params(), x, y, epochs=2, batch_size=256, key=jax.random.key(1))
    assert loss.traces == traced
    assert not np.array_equal(first.losses, second.losses)  # ... and another order ran
