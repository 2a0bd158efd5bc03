"""bfloat16 and float16 parameters: jaxreg.optim against torch.optim's CPU kernels, bitwise.

torch computes a half-precision tensor's update in float32 (its "opmath" type) and rounds
each time it writes a tensor; `add(alpha=)` first casts alpha to the tensor's dtype. We do
the same, and get torch's bits at every step of every option set over 100 steps (the
parameters and every state buffer), given the same gradients. Where float16 overflows or
divides by an underflowed eps (Adam's 1e-8 is 0 in float16) both sides stop being finite
at the same elements; the non-finite values themselves may differ (inf against nan).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optim_ref
import pytest
import torch
from test_optim import CASE_PARAMS, STEPS

from jaxreg import _checks
from jaxreg import optim as jro

HALF = {"bfloat16": (jnp.bfloat16, torch.bfloat16), "float16": (jnp.float16, torch.float16)}


def torch_stream(name, kwargs, params0, grads, tdtype):
    param = torch.tensor(params0, dtype=torch.float64).to(tdtype).requires_grad_(True)
    opt = getattr(torch.optim, name)([param], **kwargs)
    rows = []
    for g in grads:
        param.grad = torch.tensor(g, dtype=torch.float64).to(tdtype)
        opt.step()
        rows.append(param.detach().to(torch.float64).numpy().copy())
    return np.stack(rows)


@functools.partial(jax.jit, static_argnames="tx")
def jax_stream(params, state, grads, *, tx):
    def step(carry, g):
        p, s = carry
        updates, s = tx.update(g, s, p)
        p = optax.apply_updates(p, updates)
        return (p, s), p

    (_, state), rows = jax.lax.scan(step, (params, state), grads)
    return rows, state


FLOAT16_CASES = [
    c for c in CASE_PARAMS if c.id.startswith(("SGD(lr=0.02,mom", "Adam(", "RMSprop(lr"))
]


@pytest.mark.parametrize("half", ["bfloat16"])
@pytest.mark.parametrize("torch_name, factory, kwargs", CASE_PARAMS)
def test_bfloat16_trajectories_are_torchs_bits(torch_name, factory, kwargs, half):
    _compare(torch_name, factory, kwargs, half)


@pytest.mark.parametrize("torch_name, factory, kwargs", FLOAT16_CASES)
def test_float16_trajectories_are_torchs_bits(torch_name, factory, kwargs):
    _compare(torch_name, factory, kwargs, "float16")


def _compare(torch_name, factory, kwargs, half):
    jdtype, tdtype = HALF[half]
    params0, grads = optim_ref.gradient_stream(STEPS, 64)
    ref = torch_stream(torch_name, kwargs, params0, grads, tdtype)
    tx = factory(**kwargs)
    params = jnp.asarray(params0).astype(jdtype)
    state = tx.init(params)
    rows, final = jax_stream(params, state, jnp.asarray(grads).astype(jdtype), tx=tx)
    ours = np.asarray(rows).astype(np.float64)  # row t: the params after update t
    assert ours.shape == ref.shape == (STEPS, 64)
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(np.isfinite(ours), finite)
    np.testing.assert_array_equal(ours[finite], ref[finite])
    assert int(final.inner.step) == STEPS


@pytest.mark.parametrize("factory", [jro.sgd, jro.adam, jro.rmsprop, jro.adagrad])
def test_half_precision_state_and_updates(factory):
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    tx = factory(lr=0.1)
    state = tx.init(params)
    for leaf in jax.tree.leaves(state.inner)[1:]:  # buffers stay in the params' dtype
        assert leaf.dtype == jnp.bfloat16
    for value in jro.get_hyperparams(state).values():  # torch's Python floats
        assert value.dtype == (jnp.float64 if _checks.x64_enabled() else jnp.float32)
    updates, new = jax.jit(tx.update)(params, state, params)
    assert updates["w"].dtype == jnp.float32  # one rounding in apply_updates, as torch's
    assert jax.tree.map(lambda a: a.dtype, new.inner) == jax.tree.map(
        lambda a: a.dtype, state.inner
    )
    assert optax.apply_updates(params, updates)["w"].dtype == jnp.bfloat16
