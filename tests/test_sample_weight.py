"""`fit(..., sample_weight=w)` against torch's weighted-loss idiom, step by step in float64.

torch: `loss = (F.mse_loss(model(xb), yb, reduction="none") * wb).mean()` (or `.sum()`, or
`/ wb.expand_as(l).sum()`), and `F.binary_cross_entropy(p, yb, weight=wb)`, with
`(xb, yb, wb)` from one `DataLoader(TensorDataset(x, y, w))`.
"""

import textwrap

import jax
import numpy as np
import processes
import pytest
import torch
import torch.nn.functional as F

import jaxreg as jr
from jaxreg import gradients
from jaxreg.loop.batches import epoch_permutation
from jaxreg.sample_weight import Weighted
from parity.problem import dataloader_order

# Against torch in float64: the same formulas, rounding differs only in the order of the
# sums (a few ulps a step, accumulated over the run); tests/test_train.py uses the same.
TORCH_F64_RTOL = 1e-12
# Parameters near zero (a bias crossing 0) have no meaningful relative error: an absolute
# floor of a few thousand float64 ulps of the O(1) parameters.
TORCH_F64_ATOL = 1e-13

N, D, EPOCHS, BS = 23, 3, 10, 5  # 5 batches an epoch, the last of 3 rows: 50 steps
FULL_STEPS = 60
LR = 0.1


def _problem(kind, w_shape=(N,), *, zeros=0):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, D))
    if kind == "bce":
        y = (rng.random((N, 1)) < 0.5).astype(np.float64)
    else:
        y = x @ rng.normal(size=(D, 1)) + 0.3 * rng.normal(size=(N, 1))
    w = rng.uniform(0.2, 3.0, size=w_shape)
    w.reshape(N, -1)[:zeros] = 0.0  # the first rows weigh nothing
    layer = torch.nn.Linear(D, 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(rng.normal(size=(1, D))))
        layer.bias.copy_(torch.from_numpy(rng.normal(size=(1,))))
    p0 = jr.linear.Params(layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())
    return x, y, w, layer, p0


def _torch_loss(kind, reduction, layer, xb, yb, wb):
    """The loss as a torch user writes it."""
    wb = wb.reshape(-1, 1) if wb.ndim == 1 else wb
    if kind == "bce":
        p = torch.sigmoid(layer(xb))
        if reduction == "mean":
            return F.binary_cross_entropy(p, yb, weight=wb)
        terms = F.binary_cross_entropy(p, yb, reduction="none")
    else:
        terms = F.mse_loss(layer(xb), yb, reduction="none")
    if reduction == "mean":
        return (terms * wb).mean()
    if reduction == "sum":
        return (terms * wb).sum()
    return (terms * wb).sum() / wb.expand_as(terms).sum()


def _torch_run(kind, reduction, layer, batches):
    """Losses and (weight, bias) after each step of SGD over `batches` of (xb, yb, wb)."""
    opt = torch.optim.SGD(layer.parameters(), lr=LR, momentum=0.5)
    losses, weights, biases = [], [], []
    for xb, yb, wb in batches:
        opt.zero_grad()
        loss = _torch_loss(kind, reduction, layer, xb, yb, wb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        weights.append(layer.weight.detach().numpy().copy())
        biases.append(layer.bias.detach().numpy().copy())
    return np.array(losses), np.stack(weights), np.stack(biases)


def _objective(kind):
    if kind == "bce":
        return jr.objective(jr.logistic.predict, jr.losses.bce)
    return jr.objective(jr.linear.predict, jr.losses.mse)


def _assert_matches(res, want):
    losses, weights, biases = want
    np.testing.assert_allclose(res.losses, losses, rtol=TORCH_F64_RTOL, atol=TORCH_F64_ATOL)
    np.testing.assert_allclose(
        res.history.weight, weights, rtol=TORCH_F64_RTOL, atol=TORCH_F64_ATOL
    )
    np.testing.assert_allclose(res.history.bias, biases, rtol=TORCH_F64_RTOL, atol=TORCH_F64_ATOL)


def _fit(kind, reduction, p0, x, y, w, **kw):
    return jr.fit(
        _objective(kind),
        jr.optim.sgd(LR, momentum=0.5),
        p0,
        x,
        y,
        sample_weight=w,
        sample_weight_reduction=reduction,
        **kw,
    )


@pytest.mark.parametrize(
    "kind, reduction, w_shape",
    [
        ("mse", "mean", (N,)),
        ("mse", "sum", (N, 1)),
        ("bce", "mean", (N,)),
        ("bce", "normalized", (N, 1)),
    ],
)
def test_full_batch_matches_torch(kind, reduction, w_shape):
    x, y, w, layer, p0 = _problem(kind, w_shape, zeros=3)
    t = [torch.from_numpy(a) for a in (x, y, w)]
    want = _torch_run(kind, reduction, layer, [t] * FULL_STEPS)
    _assert_matches(_fit(kind, reduction, p0, x, y, w, steps=FULL_STEPS), want)


@pytest.mark.parametrize(
    "kind, reduction", [("mse", "mean"), ("mse", "normalized"), ("bce", "mean"), ("bce", "sum")]
)
def test_dataloader_replay_matches_torch(kind, reduction):
    """Shuffled mini-batches with a smaller last one: torch's DataLoader over (x, y, w)
    and fit replaying its order (`order=`) take the same rows of w as of x and y."""
    x, y, w, layer, p0 = _problem(kind, zeros=4)
    seed = 3
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*[torch.from_numpy(a) for a in (x, y, w)]),
        batch_size=BS,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    want = _torch_run(kind, reduction, layer, [b for _ in range(EPOCHS) for b in loader])
    order = dataloader_order(N, BS, EPOCHS, seed=seed)
    res = _fit(kind, reduction, p0, x, y, w, epochs=EPOCHS, batch_size=BS, order=order)
    _assert_matches(res, want)


