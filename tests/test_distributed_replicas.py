"""Per-replica mini-batches split over 4 simulated CPU devices (`fit(...,
sampler=DistributedSampler(...))`, `make_step(replicas=True)`), Auto and Explicit meshes,
one replica a device and two, equal to the same per-replica computation on one device
(`num_replicas` simulated there) within the bound below; no device gathers the rows.

The device count is fixed when JAX starts, so the checks run in one fresh interpreter
(`XLA_FLAGS=--xla_force_host_platform_device_count=4` set before jax is imported) that
prints one JSON line per check; the tests below read them.

The bound of one step (float64 NumPy, from the data): the two computations may add each
replica's b rows in other orders and the R replicas' values in another order, so for the
loss and every gradient component g = (1/R) sum_r g_r,
    |got - ref| <= (1/R) sum_r sum_error_bound(b, sum_i |t_ri|) + (1/R) sum_error_bound(R,
                   sum_r |g_r|)
(Higham's bound for two orders of a sum, twice; R is a power of two, so the division by
R is exact; the loss adds 2u|loss_r| per replica for its mean's division). A trajectory
(Adam, two epochs) is held to parity's float64 bound relative to each quantity's scale
(`TRAJECTORY_RTOL`): each step within rounding, the descent damping the differences.
"""

from __future__ import annotations

import textwrap

import processes
import pytest

from parity.tolerances import FLOAT64

# Two float64 runs whose steps differ by a few u each (the one-step bound above), damped by
# the descent: parity's float64 bound (parity.tolerances says why 1e-12).
TRAJECTORY_RTOL = FLOAT64.rtol

