"""The step record and the step contract: what one step computed, and the extra arguments
(`value`, `grad`, `value_fn`) a closure optimizer or a loss-driven schedule reads.

Tolerances:
- LBFGS_RTOL = 1e-9: L-BFGS on a well-conditioned float64 least-squares problem reaches the
  closed-form optimum to near machine precision in a few steps; 1e-9 leaves room for the
  conditioning of the 3-column design (x @ w summed over 50 rows).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxreg as jr

MSE = jr.objective(jr.linear.predict, jr.losses.mse)
LBFGS_RTOL = 1e-9


def _problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3))
    return x, x @ np.array([[1.0], [2.0], [3.0]]) + 0.5


def test_step_record_holds_loss_grads_updates_params_state():
    x, y = _problem()
    p = jr.linear.zeros(3, dtype=jnp.float64)
    tx = jr.optim.sgd(0.1, momentum=0.9)
    rec = jr.step_record(MSE, tx, p, tx.init(p), x, y)
    loss, grads = jax.value_and_grad(MSE)(p, x, y)
    np.testing.assert_allclose(rec.loss, loss, rtol=1e-14)
    np.testing.assert_allclose(rec.grads.weight, grads.weight, rtol=1e-14)
    np.testing.assert_allclose(rec.updates.weight, -0.1 * rec.grads.weight, rtol=1e-15)
    np.testing.assert_allclose(rec.params.weight, p.weight + rec.updates.weight, rtol=0)
    same = jr.make_step(MSE, tx).record(p, tx.init(p), x, y)
    np.testing.assert_allclose(same.grads.weight, rec.grads.weight, rtol=1e-14)  # jit vs eager


def test_a_closure_optimizer_trains_through_fit_and_make_step():
    """optax.lbfgs re-evaluates the loss (value_fn) in its line search."""
    x, y = _problem()
    p = jr.linear.zeros(3, dtype=jnp.float64)
    best = jr.solve.least_squares(x, y)
    res = jr.fit(MSE, optax.lbfgs(), p, x, y, steps=10)
    np.testing.assert_allclose(res.params.weight, best.weight, rtol=LBFGS_RTOL)
    step, state = jr.make_step(MSE, optax.lbfgs()), optax.lbfgs().init(p)
    for _ in range(10):
        p, state, _ = step(p, state, x, y)
    np.testing.assert_allclose(p.weight, best.weight, rtol=LBFGS_RTOL)


def test_a_loss_driven_schedule_reads_the_loss():
    """optax's reduce_on_plateau, chained after the optimizer, sees every step's loss: on a
    loss that stops improving (lr far too small to move) it cuts the scale."""
    x, y = _problem()
    tx = optax.chain(optax.sgd(1e-30), optax.contrib.reduce_on_plateau(patience=2, factor=0.5))
    res = jr.fit(MSE, tx, jr.linear.zeros(3, dtype=jnp.float64), x, y, steps=12)
    assert float(res.opt_state[1].scale) < 1.0
