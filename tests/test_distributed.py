"""Row-sharded data on 4 simulated CPU devices: fit, make_step and fit_many on Auto and
Explicit meshes equal the one-device run (full batch: within the summation-order bound,
`jaxreg.distributed.sum_error_bound`; mini-batches: exactly).

The device count is fixed when JAX starts, so the checks run in one fresh interpreter
(`XLA_FLAGS=--xla_force_host_platform_device_count=4` set before jax is imported) that
prints one JSON line per check; the tests below read them.

The bounds, all computed from the data in float64 NumPy:
- one step: the loss and each gradient component differ by at most
  `sum_error_bound(terms, sum |term|)` (two orders of one sum, Higham (3.5)), plus 2u|loss|
  for the mean's division.
- a trajectory of plain SGD on mse with lr = 1 / lambda_max(H) (so ||I - lr H|| <= 1: an
  earlier difference does not grow): ||dtheta_T|| <= sum_t (lr ||step bound at theta_t||
  + 4u ||theta_t+1||) (the update's own rounding, both sides), to first order in u;
  the loss at step t then differs by at most its one-step bound + ||grad L|| ||dtheta_t||
  + lambda_max / 2 ||dtheta_t||^2 (mse is quadratic).
"""

from __future__ import annotations

import textwrap

import processes
import pytest

