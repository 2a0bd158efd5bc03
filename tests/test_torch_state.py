"""`parity.state_dict`: a torch optimizer's `state_dict()` <-> a jaxreg `OptState` (torch 2.13).

For every torch.optim optimizer jaxreg mirrors, in float64 on an `nn.Linear(3, 2)`
least-squares problem: torch runs `K` steps, its state_dict becomes a jaxreg state, and
jaxreg's next `N` steps are compared with torch's own next `N`; and the reverse (jaxreg
runs `K`, torch loads `state_to_torch` and runs `N`, compared with jaxreg's). The
conversion itself is exact: state_dict -> OptState -> state_dict gives torch's tensors
back bit for bit, dtypes and param group included.
"""

from __future__ import annotations

import io as stdio

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxreg as jr
from parity import names as names_lib
from parity.state_dict import (
    buffers_from_torch,
    buffers_to_torch,
    state_from_torch,
    state_to_torch,
)

K, N = 3, 4  # steps before the hand-over, steps after (RAdam's rectification starts at 6)

# float64: what remains after the hand-over is the optimizers' own float64 differences
# (XLA's FMA contraction and sqrt against torch's, see test_optim_more.F64_RTOL, 16 eps
# over 100 steps); the conversion adds nothing (it is bitwise, tested below). Measured
# worst over the cases here: 1.8 eps torch -> jaxreg (NAdam), 3.3 eps jaxreg -> torch
# against torch resuming itself (Adamax). Tolerance 16 eps, test_optim_more's.
F64_RTOL = 16 * float(np.finfo(np.float64).eps)

# torch class name -> its arguments (jaxreg's mirror, named the class in lower case,
# takes the same): the options that add buffers on, numbers off their defaults.
CASES = {
    "sgd-momentum": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd-nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "sgd": ("SGD", dict(lr=0.05)),
    "adam-amsgrad": ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.01)),
    "adamw": ("AdamW", dict(lr=0.05, weight_decay=0.1, betas=(0.8, 0.99))),
    "rmsprop-centered-momentum": ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
    "adagrad": ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    "nadam": ("NAdam", dict(lr=0.05, weight_decay=0.01, decoupled_weight_decay=True)),
    "radam": ("RAdam", dict(lr=0.05, weight_decay=0.01)),
    "adamax": ("Adamax", dict(lr=0.05)),
    "adadelta": ("Adadelta", dict(lr=1.0, rho=0.8)),
    "asgd": ("ASGD", dict(lr=0.05, t0=2.0)),  # averaging starts after step 2
    "rprop": ("Rprop", dict(lr=0.01, etas=(0.4, 1.3))),
}

_g = torch.Generator().manual_seed(0)
X = torch.randn(20, 3, generator=_g, dtype=torch.float64)
Y = torch.randn(20, 2, generator=_g, dtype=torch.float64)
W0 = np.linspace(-0.5, 0.5, 6).reshape(2, 3)
B0 = np.array([0.1, -0.2])
LOSS = jr.objective(jr.linear.predict, jr.losses.mse)


def model(weight=W0, bias=B0) -> torch.nn.Linear:
    m = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(np.array(weight)))
        m.bias.copy_(torch.from_numpy(np.array(bias)))
    return m


def torch_steps(m, opt, n: int) -> None:
    for _ in range(n):
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(X), Y).backward()
        opt.step()


def params_of(m) -> jr.linear.Params:
    return jr.linear.Params(
        jnp.asarray(m.weight.detach().numpy()), jnp.asarray(m.bias.detach().numpy())
    )


@jax.jit(static_argnums=0)
def jax_step(tx, params, state):
    grads = jax.grad(LOSS)(params, X.numpy(), Y.numpy())
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def jax_steps(tx, params, state, n: int):
    for _ in range(n):
        params, state = jax_step(tx, params, state)
    return params, state


def build(case: str):
    name, kwargs = CASES[case]
    return (
        lambda m: getattr(torch.optim, name)(m.parameters(), **kwargs),
        getattr(jr.optim, name.lower())(**kwargs),
    )


def rel(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300))


def same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for i in a:
        assert a[i].keys() == b[i].keys(), (i, a[i].keys(), b[i].keys())
        for k, v in a[i].items():
            assert isinstance(b[i][k], torch.Tensor) and v.dtype == b[i][k].dtype, (i, k)
            assert torch.equal(v, b[i][k]), (i, k, v, b[i][k])