@pytest.mark.parametrize("drop_last", [False, True])
def test_key_shuffle_matches_torch(drop_last):
    """fit's own shuffle (key=): the rows of each epoch are `epoch_permutation(key, e, n)`;
    torch trained on those rows of (x, y, w) gives the same steps."""
    x, y, w, layer, p0 = _problem("mse", (N, 1))
    key = jax.random.key(11)
    batches = []
    for e in range(EPOCHS):
        rows = np.array(epoch_permutation(key, e, N))
        stop = N - N % BS if drop_last else N
        for s in range(0, stop, BS):
            idx = torch.from_numpy(rows[s : s + BS])
            batches.append(tuple(torch.from_numpy(a)[idx] for a in (x, y, w)))
    want = _torch_run("mse", "mean", layer, batches)
    res = _fit("mse", None, p0, x, y, w, epochs=EPOCHS, batch_size=BS, key=key, drop_last=drop_last)
    _assert_matches(res, want)


def test_sequential_per_element_weights_match_torch():
    """shuffle=False, weights of y's shape (one per term)."""
    x, y, w, _, p0 = _problem("mse", (N, 1))
    y2 = np.concatenate([y, -y], axis=1)
    w2 = np.concatenate([w, w[::-1]], axis=1)
    layer2 = torch.nn.Linear(D, 2).double()
    with torch.no_grad():
        layer2.weight.copy_(torch.from_numpy(np.concatenate([p0.weight, -p0.weight])))
        layer2.bias.copy_(torch.from_numpy(np.concatenate([p0.bias, p0.bias])))
    p2 = jr.linear.Params(
        layer2.weight.detach().numpy().copy(), layer2.bias.detach().numpy().copy()
    )
    t = [torch.from_numpy(a) for a in (x, y2, w2)]
    batches = [tuple(a[s : s + BS] for a in t) for _ in range(EPOCHS) for s in range(0, N, BS)]
    want = _torch_run("mse", "mean", layer2, batches)
    res = _fit("mse", None, p2, x, y2, w2, epochs=EPOCHS, batch_size=BS, shuffle=False)
    _assert_matches(res, want)


