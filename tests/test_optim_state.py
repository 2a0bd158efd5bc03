"""jaxreg.optim's state wrapper: OptState, adopt (the optimizer passed wins), strip/restore,
set_lr, inject (optax transformations with their numbers in the state), check_transformation.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxreg.optim
from jaxreg import optim as jro

PARAMS = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(0.25)}
GRADS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(1.0)}


def _update(tx, state, grads=GRADS, params=PARAMS):
    return jax.jit(tx.update)(grads, state, params)


def test_no_module_level_mutable_state_in_jaxreg_optim():
    for info in pkgutil.iter_modules(jaxreg.optim.__path__):
        module = importlib.import_module(f"jaxreg.optim.{info.name}")
        for name, value in vars(module).items():
            if not name.startswith("__"):
                assert not isinstance(value, (list, dict, set, bytearray)), (info.name, name)
    assert not hasattr(jaxreg.optim._base, "register_state")


# ---------------------------------------------------------------------------------------
# OptState and init


@pytest.mark.parametrize("factory", [jro.sgd, jro.adam, jro.adamw, jro.rmsprop, jro.adagrad])
def test_init_returns_the_same_read_only_host_numbers_each_time(factory):
    tx = factory(lr=0.1)
    a, b = tx.init(PARAMS), tx.init(PARAMS)
    assert isinstance(a, jro.OptState) and jro.is_optimizer_state(a)
    assert a.origin is b.origin and a.hyperparams is not b.hyperparams  # fresh dicts
    for name in a.hyperparams:
        assert a.hyperparams[name] is b.hyperparams[name]
        assert isinstance(a.hyperparams[name], np.ndarray)
        assert not a.hyperparams[name].flags.writeable
    assert not a.origin.flags.writeable
    assert a.origin.tolist() == [float(a.hyperparams[k]) for k in sorted(a.hyperparams)]
    a.hyperparams["lr"] = np.asarray(5.0)  # optax's idiom mutates only this state's dict
    assert tx.init(PARAMS).hyperparams["lr"] == 0.1


def test_hyperparams_of_gives_the_exact_python_numbers():
    assert jro.hyperparams_of(jro.sgd(0.1, momentum=0.9)) == {
        "lr": 0.1,
        "momentum": 0.9,
        "dampening": 0.0,
        "weight_decay": 0.0,
    }
    assert jro.hyperparams_of(jro.inject(optax.sgd, learning_rate=0.3))["lr"] == 0.3
    assert jro.hyperparams_of(optax.sgd(0.1)) == {}
    assert jro.hyperparams_of(optax.chain(jro.sgd())) == {}


# ---------------------------------------------------------------------------------------
# adopt: the optimizer passed wins (issue 14)


def test_adopt_recognises_a_state_of_the_same_tx_by_identity():
    tx = jro.adam(lr=0.1)
    state = tx.init(PARAMS)
    assert jro.adopt(tx, PARAMS, state) is state
    state = jro.set_lr(state, 0.05)
    assert jro.adopt(tx, PARAMS, state) is state  # set_lr keeps origin
    assert "expected" not in str(tx.init.cache)  # no structure trace was needed


def test_the_learning_rate_of_the_tx_passed_wins():
    state = jro.adopt(jro.sgd(lr=0.001), PARAMS, jro.sgd(lr=1.0).init(PARAMS))
    updates, _ = _update(jro.sgd(lr=0.001), state)
    np.testing.assert_allclose(updates["w"], -0.001 * GRADS["w"], rtol=1e-15)


def test_the_momentum_of_the_tx_passed_wins():
    tx = jro.sgd(0.1, momentum=0.5)
    state = jro.sgd(momentum=0.9).init(PARAMS)
    _, state = _update(tx, state)  # a state with a buffer, from a jitted step
    state = jro.adopt(tx, PARAMS, state)
    assert jro.get_hyperparams(state)["momentum"] == 0.5
    updates, _ = _update(tx, state)  # buf = 0.5 * g + g
    np.testing.assert_allclose(updates["w"], -0.1 * 1.5 * GRADS["w"], rtol=1e-15)


def test_adamw_given_an_adam_state_decays():
    state = jro.adopt(jro.adamw(weight_decay=0.5), PARAMS, jro.adam(0.1).init(PARAMS))
    assert jro.get_hyperparams(state)["weight_decay"] == 0.5
    assert jro.get_hyperparams(state)["lr"] == 1e-3
    ours, _ = _update(jro.adamw(weight_decay=0.5), state)
    fresh, _ = _update(jro.adamw(weight_decay=0.5), jro.adamw(weight_decay=0.5).init(PARAMS))
    np.testing.assert_array_equal(ours["w"], fresh["w"])


def test_continuing_with_another_lr_uses_it_and_keeps_the_moments():
    first = jro.adam(lr=0.1)
    state = first.init(PARAMS)
    for _ in range(3):
        _, state = _update(first, state)
    tx = jro.adam(lr=1e-4)
    adopted = jro.adopt(tx, PARAMS, state)
    assert jro.get_hyperparams(adopted)["lr"] == 1e-4
    assert adopted.inner is state.inner
    assert adopted.origin is tx.init(PARAMS).origin
    assert jro.adopt(tx, PARAMS, adopted) is adopted  # fast from now on


def test_set_lr_survives_adopt_with_the_same_optimizer_after_jitted_steps():
    # parity's make_step loop: state = set_lr(state, lrs[epoch]) between steps, same tx
    tx = jro.sgd(lr=0.1, momentum=0.9)
    state = tx.init(PARAMS)
    for lr in [0.1, 0.05, 0.025]:
        state = jro.adopt(tx, PARAMS, jro.set_lr(state, lr))
        assert jro.get_hyperparams(state)["lr"] == lr
        _, state = _update(tx, state)  # device arrays, origin included
    state = jro.adopt(tx, PARAMS, state)  # values compared: equal, so kept
    assert jro.get_hyperparams(state)["lr"] == 0.025
    assert state.origin is tx.init(PARAMS).origin


def test_adopt_of_none_is_init():
    tx = jro.sgd(lr=0.2)
    assert jro.get_hyperparams(jro.adopt(tx, PARAMS, None))["lr"] == 0.2


@pytest.mark.parametrize(
    "tx, made_by, error, match",
    [
        (jro.sgd(), jro.adam(), TypeError, r"another optimizer: it holds an AdamState.*SGDState"),
        (jro.sgd(momentum=0.9), jro.sgd(), ValueError, r"opt_state\.inner\.momentum_buffer"),
        (jro.sgd(), jro.sgd(momentum=0.9), ValueError, r"momentum_buffer.*not in tx's state"),
        (jro.adam(amsgrad=True), jro.adam(), ValueError, r"max_exp_avg_sq.*is missing"),
        (jro.rmsprop(centered=True), jro.rmsprop(), ValueError, r"grad_avg"),
        (jro.sgd(), jro.inject(optax.sgd, 0.1), TypeError, "another optimizer"),
    ],
)
def test_a_state_of_another_structure_is_a_clear_error(tx, made_by, error, match):
    with pytest.raises(error, match=match) as info:
        jro.adopt(tx, PARAMS, made_by.init(PARAMS))
    assert "opt_state" in str(info.value) and "tx.init(params)" in str(info.value)


def test_a_state_for_other_params_is_a_clear_error():
    state = jro.adam().init(PARAMS)
    other = {"w": jnp.ones(2), "b": jnp.array(0.0)}
    with pytest.raises(ValueError, match=r"opt_state\.inner\.exp_avg\['w'\] is \(3,\) float64"):
        jro.adopt(jro.adam(), other, state)
    as_f32 = jax.tree.map(lambda p: p.astype(jnp.float32), PARAMS)
    with pytest.raises(ValueError, match=r"other shapes or dtypes"):
        jro.adopt(jro.adam(), as_f32, state)
    # the same tx recognises its state by identity; update then checks at trace time
    tx = jro.adam()
    state = tx.init(PARAMS)
    assert jro.adopt(tx, other, state) is state
    with pytest.raises(ValueError, match=r"opt_state\) has exp_avg\['w'\] of \(3,\) float64"):
        tx.update(other, state, other)


@pytest.mark.parametrize("state", [PARAMS, "adam", (1, 2)], ids=["params", "str", "tuple"])
def test_a_non_state_is_a_type_error(state):
    with pytest.raises(TypeError, match=r"opt_state is a .*tx.init\(params\) makes the state"):
        jro.adopt(jro.sgd(), PARAMS, state)


def test_adopt_checks_any_optax_transformation_by_structure_only():
    state = optax.adam(0.2).init(PARAMS)
    assert jro.adopt(optax.adam(0.1), PARAMS, state) is state
    with pytest.raises((TypeError, ValueError), match="opt_state"):
        jro.adopt(optax.adam(0.1), PARAMS, optax.sgd(0.1, momentum=0.9).init(PARAMS))


def test_adopt_inside_a_chain_replaces_the_nested_numbers_and_caches():
    tx = optax.chain(optax.clip_by_global_norm(1.0), jro.sgd(lr=0.001))
    made = optax.chain(optax.clip_by_global_norm(1.0), jro.sgd(lr=1.0)).init(PARAMS)
    cache = {}
    state = jro.adopt(tx, PARAMS, made, cache=cache)
    assert jro.get_hyperparams(state)["lr"] == 0.001
    assert len(cache) == 1
    assert jro.adopt(tx, PARAMS, state, cache=cache) is state
    assert len(cache) == 1
    kept = jro.set_lr(state, 0.5)
    assert jro.get_hyperparams(jro.adopt(tx, PARAMS, kept, cache=cache))["lr"] == 0.5


def test_batched_adopt_decides_model_by_model():
    tx = jro.sgd(lr=0.1, momentum=0.9)
    params = jax.tree.map(lambda p: jnp.stack([p, p]), PARAMS)
    state = jax.vmap(tx.init)(params)
    assert jro.adopt(tx, params, state, batched=True) is state
    # model 0 from tx (its lr changed by a schedule), model 1 from another optimizer
    one = jro.set_lr(tx.init(PARAMS), 0.05)
    other = jro.sgd(lr=3.0, momentum=0.5).init(PARAMS)
    mixed = jax.tree.map(lambda a, b: np.stack([a, b]), one, other)
    adopted = jro.adopt(tx, params, mixed, batched=True)
    hp = jro.get_hyperparams(adopted)
    np.testing.assert_array_equal(hp["lr"], [0.05, 0.1])
    np.testing.assert_array_equal(hp["momentum"], [0.9, 0.9])
    np.testing.assert_array_equal(adopted.origin, np.stack([tx.init(PARAMS).origin] * 2))
    with pytest.raises(ValueError, match="leading model axis"):
        jro.adopt(
            tx, params, tx.init(jax.tree.map(lambda p: jnp.stack([p] * 3), PARAMS)), batched=True
        )


# ---------------------------------------------------------------------------------------
# strip / restore, set_lr


def test_strip_and_restore_hyperparams_around_a_jitted_step():
    tx = jro.sgd(lr=0.1, momentum=0.9)
    state = tx.init(PARAMS)

    @jax.jit
    def step(state):
        updates, new = tx.update(GRADS, state, PARAMS)
        return updates, jro.strip_hyperparams(new)

    _, out = step(state)
    assert out.hyperparams is None and out.origin is None
    restored = jro.restore_hyperparams(out, state)
    assert restored.hyperparams is state.hyperparams and restored.origin is state.origin
    assert jro.adopt(tx, PARAMS, restored) is restored
    with pytest.raises(TypeError, match="restore_hyperparams"):
        tx.update(GRADS, out, PARAMS)


def test_strip_and_restore_inside_a_chain():
    tx = optax.chain(optax.clip_by_global_norm(1.0), jro.adam(lr=0.1))
    state = tx.init(PARAMS)
    _, new = jax.jit(tx.update)(GRADS, state, PARAMS)
    stripped = jro.strip_hyperparams(new)
    assert stripped[1].hyperparams is None and stripped[1].origin is None
    restored = jro.restore_hyperparams(stripped, state)
    assert restored[1].hyperparams is state[1].hyperparams
    assert restored[1].inner is new[1].inner


def test_set_lr_on_a_batched_state_sets_every_model_or_one_each():
    tx = jro.adam(lr=0.1)
    state = jax.vmap(tx.init)(jax.tree.map(lambda p: jnp.stack([p, p, p]), PARAMS))
    np.testing.assert_array_equal(jro.get_hyperparams(jro.set_lr(state, 0.5))["lr"], [0.5] * 3)
    np.testing.assert_array_equal(
        jro.get_hyperparams(jro.set_lr(state, np.array([0.1, 0.2, 0.3])))["lr"], [0.1, 0.2, 0.3]
    )
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        jro.set_lr(state, np.array([0.1, 0.2]))


# ---------------------------------------------------------------------------------------
# inject: optax transformations with their numbers in the state


def test_inject_computes_what_optax_computes():
    ours, theirs = jro.inject(optax.adam, learning_rate=0.1, b1=0.8), optax.adam(0.1, b1=0.8)
    s_ours, s_theirs = ours.init(PARAMS), theirs.init(PARAMS)
    assert isinstance(s_ours, jro.OptState)
    assert set(jro.get_hyperparams(s_ours)) == {"lr", "b1", "b2", "eps", "eps_root"}
    for _ in range(3):
        u_ours, s_ours = jax.jit(ours.update)(GRADS, s_ours, PARAMS)
        u_theirs, s_theirs = jax.jit(theirs.update)(GRADS, s_theirs, PARAMS)
        np.testing.assert_array_equal(u_ours["w"], u_theirs["w"])


def test_injected_transformations_compare_by_structure():
    a, b = jro.inject(optax.sgd, 0.1), jro.inject(optax.sgd, learning_rate=0.5, momentum=0.9)
    assert a == jro.inject(optax.sgd, 0.3) and hash(a) == hash(jro.inject(optax.sgd, 0.3))
    assert a != b  # momentum None -> 0.9: a number where there was structure
    assert b == jro.inject(optax.sgd, 0.01, momentum=0.5)
    assert jro.inject(optax.sgd, 0.1, nesterov=True) != jro.inject(optax.sgd, 0.1)
    assert jro.inject(optax.adam, 0.1) != jro.inject(optax.adamw, 0.1)
    assert jro.inject(optax.sgd, 1) == a  # an int learning rate is a number too


def test_injected_transformation_traces_once_and_set_lr_works_traced():
    traces = []

    @functools.partial(jax.jit, static_argnames="tx")
    def step(state, lr, *, tx):
        traces.append(tx)
        state = jro.set_lr(state, lr)
        return tx.update(GRADS, state, PARAMS)

    for lr0 in (0.1, 0.7):
        tx = jro.inject(optax.sgd, learning_rate=lr0)
        updates, state = step(tx.init(PARAMS), 0.25, tx=tx)
        np.testing.assert_allclose(updates["w"], -0.25 * GRADS["w"], rtol=1e-15)
    assert len(traces) == 1
    assert jro.get_hyperparams(state)["lr"] == 0.25


def test_inject_in_a_chain_and_adopt():
    tx = optax.chain(optax.clip_by_global_norm(10.0), jro.inject(optax.sgd, 0.001))
    made = optax.chain(optax.clip_by_global_norm(10.0), jro.inject(optax.sgd, 1.0)).init(PARAMS)
    state = jro.adopt(tx, PARAMS, made)
    assert jro.get_hyperparams(state)["lr"] == 0.001
    updates, _ = jax.jit(tx.update)(GRADS, jro.set_lr(state, 0.01), PARAMS)
    np.testing.assert_allclose(updates["w"], -0.01 * GRADS["w"], rtol=1e-15)


def test_inject_refuses_jaxreg_optimizers_and_unhashable_structure():
    with pytest.raises(TypeError, match="jaxreg optimizer"):
        jro.inject(jro.sgd, lr=0.1)
    with pytest.raises(TypeError, match="must be hashable"):
        jro.inject(optax.adamw, 0.1, mask={"w": True, "b": False})
    with pytest.raises(TypeError):
        jro.inject(optax.sgd, rate=0.1)  # not an argument of optax.sgd


# ---------------------------------------------------------------------------------------
# check_transformation and constructor arguments


def test_check_transformation_accepts_transformations():
    for tx in [jro.sgd(), optax.adam(0.1), optax.chain(jro.sgd()), jro.inject(optax.sgd, 0.1)]:
        jro.check_transformation(tx)


@pytest.mark.parametrize(
    "value, match",
    [
        ("sgd", r"tx must be an optax GradientTransformation, not the string 'sgd'.*jr\.optim"),
        ("Adam", r"jr\.optim\.adam\(lr=0\.1\)"),
        (jro.sgd, r"tx is the function sgd, not a transformation; call it.*jr\.optim\.sgd\("),
        (optax.adam, r"function adam.*adam\(\.\.\.\)"),
        (0.1, r"tx must be an optax GradientTransformation .*jr\.optim\.sgd\(lr=0\.1\)"),
    ],
)
def test_check_transformation_says_how_to_build_one(value, match):
    with pytest.raises(TypeError, match=match):
        jro.check_transformation(value)


def test_check_transformation_names_the_jaxreg_mirror_of_a_torch_optimizer():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(
        TypeError, match=r"torch\.optim\.SGD.*jr\.optim\.sgd\(lr=0\.1, momentum=0\.9\)"
    ):
        jro.check_transformation(torch.optim.SGD([w], lr=0.1, momentum=0.9))
    with pytest.raises(TypeError, match=r"^optimizer is a torch optimizer .*jr\.optim\.adamw\("):
        jro.check_transformation(torch.optim.AdamW([w]), name="optimizer")
    with pytest.raises(TypeError, match=r"torch\.optim\.Adadelta\), which jaxreg\.optim does not"):
        jro.check_transformation(torch.optim.Adadelta([w]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": torch.tensor([0.001, 0.001])},
        {"lr": -1, "betas": (0, 0.9)},
        {"betas": (0, 0.9)},
        {"betas": (0.9, torch.tensor(0.99))},
    ],
)
def test_adam_argument_errors_are_torchs(kwargs):
    with pytest.raises(ValueError) as theirs:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError) as ours:
        jro.adam(**kwargs)
    assert str(ours.value) == str(theirs.value)


def test_a_two_element_tensor_beta_is_torchs_message_not_its_runtime_error():
    # torch's own check for it comes after a comparison that raises RuntimeError
    with pytest.raises(ValueError, match=r"^Tensor betas\[0\] must be 1-element$"):
        jro.adam(betas=(torch.tensor([0.9, 0.8]), torch.tensor(0.99)))


def test_a_one_element_tensor_lr_is_accepted_as_torch_does():
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=torch.tensor([0.5]))
    for lr in [torch.tensor([0.5]), np.array([0.5]), jnp.array([[0.5]])]:
        assert jro.hyperparams_of(jro.sgd(lr=lr))["lr"] == 0.5
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        jro.sgd(lr=np.array([0.1, 0.2]))
    with pytest.raises(TypeError, match="lr must be a real number"):
        jro.sgd(lr=[0.1])
