"""parity.vocab against jaxreg and torch: every optimizer, loss and schedule has one row.

jaxreg's names are read from jaxreg itself (a public function of `jr.optim` that returns a
GradientTransformation when called with its defaults is an optimizer; a public function of
`jr.losses` taking `(pred, target)` is a loss; a public class of `jr.schedules` with
`lrs` is a schedule), so an optimizer added to jaxreg without a row here fails, and so
does a row whose jaxreg or torch name does not exist.
"""

import dataclasses
import inspect

import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

import jaxreg as jr
import parity
from parity import preflight, tolerances, vocab


def jaxreg_optimizers() -> set[str]:
    found = set()
    for name in dir(jr.optim):
        obj = getattr(jr.optim, name)
        if name.startswith("_") or isinstance(obj, type) or not callable(obj):
            continue
        params = inspect.signature(obj).parameters.values()
        if any(p.default is inspect.Parameter.empty for p in params):
            continue  # needs arguments: a helper (set_lr, get_hyperparams, inject, ...)
        if isinstance(obj(), optax.GradientTransformation):
            found.add(name)
    return found


def jaxreg_losses() -> set[str]:
    found = set()
    for name in dir(jr.losses):
        obj = getattr(jr.losses, name)
        if name.startswith("_") or not inspect.isfunction(obj):
            continue
        if not obj.__module__.startswith("jaxreg.losses"):
            continue  # an import (functools, ...), not a loss
        params = list(inspect.signature(obj).parameters)
        if len(params) >= 2 and params[1] == "target":
            found.add(name)
    return found


def jaxreg_schedules() -> set[str]:
    return {
        name
        for name in dir(jr.schedules)
        if not name.startswith("_")
        and isinstance(getattr(jr.schedules, name), type)
        and getattr(jr.schedules, name).__module__.startswith("jaxreg.schedules")
        and hasattr(getattr(jr.schedules, name), "lrs")
    }


def missing(jaxreg_names: set[str], table: dict) -> tuple[list[str], list[str]]:
    """(jaxreg names without a row, rows without a jaxreg name)."""
    return sorted(jaxreg_names - set(table)), sorted(set(table) - jaxreg_names)


@pytest.mark.parametrize(
    ("what", "found", "table"),
    [
        ("optimizer", jaxreg_optimizers, vocab.OPTIMIZERS),
        ("loss", jaxreg_losses, vocab.LOSSES),
        ("schedule", jaxreg_schedules, {**vocab.SCHEDULES, **vocab.SCHEDULE_WRAPPERS}),
    ],
)
def test_every_jaxreg_name_has_a_row_and_every_row_a_jaxreg_name(what, found, table):
    names = found()
    assert len(names) >= 5, f"found only {sorted(names)}: is the {what} discovery broken?"
    no_row, no_jaxreg = missing(names, table)
    assert not no_row, f"jaxreg {what}s without a parity.vocab row: {no_row}"
    assert not no_jaxreg, f"parity.vocab {what} rows that jaxreg does not have: {no_jaxreg}"


def test_a_forgotten_row_is_found(monkeypatch):
    """The check above has teeth: drop a row and it is reported."""
    monkeypatch.delitem(vocab.OPTIMIZERS, "adagrad")
    assert missing(jaxreg_optimizers(), vocab.OPTIMIZERS) == (["adagrad"], [])
    monkeypatch.setitem(vocab.LOSSES, "nope", vocab.LOSSES["mse"])
    assert missing(jaxreg_losses(), vocab.LOSSES) == ([], ["nope"])


def _param(dtype=torch.float64):
    return torch.zeros(1, 3, dtype=dtype, requires_grad=True)  # 2-D: torch's Muon takes no other


@pytest.mark.parametrize("row", vocab.OPTIMIZERS.values(), ids=lambda r: r.name)
def test_optimizer_row_names_every_torch_setting(row):
    """The row maps every setting torch's class has (a new torch option fails here)."""
    group = row.torch_class()([_param()], lr=0.1).param_groups[0]
    torch_keys = set(group) - {"params"} - vocab.IMPLEMENTATION_KEYS
    assert torch_keys == {k for k, _ in row.settings}
    assert vocab.torch_row(vocab.OPTIMIZERS, row.torch_class()([_param()], lr=0.1)) is row


