"""What a parity scenario is: one description, and the trajectory each side turns it into.

A `Scenario` describes a training run completely (data, initial parameters, model, loss,
optimizer, schedule, batching, length, dtype) and also *how the torch program is written*
(`form`, `torch_loss`, `update`), because the tutorials differ exactly there: manual
`.data` updates, `torch.no_grad()` updates, `optim.SGD([W, b])`, `nn.Linear` in an
`nn.Module`, `torch.mv`, ... . `parity.problem.materialize` turns it into concrete NumPy
arrays (`Problem`) that both sides receive; `parity.torch_side.run` and
`parity.jax_side.run` each turn (scenario, problem) into a `Trajectory`; `parity.compare`
compares two trajectories.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from parity import vocab
from parity.programs.jax_loop import LOOPS as JAX_LOOPS

DTYPES = ("float32", "float64")
SOURCES = ("seed", "matrix")
UPDATES = ("optim", "data", "no_grad")


class Data(NamedTuple):
    """Training data in the shapes the *torch* program uses.

    Attributes:
      x: (n, in) or (n,) (the Celsius tutorial's 20 temperatures).
      y: (n, 1) or (n,) (`torch.mv`'s targets, the Celsius targets).
      feature: (n,) the one input feature to plot against, or None (several features).
    """

    x: np.ndarray
    y: np.ndarray
    feature: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class TorchInit:
    """Initial parameters drawn by torch's own `nn.Linear` init after `torch.manual_seed(seed)`.

    Both sides get the same numbers: `parity.problem.materialize` creates the layer once and
    copies its tensors (`parity.interop.params_from_torch`) into the problem.
    """

    seed: int
    in_features: int
    out_features: int = 1
    bias: bool = True


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One training run, described once for both frameworks.

    Attributes:
      name: unique, e.g. "t1-line-optim-sgd-f32"; `--only` matches it.
      source: "seed" (a tutorial's workflow) or "matrix" (the optimizer/loss/dtype matrix).
      data: `(dtype: np.dtype, data_path: Path) -> Data`, NumPy arrays in torch's shapes.
      init: the initial parameters, by their torch names, in the order the torch program
        lists them (`{"W": ..., "b": ...}`; the order is `optim.SGD([b, w])`'s order), each
        an array or a `(dtype) -> array` callable; or a `TorchInit` (torch's own init).
      form: how the torch program computes its prediction (`parity.forms.FORMS`):
        "nn.Linear", "nn.Module", "x*W+b", "b+w*x", "torch.mv", "X@What", "x*w.t()+b".
      model: what follows the affine map, a `parity.vocab.MODELS` row: "linear" (nothing),
        "logistic" (`sigmoid`), "logits" (nothing; the loss takes logits). The jax side uses
        `jr.linear.predict`, `jr.logistic.predict`, `jr.logistic.logits`.
      loss, loss_kwargs: a `parity.vocab.LOSSES` row (the `jaxreg.losses` function) and its
        keyword arguments.
      torch_loss: how the torch program writes the loss (`parity.torch_side.TORCH_LOSSES`),
        e.g. "F.mse_loss", "nn.MSELoss()(y_pred.view_as(y), y)", "torch.mean((h - y) ** 2)".
      optimizer, opt_kwargs: a `parity.vocab.OPTIMIZERS` row (the `jaxreg.optim` function;
        the row names the `torch.optim` class) and its arguments, with torch's names.
      update: "optim" (`optimizer.step()`), "data" (`p.data = p.data - lr * p.grad.data`),
        "no_grad" (`with torch.no_grad(): p -= p.grad * lr; p.grad.zero_()`). The last two are
        plain SGD written by hand; the jax side uses `jr.optim.sgd(lr)`.
      schedule, schedule_kwargs: a `parity.vocab.SCHEDULES` row (the `jaxreg.schedules` and
        `torch.optim.lr_scheduler` class) and its arguments; stepped after every epoch.
      epochs: passes over the data (full batch: the number of updates).
      batch_size: None for full batch, else torch `DataLoader(batch_size=...)`.
      shuffle: mini-batches shuffled by a `torch.Generator().manual_seed(shuffle_seed)`.
      drop_last: the DataLoader's `drop_last`.
      dtype: "float32" or "float64"; the jax side runs with JAX's x64 mode on for float64
        and off for float32 (`parity.precision`), whatever the caller's setting.
      phases: `((epochs, lr), ...)` for a program that trains, then continues training at
        another learning rate (the Celsius tutorial); overrides `epochs` and `lr`.
      lesson: the name of an autograd lesson (`parity.lessons`) instead of a training run.
      jax_loop: how the jax side trains: "fit" (the whole run, one compiled program) or
        "make_step" (a Python loop over the jitted step, `jr.optim.set_lr` per epoch).
      note: the tutorial line this scenario reproduces, for the report.
    """

    name: str
    source: str
    data: Callable[..., Data]
    init: Mapping[str, Any] | TorchInit
    form: str = "nn.Linear"
    model: str = "linear"
    loss: str = "mse"
    loss_kwargs: tuple[tuple[str, Any], ...] = ()
    torch_loss: str | None = None
    optimizer: str = "sgd"
    opt_kwargs: tuple[tuple[str, Any], ...] = ()
    update: str = "optim"
    schedule: str | None = None
    schedule_kwargs: tuple[tuple[str, Any], ...] = ()
    epochs: int = 100
    batch_size: int | None = None
    shuffle: bool = True
    shuffle_seed: int = 0
    drop_last: bool = False
    dtype: str = "float32"
    phases: tuple[tuple[int, float], ...] | None = None
    lesson: str | None = None
    jax_loop: str = "fit"
    note: str = ""

    def __post_init__(self):
        _check_choice("source", self.source, SOURCES)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("model", self.model, tuple(vocab.MODELS))
        _check_choice("loss", self.loss, tuple(vocab.LOSSES))
        _check_choice("optimizer", self.optimizer, tuple(vocab.OPTIMIZERS))
        _check_choice("update", self.update, UPDATES)
        if self.schedule is not None:
            _check_choice("schedule", self.schedule, tuple(vocab.SCHEDULES))
        if self.update != "optim" and (self.optimizer != "sgd" or set(self.opts) - {"lr"}):
            raise ValueError(f"{self.name}: update={self.update!r} is plain SGD: only lr allowed")
        if self.phases is not None and (self.batch_size or self.schedule):
            raise ValueError(f"{self.name}: phases are for full-batch runs without schedules")
        if self.schedule is not None and self.update != "optim":
            raise ValueError(f"{self.name}: a schedule needs an optimizer (update='optim')")
        _check_choice("jax_loop", self.jax_loop, JAX_LOOPS)

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.opt_kwargs)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def total_epochs(self) -> int:
        return sum(e for e, _ in self.phases) if self.phases else self.epochs

    @property
    def family(self) -> str:
        """The tolerance family: "lesson", "sgd" (incl. hand-written SGD) or "adaptive"."""
        if self.lesson is not None:
            return "lesson"
        return vocab.OPTIMIZERS[self.optimizer].family

    def describe(self) -> str:
        """One line: optimizer, loss, schedule and batching, for `--list` and the report."""
        if self.lesson is not None:
            return f"autograd lesson {self.lesson}"
        opt = ", ".join(f"{k}={v}" for k, v in self.opt_kwargs)
        if self.phases:
            opt = "lr=" + " then ".join(f"{lr} x {e}" for e, lr in self.phases)
        parts = [
            {
                "optim": f"optim.{vocab.OPTIMIZERS[self.optimizer].torch}({opt})",
                "data": f"p.data = p.data - lr * p.grad.data ({opt})",
                "no_grad": f"with no_grad: p -= p.grad * lr ({opt})",
            }[self.update],
            self.torch_loss or self.loss + _kw(self.loss_kwargs),
        ]
        if self.schedule:
            parts.append(self.schedule + _kw(self.schedule_kwargs))
        if self.batch_size:
            how = "shuffled" if self.shuffle else "in order"
            drop = ", drop_last" if self.drop_last else ""
            parts.append(f"batches of {self.batch_size} {how}{drop}")
        parts.append(f"jax: {self.jax_loop}")
        return "; ".join(parts)


class Perturbation(NamedTuple):
    """A deliberate error on the jax side, to show that the comparison has teeth.

    The learning rate is changed in the optimizer's arguments, so that run is jaxreg's own
    code path. A wrapped predict or loss is a function jaxreg does not know, so its
    gradient comes from `jax.value_and_grad` instead of jaxreg's fused one-pass gradient
    (which recognises `jr.linear.predict`, `jr.losses.mse`, ... by identity).

    Attributes:
      lr_factor: multiplies every learning rate (1.001: a learning rate off by 0.1%).
      pred_offset: added to every prediction's first output (1e-4: a prediction off by
        1e-4; not to every output, which a softmax would not see).
      loss_scale: multiplies the loss (and so its gradient).
    """

    lr_factor: float = 1.0
    pred_offset: float = 0.0
    loss_scale: float = 1.0

    @property
    def active(self) -> bool:
        return self != NO_PERTURBATION


NO_PERTURBATION = Perturbation()


class Problem(NamedTuple):
    """A scenario made concrete: the NumPy arrays both sides start from.

    Attributes:
      data: `Data` in torch's shapes and the scenario's dtype.
      params: {torch name: array} in torch's shapes, the initial parameters.
      order: (epochs, n) int64 row order of each epoch, as the torch DataLoader yields it
        (shuffled mini-batches only; else None).
    """

    data: Data
    params: dict[str, np.ndarray]
    order: np.ndarray | None


@dataclasses.dataclass
class Trajectory:
    """What one side computed, step by step.

    Attributes:
      losses: (steps,) the loss at the parameters before each update (torch's
        `loss.item()`); for a lesson, the value of the differentiated expression.
      params: {torch name: (steps, *shape)} the parameters after each update, by the torch
        program's names and shapes on both sides; for a lesson, the printed gradients.
      seconds: wall time of the run (the jax side includes compilation).
      meta: notes for the report (e.g. the shape of torch's prediction).
    """

    losses: np.ndarray
    params: dict[str, np.ndarray]
    seconds: float = 0.0
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.losses.shape[0])


def _check_choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Scenario {what} must be one of {', '.join(choices)}; got {value!r}")


def _kw(kwargs: tuple[tuple[str, Any], ...]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in kwargs) + ")" if kwargs else ""
