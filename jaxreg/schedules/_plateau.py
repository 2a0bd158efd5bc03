"""`ReduceLROnPlateau`: the lr follows the loss, so it lives in the optimizer state.

torch's `ReduceLROnPlateau` is stepped once per epoch with a number the loop computed,
`scheduler.step(metric)`, and keeps state (`best`, `num_bad_epochs`, `cooldown_counter`):
the learning rates are not known before training, unlike every other schedule's. So it is
not a list of learning rates for `fit`'s `schedule=`; it is a transformation around the
optimizer, `ReduceLROnPlateau(...).wrap(tx, steps_per_epoch=...)`, whose state carries
torch's counters and the current lr through the compiled loop. Each update trains with
that lr, adds the step's loss (`value=`, which jaxreg's step passes to an optax
`GradientTransformationExtraArgs`) to the epoch's sum, and after the epoch's last step
runs torch's `step(metric)` on

    metric = (sum of the epoch's step losses) / steps_per_epoch

the mean of the batch losses a torch loop prints (`loss.item()` before each update); in a
full-batch fit (`steps_per_epoch=1`), the epoch's loss itself. parity's torch loop steps
torch's scheduler with the same number.

The metric, `best` and the lr are kept in the parameters' dtype. In float64 that is
torch's arithmetic to the bit (Python floats are float64); in float32 torch compares
Python floats made from float32 losses, so a metric within a float32 rounding of the
threshold can be judged differently (parity's float32 runs have not met one).

The numbers (factor, threshold, patience, cooldown, min_lr, eps, steps_per_epoch) ride in
the state: a new value does not recompile; `mode` and `threshold_mode` choose the
arithmetic and are part of the transformation's identity.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg import optim
from jaxreg.schedules._base import check_float, check_int, check_scalar, set_frozen


class PlateauState(NamedTuple):
    """The state of `ReduceLROnPlateau(...).wrap(tx)`.

    Attributes:
      inner: the wrapped optimizer's state (its `hyperparams["lr"]` is set from `lr`
        before each update).
      lr: the learning rate torch's param group holds now.
      best, num_bad_epochs, cooldown_counter: torch's attributes of the same names.
      loss_sum, steps: the current epoch's losses so far and how many.
      numbers: (factor, threshold term, min_lr, eps) in the lr's dtype; the threshold term
        is torch's `1 - threshold` (min, rel), `threshold + 1` (max, rel) or `threshold`.
      counts: (patience, cooldown, steps_per_epoch), int32.
    """

    inner: Any
    lr: jax.Array
    best: jax.Array
    num_bad_epochs: jax.Array
    cooldown_counter: jax.Array
    loss_sum: jax.Array
    steps: jax.Array
    numbers: jax.Array
    counts: jax.Array


@dataclasses.dataclass(frozen=True)
class _Init:
    tx: Any
    mode: str
    numbers: tuple[float, ...] = dataclasses.field(compare=False, hash=False)
    counts: tuple[int, ...] = dataclasses.field(compare=False, hash=False)

    def __call__(self, params: Any) -> PlateauState:
        inner = self.tx.init(params)
        lr = jnp.asarray(optim.get_hyperparams(inner)["lr"])
        worse = jnp.inf if self.mode == "min" else -jnp.inf
        zero = jnp.zeros((), jnp.int32)
        return PlateauState(
            inner=inner,
            lr=lr,
            best=jnp.asarray(worse, lr.dtype),
            num_bad_epochs=zero,
            cooldown_counter=zero,
            loss_sum=jnp.zeros((), lr.dtype),
            steps=zero,
            numbers=jnp.asarray(self.numbers, lr.dtype),
            counts=jnp.asarray(self.counts, jnp.int32),
        )


@dataclasses.dataclass(frozen=True)
class _Update:
    tx: Any
    mode: str
    threshold_mode: str

    def __call__(self, updates, state: PlateauState, params=None, *, value=None, **extra):
        if value is None:
            raise ValueError(
                "ReduceLROnPlateau follows the loss: call update(grads, state, params, "
                "value=loss) (jaxreg's fit and make_step do)"
            )
        inner = optim.set_lr(state.inner, state.lr)
        if isinstance(self.tx, optax.GradientTransformationExtraArgs):
            updates, inner = self.tx.update(updates, inner, params, value=value, **extra)
        else:
            updates, inner = self.tx.update(updates, inner, params)
        loss_sum = state.loss_sum + jnp.asarray(value).astype(state.loss_sum.dtype)
        steps = state.steps + 1
        patience, cooldown, per_epoch = state.counts[0], state.counts[1], state.counts[2]
        end = steps >= per_epoch
        metric = loss_sum / steps.astype(loss_sum.dtype)
        after = self._plateau_step(state, metric, patience, cooldown)
        keep = (state.lr, state.best, state.num_bad_epochs, state.cooldown_counter)
        lr, best, bad, cool = (jnp.where(end, a, b) for a, b in zip(after, keep, strict=True))
        return updates, PlateauState(
            inner=inner,
            lr=lr,
            best=best,
            num_bad_epochs=bad,
            cooldown_counter=cool,
            loss_sum=jnp.where(end, jnp.zeros_like(loss_sum), loss_sum),
            steps=jnp.where(end, jnp.zeros_like(steps), steps),
            numbers=state.numbers,
            counts=state.counts,
        )

    def _plateau_step(self, state: PlateauState, current, patience, cooldown):
        """torch's `ReduceLROnPlateau.step(current)`, line by line."""
        factor, term, min_lr, eps = (state.numbers[i] for i in range(4))
        best = state.best
        if self.mode == "min":
            better = current < (best * term if self.threshold_mode == "rel" else best - term)
        else:
            better = current > (best * term if self.threshold_mode == "rel" else best + term)
        best = jnp.where(better, current, best)
        bad = jnp.where(better, 0, state.num_bad_epochs + 1)
        in_cooldown = state.cooldown_counter > 0
        cool = jnp.where(in_cooldown, state.cooldown_counter - 1, state.cooldown_counter)
        bad = jnp.where(in_cooldown, 0, bad)  # ignore any bad epochs in cooldown
        reduce = bad > patience
        old_lr = state.lr
        new_lr = jnp.maximum(old_lr * factor, min_lr)
        lr = jnp.where(reduce & (old_lr - new_lr > eps), new_lr, old_lr)
        cool = jnp.where(reduce, cooldown, cool)
        bad = jnp.where(reduce, 0, bad)
        return lr, best, bad, cool