@pytest.mark.parametrize("case", CASES)
def test_a_torch_run_goes_on_in_jaxreg(case):
    make_torch, tx = build(case)
    m = model()
    opt = make_torch(m)
    torch_steps(m, opt, K)
    params = params_of(m)
    state = state_from_torch(opt.state_dict(), tx, params)
    counted = "step" in opt.state[m.weight]  # torch's SGD counts no steps (test_sgd_step_count)
    assert int(state.inner.step) == (K if counted else int(bool(opt.state[m.weight])))
    ours, state = jax_steps(tx, params, state, N)
    torch_steps(m, opt, N)
    assert rel(ours.weight, m.weight.detach()) <= F64_RTOL
    assert rel(ours.bias, m.bias.detach()) <= F64_RTOL
    name_map = names_lib.build({"weight": (2, 3), "bias": (2,)}, params)
    for field, arrays in buffers_to_torch(state, name_map).items():
        for n, v in arrays.items():
            if field in opt.state[getattr(m, n)]:
                assert rel(v, opt.state[getattr(m, n)][field]) <= F64_RTOL, (field, n)


@pytest.mark.parametrize("case", CASES)
def test_a_jaxreg_run_goes_on_in_torch(case):
    """Compared with torch resuming itself (its state_dict after K steps loaded into a new
    optimizer): torch's `load_state_dict` casts every state tensor but `step` to the
    params' dtype, so NAdam's `mu_product` and ASGD's `eta`, `mu` (float32 while it runs)
    go on in float64 after any load, 1e-10 away from an uninterrupted run."""
    make_torch, tx = build(case)
    params0 = params_of(model())
    params, state = jax_steps(tx, params0, tx.init(params0), K)
    m = model(params.weight, params.bias)
    opt = make_torch(m)
    opt.load_state_dict(state_to_torch(state, tx, params))
    torch_steps(m, opt, N)
    ref = model()
    ref_opt = make_torch(ref)
    torch_steps(ref, ref_opt, K)
    resumed = make_torch(ref)
    resumed.load_state_dict(ref_opt.state_dict())
    torch_steps(ref, resumed, N)
    assert rel(m.weight.detach(), ref.weight.detach()) <= F64_RTOL
    assert rel(m.bias.detach(), ref.bias.detach()) <= F64_RTOL


@pytest.mark.parametrize("steps", [0, K])
@pytest.mark.parametrize("case", CASES)
def test_state_dict_to_jaxreg_and_back_is_bitwise(case, steps):
    make_torch, tx = build(case)
    m = model()
    opt = make_torch(m)
    torch_steps(m, opt, steps)
    sd = opt.state_dict()
    back = state_to_torch(state_from_torch(sd, tx, params_of(m)), tx, params_of(m))
    same_tensors(sd["state"], back["state"])
    assert back["param_groups"] == sd["param_groups"]


@pytest.mark.parametrize("case", ["sgd-momentum", "adam-amsgrad", "asgd", "nadam", "rprop"])
def test_a_float32_state_dict_to_jaxreg_and_back_is_bitwise(case):
    """float32 params: jaxreg's state holds float32 numbers, torch's group the Python
    floats it was given; they go back as given."""
    make_torch, tx = build(case)
    m = torch.nn.Linear(3, 2)
    opt = make_torch(m)
    for _ in range(K):
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(X.float()), Y.float()).backward()
        opt.step()
    sd = opt.state_dict()
    params = params_of(m)
    assert params.weight.dtype == jnp.float32
    back = state_to_torch(state_from_torch(sd, tx, params), tx, params)
    same_tensors(sd["state"], back["state"])
    assert back["param_groups"] == sd["param_groups"]


@pytest.mark.parametrize("case", ["adam-amsgrad", "asgd", "nadam", "rprop"])
def test_a_state_dict_of_numpy_arrays_converts_as_the_tensors_do(case):
    """A state_dict saved with torch.save, loaded, its tensors turned into NumPy arrays."""
    make_torch, tx = build(case)
    m = model()
    opt = make_torch(m)
    torch_steps(m, opt, K)
    buffer = stdio.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    as_numpy = {
        "state": {i: {k: v.numpy() for k, v in s.items()} for i, s in loaded["state"].items()},
        "param_groups": loaded["param_groups"],
    }
    a = state_from_torch(opt.state_dict(), tx, params_of(m))
    b = state_from_torch(as_numpy, tx, params_of(m))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.array_equal(np.asarray(x), np.asarray(y))


# ----------------------------------------------------------------------------------------
# Hyperparameters: the optimizer passed wins (jaxreg.optim.adopt's rule)


def adam_state_dict(lr=0.1, schedule=False, **kw):
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=lr, **kw)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if schedule else None
    for _ in range(2):
        torch_steps(m, opt, 1)
        if sched is not None:
            sched.step()
    return opt.state_dict(), params_of(m)


def test_the_numbers_of_tx_win_over_the_state_dicts():
    sd, params = adam_state_dict(lr=0.1, betas=(0.8, 0.9))
    state = state_from_torch(sd, jr.optim.adam(lr=0.01), params)
    hp = jr.optim.get_hyperparams(state)
    assert (float(hp["lr"]), float(hp["beta1"]), float(hp["beta2"])) == (0.01, 0.9, 0.999)
    assert int(state.inner.step) == 2  # the buffers are torch's all the same


