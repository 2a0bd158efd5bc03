"""parity's vocabulary: one row per optimizer, loss, model and schedule, torch next to jaxreg.

Every name parity uses for an optimizer, a loss, a model or a schedule comes from a row
here: the `Scenario` fields accept the rows' names, the matrix takes its optimizer options
from the rows, the torch side builds `torch.optim.<row.torch>` and `F.<row.torch>`, the jax
side `jr.optim.<row.name>` and `jr.losses.<row.name>`, and `parity.verify` reads the rows
to compare a torch optimizer's settings with a jaxreg transformation's before training.
Adding an optimizer to parity is one `OptimizerRow`; `tests/test_parity_vocab.py` fails
while a `jr.optim` optimizer, `jr.losses` loss or `jr.schedules` schedule (or schedule
wrapper, such as `per_batch`) has no row.

Builders are looked up by name when called, not at import, so that a test can replace
`jaxreg.linear.predict` (or a torch class) and watch a comparison fail. torch is imported
only by the methods that return a torch object: `import parity` does not import torch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jaxreg as jr
from parity import schedule_rows

# torch param_group keys that choose an implementation (kernel, graph capture), not the
# arithmetic parity compares: the CPU single-tensor path is what jaxreg reproduces.
IMPLEMENTATION_KEYS = frozenset({"foreach", "fused", "capturable", "differentiable"})


@dataclasses.dataclass(frozen=True)
class OptimizerRow:
    """One optimizer, named in both frameworks.

    Attributes:
      name: the `jaxreg.optim` function, and `Scenario.optimizer`.
      torch: the `torch.optim` class.
      family: the tolerance family (`parity.tolerances`): "sgd" or "adaptive".
      settings: `(torch param_group key, where jaxreg holds it)`, for every key of torch's
        `param_groups` that is not in `IMPLEMENTATION_KEYS`. A place is "hp:KEY" (the
        state's hyperparams, `jr.optim.get_hyperparams(tx.init(params))[KEY]`),
        "update:ATTR" / "init:ATTR" (a field of `tx.update` / `tx.init`), or several of
        them for a torch tuple (`betas` is `hp:beta1` and `hp:beta2`).
      options: the matrix's variants, `(option name, torch/jaxreg keyword arguments)`; the
        option name is the row's name, or name-suffix.
      matrices_only: the optimizer takes 2-D parameters only (torch's Muon): the matrix's
        models for it have no bias.
    """

    name: str
    torch: str
    family: str
    settings: tuple[tuple[str, tuple[str, ...]], ...]
    options: tuple[tuple[str, dict[str, Any]], ...]
    matrices_only: bool = False

    def jax(self) -> Callable[..., Any]:
        """The `jaxreg.optim` factory (`tx = row.jax()(lr=..., ...)`)."""
        return getattr(jr.optim, self.name)

    def torch_class(self) -> type:
        """The `torch.optim` class (imports torch)."""
        import torch

        return getattr(torch.optim, self.torch)


@dataclasses.dataclass(frozen=True)
class LossRow:
    """One loss, named in both frameworks.

    Attributes:
      name: the `jaxreg.losses` function, and `Scenario.loss`.
      torch: the `torch.nn.functional` function.
      torch_module: the `torch.nn` class that computes the same loss.
      reduction: the reduction torch is called with when the jaxreg loss has none of its own
        (`sse` is `F.mse_loss(reduction="sum")`); None: the `reduction` argument passes.
      options: scalar keyword arguments both sides take under the same name, compared by
        `parity.verify` (tensor arguments such as `weight` are not compared).
      model: the `MODELS` row whose output the loss takes in the matrix: "linear" for a
        regression loss, "logistic" (probabilities) for `bce`, "logits" for
        `bce_with_logits`, "softmax" (class logits) for `cross_entropy`, "log_softmax"
        for `nll` and `kl_div`.
      target: the targets it takes: "values" (the prediction's shape: real values, or 0/1
        labels for a binary model), "counts" (non-negative integers as floats, the
        prediction's shape), "classes" (integer class indices (n,), int64 for torch) or
        "probabilities" (rows of class probabilities, the prediction's shape).
      matrix_kwargs: keyword arguments the matrix calls it with (`gaussian_nll`'s `var`,
        `kl_div`'s "batchmean", torch's KL divergence).
    """

    name: str
    torch: str
    torch_module: str
    reduction: str | None = None
    options: tuple[str, ...] = ("reduction",)
    model: str = "linear"
    target: str = "values"
    matrix_kwargs: tuple[tuple[str, Any], ...] = ()

    def jax(self) -> Callable[..., Any]:
        """The `jaxreg.losses` function."""
        return getattr(jr.losses, self.name)

    @property
    def torch_expr(self) -> str:
        """How a torch program writes it: "F.mse_loss", "F.mse_loss(reduction='sum')"."""
        fixed = f"(reduction={self.reduction!r})" if self.reduction else ""
        return f"F.{self.torch}{fixed}"

    def torch_fn(self) -> Callable[..., Any]:
        """`(pred, target, **options) -> loss`, the `torch.nn.functional` one (imports torch)."""
        import torch.nn.functional as F

        fn = getattr(F, self.torch)
        return functools.partial(fn, reduction=self.reduction) if self.reduction else fn


@dataclasses.dataclass(frozen=True)
class ModelRow:
    """What follows the affine map, in both frameworks.

    Attributes:
      name: `Scenario.model`.
      module, function: the jaxreg predict function, `jaxreg.<module>.<function>`.
      torch_link: the `torch` function applied to the `nn.Linear` output, or None.
      link_kwargs: its keyword arguments (`log_softmax`'s `dim`).
    """

    name: str
    module: str
    function: str
    torch_link: str | None = None
    link_kwargs: tuple[tuple[str, Any], ...] = ()

    def jax(self) -> Callable[..., Any]:
        """`jaxreg.<module>.<function>`, looked up now (a test may have replaced it)."""
        return getattr(getattr(jr, self.module), self.function)

    def torch_fn(self) -> Callable[[Any], Any]:
        """The torch link (imports torch), or the identity."""
        if self.torch_link is None:
            return _identity
        import torch

        link = getattr(torch, self.torch_link)
        return functools.partial(link, **dict(self.link_kwargs)) if self.link_kwargs else link


@dataclasses.dataclass(frozen=True)
class ScheduleRow:
    """One learning-rate schedule, stepped once per epoch in both frameworks.

    The jaxreg class is a frozen dataclass whose fields are torch's constructor arguments,
    which torch keeps as attributes of the same names: `parity.verify` compares them.

    Attributes:
      name: the `jaxreg.schedules` class, and `Scenario.schedule`.
      torch: the `torch.optim.lr_scheduler` class.
      example: `epochs -> keyword arguments` the matrix uses for a run of that many epochs
        (of that many steps for a schedule stepped per batch).
      build: `(torch class, optimizer, kwargs, part) -> torch scheduler` where torch takes
        other arguments than jaxreg (`part(optimizer, jaxreg schedule)` builds a part of a
        composite); None: `cls(optimizer, **kwargs)`.
      settings: `(jaxreg reader, torch reader)`, each `(scheduler, describe) -> dict` of
        what to compare, where torch keeps other attributes than jaxreg's fields
        (`parity.schedule_rows`); None: every field, read by its name on both.
    """

    name: str
    torch: str
    example: Callable[[int], dict[str, Any]]
    build: Callable[..., Any] | None = None
    settings: tuple[Callable[..., dict], Callable[..., dict]] | None = None

    def jax(self) -> type:
        return getattr(jr.schedules, self.name)

    def torch_class(self) -> type:
        import torch

        return getattr(torch.optim.lr_scheduler, self.torch)

    def torch_scheduler(self, optimizer: Any, kwargs: dict[str, Any]) -> Any:
        """The torch scheduler on `optimizer` with the jaxreg arguments `kwargs`."""
        if self.build is None:
            return self.torch_class()(optimizer, **kwargs)
        return self.build(self.torch_class(), optimizer, kwargs, _torch_part)

    def jax_settings(self, schedule: Any) -> dict[str, Any]:
        """What `parity.verify` compares, read from the jaxreg schedule."""
        if self.settings is None:
            return {
                f.name: _setting(getattr(schedule, f.name)) for f in dataclasses.fields(schedule)
            }
        return self.settings[0](schedule, _describe_jax)

    def torch_settings(self, scheduler: Any, fields: Any) -> dict[str, Any]:
        """The same, read from the torch scheduler (`fields`: the jaxreg class's fields)."""
        if self.settings is None:
            return {f.name: _setting(getattr(scheduler, f.name, None)) for f in fields}
        return self.settings[1](scheduler, _describe_torch)


@dataclasses.dataclass(frozen=True)
class ScheduleWrapperRow:
    """A jaxreg wrapper that changes when a schedule steps, not what it computes.

    torch has no class for it: the torch loop steps its scheduler at another point.

    Attributes:
      name: the `jaxreg.schedules` class (it holds the wrapped schedule as `.schedule`).
      builder: the `jaxreg.schedules` function that builds it.
      interval: when torch steps the scheduler: "batch" (after every optimizer step) or
        "epoch" (after every epoch, also a schedule stepped per batch by default).
    """

    name: str
    builder: str
    interval: str

    def jax(self) -> type:
        return getattr(jr.schedules, self.name)


def _identity(z: Any) -> Any:
    return z


def _setting(value: Any) -> Any:
    """A schedule argument as compared: milestones (torch's Counter) as a sorted list."""
    if hasattr(value, "elements"):  # collections.Counter: torch's MultiStepLR milestones
        return sorted(value.elements())
    if isinstance(value, (list, tuple)):
        return sorted(value)
    return value


def _torch_part(optimizer: Any, part: Any) -> Any:
    """The torch scheduler of a jaxreg part of a composite schedule, on `optimizer`."""
    row = SCHEDULES[type(part).__name__]
    return row.torch_scheduler(
        optimizer, {f.name: getattr(part, f.name) for f in dataclasses.fields(part)}
    )


def _describe_jax(part: Any) -> tuple[str, dict]:
    row = SCHEDULES[type(part).__name__]
    return row.name, row.jax_settings(part)


def _describe_torch(part: Any) -> tuple[str, dict]:
    row = torch_row(SCHEDULES, part)
    return row.name, row.torch_settings(part, dataclasses.fields(row.jax()))


_BASIC = (("lr", ("hp:lr",)), ("weight_decay", ("hp:weight_decay",)))
_MAXIMIZE = (("maximize", ("update:maximize",)),)
_ADAM = (
    *_BASIC,
    ("betas", ("hp:beta1", "hp:beta2")),
    ("eps", ("hp:eps",)),
    ("amsgrad", ("update:amsgrad",)),
    ("decoupled_weight_decay", ("update:decoupled_weight_decay",)),
    *_MAXIMIZE,
)
_NADAM = (  # NAdam's and RAdam's: Adam's without amsgrad
    *_BASIC,
    ("betas", ("hp:beta1", "hp:beta2")),
    ("eps", ("hp:eps",)),
    ("decoupled_weight_decay", ("update:decoupled_weight_decay",)),
    *_MAXIMIZE,
)

OPTIMIZERS: dict[str, OptimizerRow] = {
    row.name: row
    for row in (
        OptimizerRow(
            "sgd",
            "SGD",
            "sgd",
            (
                *_BASIC,
                ("momentum", ("hp:momentum",)),
                ("dampening", ("hp:dampening",)),
                ("nesterov", ("update:nesterov",)),
                *_MAXIMIZE,
            ),
            (
                ("sgd", dict(lr=0.05)),
                ("sgd-momentum", dict(lr=0.02, momentum=0.9)),
                ("sgd-dampening", dict(lr=0.02, momentum=0.9, dampening=0.5)),
                ("sgd-nesterov", dict(lr=0.02, momentum=0.9, nesterov=True)),
                ("sgd-weight_decay", dict(lr=0.05, weight_decay=0.1)),
                ("sgd-maximize", dict(lr=0.01, momentum=0.5, maximize=True)),
            ),
        ),
        OptimizerRow(
            "adam",
            "Adam",
            "adaptive",
            _ADAM,
            (
                ("adam", dict(lr=0.01)),
                ("adam-amsgrad", dict(lr=0.01, amsgrad=True)),
                ("adam-weight_decay", dict(lr=0.01, weight_decay=0.1)),
                (
                    "adam-betas-eps-maximize",
                    dict(lr=0.005, betas=(0.8, 0.9), eps=1e-6, maximize=True),
                ),
            ),
        ),
        OptimizerRow(
            "adamw",
            "AdamW",
            "adaptive",
            _ADAM,
            (
                ("adamw", dict(lr=0.01)),
                ("adamw-amsgrad", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
            ),
        ),
        OptimizerRow(
            "rmsprop",
            "RMSprop",
            "adaptive",
            (
                *_BASIC,
                ("alpha", ("hp:alpha",)),
                ("eps", ("hp:eps",)),
                ("momentum", ("hp:momentum",)),
                ("centered", ("update:centered",)),
                *_MAXIMIZE,
            ),
            (
                ("rmsprop", dict(lr=0.002)),
                ("rmsprop-centered", dict(lr=0.002, centered=True)),
                ("rmsprop-momentum", dict(lr=0.001, momentum=0.9)),
                (
                    "rmsprop-centered-momentum-wd",
                    dict(lr=0.001, alpha=0.98, centered=True, momentum=0.5, weight_decay=0.1),
                ),
            ),
        ),
        OptimizerRow(
            "adagrad",
            "Adagrad",
            "adaptive",
            (
                *_BASIC,
                ("lr_decay", ("hp:lr_decay",)),
                ("eps", ("hp:eps",)),
                ("initial_accumulator_value", ("init:initial_accumulator_value",)),
                *_MAXIMIZE,
            ),
            (
                ("adagrad", dict(lr=0.1)),
                ("adagrad-lr_decay", dict(lr=0.1, lr_decay=0.01)),
                ("adagrad-initial_accumulator_value", dict(lr=0.1, initial_accumulator_value=0.5)),
                ("adagrad-weight_decay-eps", dict(lr=0.1, weight_decay=0.1, eps=1e-8)),
            ),
        ),
        OptimizerRow(
            "nadam",
            "NAdam",
            "adaptive",
            (*_NADAM, ("momentum_decay", ("hp:momentum_decay",))),
            (
                ("nadam", dict(lr=0.01)),
                (
                    "nadam-decoupled-momentum_decay",
                    dict(
                        lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, momentum_decay=0.01
                    ),
                ),
            ),
        ),
        OptimizerRow(
            "radam",
            "RAdam",
            "adaptive",
            _NADAM,
            (
                ("radam", dict(lr=0.01)),
                ("radam-decoupled", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
            ),
        ),
        OptimizerRow(
            "adamax",
            "Adamax",
            "adaptive",
            (*_BASIC, ("betas", ("hp:beta1", "hp:beta2")), ("eps", ("hp:eps",)), *_MAXIMIZE),
            (
                ("adamax-weight_decay", dict(lr=0.01, weight_decay=0.1)),
                ("adamax-betas", dict(lr=0.01, betas=(0.8, 0.99))),
            ),
        ),
        OptimizerRow(
            "adadelta",
            "Adadelta",
            "adaptive",
            (*_BASIC, ("rho", ("hp:rho",)), ("eps", ("hp:eps",)), *_MAXIMIZE),
            (("adadelta", dict(lr=1.0, rho=0.9)),),
        ),
        OptimizerRow(
            "asgd",
            "ASGD",
            "sgd",
            (
                *_BASIC,
                ("lambd", ("hp:lambd",)),
                ("alpha", ("hp:alpha",)),
                ("t0", ("hp:t0",)),
                *_MAXIMIZE,
            ),
            (
                ("asgd", dict(lr=0.05, lambd=0.01, t0=10)),
                ("asgd-weight_decay", dict(lr=0.05, t0=5, weight_decay=0.01)),
            ),
        ),
        OptimizerRow(
            "rprop",
            "Rprop",
            "adaptive",
            (
                ("lr", ("hp:lr",)),
                ("etas", ("hp:etaminus", "hp:etaplus")),
                ("step_sizes", ("hp:step_size_min", "hp:step_size_max")),
                *_MAXIMIZE,
            ),
            (("rprop-step_sizes", dict(lr=0.01, step_sizes=(1e-06, 0.05))),),
        ),
        OptimizerRow(
            "lbfgs",
            "LBFGS",
            "adaptive",
            (
                ("lr", ("hp:lr",)),
                ("max_iter", ("update:max_iter",)),
                ("max_eval", ("update:max_eval",)),
                ("tolerance_grad", ("hp:tolerance_grad",)),
                ("tolerance_change", ("hp:tolerance_change",)),
                ("history_size", ("update:history_size",)),
                ("line_search_fn", ("update:line_search_fn",)),
            ),
            (
                # lr 0.002: at 0.01 the logistic-mse run leaves its plateau at step 61 with an
                # L-BFGS step ~1e6 times its inputs' last-bit differences (torch against itself
                # too); a smaller step keeps the 100 steps off that escape
                ("lbfgs-strong_wolfe", dict(lr=0.002, max_iter=1, line_search_fn="strong_wolfe")),
                # lr 0.1: at 0.01 the float32 linear-sse run's torch drifts 5.0e-6 from its
                # float64 twin by step 6 (1.7e-6 at 0.1, 1.2e-5 at 0.002): the short steps
                # leave the two-loop recursion dividing nearly equal differences
                ("lbfgs-history_size", dict(lr=0.1, max_iter=1, history_size=5)),
            ),
        ),
        OptimizerRow(
            "adafactor",
            "Adafactor",
            "adaptive",
            (
                *_BASIC,
                ("beta2_decay", ("hp:beta2_decay",)),
                ("eps", ("update:eps1", "hp:eps2")),
                ("d", ("hp:d",)),
                *_MAXIMIZE,
            ),
            (
                ("adafactor", dict(lr=0.01)),
                ("adafactor-weight_decay-d", dict(lr=0.01, weight_decay=0.1, d=1.5)),
            ),
        ),
        OptimizerRow(
            "muon",
            "Muon",
            "adaptive",
            (
                *_BASIC,
                ("momentum", ("hp:momentum",)),
                ("nesterov", ("update:nesterov",)),
                ("ns_coefficients", ("hp:a", "hp:b", "hp:c")),
                ("eps", ("hp:eps",)),
                ("ns_steps", ("update:ns_steps",)),
                ("adjust_lr_fn", ("update:adjust_lr_fn",)),
            ),
            (
                ("muon", dict(lr=0.02)),
                (
                    "muon-plain-match_rms_adamw",
                    dict(lr=0.02, nesterov=False, adjust_lr_fn="match_rms_adamw"),
                ),
            ),
            matrices_only=True,
        ),
        OptimizerRow(
            "sparse_adam",
            "SparseAdam",
            "adaptive",
            (
                ("lr", ("hp:lr",)),
                ("betas", ("hp:beta1", "hp:beta2")),
                ("eps", ("hp:eps",)),
                *_MAXIMIZE,
            ),
            (
                ("sparse_adam", dict(lr=0.01)),
                ("sparse_adam-betas-maximize", dict(lr=0.005, betas=(0.8, 0.99), maximize=True)),
            ),
        ),
    )
}

LOSSES: dict[str, LossRow] = {
    row.name: row
    for row in (
        LossRow("mse", "mse_loss", "MSELoss"),
        LossRow("sse", "mse_loss", "MSELoss", reduction="sum", options=()),
        LossRow("l1", "l1_loss", "L1Loss"),
        LossRow("huber", "huber_loss", "HuberLoss", options=("reduction", "delta")),
        LossRow("smooth_l1", "smooth_l1_loss", "SmoothL1Loss", options=("reduction", "beta")),
        LossRow("bce", "binary_cross_entropy", "BCELoss", model="logistic"),
        LossRow(
            "bce_with_logits",
            "binary_cross_entropy_with_logits",
            "BCEWithLogitsLoss",
            model="logits",
        ),
        LossRow(
            "cross_entropy",
            "cross_entropy",
            "CrossEntropyLoss",
            options=("reduction", "ignore_index", "label_smoothing"),
            model="softmax",
            target="classes",
        ),
        LossRow(
            "nll",
            "nll_loss",
            "NLLLoss",
            options=("reduction", "ignore_index"),
            model="log_softmax",
            target="classes",
        ),
        LossRow(
            "poisson_nll",
            "poisson_nll_loss",
            "PoissonNLLLoss",
            options=("reduction", "log_input", "full", "eps"),
            target="counts",
        ),
        LossRow(
            "gaussian_nll",
            "gaussian_nll_loss",
            "GaussianNLLLoss",
            options=("reduction", "full", "eps"),
            matrix_kwargs=(("var", 0.5),),
        ),
        LossRow(
            "kl_div",
            "kl_div",
            "KLDivLoss",
            options=("reduction", "log_target"),
            model="log_softmax",
            target="probabilities",
            matrix_kwargs=(("reduction", "batchmean"),),
        ),
    )
}

MODELS: dict[str, ModelRow] = {
    row.name: row
    for row in (
        ModelRow("linear", "linear", "predict"),
        ModelRow("logistic", "logistic", "predict", torch_link="sigmoid"),
        ModelRow("logits", "logistic", "logits"),
        ModelRow("softmax", "softmax", "logits"),
        ModelRow(
            "log_softmax",
            "softmax",
            "log_proba",
            torch_link="log_softmax",
            link_kwargs=(("dim", -1),),
        ),
    )
}

SCHEDULES: dict[str, ScheduleRow] = {
    row.name: row
    for row in (
        ScheduleRow("StepLR", "StepLR", lambda epochs: dict(step_size=epochs // 3, gamma=0.5)),
        ScheduleRow(
            "MultiStepLR",
            "MultiStepLR",
            lambda epochs: dict(milestones=[epochs // 5, 3 * epochs // 5], gamma=0.3),
        ),
        ScheduleRow("ExponentialLR", "ExponentialLR", lambda epochs: dict(gamma=0.98)),
        ScheduleRow(
            "CosineAnnealingLR",
            "CosineAnnealingLR",
            lambda epochs: dict(T_max=epochs // 2, eta_min=1e-4),
        ),
        ScheduleRow(
            "LinearLR",
            "LinearLR",
            lambda epochs: dict(start_factor=0.5, end_factor=1.0, total_iters=epochs // 2),
        ),
        ScheduleRow(
            "LambdaLR",
            "LambdaLR",
            lambda epochs: dict(lr_lambda=schedule_rows.decay_97),
            settings=(schedule_rows.lambda_settings_jax, schedule_rows.lambda_settings_torch),
        ),
        ScheduleRow(
            "MultiplicativeLR",
            "MultiplicativeLR",
            lambda epochs: dict(lr_lambda=schedule_rows.halve_every_10),
            settings=(schedule_rows.lambda_settings_jax, schedule_rows.lambda_settings_torch),
        ),
        ScheduleRow(
            "ConstantLR", "ConstantLR", lambda epochs: dict(factor=0.5, total_iters=epochs // 4)
        ),
        ScheduleRow(
            "PolynomialLR", "PolynomialLR", lambda epochs: dict(total_iters=epochs, power=1.5)
        ),
        ScheduleRow(
            "CosineAnnealingWarmRestarts",
            "CosineAnnealingWarmRestarts",
            lambda epochs: dict(T_0=max(1, epochs // 7), T_mult=2, eta_min=1e-4),
        ),
        ScheduleRow(  # stepped per batch: `example` gets the run's steps
            "CyclicLR",
            "CyclicLR",
            lambda steps: dict(
                base_lr=0.002,
                max_lr=0.02,
                step_size_up=steps // 8,
                mode="triangular2",
                cycle_momentum=False,
            ),
            settings=(schedule_rows.cyclic_settings_jax, schedule_rows.cyclic_settings_torch),
        ),
        ScheduleRow(  # stepped per batch: `example` gets the run's steps
            "OneCycleLR",
            "OneCycleLR",
            lambda steps: dict(max_lr=0.02, total_steps=steps, cycle_momentum=False),
            settings=(schedule_rows.one_cycle_settings_jax, schedule_rows.one_cycle_settings_torch),
        ),
        ScheduleRow(
            "SequentialLR",
            "SequentialLR",
            lambda epochs: dict(
                schedulers=(
                    jr.schedules.LinearLR(0.1, total_iters=epochs // 10),
                    jr.schedules.ExponentialLR(0.98),
                ),
                milestones=(epochs // 10,),
            ),
            build=schedule_rows.sequential_torch,
            settings=(schedule_rows.composite_settings_jax, schedule_rows.composite_settings_torch),
        ),
        ScheduleRow(
            "ChainedScheduler",
            "ChainedScheduler",
            lambda epochs: dict(
                schedulers=(
                    jr.schedules.ConstantLR(0.5, epochs // 5),
                    jr.schedules.ExponentialLR(0.99),
                ),
            ),
            build=schedule_rows.chained_torch,
            settings=(schedule_rows.composite_settings_jax, schedule_rows.composite_settings_torch),
        ),
        ScheduleRow(  # follows the loss: parity wraps the optimizer (`wrap`), torch gets the metric
            "ReduceLROnPlateau",
            "ReduceLROnPlateau",
            lambda epochs: dict(factor=0.5, patience=3, threshold=1e-3, cooldown=1),
            settings=(schedule_rows.plateau_settings_jax, schedule_rows.plateau_settings_torch),
        ),
    )
}


SCHEDULE_WRAPPERS: dict[str, ScheduleWrapperRow] = {
    row.name: row
    for row in (
        ScheduleWrapperRow("PerBatch", "per_batch", "batch"),
        ScheduleWrapperRow("PerEpoch", "per_epoch", "epoch"),
    )
}


def torch_row(table: dict[str, Any], obj: Any) -> Any:
    """The row whose torch class is `type(obj)` or its closest base class; None if none is.

    A subclass of `torch.optim.SGD` is an SGD; `AdamW` (a subclass of `Adam` in torch) is
    AdamW, because its own class is found first.
    """
    by_torch = {row.torch: row for row in table.values()}
    for cls in type(obj).__mro__:
        if cls.__name__ in by_torch and cls.__module__.startswith("torch."):
            return by_torch[cls.__name__]
    return None
