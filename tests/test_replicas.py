"""Per-replica mini-batches (`fit(..., sampler=DistributedSampler(...))`,
`make_step(replicas=True)`) on one device, against torch itself:

- `torch_randperm` is `torch.randperm` with a seeded generator, element for element;
- `DistributedSampler.indices` is what torch's `DistributedSampler` yields for each rank
  and epoch (shuffled or not, padded or cut), element for element;
- a fit with R simulated replicas follows torch's DDP arithmetic written out in one
  process (each rank's batch from torch's own sampler and DataLoader, `loss.backward()`
  per rank, the gradients averaged into `p.grad`, `optimizer.step()`) within parity's
  float64 bound;
- the options are checked at the boundary, with messages that name the fix.

The same computation split over 4 simulated devices and over 2 processes:
tests/test_distributed_replicas.py and tests/test_parity_distributed.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data import DistributedSampler as TorchSampler

import jaxreg as jr
from jaxreg.distributed import DistributedSampler, torch_randperm
from parity.tolerances import FLOAT64

# torch's float64 DDP arithmetic against jaxreg's: parity's float64 bound (a few u a step
# from the order of sums, damped by the descent; parity.tolerances says why 1e-12).
RTOL = FLOAT64.rtol


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 4099])
@pytest.mark.parametrize("seed", [0, 3, 2**31 + 7, 2**40 + 11])
def test_torch_randperm_is_torchs(n, seed):
    g = torch.Generator()
    g.manual_seed(seed)
    want = torch.randperm(n, generator=g).numpy()
    np.testing.assert_array_equal(torch_randperm(n, seed), want)


SAMPLER_CASES = [
    (n, replicas, shuffle, drop_last)
    for n in (1, 5, 10, 64, 101)
    for replicas in (1, 2, 3, 4, 8)
    for shuffle in (True, False)
    for drop_last in (False, True)
    if not (drop_last and n < replicas)  # no row per replica: fit refuses it (below)
]


@pytest.mark.parametrize("n, replicas, shuffle, drop_last", SAMPLER_CASES)
def test_sampler_indices_are_torchs(n, replicas, shuffle, drop_last):
    ds = TensorDataset(torch.arange(n))
    ours = DistributedSampler(shuffle=shuffle, seed=17, drop_last=drop_last)
    for epoch in (0, 1, 5):
        got = ours.indices(n, epoch, replicas)
        for rank in range(replicas):
            theirs = TorchSampler(
                ds, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=17, drop_last=drop_last
            )
            theirs.set_epoch(epoch)
            np.testing.assert_array_equal(got[rank], list(theirs))


def test_sampler_with_a_given_order_uses_it():
    order = np.arange(10)[::-1]
    got = DistributedSampler(drop_last=False).indices(10, 0, 4, order=order)
    np.testing.assert_array_equal(got, [[9, 5, 1], [8, 4, 0], [7, 3, 9], [6, 2, 8]])


def _torch_ddp_in_one_process(x, y, w0, b0, *, replicas, batch_size, epochs, seed, drop_last):
    """DDP's arithmetic without a process group: per rank, torch's own sampler and
    DataLoader; per step, each rank's gradient of its batch's loss; p.grad = their mean;
    optimizer.step(). Returns (mean of the ranks' losses per step, weights after each)."""
    ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    model = torch.nn.Linear(x.shape[1], y.shape[1], dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w0))
        model.bias.copy_(torch.from_numpy(b0))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    samplers = [
        TorchSampler(ds, num_replicas=replicas, rank=r, shuffle=True, seed=seed)
        for r in range(replicas)
    ]
    loaders = [
        DataLoader(ds, batch_size=batch_size, sampler=s, drop_last=drop_last) for s in samplers
    ]
    losses, weights = [], []
    for epoch in range(epochs):
        for s in samplers:
            s.set_epoch(epoch)
        for batches in zip(*loaders, strict=True):
            grads, step_losses = [], []
            for xb, yb in batches:
                model.zero_grad()
                loss = torch.nn.functional.mse_loss(model(xb), yb)
                loss.backward()
                grads.append([p.grad.clone() for p in model.parameters()])
                step_losses.append(loss.item())
            for p, *g in zip(model.parameters(), *grads, strict=True):
                p.grad = sum(g) / replicas
            opt.step()
            losses.append(np.mean(step_losses))
            weights.append(model.weight.detach().numpy().copy())
    return np.array(losses), np.stack(weights)


