"""jaxreg.loop.batches: the epoch order of a shuffled fit and the batches the loop takes.

The host formulation of `epoch_permutation` must give jax.random.permutation's array, bit
for bit, for every n and key kind (the order is documented and public); the compiled loop
must take each batch's rows inside its step, never a permuted copy of x.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr
from jaxreg import gradients
from jaxreg.loop import batches, program
from jaxreg.loop.spec import loop_spec

MSE = jr.objective(jr.linear.predict, jr.losses.mse)

# n at which jax's shuffle changes its number of sort rounds (ceil(3 ln n / ln(2**32 - 1))):
# 0 rounds for n = 1, 1 from 2, 2 from 1626, 3 from 2642246.
ROUND_EDGES = [1, 2, 1625, 1626]


def _keys():
    return {
        "threefry": jax.random.key(11),
        "raw uint32": jax.random.PRNGKey(11),
        "rbg": jax.random.key(11, impl="rbg"),
    }


@functools.partial(jax.jit, static_argnames=("n", "on_host"))
def _perm(key, epoch, *, n, on_host):
    return batches.epoch_permutation(key, epoch, n, on_host=on_host)


# Every key kind at the round edges; more sizes with the default key. At n = 100003 the
# uint32 sort keys are likely to tie (n**2 / 2**33 ~ 1.2 expected pairs), where the sort's
# stability decides the order.
CASES = [(kind, n) for kind in _keys() for n in ROUND_EDGES] + [
    ("threefry", n) for n in (3, 1000, 1024, 4097, 100_003)
]


@pytest.mark.parametrize(("kind", "n"), CASES)
def test_host_permutation_is_jax_permutation(kind, n):
    key = _keys()[kind]
    for epoch in (0, 5):
        expected = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        host = _perm(key, epoch, n=n, on_host=True)
        assert host.dtype == expected.dtype
        np.testing.assert_array_equal(np.asarray(host), np.asarray(expected))
        np.testing.assert_array_equal(np.asarray(_perm(key, epoch, n=n, on_host=False)), expected)


def test_host_permutation_is_jax_permutation_with_three_rounds():
    n = 2_642_246  # the first n with 3 sort rounds
    key = jax.random.key(4)
    expected = jax.random.permutation(jax.random.fold_in(key, 2), n)
    np.testing.assert_array_equal(np.asarray(_perm(key, 2, n=n, on_host=True)), expected)


def _stable_reference(n, bits):
    """jax's shuffle written plainly: stable argsort of the current order by each key."""
    order = np.arange(n)
    for b in bits:
        order = order[np.argsort(b, kind="stable")]
    return order


@pytest.mark.parametrize("distinct", [4, 2**32])
def test_host_sort_is_a_stable_sort_for_every_n_up_to_1000(distinct):
    # Random uint32 keys rarely tie at these n; drawing them from 4 values makes almost
    # every comparison a tie, where stability decides the order.
    rng = np.random.default_rng(0)
    for n in range(1, 1001):
        bits = [rng.integers(0, distinct, n, dtype=np.uint32) for _ in range(2)]
        out = batches._sorted_positions(n, np.int64, *bits)
        np.testing.assert_array_equal(out, _stable_reference(n, bits))
        assert np.array_equal(np.sort(out), np.arange(n))


def test_shuffle_on_host_only_on_cpu_for_large_n():
    assert gradients.host_shuffle("cpu", gradients.HOST_SORT_MIN_N)
    assert not gradients.host_shuffle("cpu", gradients.HOST_SORT_MIN_N - 1)
    assert not gradients.host_shuffle("gpu", 10**6)
    assert not gradients.host_shuffle("tpu", 10**6)


def test_epoch_permutation_under_vmap_is_per_key():
    keys = jax.random.split(jax.random.key(2), 3)
    n = 2000
    out = jax.vmap(lambda k: batches.epoch_permutation(k, 1, n, on_host=True))(keys)
    for k, row in zip(keys, np.asarray(out), strict=True):
        np.testing.assert_array_equal(row, jax.random.permutation(jax.random.fold_in(k, 1), n))


def _data(n, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ np.arange(1.0, d + 1)[:, None] + 0.1 * rng.normal(size=(n, 1))
    return x, y


def _params(d=3):
    return jr.linear.Params(jnp.full((1, d), 0.1), jnp.zeros((1,)))


def _temp_bytes(n, d, batch_size, **kwargs):
    """Temporary memory of the compiled loop (XLA's own accounting) for one epoch."""
    x, y = jnp.zeros((n, d)), jnp.zeros((n, 1))
    spec, order, key = loop_spec(
        n,
        steps=None,
        epochs=1,
        batch_size=batch_size,
        shuffle=kwargs.get("shuffle", True),
        key=kwargs.get("key"),
        order=kwargs.get("order"),
        drop_last=False,
        record=False,
    )
    tx = optax.sgd(0.1)
    p = _params(d)
    lowered = program.run.lower(
        MSE, p, tx.init(p), x, y, order, key, None, 0, tx=tx, spec=spec, backend="cpu"
    )
    stats = lowered.compile().memory_analysis()
    return stats.temp_size_in_bytes, x.nbytes


@pytest.mark.parametrize(
    "kwargs",
    [{"key": 0}, {"order": np.arange(20_000)[None, ::-1]}, {"shuffle": False}],
    ids=["key", "order", "sequential"],
)
def test_loop_never_holds_a_permuted_copy_of_x(kwargs):
    # x is 20000 x 64 float64 (10 MB); an epoch may hold O(n) integers (the order, the
    # random bits of the shuffle: a few hundred kB), never a second x. The bound, a
    # quarter of x, sits far from both (a gathered copy is all of x).
    temp, x_bytes = _temp_bytes(20_000, 64, 256, **kwargs)
    assert temp < x_bytes / 4, (temp, x_bytes)