def test_distributed_sampler_replicas_match_torch():
    """Per-replica batches (DistributedSampler, 2 replicas on one device): each replica's
    weighted loss on its rows of (x, y, w), gradients averaged as DDP does."""
    x, y, w, layer, p0 = _problem("mse", zeros=2)
    replicas, bs = 2, 4  # 12 rows a replica: 3 batches, the last of 4; 5 epochs: 15 steps
    sampler = jr.distributed.DistributedSampler(seed=5, num_replicas=replicas)
    t = [torch.from_numpy(a) for a in (x, y, w)]
    opt = torch.optim.SGD(layer.parameters(), lr=LR, momentum=0.5)
    losses = []
    epochs = 5
    per = sampler.num_samples(N, replicas)
    for e in range(epochs):
        rows = sampler.indices(N, e, replicas)
        for s in range(0, per, bs):
            opt.zero_grad()
            parts = []
            for r in range(replicas):
                idx = torch.from_numpy(np.array(rows[r, s : s + bs]))
                parts.append(_torch_loss("mse", "mean", layer, *(a[idx] for a in t)))
            loss = sum(parts) / replicas  # DDP: the mean of the replicas' gradients
            loss.backward()
            opt.step()
            losses.append(loss.item())
    res = _fit("mse", None, p0, x, y, w, epochs=epochs, batch_size=bs, sampler=sampler)
    np.testing.assert_allclose(res.losses, losses, rtol=TORCH_F64_RTOL, atol=TORCH_F64_ATOL)
    np.testing.assert_allclose(
        res.params.weight, layer.weight.detach().numpy(), rtol=TORCH_F64_RTOL
    )


def test_zero_weights_leave_rows_out():
    """Weight 0 removes a row: "sum" over all rows with zeros equals "sum" over the rest,
    step for step (the zero rows' terms are exactly 0; a huge target there changes
    nothing)."""
    x, y, w, _, p0 = _problem("mse")
    w[::3] = 0.0
    y_bad = y.copy()
    y_bad[::3] = 1e6
    keep = w > 0
    a = _fit("mse", "sum", p0, x, y_bad, w, steps=20)
    b = _fit("mse", "sum", p0, x[keep], y[keep], w[keep], steps=20)
    np.testing.assert_array_equal(a.losses, b.losses)


def test_normalized_all_zero_batch_diverges_like_torch():
    """A "normalized" batch whose weights are all zero is 0 / 0 (NaN in torch too)."""
    x, y, _, _, p0 = _problem("mse")
    with pytest.raises(jr.DivergenceError, match="step 0"):
        _fit("mse", "normalized", p0, x, y, np.zeros(N), steps=3)


def test_unweighted_program_unchanged():
    """sample_weight=None is the unweighted fit: the same program (no recompile) and the
    same numbers as before; ones give the same losses as no weights."""
    x, y, w, _, p0 = _problem("mse")
    obj = _objective("mse")
    tx = jr.optim.sgd(LR)
    jr.fit(obj, tx, p0, x, y, epochs=2, batch_size=BS, key=0)
    before = jr.loop.program.run._cache_size()
    plain = jr.fit(obj, tx, p0, x, y, epochs=2, batch_size=BS, key=0, sample_weight=None)
    assert jr.loop.program.run._cache_size() == before
    ones = jr.fit(obj, tx, p0, x, y, epochs=2, batch_size=BS, key=0, sample_weight=np.ones(N))
    np.testing.assert_allclose(ones.losses, plain.losses, rtol=TORCH_F64_RTOL)
    # a new weight array is an input: no recompile
    after = jr.loop.program.run._cache_size()
    jr.fit(obj, tx, p0, x, y, epochs=2, batch_size=BS, key=0, sample_weight=w)
    assert jr.loop.program.run._cache_size() == after


def test_weighted_objective_takes_the_plain_gradient():
    """The fast formulations do not see weighted objectives: `select` gives the plain
    path, whose gradient is `jax.grad` of the weighted loss itself."""
    rng = np.random.default_rng(0)
    n, d = 4096, 64  # large enough for xla_cpu's formulations on the unweighted loss
    x, y, w = rng.normal(size=(n, d)), rng.normal(size=(n, 1)), rng.random(n)
    p = jr.linear.Params(np.zeros((1, d)), np.zeros(1))
    obj = _objective("mse")
    assert gradients.select(obj, p, x, y, backend="cpu").name != "plain"
    weighted = Weighted(obj, "mean")
    assert gradients.select(weighted, p, x, (y, w), backend="cpu").name == "plain"


