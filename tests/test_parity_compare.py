"""parity.compare: what a deviation is, relative to what, and at which step."""

import numpy as np
import pytest

from parity.compare import ParityError, compare
from parity.scenario import Trajectory
from parity.tolerances import Tolerance, default_tolerance

TOL = Tolerance("test", 1e-6, "a test bound")


def _traj(losses, **params):
    return Trajectory(
        np.asarray(losses, np.float64), {k: np.asarray(v, np.float64) for k, v in params.items()}
    )


def test_identical_trajectories_have_zero_deviation():
    t = _traj([3.0, 2.0, 1.0], w=[[1.0], [2.0], [3.0]])
    c = compare("same", t, t, TOL)
    assert c.passed and c.max_abs == 0 and c.max_rel == 0
    assert list(c.deviations) == ["loss", "w"]


def test_relative_deviation_uses_the_quantitys_scale_over_the_run():
    # w passes through zero: at step 1 torch has 0.0 and jax 1e-9. Relative to |w| at that
    # step it would be infinite; relative to max |w| over the run (2.0) it is 5e-10.
    torch = _traj([1.0, 1.0, 1.0], w=[[2.0], [0.0], [-1.0]])
    jax = _traj([1.0, 1.0, 1.0], w=[[2.0], [1e-9], [-1.0]])
    c = compare("zero-crossing", torch, jax, TOL)
    d = c.deviations["w"]
    assert d.scale == 2.0
    assert d.max_abs == pytest.approx(1e-9)
    assert d.max_rel == pytest.approx(5e-10)
    assert d.worst_step == 1
    assert c.passed


def test_worst_quantity_and_step_and_failure():
    torch = _traj([4.0, 2.0, 1.0], a=[[1.0, 10.0], [1.0, 10.0], [1.0, 10.0]])
    jax = _traj([4.0, 2.0, 1.0], a=[[1.0, 10.0], [1.0, 10.0], [1.0, 10.001]])
    c = compare("bad", torch, jax, TOL)
    assert not c.passed
    assert c.worst.name == "a" and c.worst.worst_step == 2
    assert c.max_rel == pytest.approx(1e-4)  # 0.001 / max |a| (10)
    with pytest.raises(ParityError, match=r"bad: FAIL.*worst: a at step 2"):
        c.raise_if_failed()


def test_loss_deviation_counts():
    c = compare(
        "loss", _traj([2.0, 1.0], w=[[0.0], [0.0]]), _traj([2.0, 1.001], w=[[0.0], [0.0]]), TOL
    )
    assert c.worst.name == "loss" and c.max_rel == pytest.approx(5e-4) and not c.passed


def test_all_zero_quantity_falls_back_to_absolute():
    c = compare("z", _traj([1.0], w=[[0.0]]), _traj([1.0], w=[[3e-7]]), TOL)
    assert c.deviations["w"].max_rel == pytest.approx(3e-7) and c.passed


NAN, INF = np.nan, np.inf


# (torch's w, jax's w): every pair holds a NaN or an inf on one side or both, at step 1.
# A non-finite value never compares equal, so each is an infinite deviation at that step.
NON_FINITE = {
    "NaN on both sides": ([1.0, NAN], [1.0, NAN]),
    "inf on both sides": ([1.0, INF], [1.0, INF]),
    "-inf on both sides": ([1.0, -INF], [1.0, -INF]),
    "NaN against inf": ([1.0, NAN], [1.0, INF]),
    "inf against -inf": ([1.0, INF], [1.0, -INF]),
    "NaN on the torch side only": ([1.0, NAN], [1.0, 2.0]),
    "inf on the jax side only": ([1.0, 2.0], [1.0, INF]),
}


@pytest.mark.parametrize(("torch_w", "jax_w"), NON_FINITE.values(), ids=NON_FINITE)
def test_non_finite_values_never_compare_equal(torch_w, jax_w):
    t = _traj([1.0, 0.5], w=[[v] for v in torch_w])
    j = _traj([1.0, 0.5], w=[[v] for v in jax_w])
    c = compare("diverged", t, j, TOL)
    d = c.deviations["w"]
    assert not c.passed and c.max_rel == np.inf
    assert d.abs_by_step.tolist() == [0.0, np.inf] and d.worst_step == 1
    assert "NaN or inf" in c.summary()


def test_a_nan_loss_on_both_sides_fails():
    t = _traj([1.0, NAN], w=[[1.0], [1.0]])
    c = compare("loss", t, t, TOL)
    assert not c.passed and c.worst.name == "loss"
    with pytest.raises(ParityError, match=r"worst: loss at step 1.*NaN or inf"):
        c.raise_if_failed()


def test_structural_mismatch_is_an_error_not_a_deviation():
    t = _traj([1.0, 2.0], w=[[1.0], [2.0]])
    with pytest.raises(ValueError, match="steps"):
        compare("x", t, _traj([1.0], w=[[1.0]]), TOL)
    with pytest.raises(ValueError, match="names differ"):
        compare("x", t, _traj([1.0, 2.0], v=[[1.0], [2.0]]), TOL)
    with pytest.raises(ValueError, match="shape"):
        compare("x", t, _traj([1.0, 2.0], w=[[1.0, 0.0], [2.0, 0.0]]), TOL)


def test_tolerances_are_named_and_ordered():
    f64 = default_tolerance("float64", "sgd")
    f32 = default_tolerance("float32", "sgd")
    f32a = default_tolerance("float32", "adaptive")
    assert f64.rtol < f32.rtol <= f32a.rtol < 1e-4  # all catch a 1e-4 perturbation
    assert all(t.reason for t in (f64, f32, f32a))
    with pytest.raises(ValueError, match="no tolerance"):
        default_tolerance("float16", "sgd")
