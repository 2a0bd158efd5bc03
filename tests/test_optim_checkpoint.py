"""`jaxreg.io.save_state` / `load_state`: a run continued from a file is the run uninterrupted.

For every optimizer in `jaxreg.optim` (found from its `*State` classes, so a new one is
tested without a line here), `fit` for `K` steps, the parameters and state saved in one
file and loaded, `fit` for `N` more: the parameters, the state (every leaf, bit for bit,
with its dtype) and the losses are those of one `fit` of `K + N` steps.
"""

from __future__ import annotations

import re

import jax
import numpy as np
import optax
import pytest

import jaxreg as jr

K = N = 3  # one compiled loop serves both halves
RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 3))
Y = RNG.normal(size=(20, 2))
LOSS = jr.objective(jr.linear.predict, jr.losses.mse)

# the options that give an optimizer all its buffers; others run with their defaults
OPTIONS = {
    "sgd": dict(lr=0.05, momentum=0.9, dampening=0.1),
    "adam": dict(lr=0.05, amsgrad=True),
    "adamw": dict(lr=0.05, amsgrad=True),
    "rmsprop": dict(lr=0.01, momentum=0.9, centered=True),
    "asgd": dict(lr=0.05, t0=2.0),
}


def _factory(state_class: str) -> str:
    """`AdamState` -> "adam", `SparseAdamState` -> "sparse_adam"."""
    stem = state_class.removesuffix("State")
    if hasattr(jr.optim, stem.lower()):
        return stem.lower()
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", stem).lower()


FACTORIES = sorted(
    {_factory(n) for n in jr.optim.__all__ if n.endswith("State") and n != "OptState"} | {"adamw"}
)


def make(name: str, dtype=np.float64):
    tx = getattr(jr.optim, name)(**OPTIONS.get(name, {}))
    bias = None if name == "muon" else np.array([0.1, -0.2], dtype)  # muon: 2-D params only
    params = jr.linear.Params(np.linspace(-0.5, 0.5, 6).reshape(2, 3).astype(dtype), bias)
    return tx, params


def same_bits(a, b) -> None:
    la, ta = jax.tree.flatten(a, is_leaf=lambda v: v is None)
    lb, tb = jax.tree.flatten(b, is_leaf=lambda v: v is None)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        if x is None:
            assert y is None
            continue
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes(), (x, y)


def test_every_optimizer_is_covered():
    for name in FACTORIES:
        assert callable(getattr(jr.optim, name, None)), name
    assert {"sgd", "adam", "adamw", "rmsprop", "adagrad", "rprop"} <= set(FACTORIES)


# every optimizer in float64 (NAdam and ASGD hold float32 scalars there too); float32 once
CONTINUED = [(n, np.float64) for n in FACTORIES] + [
    (n, np.float32) for n in ("adam",) if n in FACTORIES
]


@pytest.mark.parametrize(
    ("name", "dtype"), CONTINUED, ids=[f"{n}-{np.dtype(d).name}" for n, d in CONTINUED]
)
def test_a_run_continued_from_a_file_is_the_run_uninterrupted(tmp_path, name, dtype):
    tx, params = make(name, dtype)
    x, y = X.astype(dtype), Y.astype(dtype)
    whole = jr.fit(LOSS, tx, params, x, y, steps=K + N)
    first = jr.fit(LOSS, tx, params, x, y, steps=K)
    path = tmp_path / "checkpoint.npz"
    jr.io.save_state(path, {"params": first.params, "opt_state": first.opt_state})
    like = {"params": params, "opt_state": tx.init(params)}
    saved = jr.io.load_state(path, like=like)
    same_bits(saved, {"params": first.params, "opt_state": first.opt_state})
    rest = jr.fit(LOSS, tx, saved["params"], x, y, opt_state=saved["opt_state"], steps=N)
    same_bits(rest.params, whole.params)
    same_bits(rest.opt_state, whole.opt_state)
    same_bits(rest.losses, whole.losses[K:])


def test_a_learning_rate_set_by_set_lr_goes_on_after_loading(tmp_path):
    tx, params = make("adam")
    first = jr.fit(LOSS, tx, params, X, Y, steps=K)
    state = jr.optim.set_lr(first.opt_state, 0.01)
    jr.io.save_state(tmp_path / "s.npz", state)
    loaded = jr.io.load_state(tmp_path / "s.npz", like=tx.init(params))
    assert float(loaded.hyperparams["lr"]) == 0.01
    kept = jr.fit(LOSS, tx, first.params, X, Y, opt_state=state, steps=N)
    resumed = jr.fit(LOSS, tx, first.params, X, Y, opt_state=loaded, steps=N)
    same_bits(resumed.params, kept.params)
    assert float(resumed.opt_state.hyperparams["lr"]) == 0.01  # adopt kept it


def test_batched_chained_and_stripped_states_round_trip(tmp_path):
    tx, params = make("rmsprop")
    many = jax.tree.map(lambda a: np.stack([a, 2 * a]), params)
    states = {
        "batched": jax.vmap(tx.init)(many),
        "chain": optax.chain(optax.clip(1.0), jr.optim.inject(optax.adam, learning_rate=0.1)).init(
            params
        ),
        "stripped": jr.optim.strip_hyperparams(tx.init(params)),
    }
    for name, state in states.items():
        path = tmp_path / f"{name}.npz"
        jr.io.save_state(path, state)
        same_bits(jr.io.load_state(path, like=state), state)


@pytest.mark.parametrize(
    ("like", "match"),
    [
        (
            lambda p: jr.optim.sgd(momentum=0.9).init(p),
            "holds the state of AdamState, but like holds the state of SGDState",
        ),
        (lambda p: (jr.optim.adam().init(p),), "but like holds the state of AdamState at '0'"),
        (lambda p: p, "but like holds no jaxreg optimizer state"),
        (
            lambda p: jr.optim.adam(amsgrad=False).init(p),
            r"the file has 'inner.max_exp_avg_sq.weight', 'inner.max_exp_avg_sq.bias' but like",
        ),
        (
            lambda p: jr.optim.adam(amsgrad=True).init(jax.tree.map(lambda a: a[:1], p)),
            r"'inner.exp_avg.weight' has shape \(2, 3\) in the file but like expects \(1, 3\)",
        ),
        (
            lambda p: jr.optim.adam(amsgrad=True).init(jax.tree.map(np.float32, p)),
            "'hyperparams.beta1' has dtype float64 in the file but like expects float32",
        ),
    ],
)
def test_a_state_loaded_into_another_optimizer_or_params_is_named(tmp_path, like, match):
    tx, params = make("adam")
    path = tmp_path / "s.npz"
    jr.io.save_state(path, tx.init(params))
    with pytest.raises(ValueError, match=match) as info:
        jr.io.load_state(path, like=like(params))
    assert str(path) in str(info.value)