def test_errors_name_the_argument():
    x, y, w, _, p0 = _problem("mse")
    obj, tx = _objective("mse"), jr.optim.sgd(LR)
    bad = w.copy()
    bad[4] = -1.0
    with pytest.raises(ValueError, match=r"sample_weight must be >= 0.*row 4"):
        jr.fit(obj, tx, p0, x, y, steps=1, sample_weight=bad)
    bad[4] = np.nan
    with pytest.raises(ValueError, match="sample_weight contains 1 non-finite"):
        jr.fit(obj, tx, p0, x, y, steps=1, sample_weight=bad)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(22,\)"):
        jr.fit(obj, tx, p0, x, y, steps=1, sample_weight=w[:-1])
    with pytest.raises(TypeError, match="sample_weight must hold numbers"):
        jr.fit(obj, tx, p0, x, y, steps=1, sample_weight=np.array(["a"] * N))
    with pytest.raises(ValueError, match="sample_weight_reduction must be one of"):
        jr.fit(obj, tx, p0, x, y, steps=1, sample_weight=w, sample_weight_reduction="avg")
    with pytest.raises(ValueError, match="without sample_weight"):
        jr.fit(obj, tx, p0, x, y, steps=1, sample_weight_reduction="sum")
    with pytest.raises(TypeError, match=r"jr.objective\(predict, loss\)"):
        jr.fit(
            lambda p, x, y: jr.losses.mse(jr.linear.predict(p, x), y),
            tx,
            p0,
            x,
            y,
            steps=1,
            sample_weight=w,
        )

    def my_loss(pred, target):
        return ((pred - target) ** 2).mean()

    with pytest.raises(TypeError, match="my_loss takes no reduction= argument"):
        jr.fit(jr.objective(jr.linear.predict, my_loss), tx, p0, x, y, steps=1, sample_weight=w)
    with pytest.raises(ValueError, match="gram=True"):
        jr.fit(obj, tx, p0, x, y, steps=1, sample_weight=w, gram=True)
    data = jr.Dataset(x, y, sample_weight=w)
    with pytest.raises(ValueError, match="sample_weight given twice"):
        jr.fit(obj, tx, p0, data, steps=1, sample_weight=w)
    with pytest.raises(ValueError, match=r"fit_many takes per-sample weights as"):
        jr.fit_many(obj, tx, jax.tree.map(lambda a: a[None], p0), data, steps=1)


def test_dataset_holds_the_weights():
    """`Dataset(x, y, sample_weight=w)` trains as `fit(x, y, sample_weight=w)`."""
    x, y, w, _, p0 = _problem("bce")
    obj, tx = _objective("bce"), jr.optim.sgd(LR)
    a = jr.fit(obj, tx, p0, jr.Dataset(x, y, sample_weight=w), epochs=3, batch_size=BS, key=1)
    b = jr.fit(obj, tx, p0, x, y, epochs=3, batch_size=BS, key=1, sample_weight=w)
    np.testing.assert_array_equal(a.losses, b.losses)


# Row-sharded full batch against one device: the same terms summed in another order
# (per shard, then across shards), a few float64 ulps of the O(1) loss per step.
SHARDED_F64_ATOL = 1e-14

SHARDED_CHILD = textwrap.dedent(
    r"""
    import json
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from jax.sharding import NamedSharding, PartitionSpec as P
    import jaxreg as jr

    assert jax.device_count() == 2, jax.devices()
    mesh = jax.make_mesh((2,), ("data",))
    rng = np.random.default_rng(0)
    n = 24
    x, y, w = rng.normal(size=(n, 3)), rng.normal(size=(n, 1)), rng.uniform(size=n)
    w[:5] = 0.0
    p = jr.linear.Params(np.zeros((1, 3)), np.zeros(1))
    obj = jr.objective(jr.linear.predict, jr.losses.mse)
    rows = NamedSharding(mesh, P("data"))
    xs, ys = jax.device_put(x, rows), jax.device_put(y, rows)
    cases = {
        "full": (dict(steps=20), dict(steps=20)),
        "key": (dict(epochs=4, batch_size=5, key=0), dict(epochs=4, batch_size=5, key=0)),
        "replicas": (
            dict(epochs=7, batch_size=5, sampler=jr.distributed.DistributedSampler(seed=1)),
            dict(
                epochs=7,
                batch_size=5,
                sampler=jr.distributed.DistributedSampler(seed=1, num_replicas=2),
            ),
        ),
    }
    for case, (sharded, one) in cases.items():
        a = jr.fit(obj, jr.optim.sgd(0.1), p, xs, ys, sample_weight=w, **sharded)
        b = jr.fit(obj, jr.optim.sgd(0.1), p, x, y, sample_weight=w, **one)
        diff = max(
            float(np.abs(a.losses - b.losses).max()),
            float(np.abs(np.asarray(a.history.weight) - b.history.weight).max()),
        )
        print(json.dumps({"case": case, "diff": diff, "steps": len(a.losses)}))
    # fit_many: rows of (M, n, ...) split over the mesh, (M, n) weights split the same way
    ps = jax.tree.map(lambda a: np.stack([a, a + 0.5]), p)
    xm, ym, wm = np.stack([x, -x]), np.stack([y, y]), np.stack([w, w[::-1]])
    many_rows = NamedSharding(mesh, P(None, "data"))
    a = jr.fit_many(
        obj,
        jr.optim.sgd(0.1),
        ps,
        jax.device_put(xm, many_rows),
        jax.device_put(ym, many_rows),
        steps=20,
        sample_weight=wm,
    )
    b = jr.fit_many(obj, jr.optim.sgd(0.1), ps, xm, ym, steps=20, sample_weight=wm)
    diff = float(np.abs(a.losses - b.losses).max())
    print(json.dumps({"case": "fit_many", "diff": diff, "steps": a.losses.shape[1]}))
    print("DONE")
    """
)


