"""One training step: `objective`, `update` (pure) and `make_step` (jitted, validated).

A training step is torch's `zero_grad(); loss = loss_fn(model(x), y); loss.backward();
opt.step()`: the loss is evaluated at the parameters *before* the update, which is what a
torch loop prints. The whole loop compiled as one program is `jaxreg.fitting.fit`.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _checks

__all__ = [
    "Objective",
    "Step",
    "make_step",
    "objective",
    "prepare_data",
    "update",
    "value_and_grad",
]

LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Objective:
    """`loss(predict(params, x), y, **loss_kwargs)`, hashable by value.

    Equal objectives (same functions, same keyword arguments) share compiled programs.
    Use `objective(...)` to build one.
    """

    predict: Callable
    loss: Callable
    loss_kwargs: tuple[tuple[str, Any], ...] = ()

    def __call__(self, params, x, y):
        return self.loss(self.predict(params, x), y, **dict(self.loss_kwargs))

    def value_and_grad(self, params, x, y):
        """`jax.value_and_grad(self)(params, x, y)`, in one pass over large x where possible."""
        from jaxreg import _onepass

        return _onepass.value_and_grad(self, params, x, y)


def objective(predict: Callable, loss: Callable, **loss_kwargs) -> Objective:
    """The scalar training loss `loss_fn(params, x, y) = loss(predict(params, x), y)`.

    Args:
      predict: `(params, x) -> pred`, e.g. `jaxreg.linear.predict`.
      loss: `(pred, target, **kw) -> scalar`, e.g. `jaxreg.losses.mse`.
      **loss_kwargs: passed to `loss` (e.g. `reduction="sum"`, `delta=2.0`); must be hashable.

    Example:
      loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
      loss_fn(params, x, y)   # torch: F.mse_loss(model(x), y)
    """
    return Objective(predict, loss, tuple(sorted(loss_kwargs.items())))


def value_and_grad(loss_fn: LossFn) -> Callable:
    """`loss_fn`'s own `value_and_grad` (one-pass for `Objective`s) or `jax.value_and_grad`."""
    own = getattr(loss_fn, "value_and_grad", None)
    return own if own is not None else jax.value_and_grad(loss_fn)


def update(loss_fn: LossFn, tx: optax.GradientTransformation, params, opt_state, x, y):
    """One pure training step: `(params, opt_state, x, y) -> (params, opt_state, loss)`.

    The loss is the value at the parameters before the update. Unjitted: compose it into
    your own jitted or vmapped code; `make_step` wraps it with validation and `jax.jit`.
    """
    loss, grads = value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, loss


class Step:
    """A jitted training step with data validation at the boundary.

    `step(params, opt_state, x, y) -> (params, opt_state, loss)`. Data is converted to the
    parameters' dtype and checked (non-empty, finite) once per distinct jax array (jax
    arrays are immutable, so a loop over the same arrays checks them once); NumPy arrays
    are checked on every call. `step.jitted` is the raw jitted function, for use inside
    your own `jax.jit`/`vmap` (no checks there).
    """

    def __init__(self, loss_fn: LossFn, tx: optax.GradientTransformation, *, donate: bool):
        self.loss_fn, self.tx = loss_fn, tx
        donate_argnums = (0, 1) if donate else ()
        self.jitted = jax.jit(
            lambda p, s, x, y: update(loss_fn, tx, p, s, x, y), donate_argnums=donate_argnums
        )
        # The program behind __call__ does not return the optimizer's hyperparameters: they
        # pass through a step unchanged, and returning them costs a copy each (an output may
        # not alias an input that was not donated); __call__ puts the inputs back instead.
        # With donation the input hyperparameters are gone after the call, so they must be
        # returned: then the plain program serves.
        self._fast = None
        if not donate:
            self._fast = jax.jit(
                lambda p, s, x, y: _drop_hyperparams(update(loss_fn, tx, p, s, x, y))
            )
        self._checked: tuple | None = None

    def __call__(self, params, opt_state, x, y):
        ids = (id(x), id(y))
        if self._checked is not None and self._checked[0] == ids:
            x, y = self._checked[1]
        else:
            originals = (x, y)
            x, y = prepare_data(x, y, _checks.float_dtype_of(params))
            if all(isinstance(a, jax.Array) for a in originals):
                # jax arrays are immutable: remember the checked, converted pair (and keep
                # the originals alive, so their ids cannot be reused by other arrays).
                self._checked = (ids, (x, y), originals)
        if self._fast is None:
            return self.jitted(params, opt_state, x, y)
        params, new_state, loss = self._fast(params, opt_state, x, y)
        return params, _restore_hyperparams(new_state, opt_state), loss