@pytest.mark.parametrize(
    "n, replicas, batch_size, drop_last",
    [(50, 4, 4, False), (50, 4, 5, True), (37, 3, 8, False), (64, 2, 32, False)],
)
def test_fit_follows_torch_ddp_arithmetic(n, replicas, batch_size, drop_last):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 3))
    y = x @ rng.normal(size=(3, 2)) + 0.1 * rng.normal(size=(n, 2))
    w0, b0 = rng.normal(size=(2, 3)) * 0.3, rng.normal(size=2) * 0.3
    want_losses, want_w = _torch_ddp_in_one_process(
        x, y, w0, b0, replicas=replicas, batch_size=batch_size, epochs=2, seed=9,
        drop_last=drop_last,
    )  # fmt: skip
    p = jr.linear.Params(jnp.asarray(w0), jnp.asarray(b0))
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    sampler = DistributedSampler(num_replicas=replicas, seed=9)
    got = jr.fit(
        loss_fn, jr.optim.sgd(0.05, momentum=0.9), p, x, y,
        epochs=2, batch_size=batch_size, drop_last=drop_last, sampler=sampler,
    )  # fmt: skip
    assert got.losses.shape == want_losses.shape
    scale = np.max(np.abs(want_losses))
    assert np.max(np.abs(got.losses - want_losses)) <= RTOL * scale
    w_scale = np.max(np.abs(want_w))
    assert np.max(np.abs(np.asarray(got.history.weight) - want_w)) <= RTOL * w_scale