def test_row_sharded_weights_match_one_device(tmp_path):
    """Weights of row-sharded data are split like y's rows and gathered with the batch
    (2 simulated CPU devices in a child process): the same steps as on one device, in
    fit (full batch, key shuffle, DistributedSampler replicas) and fit_many."""
    rows = processes.run_on_devices(SHARDED_CHILD, 2, tmp_path)
    assert [r["case"] for r in rows] == ["full", "key", "replicas", "fit_many"]
    for r in rows:
        assert r["steps"] >= 20, r
        assert r["diff"] <= SHARDED_F64_ATOL, r


def test_make_step_with_batch_weights_matches_torch():
    """`step(params, state, xb, yb, sample_weight=wb)` over a torch DataLoader's batches of
    (x, y, w): torch's steps; the same as `fit` replaying that order."""
    x, y, w, layer, p0 = _problem("bce", zeros=2)
    t = [torch.from_numpy(a) for a in (x, y, w)]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*t),
        batch_size=BS,
        shuffle=True,
        generator=torch.Generator().manual_seed(4),
    )
    batches = [b for _ in range(EPOCHS) for b in loader]
    want = _torch_run("bce", "normalized", layer, batches)
    tx = jr.optim.sgd(LR, momentum=0.5)
    step = jr.make_step(_objective("bce"), tx, sample_weight_reduction="normalized")
    p, s, losses = p0, tx.init(p0), []
    for xb, yb, wb in batches:
        p, s, loss = step(p, s, xb.numpy(), yb.numpy(), sample_weight=wb.numpy())
        losses.append(float(loss))
    np.testing.assert_allclose(losses, want[0], rtol=TORCH_F64_RTOL, atol=TORCH_F64_ATOL)
    np.testing.assert_allclose(p.weight, want[1][-1], rtol=TORCH_F64_RTOL, atol=TORCH_F64_ATOL)
    with pytest.raises(ValueError, match="sample_weight_reduction must be one of"):
        jr.make_step(_objective("bce"), tx, sample_weight_reduction="avg")
    with pytest.raises(ValueError, match="has no sample_weight"):
        step(p0, tx.init(p0), x, y)


def test_make_step_weighted_and_unweighted_calls():
    """One step, called without and with weights: each its own program; ones weigh nothing."""
    x, y, _, _, p0 = _problem("mse")
    tx = jr.optim.sgd(LR)
    step = jr.make_step(_objective("mse"), tx)
    _, _, plain = step(p0, tx.init(p0), x, y)
    _, _, ones = step(p0, tx.init(p0), x, y, sample_weight=np.ones(N))
    _, _, again = step(p0, tx.init(p0), x, y)
    np.testing.assert_allclose(ones, plain, rtol=TORCH_F64_RTOL)
    assert float(again) == float(plain)


