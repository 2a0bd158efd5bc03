"""`inject`: any optax transformation with its numbers in an `OptState`, like jaxreg's own."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _checks
from jaxreg.optim._state import HyperparamsInit, OptState

# The factory's name for the learning rate; the state calls it "lr", as every jaxreg tool does.
_LR_NAMES = ("learning_rate", "lr")


@dataclasses.dataclass(frozen=True)
class _Factory:
    """How to call `factory` again with new numbers. Equal for equal factory and structure."""

    factory: Any
    static: tuple  # ((name, value), ...): the arguments that are not numbers
    layout: tuple = dataclasses.field(compare=False)  # ((name, kind, state key), ...)

    def build(self, numbers: Any) -> Any:
        """`factory(...)` with the static arguments and `numbers` (keyed as the state)."""
        static = dict(self.static)
        args, kwargs = [], {}
        for name, kind, key in self.layout:
            value = numbers[key] if key is not None else static[name]
            if kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
                args.append(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                args.extend(value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                kwargs.update(value)
            else:
                kwargs[name] = value
        return self.factory(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class InjectInit(HyperparamsInit):
    """`inject(factory, ...).init`: `OptState(hyperparams, factory(...).init(params), origin)`."""

    call: _Factory

    def __call__(self, params: Any) -> OptState:
        dtype = _checks.float_dtype_of(params)
        inner = self.call.build(self.hyperparams).init(params)
        return self.new_state(inner, dtype)


@dataclasses.dataclass(frozen=True)
class InjectUpdate:
    """`inject(factory, ...).update`: rebuilds `factory` from the state's numbers."""

    call: _Factory

    def __call__(
        self, updates: Any, state: OptState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, OptState]:
        name = getattr(self.call.factory, "__name__", "the factory")
        if not isinstance(state, OptState) or state.hyperparams is None:
            raise TypeError(
                f"inject({name}).update expects the OptState its init made (with hyperparams), "
                f"got {type(state).__name__}"
            )
        tx = optax.with_extra_args_support(self.call.build(state.hyperparams))
        updates, inner = tx.update(updates, state.inner, params, **extra_args)
        return updates, OptState(state.hyperparams, inner, state.origin)


def inject(factory: Any, /, *args: Any, **kwargs: Any) -> optax.GradientTransformationExtraArgs:
    r"""`factory(*args, **kwargs)` with its numbers in the state, as jaxreg's optimizers.

    `jr.optim.inject(optax.adam, learning_rate=1e-3)` behaves as `optax.adam(1e-3)`, but:

    - its state is an `OptState` whose `hyperparams` hold the float arguments as 0-d
      arrays of the parameters' dtype (optax's `learning_rate` under the name `"lr"`, the
      name `set_lr`, `get_hyperparams(state)["lr"]`, `fit`'s schedules and `adopt` use);
    - `update` calls `factory` again with those arrays (traced inside `jit`), so `set_lr`
      changes the learning rate inside a compiled loop, and
    - the transformation compares (and hashes) equal to any other `inject` of the same
      factory with the same non-number arguments: one compiled program for every lr.

    There is no torch equivalent (torch's optimizers always keep their numbers in
    `param_groups`, which is what this imitates).

    Where `optax.inject_hyperparams(factory)(...)` differs: it also accepts schedules
    (callables of its step count) for hyperparameters; here a callable is a structural
    argument like any non-number (use `set_lr` or a `jaxreg.schedules` schedule through
    `fit` instead). Its ints are numbers too; here only floats are (and an int learning
    rate), so an int such as a period stays Python (usable in Python control flow). Its
    state is `InjectStatefulHyperparamsState(count, hyperparams, hyperparams_states,
    inner_state)`; here `OptState(hyperparams, inner, origin)`. Its transformations are
    closures that never compare equal, so every new one compiles again.

    Args:
      factory: a function returning an optax transformation (`optax.adam`, `optax.sgd`,
        `optax.adamw`, ...), not a jaxreg optimizer (those keep their numbers already).
      *args, **kwargs: `factory`'s arguments. Floats (Python, NumPy or 0-d arrays) and an
        int learning rate become hyperparameters; everything else (bools, ints, None,
        dtypes, callables) is structure and must be hashable.

    Returns:
      An `optax.GradientTransformationExtraArgs` with state `OptState`.

    Raises:
      TypeError: `factory`'s signature refuses the arguments; a structural argument is
        not hashable; `factory` builds a jaxreg optimizer.
    """
    signature = inspect.signature(factory)
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    numbers, static, layout = {}, [], []
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        key = "lr" if name in _LR_NAMES else name
        if _is_number(value) or (key == "lr" and _is_int(value)):
            numbers[key] = value if isinstance(value, jax.core.Tracer) else float(value)
            layout.append((name, kind, key))
        else:
            try:
                hash(value)
            except TypeError:
                raise TypeError(
                    f"inject: {name}={value!r} is not a number, so it is part of the "
                    "transformation's structure, which decides equality (one compiled "
                    "program per structure): it must be hashable."
                ) from None
            static.append((name, value))
            layout.append((name, kind, None))
    call = _Factory(factory, tuple(static), tuple(layout))
    built = call.build(numbers)
    if isinstance(getattr(built, "init", None), HyperparamsInit):
        raise TypeError(
            f"inject: {getattr(factory, '__name__', factory)} is a jaxreg optimizer; it keeps "
            "its numbers in the state already, use it directly."
        )
    return optax.GradientTransformationExtraArgs(
        InjectInit(call=call, hyperparams=numbers), InjectUpdate(call=call)
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (float, np.floating)):
        return True
    if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
        return bool(jnp.issubdtype(value.dtype, jnp.floating))
    return False


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
