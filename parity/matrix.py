"""The matrix: every optimizer option against torch, a covering design rather than a product.

Rows are (optimizer option) x (float32, float64). Every row gets a (model, loss) pair, a
schedule and a batching from cycles whose lengths (8, 7, 3) are coprime, offset by dtype,
so that every optimizer option meets both dtypes, every loss meets both dtypes and several
optimizers, every schedule meets several optimizers, and mini-batches (a shuffling torch
`DataLoader`, replayed with `fit(order=...)`) meet several optimizers of every family.
`EXTRA` adds what the cycles do not reach: in-order and `drop_last` batches, two outputs,
`reduction="sum"`, `smooth_l1` with `beta=0`, and the jax side written as a Python loop
over `jr.make_step` (with mini-batches and a schedule) instead of one `jr.fit`. `PINNED`
keeps the scenarios tests name by name. `tests/test_parity_matrix.py` checks the coverage
claims.

Every run has 100 updates (full batch: 100 epochs; mini-batches: 25 epochs of 4 batches of
at most 16 rows from 50 rows, the last batch of each epoch 2 rows), starting from torch's
own `nn.Linear` init.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from parity import vocab
from parity.scenario import Data, Scenario, TorchInit

# (option name, optimizer, torch kwargs): every option of every `parity.vocab` optimizer row
OPTIONS: list[tuple[str, str, dict]] = [
    (option, row.name, kwargs)
    for row in vocab.OPTIMIZERS.values()
    for option, kwargs in row.options
]

# (model, loss, loss kwargs)
LOSS_CYCLE: list[tuple[str, str, dict]] = [
    ("linear", "mse", {}),
    ("logistic", "bce", {}),
    ("linear", "huber", {"delta": 1.0}),
    ("logits", "bce_with_logits", {}),
    ("linear", "l1", {}),
    ("linear", "sse", {}),
    ("linear", "smooth_l1", {"beta": 0.5}),
    ("logistic", "mse", {}),
]


def _schedule(name: str | None, epochs: int) -> tuple[str | None, dict]:
    """Schedule arguments scaled to the run's length in epochs (100 full batch, 25 mini-batch),
    or in steps (100) for a schedule stepped per batch (`CyclicLR`, `OneCycleLR`)."""
    if name is None:
        return name, {}
    row = vocab.SCHEDULES[name]
    return name, row.example(STEPS if row.jax().interval == "batch" else epochs)


STEPS = 100  # updates per matrix run


SCHEDULE_CYCLE = [
    None,
    "StepLR",
    None,
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "LinearLR",
]
# A vocab row the cycles above do not name yet joins the matrix at the end of its cycle
# (changing the cycle's length, so `tests/test_parity_matrix.py` re-checks the coverage).
LOSS_CYCLE += [
    (row.model, row.name, dict(row.matrix_kwargs))
    for row in vocab.LOSSES.values()
    if row.name not in {loss for _, loss, _ in LOSS_CYCLE}
]
# Chosen by hand in `EXTRA` (so not in the cycle): the schedules that set the lr to
# absolute values whatever the optimizer's (CyclicLR, OneCycleLR: a value right for SGD
# on a mean can diverge on a sum) or that cycle the momentum (only optimizers with one),
# and ReduceLROnPlateau, whose runs are crafted to plateau.
BY_HAND = ("CyclicLR", "OneCycleLR", "ReduceLROnPlateau")
SCHEDULE_CYCLE += [n for n in vocab.SCHEDULES if n not in SCHEDULE_CYCLE and n not in BY_HAND]
BATCH_CYCLE = [None, None, 16]

N_FULL, N_MINI = 64, 50
TRUE_W = np.array([[1.5, -2.0, 2.5]])
INTERCEPT = -2.0


def regression_data(n: int, outputs: int = 1, seed: int = 0):
    """x (n, 3) standard normal, y (n, outputs) = x @ W.T - 2 + 0.5 noise (NumPy, seeded)."""

    def build(dtype: np.dtype, path: Path) -> Data:
        rng = np.random.default_rng((seed, n, outputs))
        x = rng.standard_normal((n, 3))
        w = np.vstack([TRUE_W, -TRUE_W[:, ::-1]])[:outputs]
        y = x @ w.T + INTERCEPT + 0.5 * rng.standard_normal((n, outputs))
        return Data(x.astype(dtype), y.astype(dtype))

    return build


def classification_data(n: int, seed: int = 0):
    """x (n, 2) standard normal, y (n, 1) ~ Bernoulli(sigmoid(2 x0 - x1 + 0.5)) (NumPy, seeded)."""

    def build(dtype: np.dtype, path: Path) -> Data:
        rng = np.random.default_rng((seed, n, 2))
        x = rng.standard_normal((n, 2))
        p = 1 / (1 + np.exp(-(x @ np.array([2.0, -1.0]) + 0.5)))
        y = (rng.random(n) < p).astype(np.float64)[:, None]
        return Data(x.astype(dtype), y.astype(dtype))

    return build


CLASSES = 3


def class_data(n: int, *, probabilities: bool = False, seed: int = 0):
    """x (n, 2) standard normal; y (n,) int64 class indices drawn from softmax(x A' + c) over
    CLASSES classes, or (n, CLASSES) rows of class probabilities (softmax of a noisy score)."""

    def build(dtype: np.dtype, path: Path) -> Data:
        rng = np.random.default_rng((seed, n, CLASSES))
        x = rng.standard_normal((n, 2))
        a = np.array([[2.0, -1.0], [-1.5, 0.5], [0.0, 1.5]])
        z = x @ a.T + np.array([0.5, 0.0, -0.5])
        if probabilities:
            z = z + rng.standard_normal(z.shape)
            e = np.exp(z - z.max(1, keepdims=True))
            return Data(x.astype(dtype), (e / e.sum(1, keepdims=True)).astype(dtype))
        u = rng.random((n, 1))
        p = np.exp(z - z.max(1, keepdims=True))
        y = (u * p.sum(1, keepdims=True) > np.cumsum(p, 1)).sum(1)
        return Data(x.astype(dtype), y.astype(np.int64))  # int64: torch's class indices

    return build


def count_data(n: int, seed: int = 0):
    """x (n, 3) 0.5 standard normal, y (n, 1) ~ Poisson(exp(x @ (0.3 W).T + 0.5)) as floats."""

    def build(dtype: np.dtype, path: Path) -> Data:
        rng = np.random.default_rng((seed, n, 1))
        x = 0.5 * rng.standard_normal((n, 3))
        y = rng.poisson(np.exp(x @ (0.3 * TRUE_W).T + 0.5)).astype(np.float64)
        return Data(x.astype(dtype), y.astype(dtype))

    return build


def _data_for(loss: str, model: str, n: int, outputs: int):
    """(data builder, in_features, out_features) for the loss's targets and the model."""
    target = vocab.LOSSES[loss].target
    if target in ("classes", "probabilities"):
        return class_data(n, probabilities=target == "probabilities"), 2, CLASSES
    if target == "counts":
        return count_data(n), 3, 1
    if model == "linear":
        return regression_data(n, outputs), 3, outputs
    return classification_data(n), 2, outputs


def make(
    option: str,
    model: str,
    loss: str,
    loss_kwargs: dict,
    schedule: str | None,
    batch_size: int | None,
    dtype: str,
    *,
    seed: int,
    shuffle: bool = True,
    drop_last: bool = False,
    outputs: int = 1,
    jax_loop: str = "fit",
    schedule_kwargs: dict | None = None,
) -> Scenario:
    """One matrix scenario; its name spells out all of the above (`schedule_kwargs`
    replace some of the schedule row's example arguments: the name then says "-custom")."""
    _, optimizer, kwargs = next(o for o in OPTIONS if o[0] == option)
    n = N_MINI if batch_size else N_FULL
    epochs = 25 if batch_size else 100
    data, in_features, out_features = _data_for(loss, model, n, outputs)
    summed = loss == "sse" or loss_kwargs.get("reduction") == "sum"
    if summed and vocab.OPTIMIZERS[optimizer].family == "sgd":
        kwargs = {**kwargs, "lr": kwargs["lr"] / (batch_size or n)}  # same step as the mean
    sched, sched_kwargs = _schedule(schedule, epochs)
    sched_kwargs = {**sched_kwargs, **(schedule_kwargs or {})}
    matrices_only = vocab.OPTIMIZERS[optimizer].matrices_only  # torch's Muon: no bias
    batching = (
        "full"
        if not batch_size
        else f"mb{batch_size}"
        + ("" if shuffle else "-inorder")
        + ("-droplast" if drop_last else "")
    )
    parts = [
        option,
        model,
        loss + (f"-out{outputs}" if outputs > 1 else ""),
        (sched or "const") + ("-custom" if schedule_kwargs else ""),
        batching,
    ]
    if jax_loop != "fit":
        parts.append(jax_loop)
    if loss_kwargs.get("reduction") == "sum" or loss_kwargs.get("beta") == 0:
        parts[2] += "-" + "-".join(f"{k}{v}" for k, v in loss_kwargs.items())
    return Scenario(
        name="m-" + "-".join(parts) + ("-f32" if dtype == "float32" else "-f64"),
        source="matrix",
        data=data,
        init=TorchInit(seed, in_features, out_features, bias=not matrices_only),
        form="nn.Linear-nobias" if matrices_only else "nn.Linear",
        model=model,
        loss=loss,
        loss_kwargs=tuple(loss_kwargs.items()),
        optimizer=optimizer,
        opt_kwargs=tuple(kwargs.items()),
        schedule=sched,
        schedule_kwargs=tuple(sched_kwargs.items()),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        shuffle_seed=seed,
        drop_last=drop_last,
        dtype=dtype,
        jax_loop=jax_loop,
        note=f"matrix: {option}",
    )


EXTRA = [
    dict(
        option="sgd-momentum",
        model="linear",
        loss="mse",
        loss_kwargs={},
        schedule="StepLR",
        batch_size=16,
        dtype="float64",
        shuffle=False,
    ),
    dict(
        option="adam",
        model="logits",
        loss="bce_with_logits",
        loss_kwargs={},
        schedule=None,
        batch_size=16,
        dtype="float32",
        drop_last=True,
    ),
    dict(
        option="adam",
        model="linear",
        loss="mse",
        loss_kwargs={},
        schedule="ExponentialLR",
        batch_size=None,
        dtype="float64",
        outputs=2,
    ),
    dict(
        option="rmsprop",
        model="linear",
        loss="huber",
        loss_kwargs={"delta": 0.5},
        schedule=None,
        batch_size=16,
        dtype="float32",
        outputs=2,
    ),
    dict(
        option="sgd",
        model="linear",
        loss="mse",
        loss_kwargs={"reduction": "sum"},
        schedule="LinearLR",
        batch_size=None,
        dtype="float64",
    ),
    dict(
        option="adam-amsgrad",
        model="logistic",
        loss="bce",
        loss_kwargs={},
        schedule="StepLR",
        batch_size=16,
        dtype="float32",
        jax_loop="make_step",
    ),
    dict(
        option="rmsprop-centered",
        model="linear",
        loss="huber",
        loss_kwargs={"delta": 1.0},
        schedule="CosineAnnealingLR",
        batch_size=16,
        dtype="float64",
        jax_loop="make_step",
    ),
    dict(
        option="sgd-nesterov",
        model="linear",
        loss="smooth_l1",
        loss_kwargs={"beta": 0.0},
        schedule="CosineAnnealingLR",
        batch_size=None,
        dtype="float32",
    ),
]


# The schedules chosen by hand (`BY_HAND`): each meets two optimizers and both dtypes.
EXTRA += [
    dict(  # torch's default cycle_momentum: SGD's momentum cycles 0.9 -> 0.8 -> 0.9
        option="sgd-momentum",
        model="linear",
        loss="mse",
        loss_kwargs={},
        schedule="CyclicLR",
        batch_size=16,
        dtype="float64",
        schedule_kwargs={"cycle_momentum": True},
    ),
    dict(  # beta1 cycles with the lr
        option="adam",
        model="logistic",
        loss="bce",
        loss_kwargs={},
        schedule="CyclicLR",
        batch_size=None,
        dtype="float32",
        schedule_kwargs={"cycle_momentum": True, "base_lr": 0.005, "max_lr": 0.05},
    ),
    dict(
        option="sgd-momentum",
        model="linear",
        loss="huber",
        loss_kwargs={"delta": 1.0},
        schedule="OneCycleLR",
        batch_size=16,
        dtype="float32",
        schedule_kwargs={"cycle_momentum": True, "max_lr": 0.05},
    ),
    dict(
        option="adam",
        model="linear",
        loss="mse",
        loss_kwargs={},
        schedule="OneCycleLR",
        batch_size=None,
        dtype="float64",
        schedule_kwargs={"cycle_momentum": True, "max_lr": 0.2, "three_phase": True},
    ),
    dict(  # full batch: the metric is the epoch's loss; lr 0.5 -> several reductions
        option="sgd",
        model="linear",
        loss="mse",
        loss_kwargs={},
        schedule="ReduceLROnPlateau",
        batch_size=None,
        dtype="float64",
    ),
    dict(  # mini-batches: the metric is the mean of the epoch's 4 batch losses
        option="adam",
        model="linear",
        loss="l1",
        loss_kwargs={},
        schedule="ReduceLROnPlateau",
        batch_size=16,
        dtype="float32",
    ),
]


# Scenarios that tests name (tests/test_parity_*.py), pinned: a row added to a cycle moves
# every later (model, loss, schedule, batching) assignment and so renames the cycle's
# scenarios. Each is the scenario the cycles gave its option and dtype when it was named
# (the same seed, so the same numbers); one the cycles still produce is not repeated.
# (option, model, loss, loss kwargs, schedule, batch_size, dtype)
PINNED = [
    ("adam", "logistic", "bce", {}, "StepLR", None, "float64"),
    ("adam-amsgrad", "linear", "huber", {"delta": 1.0}, None, 16, "float64"),
    ("adamw", "linear", "sse", {}, "CosineAnnealingLR", 16, "float64"),
    ("adamw-amsgrad", "logits", "bce_with_logits", {}, "ExponentialLR", 16, "float32"),
    ("rmsprop-momentum", "logistic", "bce", {}, None, None, "float64"),
    ("rmsprop-centered-momentum-wd", "logistic", "mse", {}, "StepLR", None, "float32"),
    ("adagrad-lr_decay", "logistic", "bce", {}, "MultiStepLR", 16, "float32"),
    (
        "adagrad-weight_decay-eps",
        "logits",
        "bce_with_logits",
        {},
        "CosineAnnealingLR",
        None,
        "float32",
    ),
]


def matrix_scenarios() -> list[Scenario]:
    out = []
    for j, (option, _, _) in enumerate(OPTIONS):
        for d, dtype in enumerate(("float32", "float64")):
            model, loss, loss_kwargs = LOSS_CYCLE[(j + 3 * d) % len(LOSS_CYCLE)]
            schedule = SCHEDULE_CYCLE[(j + 2 * d) % len(SCHEDULE_CYCLE)]
            batch = BATCH_CYCLE[(j + d) % len(BATCH_CYCLE)]
            out.append(
                make(option, model, loss, loss_kwargs, schedule, batch, dtype, seed=2 * j + d)
            )
    names = {s.name for s in out}
    index = {option: j for j, (option, _, _) in enumerate(OPTIONS)}
    for option, model, loss, loss_kwargs, schedule, batch, dtype in PINNED:
        seed = 2 * index[option] + (dtype == "float64")
        pinned = make(option, model, loss, loss_kwargs, schedule, batch, dtype, seed=seed)
        if pinned.name not in names:
            out.append(pinned)
    for i, extra in enumerate(EXTRA):
        out.append(make(**extra, seed=1000 + i))
    return out