@pytest.mark.parametrize("kind, reduction", [("mse", None), ("bce", "normalized")])
@pytest.mark.parametrize("trailing", [(), (1,)])
def test_make_step_replicas_weighs_each_replicas_batch_as_fit(kind, reduction, trailing):
    """make_step(replicas=True) with weights (R, b) (or (R, b, 1)) over the sampler's
    batches is fit(sampler=..., sample_weight=w)'s loop step for step (that loop is torch
    DDP's, test_distributed_sampler_replicas_match_torch)."""
    x, y, w, _, p0 = _problem(kind, zeros=2)
    replicas, bs = 2, 4
    sampler = jr.distributed.DistributedSampler(seed=5, num_replicas=replicas)
    want = _fit(kind, reduction, p0, x, y, w, epochs=1, batch_size=bs, sampler=sampler)
    tx = jr.optim.sgd(LR, momentum=0.5)
    step = jr.make_step(_objective(kind), tx, replicas=True, sample_weight_reduction=reduction)
    idx = sampler.indices(N, 0, replicas)
    params, state, losses = p0, tx.init(p0), []
    for start in range(0, idx.shape[1], bs):
        rows = idx[:, start : start + bs]  # (R, b)
        wb = w[rows].reshape(rows.shape + trailing)
        params, state, loss = step(params, state, x[rows], y[rows], sample_weight=wb)
        losses.append(float(loss))
    np.testing.assert_allclose(losses, want.losses, rtol=TORCH_F64_RTOL, atol=TORCH_F64_ATOL)
    np.testing.assert_allclose(params.weight, want.params.weight, rtol=TORCH_F64_RTOL)
    with pytest.raises(
        ValueError, match=r"one weight per replica and row of x and y: shape \(2, 4\)"
    ):
        step(p0, tx.init(p0), x[idx[:, :bs]], y[idx[:, :bs]], sample_weight=np.ones(bs))


def test_fit_many_weights_each_model_as_fit_does():
    """fit_many(sample_weight=(M, n) weights): model m trains as fit with w[m]."""
    x, y, w, _, p0 = _problem("mse")
    rng = np.random.default_rng(3)
    m = 3
    xs = np.stack([x + 0.1 * rng.normal(size=x.shape) for _ in range(m)])
    ys = np.stack([y] * m)
    ws = np.stack([w, w[::-1], np.where(np.arange(N) % 2, w, 0.0)])
    ps = jax.tree.map(lambda a: np.stack([a] * m), p0)
    obj, tx = _objective("mse"), jr.optim.sgd(LR, momentum=0.5)
    many = jr.fit_many(
        obj,
        tx,
        ps,
        xs,
        ys,
        steps=20,
        sample_weight=ws[..., None],
        sample_weight_reduction="normalized",
    )
    for i in range(m):
        one = jr.fit(
            obj,
            tx,
            p0,
            xs[i],
            ys[i],
            steps=20,
            sample_weight=ws[i],
            sample_weight_reduction="normalized",
        )
        np.testing.assert_allclose(many.losses[i], one.losses, rtol=TORCH_F64_RTOL)
    with pytest.raises(ValueError, match=r"one weight per model and row"):
        jr.fit_many(obj, tx, ps, xs, ys, steps=1, sample_weight=w)


def test_cross_entropy_class_indices_matches_torch():
    """Softmax regression on class indices: one term per row, weights (n, 1) or (n,);
    torch's `(F.cross_entropy(model(x), y, reduction="none") * w).mean()`."""
    rng = np.random.default_rng(5)
    k = 3
    x, y, w = rng.normal(size=(N, D)), rng.integers(0, k, size=N), rng.uniform(size=(N, 1))
    layer = torch.nn.Linear(D, k).double()
    p0 = jr.linear.Params(layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())
    opt = torch.optim.SGD(layer.parameters(), lr=LR)
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w[:, 0])
    losses = []
    for _ in range(FULL_STEPS):
        opt.zero_grad()
        loss = (F.cross_entropy(layer(xt), yt, reduction="none") * wt).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    obj = jr.objective(jr.softmax.logits, jr.losses.cross_entropy)
    res = jr.fit(obj, jr.optim.sgd(LR), p0, x, y, steps=FULL_STEPS, sample_weight=w)
    np.testing.assert_allclose(res.losses, losses, rtol=TORCH_F64_RTOL, atol=TORCH_F64_ATOL)
    np.testing.assert_allclose(
        res.params.weight, layer.weight.detach().numpy(), rtol=TORCH_F64_RTOL, atol=TORCH_F64_ATOL
    )
    with pytest.raises(ValueError, match=r"sample_weight has shape \(23, 3\)"):
        jr.fit(obj, jr.optim.sgd(LR), p0, x, y, steps=1, sample_weight=np.ones((N, k)))