@pytest.mark.parametrize("row", vocab.OPTIMIZERS.values(), ids=lambda r: r.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_defaults_and_options_agree_with_torch(row, dtype):
    """torch's defaults, and every option the matrix uses, pass the preflight comparison:
    both frameworks read the same keyword arguments the same way."""
    params = {"w": np.zeros((1, 3), dtype)}  # as _param: 2-D
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    for _, kwargs in ((None, {}), *row.options):
        torch_opt = row.torch_class()([_param(tdtype)], **kwargs)
        assert preflight.check_optimizer(torch_opt, row.jax()(**kwargs), params) is row


@pytest.mark.parametrize("row", vocab.OPTIMIZERS.values(), ids=lambda r: r.name)
def test_optimizer_family_has_tolerances(row):
    for dtype in ("float32", "float64"):
        assert tolerances.default_tolerance(dtype, row.family).rtol > 0


@pytest.mark.parametrize("row", vocab.LOSSES.values(), ids=lambda r: r.name)
def test_loss_row_names_torch_functions_that_exist(row):
    assert callable(getattr(F, row.torch)) and isinstance(getattr(torch.nn, row.torch_module), type)
    assert row.model in vocab.MODELS
    for option in row.options:  # both sides take the option under that name
        assert option in inspect.signature(row.jax()).parameters
        assert option in inspect.signature(getattr(F, row.torch)).parameters
    assert row.jax() is getattr(jr.losses, row.name)


def test_loss_rows_give_the_same_numbers_as_their_torch_function():
    """Each row's torch function (with its fixed reduction) equals the jaxreg loss on one
    input pair, to float64 rounding. Bound 1e-14: each side rounds each of 8 terms a few
    times (a log from its own libm for the BCE losses) and sums them, < 10 u (u = 1.1e-16)
    per side, so they are < 2.2e-15 apart; 1e-14 is 4x that and 1e10 below a wrong loss."""
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.05, 0.95, (8, 1))
    logits = rng.standard_normal((8, 3))
    targets = {
        "values": (rng.random((8, 1)) < 0.5).astype(np.float64),
        "counts": rng.poisson(2.0, (8, 1)).astype(np.float64),
        "classes": rng.integers(0, 3, 8),  # int64: torch's class indices
        "probabilities": rng.dirichlet(np.ones(3), 8),
    }
    for row in vocab.LOSSES.values():
        pred = {
            "logistic": prob,
            "softmax": logits,
            "log_softmax": logits - np.log(np.exp(logits).sum(1, keepdims=True)),
        }.get(row.model, prob * 4 - 2)
        target, kw = targets[row.target], dict(row.matrix_kwargs)
        theirs = row.torch_fn()(torch.from_numpy(pred), torch.from_numpy(target), **kw).item()
        ours = float(row.jax()(pred, target, **kw))
        np.testing.assert_allclose(ours, theirs, rtol=1e-14, err_msg=row.name)


@pytest.mark.parametrize("row", vocab.SCHEDULES.values(), ids=lambda r: r.name)
def test_schedule_row_example_is_accepted_by_both_and_compares_equal(row):
    kwargs = row.example(100)
    opt = torch.optim.SGD([_param()], lr=0.1)
    theirs = row.torch_scheduler(opt, kwargs)
    ours = row.jax()(**kwargs)
    if row.settings is None:  # torch keeps the arguments under the jaxreg fields' names
        for field in dataclasses.fields(ours):
            assert hasattr(theirs, field.name), field.name
    compared = row.jax_settings(ours)
    assert compared.keys() == row.torch_settings(theirs, dataclasses.fields(ours)).keys()
    preflight.check_schedule(theirs, ours, opt)  # raises on any difference
    assert vocab.torch_row(vocab.SCHEDULES, theirs) is row


@pytest.mark.parametrize("row", vocab.SCHEDULE_WRAPPERS.values(), ids=lambda r: r.name)
def test_schedule_wrapper_row_builds_its_class(row):
    inner = jr.schedules.StepLR(2, 0.5)
    wrapped = getattr(jr.schedules, row.builder)(inner)
    assert type(wrapped) is row.jax() and wrapped.interval == row.interval
    assert preflight.interval(wrapped) == (inner, row.interval)
    assert preflight.interval(inner) == (inner, "epoch")


@pytest.mark.parametrize("row", vocab.MODELS.values(), ids=lambda r: r.name)
def test_model_rows_exist_in_both(row):
    assert row.jax() is getattr(getattr(jr, row.module), row.function)
    z = torch.tensor([-1.0, 0.0, 2.0])
    links = {"sigmoid": torch.sigmoid(z), "log_softmax": torch.log_softmax(z, -1), None: z}
    expected = links[row.torch_link]
    assert torch.equal(row.torch_fn()(z), expected)


@pytest.mark.parametrize(
    ("field", "value"),
    [("optimizer", "yogi"), ("loss", "hinge"), ("model", "probit"), ("schedule", "WarmupLR")],
)
def test_a_scenario_accepts_only_vocab_names(field, value):
    with pytest.raises(ValueError, match=f"Scenario {field} must be one of .*; got {value!r}"):
        parity.Scenario(name="x", source="seed", data=None, init={}, **{field: value})