def test_fit_with_torchs_order_arrays_equals_the_computed_order():
    """`order=` (each epoch's global permutation, here torch.randperm's own) gives the
    same run as the sampler's own computation of it."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 1))
    p = jr.linear.Params(jnp.zeros((1, 2)), jnp.zeros(1))
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    order = []
    for e in range(3):
        g = torch.Generator()
        g.manual_seed(4 + e)
        order.append(torch.randperm(30, generator=g).numpy())
    kw = dict(epochs=3, batch_size=4)
    a = jr.fit(loss_fn, jr.optim.adam(0.1), p, x, y, sampler=DistributedSampler(2, seed=4), **kw)
    b = jr.fit(
        loss_fn, jr.optim.adam(0.1), p, x, y,
        sampler=DistributedSampler(2, seed=999), order=np.stack(order), **kw,
    )  # fmt: skip
    np.testing.assert_array_equal(a.losses, b.losses)
    c = jr.fit(loss_fn, jr.optim.adam(0.1), p, x, y, sampler=DistributedSampler(2, seed=5), **kw)
    assert not np.array_equal(a.losses, c.losses)  # the seed matters


def test_make_step_replicas_equals_fit():
    """make_step(replicas=True) over the sampler's batches is fit's loop, step for step."""
    rng = np.random.default_rng(1)
    n, replicas, b = 40, 4, 3
    x, y = rng.normal(size=(n, 3)), rng.uniform(size=(n, 1)).round()
    p = jr.logistic.Params(jnp.zeros((1, 3)), jnp.zeros(1))
    loss_fn = jr.objective(jr.logistic.predict, jr.losses.bce)
    tx = jr.optim.adam(0.05)
    sampler = DistributedSampler(replicas, seed=2)
    want = jr.fit(loss_fn, tx, p, x, y, epochs=1, batch_size=b, sampler=sampler)
    step = jr.make_step(loss_fn, tx, replicas=True)
    idx = sampler.indices(n, 0, replicas)
    params, state, losses = p, tx.init(p), []
    for start in range(0, idx.shape[1], b):
        rows = idx[:, start : start + b]
        params, state, loss = step(params, state, x[rows], y[rows])
        losses.append(float(loss))
    np.testing.assert_allclose(losses, want.losses, rtol=RTOL, atol=0)
    np.testing.assert_allclose(params.weight, want.params.weight, rtol=RTOL, atol=0)
    # The raw jitted step (no checks) is the same data-parallel step.
    rows = idx[:, :b]
    raw = step.jitted(p, tx.init(p), jnp.asarray(x[rows]), jnp.asarray(y[rows]))
    assert float(raw[2]) == pytest.approx(want.losses[0], rel=RTOL)


def test_reported_loss_is_the_mean_of_the_replicas_losses():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(8, 2)), rng.normal(size=(8, 1))
    p = jr.linear.Params(jnp.asarray([[0.3, -0.2]]), jnp.asarray([0.1]))
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    sampler = DistributedSampler(2, shuffle=False)
    got = jr.fit(loss_fn, jr.optim.sgd(0.1), p, x, y, epochs=1, batch_size=4, sampler=sampler)
    rows = sampler.indices(8, 0, 2)  # [[0, 2, 4, 6], [1, 3, 5, 7]]
    each = [float(loss_fn(p, x[r], y[r])) for r in rows]
    assert got.losses[0] == pytest.approx(np.mean(each), rel=RTOL)
    assert abs(each[0] - each[1]) > 0.01  # the two replicas' losses differ: a mean, not one


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(sampler="ddp"), TypeError, "sampler must be a jaxreg.distributed"),
        (dict(sampler=DistributedSampler(2), batch_size=None), ValueError, "pass batch_size="),
        (dict(sampler=DistributedSampler(2), key=0), ValueError, "leave fit's shuffle and key"),
        (dict(sampler=DistributedSampler(2), shuffle=False), ValueError, "shuffle= and seed="),
        (dict(sampler=DistributedSampler()), ValueError, "pass num_replicas=R"),
        (dict(sampler=DistributedSampler(20, drop_last=True)), ValueError, "no row per replica"),
        (dict(sampler=DistributedSampler(2), order=np.zeros((1, 5))), ValueError, "order must"),
        (
            dict(sampler=DistributedSampler(4), batch_size=4, drop_last=True),
            ValueError,
            "3 rows each of 4 replicas",
        ),
        (dict(sampler=DistributedSampler(2), epochs=None, steps=4), ValueError, "whole number"),
    ],
)
def test_fit_sampler_errors(kwargs, error, match):
    x, y = np.ones((10, 2)), np.ones((10, 1))
    p = jr.linear.Params(jnp.zeros((1, 2)), jnp.zeros(1))
    args = dict(epochs=1, batch_size=2) | kwargs
    with pytest.raises(error, match=match):
        jr.fit(jr.objective(jr.linear.predict, jr.losses.mse), jr.optim.sgd(0.1), p, x, y, **args)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(num_replicas=0), ValueError, "num_replicas must be an int in 1"),
        (dict(num_replicas=2.0), TypeError, "num_replicas must be an int"),
        (dict(shuffle="yes"), TypeError, "shuffle must be True or False"),
        (dict(seed=-1), ValueError, "seed must be an int in 0"),
    ],
)
def test_sampler_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        DistributedSampler(**kwargs)


def test_make_step_replicas_needs_stacked_batches():
    step = jr.make_step(jr.objective(jr.linear.predict, jr.losses.mse), jr.optim.sgd(0.1),
                        replicas=True)  # fmt: skip
    p = jr.linear.Params(jnp.zeros((1, 2)), jnp.zeros(1))
    with pytest.raises(ValueError, match=r"x \(R, b, \.\.\.\)"):
        step(p, jr.optim.sgd(0.1).init(p), np.ones(4), np.ones(4))
    with pytest.raises(TypeError, match="replicas must be"):
        jr.make_step(jr.losses.mse, jr.optim.sgd(0.1), replicas="yes")
    assert jax.device_count() >= 1