def _drop_hyperparams(out):
    from jaxreg.optim import is_optimizer_state

    params, state, loss = out
    state = jax.tree.map(
        lambda s: s._replace(hyperparams=None) if is_optimizer_state(s) else s,
        state,
        is_leaf=is_optimizer_state,
    )
    return params, state, loss


def _restore_hyperparams(new_state, old_state):
    from jaxreg.optim import is_optimizer_state

    if is_optimizer_state(new_state):  # the common case, without a tree walk
        return new_state._replace(hyperparams=old_state.hyperparams)
    return jax.tree.map(
        lambda n, o: n._replace(hyperparams=o.hyperparams) if is_optimizer_state(n) else n,
        new_state,
        old_state,
        is_leaf=is_optimizer_state,
    )


def make_step(loss_fn: LossFn, tx: optax.GradientTransformation, *, donate: bool = False) -> Step:
    """A jitted step `(params, opt_state, x, y) -> (params, opt_state, loss)`.

    Equivalent to the torch loop body
    `opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()`.
    Compiles once per input shape/dtype; later calls reuse the program.

    Args:
      loss_fn: `(params, x, y) -> scalar`, e.g. `jr.objective(jr.linear.predict, jr.losses.mse)`.
      tx: an optax `GradientTransformation`, e.g. `jr.optim.sgd(0.01)`.
      donate: donate params and opt_state buffers (saves memory; the inputs become invalid).
    """
    return Step(loss_fn, tx, donate=donate)


def prepare_data(x, y, dtype) -> tuple[jax.Array, jax.Array]:
    """Validate and convert training data at the boundary: non-empty, finite, float `dtype`.

    NumPy (and list) data is checked on the host before the transfer; jax arrays on the
    device with one small reduction.
    """
    for name, arr in (("x", x), ("y", y)):
        _checks.check_nonempty(name, arr)
    if np.shape(x)[:1] != np.shape(y)[:1]:
        raise ValueError(
            f"x has {np.shape(x)[0] if np.ndim(x) else 'no'} rows (shape {np.shape(x)}) but y has "
            f"shape {np.shape(y)}; they must have the same number of rows."
        )
    on_device = [isinstance(a, jax.Array) for a in (x, y)]
    for name, arr, dev in (("x", x, on_device[0]), ("y", y, on_device[1])):
        if not dev:
            _checks.check_finite(name, arr)
    unchecked = [
        a for a, dev in zip((x, y), on_device, strict=True) if dev and not _known_finite(a)
    ]
    x = _checks.as_data("x", x, dtype)
    y = _checks.as_data("y", y, dtype)
    if unchecked:
        bad_x, bad_y = (int(c) for c in _nonfinite_counts(x, y))
        if bad_x:
            _checks.check_finite("x", x)
        if bad_y:
            _checks.check_finite("y", y)
        for a in unchecked:
            _remember_finite(a)
    return x, y


# jax arrays are immutable: once an array is known to be finite it stays so. Remember
# which (by id, with a weak reference so the id cannot be taken over by a new array), so
# a loop of `fit` calls on the same data checks it once instead of syncing every call.
_finite_arrays: dict[int, weakref.ref] = {}


def _known_finite(a: jax.Array) -> bool:
    ref = _finite_arrays.get(id(a))
    return ref is not None and ref() is a


def _remember_finite(a: jax.Array) -> None:
    key = id(a)
    _finite_arrays[key] = weakref.ref(a, lambda _: _finite_arrays.pop(key, None))


@jax.jit
def _nonfinite_counts(x, y):
    return jnp.sum(~jnp.isfinite(x)), jnp.sum(~jnp.isfinite(y))