def test_a_scheduled_lr_goes_on_with_the_optimizer_that_made_it():
    sd, params = adam_state_dict(lr=0.1, schedule=True)
    assert sd["param_groups"][0]["lr"] == 0.025 and sd["param_groups"][0]["initial_lr"] == 0.1
    same = state_from_torch(sd, jr.optim.adam(lr=0.1), params)
    assert float(same.hyperparams["lr"]) == 0.025  # torch's optimizer: its schedule goes on
    other = state_from_torch(sd, jr.optim.adam(lr=0.2), params)
    assert float(other.hyperparams["lr"]) == 0.2  # another optimizer: its own numbers
    back = state_to_torch(same, jr.optim.adam(lr=0.1), params)
    assert (back["param_groups"][0]["lr"], back["param_groups"][0]["initial_lr"]) == (0.025, 0.1)


def test_set_lr_goes_to_torch_as_lr_with_initial_lr():
    tx = jr.optim.sgd(lr=0.1, momentum=0.9)
    params = params_of(model())
    state = jr.optim.set_lr(tx.init(params), 0.05)
    group = state_to_torch(state, tx, params)["param_groups"][0]
    assert (group["lr"], group["initial_lr"], group["momentum"]) == (0.05, 0.1, 0.9)
    group = state_to_torch(state, jr.optim.sgd(lr=0.3, momentum=0.9), params)["param_groups"][0]
    assert group["lr"] == 0.3 and "initial_lr" not in group


def test_param_groups_with_equal_numbers_are_one_and_different_ones_an_error():
    m = model()
    opt = torch.optim.Adam([{"params": [m.weight]}, {"params": [m.bias]}], lr=0.1)
    torch_steps(m, opt, 2)
    state = state_from_torch(opt.state_dict(), jr.optim.adam(lr=0.1), params_of(m))
    assert int(state.inner.step) == 2
    opt.param_groups[1]["lr"] = 0.2
    with pytest.raises(ValueError, match="2 param_groups have different hyperparameters"):
        state_from_torch(opt.state_dict(), jr.optim.adam(lr=0.1), params_of(m))


# ----------------------------------------------------------------------------------------
# Names, options and shapes that do not fit


