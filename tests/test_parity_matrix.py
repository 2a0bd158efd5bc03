"""What the scenario registry claims to cover, checked: SPEC's workflows and the matrix design."""

import collections

import pytest

import parity
from parity import matrix, torch_side, vocab
from parity.forms import FORMS

ALL = parity.all_scenarios()
SEED = [s for s in ALL if s.source == "seed"]
MATRIX = [s for s in ALL if s.source == "matrix"]


def test_counts_and_unique_names():
    assert len({s.name for s in ALL}) == len(ALL)
    assert len(SEED) >= 14 * 2  # every workflow in float32 and float64
    assert len(MATRIX) >= 40


def test_every_spec_workflow_and_variant_is_there():
    seed = {s.name.rsplit("-", 1)[0]: s for s in SEED}
    for workflow in ("t1", "t2", "t3", "t4", "t5", "t6", "t7"):
        assert any(n.startswith(workflow) for n in seed), workflow
    assert {s.form for s in SEED} == set(FORMS)  # x*W+b, nn.Module, torch.mv, X@What, ...
    assert {s.update for s in SEED} == {"optim", "data", "no_grad"}
    assert {s.lesson for s in SEED} == {None, "grad-accumulation", "grad-square", "grad-sum-mv"}
    torch_losses = {s.torch_loss for s in SEED}
    for expr in (
        "torch.mean((h - y) ** 2)",  # t1, t4, t5b, t6
        "F.mse_loss",  # t2
        "nn.MSELoss()(y_pred.view_as(y), y)",  # t4
        "torch.sum((y - h) ** 2)",  # t5a
        "(d * d).sum() / d.numel()",  # t7
        "-torch.mean(y * log(h) + (1 - y) * log(1 - h))",  # t6 exercise
    ):
        assert expr in torch_losses, expr
    assert seed["t6-logistic-sigmoid-mse"].epochs == seed["t6-logistic-sigmoid-bce"].epochs == 6000
    assert seed["t7-celsius-broadcast-no-grad"].phases == ((100, 1e-5), (10000, 1e-3))
    assert seed["t1-line-optim-sgd"].epochs == 1001  # range(nb_epochs + 1)
    assert seed["t5g-real-tensors-optim-sgd-b-w"].init == {"b": [-5.0], "w": [10.0]}  # SGD([b, w])


def test_every_vocab_optimizer_option_is_a_matrix_option():
    """Adding an optimizer to parity is one vocab row: its options become matrix rows."""
    options = {(o, name) for o, name, _ in matrix.OPTIONS}
    for row in vocab.OPTIMIZERS.values():
        assert row.options, f"vocab row {row.name} has no matrix options"
        for option, _ in row.options:
            assert (option, row.name) in options
    assert {s.optimizer for s in MATRIX} == set(vocab.OPTIMIZERS)


def test_every_optimizer_option_meets_both_dtypes():
    seen = collections.defaultdict(set)
    for s in MATRIX:
        seen[s.note.removeprefix("matrix: ")].add(s.dtype)
    for option, _, _ in matrix.OPTIONS:
        assert seen[option] == {"float32", "float64"}, option


@pytest.mark.parametrize("loss", vocab.LOSSES)
def test_every_loss_meets_both_dtypes_and_several_optimizers(loss):
    rows = [s for s in MATRIX if s.loss == loss]
    assert {s.dtype for s in rows} == {"float32", "float64"}
    assert len({s.optimizer for s in rows}) >= 2


@pytest.mark.parametrize("schedule", vocab.SCHEDULES)
def test_every_schedule_meets_several_optimizers(schedule):
    rows = [s for s in MATRIX if s.schedule == schedule]
    assert len({s.optimizer for s in rows}) >= 2 and {s.dtype for s in rows} == {
        "float32",
        "float64",
    }


def test_minibatches_meet_every_optimizer_and_both_dtypes():
    rows = [s for s in MATRIX if s.batch_size]
    assert {s.optimizer for s in rows} == set(vocab.OPTIMIZERS)
    assert {s.dtype for s in rows} == {"float32", "float64"}
    assert any(not s.shuffle for s in rows) and any(s.drop_last for s in rows)


def test_every_torch_loss_expression_is_the_jaxreg_loss_it_claims():
    for s in ALL:
        if s.lesson is None:
            torch_side.torch_loss_name(s)  # raises on a mismatch


def test_both_jax_entry_points_are_compared():
    for rows in (SEED, MATRIX):
        assert {s.jax_loop for s in rows if s.lesson is None} == {"fit", "make_step"}
    assert any(s.jax_loop == "make_step" and s.batch_size and s.schedule for s in MATRIX)
