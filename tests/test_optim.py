"""jaxreg.optim against torch.optim: trajectories, checks, composition, compilation.

The torch side runs the real `torch.optim` classes (`optim_ref.py`). Two comparisons per
optimizer option set and dtype, each over `STEPS` updates, parameters after every update:

- *regression*: both sides train a linear model on the same 20x3 data from the same
  start, each computing its own gradients (what a user's port sees);
- *stream*: both sides get the same fixed sequence of gradients, which isolates the
  optimizer's arithmetic from the gradient computation.

Deviation is measured per step, normwise: `max_t ||ours_t - torch_t||_inf / ||torch_t||_inf`.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optim_ref
import pytest
import torch

from jaxreg import optim as jro
from jaxreg.optim._adam import bias_corrections

STEPS = 100
F32_EPS = optim_ref.F32_EPS  # 1.19e-7

# float64: both sides round each operation to float64, so trajectories agree to a few
# float64 ulps (measured worst: 5 eps = 1.1e-15); 1e-12 leaves room for far longer runs.
F64_RTOL = 1e-12

# float32, regression: the gradients already differ in the last bits (torch's MKL matmul
# and mean against XLA's, other summation orders), and the optimizers add their own
# last-bit differences (see below). The problem is a well-conditioned quadratic, so these
# do not compound. Measured worst: 6.7 eps (RMSprop, every option). For scale, torch's own
# float32 run is up to 15 eps away from its float64 run on these cases. Tolerance: 32 eps.
F32_REGRESSION_RTOL = 32 * F32_EPS

# float32, gradient stream (same gradients both sides): SGD is bitwise torch's except with
# nesterov or maximize; elsewhere an ulp differs at some steps because (a) torch 2.13's CPU
# sqrt is not correctly rounded (about 1 float32 argument in 6 is 1 ulp off; XLA's is
# exact), (b) XLA contracts a*b+c into an FMA where torch rounds a*b first, or the other
# way round (not controllable from JAX), (c) the hyperparameters live in the state as
# float32, so e.g. `1 - beta2` is `1 - float32(0.999)`, not torch's `float32(1 - 0.999)`
# (1.3e-5 relative in Adam's second moment). Measured worst: 7.7 eps (AdamW, amsgrad).
# Tolerance: 32 eps.
F32_STREAM_RTOL = 32 * F32_EPS

CASES = [
    ("SGD", jro.sgd, {"lr": 0.05}),
    ("SGD", jro.sgd, {"lr": 0.02, "momentum": 0.9}),
    ("SGD", jro.sgd, {"lr": 0.02, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", jro.sgd, {"lr": 0.02, "momentum": 0.9, "nesterov": True}),
    ("SGD", jro.sgd, {"lr": 0.05, "weight_decay": 0.1}),
    ("SGD", jro.sgd, {"lr": 0.02, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.01}),
    ("SGD", jro.sgd, {"lr": 0.01, "momentum": 0.9, "nesterov": True, "maximize": True}),
    ("Adam", jro.adam, {"lr": 0.05}),
    ("Adam", jro.adam, {"lr": 0.05, "amsgrad": True}),
    ("Adam", jro.adam, {"lr": 0.05, "weight_decay": 0.1}),
    ("Adam", jro.adam, {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    # lr 0.01: at 0.05 this Adam reaches the optimum within 100 steps, where its sign-like
    # steps amplify every rounding difference (torch's own float32 and float64 runs part
    # by 1000 eps), so no tolerance could compare float32 runs there.
    ("Adam", jro.adam, {"lr": 0.01, "betas": (0.3, 0.7), "eps": 1e-3}),
    ("Adam", jro.adam, {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    ("AdamW", jro.adamw, {"lr": 0.05}),
    ("AdamW", jro.adamw, {"lr": 0.05, "weight_decay": 0.5, "amsgrad": True}),
    ("AdamW", jro.adamw, {"lr": 0.02, "maximize": True}),
    ("RMSprop", jro.rmsprop, {}),
    ("RMSprop", jro.rmsprop, {"lr": 0.01, "centered": True}),
    ("RMSprop", jro.rmsprop, {"lr": 0.01, "momentum": 0.5}),
    ("RMSprop", jro.rmsprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-3}),
    (
        "RMSprop",
        jro.rmsprop,
        {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1, "maximize": True},
    ),
    ("Adagrad", jro.adagrad, {"lr": 0.1}),
    ("Adagrad", jro.adagrad, {"lr": 0.1, "lr_decay": 0.01}),
    ("Adagrad", jro.adagrad, {"lr": 0.1, "weight_decay": 0.1}),
    ("Adagrad", jro.adagrad, {"lr": 0.1, "initial_accumulator_value": 0.5}),
    (
        "Adagrad",
        jro.adagrad,
        {
            "lr": 0.05,
            "lr_decay": 0.05,
            "weight_decay": 0.1,
            "initial_accumulator_value": 0.2,
            "maximize": True,
        },
    ),
]


def _case_id(case) -> str:
    name, _, kwargs = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


CASE_PARAMS = [pytest.param(*case, id=_case_id(case)) for case in CASES]


def max_relative_deviation(ours: np.ndarray, ref: np.ndarray) -> float:
    """`max_t ||ours_t - ref_t||_inf / ||ref_t||_inf` over the rows (steps)."""
    return float(np.max(np.max(np.abs(ours - ref), axis=1) / np.max(np.abs(ref), axis=1)))


# ---------------------------------------------------------------------------------------
# The jax side: one compiled program per optimizer *structure* and dtype (tx is static and
# compares equal for any numbers; the hyperparameters arrive in the state), running both
# the regression and the gradient stream.


def jax_trajectories(factory, kwargs, problem, params0, grads, dtype):
    """(regression rows (STEPS, 4), stream rows (STEPS, 4)), computed by one program."""
    tx = factory(**kwargs)
    x, y, weight0, bias0 = (jnp.asarray(a, dtype) for a in problem)
    params = {"weight": weight0, "bias": bias0}
    stream_params = jnp.asarray(params0, dtype)
    return tuple(
        np.asarray(a)
        for a in _run(
            (x, y),
            params,
            tx.init(params),  # init outside the jit: the numbers travel in the state
            stream_params,
            tx.init(stream_params),
            jnp.asarray(grads, dtype),
            tx=tx,
        )
    )


@functools.partial(jax.jit, static_argnames="tx")
def _run(data, params, state, stream_params, stream_state, grads, *, tx):
    x, y = data

    def loss(p):
        return jnp.mean((x @ p["weight"].T + p["bias"][None, :] - y) ** 2)

    def regression_step(carry, _):
        p, s = carry
        updates, s = tx.update(jax.grad(loss)(p), s, p)
        p = optax.apply_updates(p, updates)
        return (p, s), jnp.concatenate([p["weight"].reshape(-1), p["bias"]])

    def stream_step(carry, g):
        p, s = carry
        updates, s = tx.update(g, s, p)
        p = optax.apply_updates(p, updates)
        return (p, s), p

    regression = jax.lax.scan(regression_step, (params, state), None, length=STEPS)[1]
    stream = jax.lax.scan(stream_step, (stream_params, stream_state), grads)[1]
    return regression, stream


# ---------------------------------------------------------------------------------------
# Trajectories


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("torch_name, factory, kwargs", CASE_PARAMS)
def test_trajectories_match_torch(torch_name, factory, kwargs, dtype):
    problem = optim_ref.regression_problem()
    params0, grads = optim_ref.gradient_stream(STEPS, 4)
    ref_regression = optim_ref.torch_regression(torch_name, kwargs, problem, dtype, STEPS)
    ref_stream = optim_ref.torch_stream(torch_name, kwargs, params0, grads, dtype)
    regression, stream = jax_trajectories(factory, kwargs, problem, params0, grads, dtype)
    assert regression.dtype == stream.dtype == dtype
    assert regression.shape == ref_regression.shape == stream.shape == (STEPS, 4)
    assert np.max(np.abs(ref_regression[-1] - ref_regression[0])) > 1e-2, "must move"
    f64 = dtype == np.float64
    for what, ours, ref, rtol in [
        ("regression", regression, ref_regression, F64_RTOL if f64 else F32_REGRESSION_RTOL),
        ("gradient stream", stream, ref_stream, F64_RTOL if f64 else F32_STREAM_RTOL),
    ]:
        dev = max_relative_deviation(ours, ref)
        eps = np.finfo(dtype).eps
        assert dev <= rtol, f"{what}: deviation {dev:.3g} ({dev / eps:.1f} eps) > {rtol:.3g}"


X64_OFF_CASES = [
    case
    for case in CASE_PARAMS
    if case.id
    in {
        "SGD(lr=0.01,momentum=0.9,nesterov=True,maximize=True)",
        "Adam(lr=0.05,weight_decay=0.1,amsgrad=True,maximize=True)",
        "AdamW(lr=0.05)",
        "RMSprop(lr=0.01,centered=True,momentum=0.5,weight_decay=0.1,maximize=True)",
        "Adagrad(lr=0.1,lr_decay=0.01)",
    }
]


@pytest.mark.parametrize("torch_name, factory, kwargs", X64_OFF_CASES)
def test_float32_trajectories_with_x64_off_match_torch(torch_name, factory, kwargs):
    # Without x64 the per-step scalars (bias corrections, clr) are float32 too; measured
    # worst deviations are the same as with x64 on (6.7 eps), so the same tolerances hold.
    assert len(X64_OFF_CASES) == 5
    problem = optim_ref.regression_problem()
    params0, grads = optim_ref.gradient_stream(STEPS, 4)
    ref_regression = optim_ref.torch_regression(torch_name, kwargs, problem, np.float32, STEPS)
    ref_stream = optim_ref.torch_stream(torch_name, kwargs, params0, grads, np.float32)
    with jax.enable_x64(False):
        regression, stream = jax_trajectories(factory, kwargs, problem, params0, grads, np.float32)
    assert max_relative_deviation(regression, ref_regression) <= F32_REGRESSION_RTOL
    assert max_relative_deviation(stream, ref_stream) <= F32_STREAM_RTOL


@pytest.mark.parametrize("beta1, beta2", [(0.9, 0.999), (0.5, 0.99), (0.3, 0.7)])
def test_adam_bias_corrections_are_torchs_python_floats(beta1, beta2):
    # torch: bias_correction1 = 1 - beta1 ** step (Python floats), step_size = lr / it,
    # bias_correction2 ** 0.5 (C pow, not sqrt: they differ in about 1 case in 1000).
    lr = 1e-3
    steps = np.arange(1, 3001)
    scalars = jax.jit(jax.vmap(lambda t: bias_corrections(lr, beta1, beta2, t)))
    step_size, bc2_sqrt = (np.asarray(a) for a in scalars(jnp.asarray(steps, jnp.int32)))
    assert step_size.dtype == bc2_sqrt.dtype == np.float64
    assert step_size.tolist() == [lr / (1 - beta1 ** float(t)) for t in steps]
    assert bc2_sqrt.tolist() == [(1 - beta2 ** float(t)) ** 0.5 for t in steps]


# ---------------------------------------------------------------------------------------
# Arguments and checks, as torch's


SIGNATURES = [
    ("SGD", jro.sgd),
    ("Adam", jro.adam),
    ("AdamW", jro.adamw),
    ("RMSprop", jro.rmsprop),
    ("Adagrad", jro.adagrad),
]


@pytest.mark.parametrize("torch_name, factory", SIGNATURES)
def test_arguments_and_defaults_are_torchs(torch_name, factory):
    ours = inspect.signature(factory).parameters
    theirs = inspect.signature(getattr(torch.optim, torch_name)).parameters
    assert list(ours) == [name for name in theirs if name in ours], "same relative order"
    for name, param in ours.items():
        assert name in theirs, f"torch.optim.{torch_name} has no argument {name!r}"
        assert param.default == theirs[name].default, name
        assert param.kind == theirs[name].kind, name


BAD = [
    ("SGD", jro.sgd, {"lr": -1}),
    ("SGD", jro.sgd, {"lr": -0.5, "momentum": -1}),  # the first failing check wins
    ("SGD", jro.sgd, {"momentum": -0.9}),
    ("SGD", jro.sgd, {"weight_decay": -1e-4}),
    ("SGD", jro.sgd, {"nesterov": True}),
    ("SGD", jro.sgd, {"momentum": 0.9, "dampening": 0.1, "nesterov": True}),
    ("Adam", jro.adam, {"lr": -1e-3}),
    ("Adam", jro.adam, {"lr": float("nan")}),
    ("Adam", jro.adam, {"eps": -1e-8}),
    ("Adam", jro.adam, {"betas": (1.0, 0.999)}),
    ("Adam", jro.adam, {"betas": (-0.1, 0.999)}),
    ("Adam", jro.adam, {"betas": (0.9, 1.0)}),
    ("Adam", jro.adam, {"weight_decay": -0.1}),
    ("Adam", jro.adam, {"eps": -1.0, "betas": (2.0, 0.999)}),
    ("AdamW", jro.adamw, {"lr": -1}),
    ("AdamW", jro.adamw, {"betas": (0.9, 1.5)}),
    ("AdamW", jro.adamw, {"weight_decay": -1e-2}),
    ("RMSprop", jro.rmsprop, {"lr": -0.01}),
    ("RMSprop", jro.rmsprop, {"eps": -1}),
    ("RMSprop", jro.rmsprop, {"momentum": -0.5}),
    ("RMSprop", jro.rmsprop, {"weight_decay": -0.5}),
    ("RMSprop", jro.rmsprop, {"alpha": -0.99}),
    ("Adagrad", jro.adagrad, {"lr": -0.01}),
    ("Adagrad", jro.adagrad, {"lr_decay": -0.1}),
    ("Adagrad", jro.adagrad, {"weight_decay": -0.1}),
    ("Adagrad", jro.adagrad, {"initial_accumulator_value": -1}),
    ("Adagrad", jro.adagrad, {"eps": -1e-10}),
]


@pytest.mark.parametrize(
    "torch_name, factory, kwargs", [pytest.param(*b, id=_case_id(b)) for b in BAD]
)
def test_bad_hyperparameters_raise_torchs_error(torch_name, factory, kwargs):
    with pytest.raises(ValueError) as theirs:
        optim_ref.make_torch_optimizer(torch_name, kwargs)
    with pytest.raises(ValueError) as ours:
        factory(**kwargs)
    assert str(ours.value) == str(theirs.value)


def test_nan_learning_rate_is_refused_where_torch_sgd_lets_it_through():
    optim_ref.make_torch_optimizer("SGD", {"lr": float("nan")})  # torch: `if lr < 0.0`
    with pytest.raises(ValueError, match="Invalid learning rate: nan"):
        jro.sgd(lr=float("nan"))


@pytest.mark.parametrize(
    "build",
    [lambda: jro.sgd(lr="0.1"), lambda: jro.adam(eps=None), lambda: jro.rmsprop(alpha=[0.9])],
)
def test_non_numbers_are_a_type_error(build):
    with pytest.raises(TypeError, match="must be a real number"):
        build()


def test_betas_must_be_a_pair():
    with pytest.raises(ValueError, match="betas must be a pair"):
        jro.adam(betas=0.9)


@pytest.mark.parametrize(
    "tx",
    [
        jro.sgd(weight_decay=0.1),
        jro.adam(weight_decay=0.1),
        jro.adamw(),
        jro.rmsprop(weight_decay=1.0),
        jro.adagrad(weight_decay=1.0),
    ],
    ids=["sgd", "adam", "adamw", "rmsprop", "adagrad"],
)
def test_weight_decay_needs_params(tx):
    params = jnp.ones(3)
    with pytest.raises(ValueError, match=r"needs params .* tx.update\(grads, state, params\)"):
        tx.update(params, tx.init(params))


def test_maximize_alone_does_not_need_params():
    params, grads = jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0])
    tx = jro.sgd(lr=0.1, maximize=True)
    updates, _ = tx.update(grads, tx.init(params))
    np.testing.assert_array_equal(updates, 0.1 * grads)


def test_update_with_another_optimizers_state_is_a_type_error():
    params = jnp.ones(2)
    with pytest.raises(
        TypeError,
        match=r"expects the state of sgd.*holding SGDState; got an OptState holding AdamState",
    ):
        jro.sgd().update(params, jro.adam().init(params), params)


# ---------------------------------------------------------------------------------------
# Hyperparameters in the state; composition with optax


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factory", [jro.sgd, jro.adam, jro.adamw, jro.rmsprop, jro.adagrad])
def test_hyperparameters_are_arrays_of_the_params_dtype(factory, dtype):
    params = {"w": jnp.ones((2, 3), dtype), "b": jnp.zeros(2, dtype)}
    hp = jro.get_hyperparams(factory(lr=0.25).init(params))
    assert hp["lr"] == 0.25
    for name, value in hp.items():
        assert value.shape == () and value.dtype == dtype, name


def test_state_holds_torchs_hyperparameter_values():
    params = jnp.zeros(2)
    assert jro.get_hyperparams(jro.adamw().init(params)) == pytest.approx(
        {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2}, rel=1e-15
    )
    sgd = jro.get_hyperparams(jro.sgd(0.1, 0.9, 0.2, 0.3).init(params))
    assert sgd == pytest.approx(
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.3}, rel=1e-15
    )
    state = jro.adagrad(initial_accumulator_value=0.7).init(params)
    np.testing.assert_array_equal(state.inner.sum, [0.7, 0.7])


def test_get_hyperparams_returns_a_copy():
    state = jro.sgd(lr=0.1).init(jnp.zeros(2))
    jro.get_hyperparams(state)["lr"] = 5.0
    assert jro.get_hyperparams(state)["lr"] == 0.1


def test_chain_with_gradient_clipping():
    tx = optax.chain(optax.clip_by_global_norm(1.0), jro.sgd(lr=0.1, momentum=0.9))
    update = jax.jit(tx.update)
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    grads = {"w": jnp.array([3.0, 4.0]), "b": jnp.array(0.0)}  # norm 5, clipped to 1
    state = tx.init(params)
    assert jro.get_hyperparams(state)["lr"] == 0.1
    updates, state = update(grads, state, params)
    np.testing.assert_allclose(updates["w"], [-0.06, -0.08], rtol=1e-15)
    state = jro.set_lr(state, 0.01)  # found inside the chain's tuple state
    assert jro.get_hyperparams(state)["lr"] == 0.01
    updates, state = update(grads, state, params)  # buffer: 0.9 * b + b = 1.9 * b
    np.testing.assert_allclose(updates["w"], [-0.01 * 1.9 * 0.6, -0.01 * 1.9 * 0.8], rtol=1e-15)
    assert set(optax.apply_updates(params, updates)) == {"w", "b"}


def test_set_lr_inside_jit_with_a_traced_learning_rate():
    params = jnp.ones(3, jnp.float32)
    tx = jro.adam(lr=1e-3)

    @jax.jit
    def run(state, lrs):
        def body(s, lr):
            s = jro.set_lr(s, lr)
            updates, s = tx.update(jnp.ones(3, jnp.float32), s, params)
            return s, updates[0]

        return jax.lax.scan(body, state, lrs)

    state, first = run(tx.init(params), jnp.array([0.5, 0.25, 0.125]))  # float64 in
    assert jro.get_hyperparams(state)["lr"].dtype == jnp.float32
    assert jro.get_hyperparams(state)["lr"] == 0.125
    # Adam's first steps with a constant gradient move by about lr each
    np.testing.assert_allclose(first, [-0.5, -0.25, -0.125], rtol=1e-6)


def test_set_lr_errors():
    params = jnp.ones(2)
    with pytest.raises(ValueError, match="no jaxreg optimizer state found"):
        jro.set_lr(optax.sgd(0.1).init(params), 0.1)
    with pytest.raises(ValueError, match="no jaxreg optimizer state found"):
        jro.get_hyperparams({"lr": 0.1})
    with pytest.raises(ValueError, match="found 2 jaxreg optimizer states"):
        jro.set_lr(optax.chain(jro.sgd(), jro.adam()).init(params), 0.1)
    state = jro.sgd().init(params)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        jro.set_lr(state, -1)
    with pytest.raises(ValueError, match=r"scalar, got shape \(2,\)"):
        jro.set_lr(state, jnp.array([0.1, 0.2]))


# ---------------------------------------------------------------------------------------
# One compiled program for every hyperparameter value

SAME_STRUCTURE = [
    (jro.sgd, {"lr": 0.1, "momentum": 0.9}, {"lr": 0.01, "momentum": 0.5, "dampening": 0.1}),
    (jro.sgd, {"lr": 0.1, "weight_decay": 0.1}, {"lr": 0.2, "weight_decay": 0.3}),
    (jro.adam, {"lr": 1e-3}, {"lr": 0.1, "betas": (0.5, 0.6), "eps": 1e-3}),
    (jro.adamw, {}, {"lr": 0.3, "weight_decay": 0.5}),
    (jro.rmsprop, {"momentum": 0.1}, {"lr": 0.5, "alpha": 0.5, "eps": 1e-3, "momentum": 0.9}),
    (jro.adagrad, {}, {"lr": 0.5, "lr_decay": 0.1, "initial_accumulator_value": 0.3}),
]


@pytest.mark.parametrize("factory, a, b", SAME_STRUCTURE)
def test_numbers_are_not_part_of_the_transformations_identity(factory, a, b):
    tx_a, tx_b = factory(**a), factory(**b)
    assert tx_a == tx_b and hash(tx_a) == hash(tx_b)
    assert tx_a.init == tx_b.init and tx_a.update == tx_b.update
    params = jnp.zeros(2)
    assert jro.get_hyperparams(tx_a.init(params)) != jro.get_hyperparams(tx_b.init(params))


@pytest.mark.parametrize(
    "tx_a, tx_b",
    [
        (jro.sgd(), jro.sgd(momentum=0.9)),
        (jro.sgd(momentum=0.9), jro.sgd(momentum=0.9, nesterov=True)),
        (jro.sgd(), jro.sgd(weight_decay=0.1)),
        (jro.sgd(), jro.sgd(maximize=True)),
        (jro.adam(), jro.adam(amsgrad=True)),
        (jro.adam(weight_decay=0.01), jro.adamw()),
        (jro.rmsprop(), jro.rmsprop(centered=True)),
        (jro.rmsprop(), jro.rmsprop(momentum=0.5)),
        (jro.adagrad(), jro.adagrad(weight_decay=0.1)),
        (jro.sgd(), jro.adagrad()),
    ],
)
def test_structure_is_part_of_the_transformations_identity(tx_a, tx_b):
    assert tx_a != tx_b


def test_adam_with_decoupled_weight_decay_is_adamw():
    assert jro.adam(weight_decay=0.5, decoupled_weight_decay=True) == jro.adamw()


@pytest.mark.parametrize(
    "factory, values",
    [
        (jro.sgd, [{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.5}]),
        (jro.adam, [{"lr": 0.1}, {"lr": 0.01, "betas": (0.5, 0.9)}, {"lr": 0.5, "eps": 1e-2}]),
        (jro.rmsprop, [{"lr": 0.1}, {"lr": 0.01, "alpha": 0.5}, {"lr": 0.5, "eps": 1e-2}]),
        (jro.adagrad, [{"lr": 0.1}, {"lr": 0.01, "lr_decay": 1.0}, {"lr": 0.5, "eps": 1e-2}]),
    ],
)
def test_jit_keyed_on_the_transformation_traces_once(factory, values):
    traces = []

    @functools.partial(jax.jit, static_argnames="tx")
    def step(params, state, grads, *, tx):
        traces.append(tx)  # runs only while tracing
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates)

    params, grads = jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0])
    results = []
    for kwargs in values:
        tx = factory(**kwargs)
        results.append(step(params, tx.init(params), grads, tx=tx))
    assert len(traces) == 1
    # the numbers came from the state, not from the first trace
    assert not np.array_equal(results[0], results[1])
    assert not np.array_equal(results[1], results[2])
    if factory is jro.sgd:
        for kwargs, result in zip(values, results, strict=True):
            np.testing.assert_allclose(result, params - kwargs["lr"] * grads, rtol=1e-15)
