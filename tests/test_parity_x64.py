"""`import parity` changes no global setting; x64 is scoped to the run that asks for it.

This test session runs with x64 on (tests/conftest.py), so the claims about a fresh
interpreter are checked in one: a subprocess importing parity the way a user does.
"""

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr
import parity
from parity import precision
from parity.programs import jax_loop

F64_ADAM = "m-adam-logistic-bce-StepLR-full-f64"  # Adam: float64 host scalars matter
F32_ADAM = "m-adam-linear-smooth_l1-LinearLR-full-f32"

FRESH = textwrap.dedent(
    f"""
    import hashlib
    import jax, jax.numpy as jnp, numpy as np
    import parity

    assert jnp.array([[10.0]]).dtype == jnp.float32, "import parity turned x64 on"
    assert not jax.config.read("jax_enable_x64")

    res = parity.run(parity.get({F64_ADAM!r}))
    assert res.passed, res.comparison.summary()
    assert res.jax.params["weight"].dtype == np.float64  # computed in float64 inside
    assert not jax.config.read("jax_enable_x64"), "a float64 scenario left x64 on"
    assert jnp.array([[10.0]]).dtype == jnp.float32

    import torch, torch.nn.functional as F, jaxreg as jr
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).double()
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = x @ np.array([[1.0], [2.0], [3.0]])
    cmp = parity.verify(model, F.mse_loss, torch.optim.Adam(model.parameters(), lr=0.1),
                        jr.objective(jr.linear.predict, jr.losses.mse), jr.optim.adam(lr=0.1),
                        x, y, steps=20)
    assert cmp.passed and cmp.tolerance.name == "float64", cmp.summary()
    assert not jax.config.read("jax_enable_x64"), "verify on float64 tensors left x64 on"

    f32 = parity.run(parity.get({F32_ADAM!r}))
    assert f32.passed
    print(hashlib.sha256(f32.jax.losses.tobytes()).hexdigest())
    """
)


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter that imports this session's parity and jaxreg."""
    roots = dict.fromkeys(str(Path(m.__file__).parents[1]) for m in (parity, jr))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(roots)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


def test_fresh_interpreter_import_float64_run_and_verify_leave_x64_off():
    out = _fresh_python(FRESH)
    assert out.returncode == 0, out.stderr[-3000:]
    # the float32 scenario computes the same bits there (x64 off by default) as here
    # (x64 on for the session): the scenario, not the caller, decides the mode
    here = parity.run(parity.get(F32_ADAM))
    assert out.stdout.split()[-1] == hashlib.sha256(here.jax.losses.tobytes()).hexdigest()


def test_the_scope_sets_the_mode_jaxreg_reads_and_restores_the_callers():
    """jaxreg's optimizers read `jax.config.read("jax_enable_x64")` for their host scalars;
    the scope sets exactly that value, and float64 arrays inside it stay float64."""
    before = jax.config.read("jax_enable_x64")
    with precision.for_scenario("float32"):
        assert not jax.config.read("jax_enable_x64")
        assert jnp.asarray(np.ones(2)).dtype == jnp.float32
    with precision.for_scenario("float64"):
        assert jax.config.read("jax_enable_x64")
        assert jnp.asarray(np.ones(2)).dtype == jnp.float64
    with precision.at_least(np.float32):
        assert jax.config.read("jax_enable_x64") == before  # verify's float32: caller's mode
    assert jax.config.read("jax_enable_x64") == before


@pytest.mark.parametrize("name", [F32_ADAM, F64_ADAM])
def test_a_run_leaves_the_callers_mode_as_it_was(name):
    before = jax.config.read("jax_enable_x64")
    assert parity.run(parity.get(name)).passed
    assert jax.config.read("jax_enable_x64") == before


def test_a_run_that_raises_restores_the_mode_too(monkeypatch):
    def explode(*args, **kwargs):
        assert not jax.config.read("jax_enable_x64")  # inside a float32 scenario
        raise RuntimeError("jax side exploded")

    monkeypatch.setattr(jax_loop, "run", explode)
    before = jax.config.read("jax_enable_x64")
    with pytest.raises(RuntimeError, match="exploded"):
        parity.run(parity.get(F32_ADAM))
    assert jax.config.read("jax_enable_x64") == before
