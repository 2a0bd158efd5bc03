"""Rows put on a one-device mesh (`distributed.row_sharding()` on a machine with one
device: jax's default mesh is `AxisType.Explicit`, so the arrays' types read
float32[n@data, d]) train exactly as the same rows unsharded: fit (full batch, ordered
and key-shuffled mini-batches), make_step and fit_many give bitwise the same numbers.

Before `distributed.unsplit`, these failed inside jit ("Contracting dimensions are
sharded", "Use `.at[...].get(out_sharding=)`"): data_mesh rightly took the rows for
one-device data, but their type still named the mesh axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr
from jaxreg import distributed

pytestmark = pytest.mark.skipif(jax.device_count() != 1, reason="needs exactly one device")


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(64, 1))).astype(np.float32)
    return x, y


def _on_one_device_mesh(*arrays):
    sharding = distributed.row_sharding()
    assert sharding.mesh.size == 1
    return [jax.device_put(a, sharding) for a in arrays]


def _assert_bitwise(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


LOSS = jr.objective(jr.linear.predict, jr.losses.mse)


@pytest.mark.parametrize(
    "options",
    [{}, {"batch_size": 16, "shuffle": False}, {"batch_size": 16, "key": 3}],
    ids=["full-batch", "ordered-mb16", "shuffled-mb16"],
)
def test_fit_on_a_one_device_mesh_is_the_unsharded_fit(options):
    x, y = _data()
    xs, ys = _on_one_device_mesh(x, y)
    params = jr.linear.init(jax.random.key(0), 3, 1)
    got = jr.fit(LOSS, jr.optim.sgd(0.1), params, xs, ys, epochs=3, **options)
    want = jr.fit(LOSS, jr.optim.sgd(0.1), params, x, y, epochs=3, **options)
    _assert_bitwise(got.params, want.params)
    assert np.any(np.asarray(got.params.weight) != 0)  # it trained


def test_make_step_on_a_one_device_mesh():
    x, y = _data()
    xs, ys = _on_one_device_mesh(x, y)
    params = jr.linear.init(jax.random.key(0), 3, 1)
    tx = jr.optim.adam(0.01)
    step = jr.make_step(LOSS, tx)
    _assert_bitwise(step(params, tx.init(params), xs, ys), step(params, tx.init(params), x, y))


def test_fit_many_on_a_one_device_mesh():
    x, y = _data()
    xm, ym = np.stack([x, 2 * x]), np.stack([y, -y])
    sharding = distributed.row_sharding()
    rows = jax.NamedSharding(sharding.mesh, jax.P(None, *sharding.spec))
    xs, ys = jax.device_put(xm, rows), jax.device_put(ym, rows)
    params = jax.vmap(lambda k: jr.linear.init(k, 3, 1))(jax.random.split(jax.random.key(0)))
    got = jr.fit_many(LOSS, jr.optim.sgd(0.05), params, xs, ys, steps=4)
    want = jr.fit_many(LOSS, jr.optim.sgd(0.05), params, jnp.asarray(xm), jnp.asarray(ym), steps=4)
    _assert_bitwise(got.params, want.params)