def test_named_parameters_and_dict_params():
    """torch saves `param_names` for an optimizer built from named_parameters(); jax
    params named otherwise are matched with names=, and the order is torch's."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
    opt = torch.optim.Adam(list(net.named_parameters())[::-1], lr=0.1)  # bias first
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(W0))
        net[0].bias.copy_(torch.from_numpy(B0))
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(X), Y).backward()
        opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["param_names"] == ["0.bias", "0.weight"]
    params = {"W": jnp.asarray(net[0].weight.detach().numpy()), "b": jnp.asarray(B0)}
    state = state_from_torch(
        sd, jr.optim.adam(lr=0.1), params, names={"0.weight": "W", "0.bias": "b"}
    )
    torch_avg = opt.state[net[0].weight]["exp_avg"].numpy()
    assert np.array_equal(state.inner.exp_avg["W"], torch_avg)
    back = state_to_torch(
        state,
        jr.optim.adam(lr=0.1),
        params,
        torch_names=["0.bias", "0.weight"],
        names={"0.weight": "W", "0.bias": "b"},
    )
    same_tensors(sd["state"], back["state"])


def test_a_transposed_kernel():
    m = model()
    opt = torch.optim.RMSprop(m.parameters(), lr=0.01, momentum=0.5)
    torch_steps(m, opt, 2)
    params = {"kernel": jnp.asarray(m.weight.detach().numpy().T), "bias": jnp.asarray(B0)}
    tx = jr.optim.rmsprop(lr=0.01, momentum=0.5)
    state = state_from_torch(
        opt.state_dict(), tx, params, torch_names=m, names={"weight": "kernel"}
    )
    assert np.array_equal(state.inner.square_avg["kernel"], opt.state[m.weight]["square_avg"].T)
    back = state_to_torch(state, tx, params, torch_names=m, names={"weight": "kernel"})
    same_tensors(opt.state_dict()["state"], back["state"])


@pytest.mark.parametrize(
    ("torch_kw", "jax_kw", "match"),
    [
        (dict(amsgrad=True), dict(amsgrad=False), r"holds \['max_exp_avg_sq'\].*amsgrad"),
        (dict(amsgrad=False), dict(amsgrad=True), r"has no 'max_exp_avg_sq'"),
    ],
)
def test_an_option_on_one_side_only_is_named(torch_kw, jax_kw, match):
    sd, params = adam_state_dict(**torch_kw)
    with pytest.raises(ValueError, match=match):
        state_from_torch(sd, jr.optim.adam(lr=0.1, **jax_kw), params)


def test_another_optimizers_state_dict_is_named():
    sd, params = adam_state_dict()
    with pytest.raises(ValueError, match=r"no 'dampening'.*another optimizer's"):
        state_from_torch(sd, jr.optim.sgd(lr=0.1, momentum=0.9), params)
    with pytest.raises(ValueError, match=r"holds \['exp_avg_sq'\].*another optimizer's"):
        state_from_torch(sd, jr.optim.adamax(lr=0.1), params)


@pytest.mark.parametrize(
    ("state_dict", "tx", "error", "match"),
    [
        ({"state": {}}, jr.optim.adam(), TypeError, "'state' and 'param_groups'"),
        ([1, 2], jr.optim.adam(), TypeError, "a dict with 'state'"),
        (
            {"state": {}, "param_groups": [{"params": [0]}]},
            jr.optim.adam(),
            ValueError,
            "hold 1 parameters, torch_names names 2 and params has 2 leaves",
        ),
        (
            {"state": {}, "param_groups": [{"params": [0, 1], "lr": 0.1}]},
            optax.adam(0.1),
            TypeError,
            "tx must be a jaxreg.optim optimizer",
        ),
    ],
)
def test_what_is_not_a_state_dict_for_these_params(state_dict, tx, error, match):
    with pytest.raises(error, match=match):
        state_from_torch(state_dict, tx, params_of(model()))


def test_a_partial_torch_state_is_refused():
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    opt.zero_grad()
    torch.nn.functional.mse_loss(m(X) @ torch.zeros(2, 2, dtype=torch.float64), Y).backward()
    m.bias.grad = None  # a parameter without a gradient: torch keeps no state for it
    opt.step()
    with pytest.raises(ValueError, match=r"buffers for \['weight'\] but none for \['bias'\]"):
        state_from_torch(opt.state_dict(), jr.optim.adam(lr=0.1), params_of(m))


def test_buffers_of_another_shape_are_named():
    sd, params = adam_state_dict()
    sd["state"][0]["exp_avg"] = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"exp_avg of weight has shape \(3, 2\).*\(2, 3\)"):
        state_from_torch(sd, jr.optim.adam(lr=0.1), params)


def test_step_counts_that_differ_between_parameters_are_refused():
    sd, params = adam_state_dict()
    sd["state"][1]["step"] = torch.tensor(5.0)
    with pytest.raises(ValueError, match="step differs between parameters"):
        state_from_torch(sd, jr.optim.adam(lr=0.1), params)


def test_sgd_step_count():
    """torch's SGD counts no steps: 1 where it holds a momentum buffer, or `step=`."""
    make_torch, tx = build("sgd-momentum")
    m = model()
    opt = make_torch(m)
    assert int(state_from_torch(opt.state_dict(), tx, params_of(m)).inner.step) == 0
    torch_steps(m, opt, 3)
    assert int(state_from_torch(opt.state_dict(), tx, params_of(m)).inner.step) == 1
    assert int(state_from_torch(opt.state_dict(), tx, params_of(m), step=3).inner.step) == 3


def test_buffers_from_torch_is_teacher_forcings_conversion():
    """`{torch name: {key: array}}` (teacher forcing's form) fills a template the same way."""
    make_torch, tx = build("nadam")
    m = model()
    opt = make_torch(m)
    torch_steps(m, opt, K)
    params = params_of(m)
    name_map = names_lib.build({"weight": (2, 3), "bias": (2,)}, params)
    by_name = {n: dict(opt.state[getattr(m, n)]) for n in ("weight", "bias")}
    ours = buffers_from_torch(tx.init(params), by_name, name_map, step=K)
    want = state_from_torch(opt.state_dict(), tx, params)
    for x, y in zip(jax.tree.leaves(ours.inner), jax.tree.leaves(want.inner), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(ours.inner.mu_product).dtype == np.float32


def test_teacher_forcing_takes_what_fits_a_port_that_may_be_wrong():
    """`strict=False`: torch's amsgrad buffer is ignored by a port without amsgrad."""
    sd, params = adam_state_dict(amsgrad=True)
    name_map = names_lib.build({"weight": (2, 3), "bias": (2,)}, params)
    by_name = {"weight": sd["state"][0], "bias": sd["state"][1]}
    template = jr.optim.adam(lr=0.1).init(params)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        buffers_from_torch(template, by_name, name_map)
    state = buffers_from_torch(template, by_name, name_map, strict=False)
    assert np.array_equal(state.inner.exp_avg.weight, sd["state"][0]["exp_avg"].numpy())
    assert state.inner.max_exp_avg_sq is None and int(state.inner.step) == 2