@dataclasses.dataclass(frozen=True)
class ReduceLROnPlateau:
    """`torch.optim.lr_scheduler.ReduceLROnPlateau`, driven by the loss inside the loop.

    `fit(..., schedule=ReduceLROnPlateau(...))` wraps the optimizer in it; the same, by
    hand (also for `make_step` loops):

        tx = jr.schedules.ReduceLROnPlateau(patience=5, factor=0.5).wrap(
            jr.optim.sgd(0.1), steps_per_epoch=4)
        jr.fit(loss_fn, tx, params, x, y, epochs=100, batch_size=16)

    is the torch loop that calls `scheduler.step(sum(epoch_losses) / len(epoch_losses))`
    after each epoch of 4 batches (full batch: `steps_per_epoch=1`, `scheduler.step(loss.
    item())`). See the module docstring for the metric.

    Args:
      mode: "min" (the loss should fall) or "max".
      factor: the lr is multiplied by it on a plateau, < 1.
      patience: epochs without improvement tolerated, an integer >= 0.
      threshold: what counts as an improvement, relative or absolute (`threshold_mode`).
      threshold_mode: "rel" or "abs".
      cooldown: epochs after a reduction during which bad epochs are not counted.
      min_lr: the lr's floor (a number, or a list of one).
      eps: a reduction smaller than this is skipped.

    Raises:
      ValueError: torch's messages (`factor`, `mode`, `threshold_mode`).
    """

    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8
    interval = "epoch"  # torch users step it once per epoch, with the epoch's metric

    def __post_init__(self) -> None:
        factor = check_float("factor", self.factor)
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode {self.mode} is unknown!")
        if self.threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {self.threshold_mode} is unknown!")
        set_frozen(self, "factor", factor)
        set_frozen(self, "patience", check_int("patience", self.patience, low=0))
        set_frozen(self, "threshold", check_float("threshold", self.threshold))
        set_frozen(self, "cooldown", check_int("cooldown", self.cooldown, low=0))
        set_frozen(self, "min_lr", check_scalar("min_lr", self.min_lr))
        set_frozen(self, "eps", check_float("eps", self.eps))

    def lrs(self, base_lr: float, count: int):
        """Refused: the learning rates depend on the losses (see `wrap`)."""
        raise TypeError(
            "ReduceLROnPlateau follows the loss, so it has no learning rates fixed before "
            "training: pass it to fit as schedule=... (fit wraps the optimizer), or "
            "tx=jr.schedules.ReduceLROnPlateau(...).wrap(tx, steps_per_epoch=<batches per "
            "epoch>)"
        )

    def wrap(self, tx: Any, steps_per_epoch: int = 1) -> optax.GradientTransformationExtraArgs:
        """`tx` with its lr reduced on plateaus of the epoch's mean loss.

        Args:
          tx: a jaxreg optimizer (or an optax one wrapped by `jaxreg.optim.inject`): its
            state holds the lr this sets.
          steps_per_epoch: optimizer steps per epoch, the number of batches of the fit
            (1 for full batch): the metric is their mean loss.

        Returns:
          An optax `GradientTransformationExtraArgs` whose state is a `PlateauState`.
        """
        optim.check_transformation(tx)
        if "lr" not in optim.hyperparams_of(tx):
            raise TypeError(
                "ReduceLROnPlateau.wrap needs a jaxreg optimizer (jr.optim.sgd(...), ...) or "
                f"one wrapped by jr.optim.inject, whose state holds the lr; got {tx!r}"
            )
        per = check_int("steps_per_epoch", steps_per_epoch, low=1)
        if self.threshold_mode == "rel":
            term = 1.0 - self.threshold if self.mode == "min" else self.threshold + 1.0
        else:
            term = self.threshold
        numbers = (self.factor, term, self.min_lr, self.eps)
        return optax.GradientTransformationExtraArgs(
            _Init(tx, self.mode, numbers, (self.patience, self.cooldown, per)),
            _Update(tx, self.mode, self.threshold_mode),
        )
