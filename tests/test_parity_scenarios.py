"""The parity scenarios, run here (torch live, every time) and compared step by step.

The fast subset covers every way t1-t5 write their torch program (the long t6 and t7 runs
and everything else run in the full CLI run, `test_parity_cli.py`, and t7 below) and one
matrix row of every optimizer family, with mini-batches and schedules.
"""

import numpy as np
import pytest
import torch

import parity
from parity import torch_side, vocab
from parity.problem import materialize

FAST_SEED = [  # every form, update style and torch loss expression of t1-t5, both dtypes
    "t1-line-optim-sgd-f32",
    "t2-line-nn-module-f64",
    "t3-line-2x-optim-sgd-f64",
    "t3-line-2x-lesson-grad-accumulation-f32",
    "t3-line-2x-lesson-grad-2w2+5-f64",
    "t4-mv-manual-data-f64",
    "t4-mv-nn-linear-mseloss-view-as-f32",
    "t4-mv-lesson-grad-sum-mv-f32",
    "t5a-real-sum-manual-f64",
    "t5b-real-mean-manual-f32",
    "t5c-real-nn-linear-manual-f64",
    "t5e-real-nn-linear-nobias-manual-f32",
    "t5f-real-nn-linear-nobias-optim-sgd-f64",
    "t5g-real-tensors-optim-sgd-b-w-f32",
]
FAST_MATRIX = [
    "m-sgd-momentum-linear-l1-MultiStepLR-mb16-f64",
    "m-sgd-nesterov-logits-bce_with_logits-MultiStepLR-full-f32",
    "m-adam-logistic-bce-StepLR-full-f64",
    "m-adam-logits-bce_with_logits-const-mb16-droplast-f32",
    "m-adamw-linear-sse-CosineAnnealingLR-mb16-f64",
    "m-rmsprop-centered-momentum-wd-logistic-mse-StepLR-full-f32",
    "m-adagrad-lr_decay-logistic-bce-MultiStepLR-mb16-f32",
    "m-adam-linear-mse-out2-ExponentialLR-full-f64",
]


@pytest.mark.parametrize("name", FAST_SEED + FAST_MATRIX)
def test_scenario_matches_torch(name):
    res = parity.run(parity.get(name))
    assert res.torch.steps == res.jax.steps > 0
    assert res.comparison.passed, res.comparison.summary()


def test_the_torch_side_is_computed_live(monkeypatch):
    """A torch optimizer that steps 0.1% too far makes the same scenario fail: no stored numbers."""

    class OffSGD(torch.optim.SGD):
        def __init__(self, params, lr, **kw):
            super().__init__(params, lr=lr * 1.001, **kw)

    name = "t5d-real-nn-linear-optim-sgd-f64"
    assert parity.run(parity.get(name)).passed
    monkeypatch.setattr(torch.optim, "SGD", OffSGD)  # the vocab row looks its class up by name
    assert vocab.OPTIMIZERS["sgd"].torch_class() is OffSGD
    assert not parity.run(parity.get(name)).passed


def test_lessons_print_what_the_tutorials_print():
    acc = parity.run(parity.get("t3-line-2x-lesson-grad-accumulation-f64"))
    np.testing.assert_array_equal(acc.torch.params["w.grad"], 2.0 * np.arange(1, 22))
    sq = parity.run(parity.get("t3-line-2x-lesson-grad-2w2+5-f32"))
    assert sq.torch.params["w.grad"].tolist() == [8.0] and sq.torch.losses.tolist() == [13.0]
    mv = parity.run(parity.get("t4-mv-lesson-grad-sum-mv-f64"))
    x = mv.problem.data.x
    np.testing.assert_allclose(mv.torch.params["a.grad"][0], x.sum(0), rtol=1e-15)  # closed form
    np.testing.assert_allclose(mv.jax.params["a.grad"][0], x.sum(0), rtol=1e-15)


def test_celsius_compares_the_broadcast_program_honestly():
    """torch's prediction is (1, 20) against (20,) targets; the same 20 residuals, not 400."""
    res = parity.run(parity.get("t7-celsius-broadcast-no-grad-f64"))
    assert res.torch.meta["torch_pred_shape"] == (1, 20)
    assert res.problem.data.x.shape == res.problem.data.y.shape == (20,)
    assert res.torch.steps == 10100
    assert res.comparison.passed, res.comparison.summary()


def test_replayed_minibatches_are_torchs_batches():
    """The DataLoader's batches are checked bit-exactly against the order jax replays."""
    scenario = parity.get("m-adam-logits-bce_with_logits-const-mb16-droplast-f32")
    res = parity.run(scenario)
    order = res.problem.order
    assert order.shape == (25, 50)
    assert all(sorted(row) == list(range(50)) for row in order)  # a permutation per epoch
    assert len({tuple(row) for row in order}) == 25  # reshuffled every epoch
    assert res.torch.steps == 25 * 3  # drop_last: 3 full batches of 16 from 50 rows


def test_a_wrong_order_is_caught(monkeypatch):
    scenario = parity.get("m-sgd-momentum-linear-l1-MultiStepLR-mb16-f64")
    problem = materialize(scenario)
    bad = problem._replace(order=problem.order[:, ::-1].copy())
    with pytest.raises(torch_side.ReplayError, match="epoch 0 batch 0"):
        torch_side.run(scenario, bad)