CHILD = textwrap.dedent(
    r'''
    import json
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import jaxreg as jr
    from jaxreg import distributed
    from jaxreg.distributed import DistributedSampler
    from jaxreg.loop import program

    assert jax.device_count() == 4, jax.devices()
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)

    def emit(case, what, diff, bound):
        print(json.dumps({"case": case, "what": what, "diff": float(diff),
                          "bound": float(bound)}), flush=True)

    def problem(n, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 5)) * rng.uniform(0.5, 3, size=5) + 1.0
        y = x @ rng.normal(size=(5, 2)) + 0.3 * rng.normal(size=(n, 2))
        p = jr.linear.Params(jnp.asarray(rng.normal(size=(2, 5))), jnp.asarray(rng.normal(size=2)))
        return x, y, p

    def bounds(xb, yb, w, b):
        """(loss bound, grad-w bound, grad-b bound) of (R, b, ...) batches at (w, b)."""
        w, b = np.asarray(w), np.asarray(b)
        R, m, out = yb.shape
        u = np.finfo(np.float64).eps / 2
        bl = bw = bb = 0.0
        ls, gws, gbs = [], [], []
        for xr, yr in zip(xb, yb):
            r = xr @ w.T + b - yr
            N = m * out
            loss = np.sum(r * r) / N
            bl = bl + distributed.sum_error_bound(N, np.sum(r * r), np.float64) / N + 2 * u * loss
            ar = np.abs(r)
            bw = bw + distributed.sum_error_bound(m, 2 / N * (ar.T @ np.abs(xr)), np.float64)
            bb = bb + distributed.sum_error_bound(m, 2 / N * np.abs(r).sum(0), np.float64)
            ls.append(loss)
            gws.append(np.abs(2 / N * r.T @ xr))
            gbs.append(np.abs(2 / N * r.sum(0)))
        bl = bl / R + distributed.sum_error_bound(R, np.sum(ls), np.float64) / R
        bw = bw / R + distributed.sum_error_bound(R, np.sum(gws, 0), np.float64) / R
        bb = bb / R + distributed.sum_error_bound(R, np.sum(gbs, 0), np.float64) / R
        return bl, bw, bb

    def meshes():
        for kind in ("explicit", "auto"):
            t = AxisType.Explicit if kind == "explicit" else AxisType.Auto
            yield kind, jax.make_mesh((4,), ("data",), axis_types=(t,))

    def shard(a, mesh):
        out = jax.device_put(a, NamedSharding(mesh, P("data")))
        assert not out.sharding.is_fully_replicated
        return out

    # 1. One step (make_step(replicas=True).record) on the sampler's first batches.
    n, b = 1100, 16
    x, y, p = problem(n)
    tx = jr.optim.sgd(0.01)
    for kind, mesh in meshes():
        for R in (4, 8):  # one replica a device, two
            idx = DistributedSampler(seed=3).indices(n, 0, R)[:, :b]
            xb, yb = x[idx], y[idx]
            step = jr.make_step(loss_fn, tx, replicas=True)
            ref = step.record(p, tx.init(p), xb, yb)
            got = step.record(p, tx.init(p), shard(xb, mesh), shard(yb, mesh))
            assert all(a.sharding.is_fully_replicated for a in jax.tree.leaves(got.params))
            bl, bw, bb = bounds(xb, yb, p.weight, p.bias)
            case = f"step-{kind}-R{R}"
            emit(case, "loss", abs(float(got.loss) - float(ref.loss)), bl)
            dw = np.abs(np.asarray(got.grads.weight) - np.asarray(ref.grads.weight))
            db = np.abs(np.asarray(got.grads.bias) - np.asarray(ref.grads.bias))
            emit(case, "grad margin", max(np.max(dw - bw), np.max(db - bb)), 0.0)
            # Teeth: one replica's batch left out of the mean is far outside the bound.
            part = step.record(p, tx.init(p), xb[: R // 2 * 2 - 1], yb[: R // 2 * 2 - 1])
            miss = np.abs(np.asarray(part.grads.weight) - np.asarray(ref.grads.weight))
            emit(case, "teeth", -np.max(miss - bw), 0.0)
            step(got.params, got.opt_state, shard(xb, mesh), shard(yb, mesh))  # again

    # 1b. Weighted replica steps (sample_weight (R, b), sharded with the batches): equal
    #     to the one-device step; the weights move the gradient (teeth).
    wrng = np.random.default_rng(5)
    for kind, mesh in meshes():
        R = 4
        idx = DistributedSampler(seed=3).indices(n, 0, R)[:, :b]
        xb, yb, wb = x[idx], y[idx], wrng.uniform(0.2, 3.0, size=(R, b))
        step = jr.make_step(loss_fn, tx, replicas=True, sample_weight_reduction="normalized")
        ref = step.record(p, tx.init(p), xb, yb, sample_weight=wb)
        got = step.record(p, tx.init(p), shard(xb, mesh), shard(yb, mesh),
                          sample_weight=shard(wb, mesh))
        ones = step.record(p, tx.init(p), xb, yb, sample_weight=np.ones((R, b)))
        gw, rw, ow = (np.asarray(r.grads.weight) for r in (got, ref, ones))
        scale = np.max(np.abs(rw))
        case = f"weighted-{kind}"
        emit(case, "loss", abs(float(got.loss) - float(ref.loss)) / abs(float(ref.loss)), 0)
        emit(case, "grad", np.max(np.abs(gw - rw)) / scale, 0)
        emit(case, "weights matter", np.max(np.abs(ow - rw)) / scale, 0)

    # 2. Trajectories: fit with the sampler, sharded against one device.
    for kind, mesh in meshes():
        for R, drop_last in ((4, False), (8, True)):
            sampler = DistributedSampler(seed=3)
            args = dict(epochs=2, batch_size=b, drop_last=drop_last)
            ref = jr.fit(loss_fn, jr.optim.adam(0.01), p, x, y,
                         sampler=DistributedSampler(num_replicas=R, seed=3), **args)
            got = jr.fit(loss_fn, jr.optim.adam(0.01), p, shard(x, mesh), shard(y, mesh),
                         sampler=DistributedSampler(num_replicas=None if R == 4 else R, seed=3),
                         **args)
            case = f"fit-{kind}-R{R}"
            assert got.losses.shape == ref.losses.shape
            dl = np.max(np.abs(got.losses - ref.losses))
            emit(case, "losses", dl / np.max(np.abs(ref.losses)), 0)
            for name in ("weight", "bias"):
                h = np.asarray(getattr(got.history, name))
                hr = np.asarray(getattr(ref.history, name))
                emit(case, name, np.max(np.abs(h - hr)) / np.max(np.abs(hr)), 0)

    # 3. No step gathers the rows onto a device: no all-gather of x's 1100 rows; the
    #    batches arrive by reduce-scatter.
    for kind, mesh in meshes():
        xs, ys = shard(x, mesh), shard(y, mesh)
        seen = []
        real = program.run
        def spy(*a, **k):
            seen.append(real.lower(*a, **k).compile().as_text())
            return real(*a, **k)
        program.run = spy
        try:
            jr.fit(loss_fn, jr.optim.sgd(0.01), p, xs, ys, epochs=1, batch_size=b,
                   sampler=DistributedSampler(seed=0))
        finally:
            program.run = real
        lines = seen[0].splitlines()
        gathers = [l for l in lines if "all-gather(" in l and ("[1100," in l or "[1100]" in l)]
        emit(f"hlo-{kind}", "all-gathers of the rows", len(gathers), 0)
        scatters = [l for l in lines if "reduce-scatter(" in l]
        emit(f"hlo-{kind}", "reduce-scatters missing", 0 if scatters else 1, 0)
    print("DONE", flush=True)
    '''
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return processes.run_on_devices(CHILD, 4, tmp_path_factory.mktemp("child"))


def _rows(results, prefix, what=None):
    rows = [
        r for r in results if r["case"].startswith(prefix) and (what is None or r["what"] == what)
    ]
    assert rows, f"no {prefix} checks ran"
    return rows


def test_one_step_within_the_summation_order_bound(results):
    for r in _rows(results, "step-"):
        if r["what"] != "teeth":
            assert r["diff"] <= r["bound"], r


def test_bound_catches_a_missing_replica(results):
    for r in _rows(results, "step-", "teeth"):
        assert r["diff"] < 0, r  # -(excess over the bound): a positive excess expected


def test_weighted_replica_step_sharded_equals_one_device(results):
    """make_step(replicas=True, sample_weight=(R, b)) on a mesh: the one-device step within
    parity's float64 bound (one step: a few u of other summation orders), and the weights
    change the gradient by far more (ones against uniform(0.2, 3) weights)."""
    for r in _rows(results, "weighted-"):
        if r["what"] == "weights matter":
            assert r["diff"] > 1e-3, r
        else:
            assert r["diff"] <= TRAJECTORY_RTOL, r


def test_trajectories_agree(results):
    for r in _rows(results, "fit-"):
        assert r["diff"] <= TRAJECTORY_RTOL, r


def test_no_all_gather_of_the_rows(results):
    for r in _rows(results, "hlo-"):
        assert r["diff"] == 0, r