CHILD = textwrap.dedent(
    r'''
    import json, os
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import jaxreg as jr
    from jaxreg import distributed
    from jaxreg.loop import program

    assert jax.device_count() == 4, jax.devices()
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)

    def emit(case, what, diff, bound):
        print(json.dumps({"case": case, "what": what, "diff": float(diff),
                          "bound": float(bound)}), flush=True)

    def problem(n, d, out, dtype, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d) + 1.0
        y = x @ rng.normal(size=(d, out)) + 0.3 * rng.normal(size=(n, out))
        p = jr.linear.Params(jnp.asarray(rng.normal(size=(out, d)), dtype),
                             jnp.asarray(rng.normal(size=out), dtype))
        return x.astype(dtype), y.astype(dtype), p

    def step_bounds(x, y, w, b, dtype):
        """(loss bound, grad-w bound, grad-b bound, loss, grad) at params (w, b)."""
        x, y, w, b = (np.asarray(a, np.float64) for a in (x, y, w, b))
        n, out = y.shape
        N = n * out
        r = x @ w.T + b - y
        u = np.finfo(dtype).eps / 2
        loss = np.sum(r * r) / N
        bl = distributed.sum_error_bound(N, np.sum(r * r), dtype) / N + 2 * u * abs(loss)
        bw = distributed.sum_error_bound(n, 2 / N * (np.abs(r).T @ np.abs(x)), dtype)
        bb = distributed.sum_error_bound(n, 2 / N * np.abs(r).sum(0), dtype)
        gw, gb = 2 / N * r.T @ x, 2 / N * r.sum(0)
        return bl, bw, bb, loss, np.concatenate([gw.ravel(), gb])

    def lam_max(x, out):
        xt = np.concatenate([np.asarray(x, np.float64), np.ones((len(x), 1))], axis=1)
        return 2 / (len(x) * out) * np.linalg.norm(xt, 2) ** 2

    def flat(p):
        return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in p])

    def meshes():
        for kind in ("explicit", "auto"):
            t = AxisType.Explicit if kind == "explicit" else AxisType.Auto
            yield kind, jax.make_mesh((4,), ("data",), axis_types=(t,))

    def shard(a, mesh, spec=P("data")):
        out = jax.device_put(a, NamedSharding(mesh, spec))
        assert not out.sharding.is_fully_replicated
        return out

    # 1. One step (make_step(...).record): loss and gradients against the one-step bound.
    for kind, mesh in meshes():
        for n, dtype in ((256, np.float64), (4096, np.float64), (4096, np.float32)):
            x, y, p = problem(n, 5, 2, dtype)
            tx = jr.optim.sgd(0.01)
            step = jr.make_step(loss_fn, tx)
            ref = step.record(p, tx.init(p), x, y)
            got = step.record(p, tx.init(p), shard(x, mesh), shard(y, mesh))
            assert all(a.sharding.is_fully_replicated for a in jax.tree.leaves(got.params))
            bl, bw, bb, _, _ = step_bounds(x, y, p.weight, p.bias, dtype)
            case = f"step-{kind}-{n}-{np.dtype(dtype).name}"
            emit(case, "loss", abs(float(got.loss) - float(ref.loss)), bl)
            dw = np.abs(np.asarray(got.grads.weight, np.float64) - np.asarray(ref.grads.weight))
            db = np.abs(np.asarray(got.grads.bias, np.float64) - np.asarray(ref.grads.bias))
            emit(case, "grad margin", max(np.max(dw - bw), np.max(db - bb)), 0.0)
            # Teeth: a gradient missing one shard's rows (scaled up) is far outside the bound.
            part = step_bounds(x[: 3 * n // 4], y[: 3 * n // 4], p.weight, p.bias, dtype)[4]
            full = step_bounds(x, y, p.weight, p.bias, dtype)[4]
            emit(case, "teeth", -np.max(np.abs(part * 4 / 3 - full) - np.concatenate(
                [bw.ravel(), bb])), 0.0)
            # The step keeps working on its replicated outputs (a second call).
            step(got.params, got.opt_state, shard(x, mesh), shard(y, mesh))

    # 2. Full-batch fit trajectories (plain SGD, lr = 1 / lambda_max) and fit_many.
    T = 15
    for kind, mesh in meshes():
        for n, dtype in ((256, np.float64), (4096, np.float64), (4096, np.float32)):
            x, y, p = problem(n, 5, 2, dtype)
            lam = lam_max(x, 2)
            lr = float(1 / lam)
            ref = jr.fit(loss_fn, jr.optim.sgd(lr), p, x, y, steps=T)
            got = jr.fit(loss_fn, jr.optim.sgd(lr), p, shard(x, mesh), shard(y, mesh), steps=T)
            u = np.finfo(dtype).eps / 2
            thetas = [flat(p)] + [flat([h[t] for h in ref.history]) for t in range(T)]
            dtheta, worst = 0.0, -np.inf
            for t in range(T):
                w = np.asarray(thetas[t][:10]).reshape(2, 5)
                bl, bw, bb, _, g = step_bounds(x, y, w, thetas[t][10:], dtype)
                # The loss before update t, from the bound on dtheta_t so far.
                lb = bl + np.linalg.norm(g) * dtheta + lam / 2 * dtheta**2
                worst = max(worst, abs(got.losses[t] - ref.losses[t]) - lb)
                step_b = lr * np.linalg.norm(np.concatenate([bw.ravel(), bb]))
                dtheta += step_b + 4 * u * np.linalg.norm(thetas[t + 1])
            case = f"fit-{kind}-{n}-{np.dtype(dtype).name}"
            emit(case, "loss margin", worst, 0.0)
            emit(case, "params", np.linalg.norm(flat(got.params) - flat(ref.params)), dtheta)
            if n == 4096 and dtype == np.float64:
                many_ref = jr.fit_many(
                    loss_fn, jr.optim.sgd(lr), jax.tree.map(lambda a: a[None], p),
                    x[None], y[None], steps=T)
                many = jr.fit_many(
                    loss_fn, jr.optim.sgd(lr), jax.tree.map(lambda a: a[None], p),
                    shard(x[None], mesh, P(None, "data")),
                    shard(y[None], mesh, P(None, "data")), steps=T)
                emit(f"many-{kind}", "params",
                     np.linalg.norm(flat(many.params) - flat(many_ref.params)), dtheta)
                emit(f"many-{kind}", "vs fit",
                     np.linalg.norm(flat(many.model(0).params) - flat(ref.params)), dtheta)

    # 3. Mini-batches: gathered exactly and computed replicated, so equal to the bit.
    for kind, mesh in meshes():
        x, y, p = problem(1100, 5, 2, np.float64)  # >= 1024 rows: the host-sorted shuffle
        order = np.stack([np.random.default_rng(e).permutation(1100) for e in range(2)])
        for how, kw in (("key", dict(key=3)), ("sequential", dict(shuffle=False)),
                        ("order", dict(order=order)), ("drop_last", dict(key=1, drop_last=True))):
            args = dict(epochs=2, batch_size=64, **kw)
            ref = jr.fit(loss_fn, jr.optim.adam(0.01), p, x, y, **args)
            got = jr.fit(loss_fn, jr.optim.adam(0.01), p, shard(x, mesh), shard(y, mesh), **args)
            case = f"batches-{kind}-{how}"
            emit(case, "losses", np.max(np.abs(got.losses - ref.losses)), 0.0)
            emit(case, "params", np.max(np.abs(flat(got.params) - flat(ref.params))), 0.0)

    # 3b. A key shuffle of many rows (the one-device loop sorts them on the host through a
    #     pure_callback, which hangs XLA:CPU over several devices): XLA sorts, same order.
    xl, yl, pl = problem(65536, 4, 1, np.float64)
    ref = jr.fit(loss_fn, jr.optim.sgd(0.01), pl, xl, yl, epochs=1, batch_size=8192, key=0)
    for kind, mesh in meshes():
        got = jr.fit(loss_fn, jr.optim.sgd(0.01), pl, shard(xl, mesh), shard(yl, mesh),
                     epochs=1, batch_size=8192, key=0)
        emit(f"batches-{kind}-large-key", "losses", np.max(np.abs(got.losses - ref.losses)), 0.0)

    # 4. No step gathers the data set onto one device: no all-gather of x's rows.
    x, y, p = problem(4096, 5, 2, np.float64)
    for kind, mesh in meshes():
        for args in (dict(steps=2), dict(epochs=1, batch_size=64, shuffle=False),
                     dict(epochs=1, batch_size=64, key=0)):
            xs, ys = shard(x, mesh), shard(y, mesh)
            seen = []
            real = program.run
            def spy(*a, **k):
                seen.append(real.lower(*a, **k).compile().as_text())
                return real(*a, **k)
            program.run = spy
            try:
                jr.fit(loss_fn, jr.optim.sgd(0.01), p, xs, ys, **args)
            finally:
                program.run = real
            gathers = [l for l in seen[0].splitlines()
                       if "all-gather(" in l and ("[4096," in l or "[4096]" in l)]
            emit(f"hlo-{kind}-{sorted(args)}", "all-gathers of the rows", len(gathers), 0)
    print("DONE", flush=True)
    '''
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return processes.run_on_devices(CHILD, 4, tmp_path_factory.mktemp("child"))


def _rows(results, prefix):
    rows = [r for r in results if r["case"].startswith(prefix)]
    assert rows, f"no {prefix} checks ran"
    return rows


@pytest.mark.parametrize("prefix", ["step-", "fit-", "many-"])
def test_full_batch_within_summation_order_bound(results, prefix):
    """Full batch on 4 shards, Auto and Explicit meshes: within the bound of the module
    docstring (margins: difference minus bound, per component, at most 0)."""
    for r in _rows(results, prefix):
        assert r["diff"] <= r["bound"], r


def test_bound_catches_a_missing_shard(results):
    """The per-component gradient bound is tight enough to see one shard's rows missing."""
    for r in _rows(results, "step-"):
        if r["what"] == "teeth":
            assert r["diff"] < 0, r  # -(excess over the bound): positive excess expected


def test_mini_batches_equal_to_the_bit(results):
    """The batch's rows are gathered exactly and the step runs replicated: no tolerance."""
    for r in _rows(results, "batches-"):
        assert r["diff"] == 0, r


def test_no_all_gather_of_the_rows(results):
    for r in _rows(results, "hlo-"):
        assert r["diff"] == 0, r
