"""jaxreg.data: the CSV loader, the design matrix and the tutorials' generators."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import data

REGRESSION_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "regression.csv"


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


# ------------------------------------------------------------------------ load_csv


@pytest.mark.parametrize("as_str", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_regression_csv(as_str, dtype):
    path = str(REGRESSION_CSV) if as_str else REGRESSION_CSV
    cols = data.load_csv(path, dtype=dtype)
    assert list(cols) == ["x", "y"]
    # np.loadtxt is an independent parser; both round the decimal text to nearest.
    ref = np.loadtxt(REGRESSION_CSV, delimiter=",", skiprows=1, dtype=np.float64).astype(dtype)
    for j, name in enumerate(["x", "y"]):
        assert cols[name].shape == (100,)
        assert cols[name].dtype == dtype
        np.testing.assert_array_equal(cols[name], ref[:, j])


def test_load_csv_selects_columns_in_the_requested_order():
    cols = data.load_csv(REGRESSION_CSV, columns=("y", "x"))
    assert list(cols) == ["y", "x"]
    assert list(data.load_csv(REGRESSION_CSV, columns=["y"])) == ["y"]


def test_load_csv_accepts_quotes_spaces_bom_crlf_blank_lines_and_unused_text(tmp_path):
    text = '\ufeff x , "y",label\r\n\r\n 1.5 ,"-2e3",a\r\n2,3,"b, c"\r\n\r\n'
    cols = data.load_csv(write(tmp_path, text), columns=("x", "y"), dtype=np.float64)
    np.testing.assert_array_equal(cols["x"], [1.5, 2.0])
    np.testing.assert_array_equal(cols["y"], [-2000.0, 3.0])


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param("", ["empty"], id="empty-file"),
        pytest.param("\n  \n\n", ["empty"], id="only-blank-lines"),
        pytest.param("1,2\n3,4\n", ["line 1", "header"], id="no-header"),
        pytest.param("\n1.5\n", ["line 2", "header"], id="no-header-after-blank"),
        pytest.param("x,,y\n1,2,3\n", ["line 1", "column 2", "no name"], id="empty-name"),
        pytest.param("x,y,x\n1,2,3\n", ["line 1", "duplicate", "'x'"], id="duplicate-name"),
        pytest.param("x,y\n", ["no data rows"], id="header-only"),
        pytest.param("x,y\n\n\n", ["no data rows"], id="header-and-blank-lines"),
        pytest.param("x,y\n1,2\n3\n", ["line 3", "expected 2", "found 1"], id="too-few"),
        pytest.param("x,y\n1,2,3\n", ["line 2", "expected 2", "found 3"], id="too-many"),
        pytest.param("x,y\n1,2\n3,abc\n", ["line 3", "'y'", "'abc'", "not a number"], id="text"),
        pytest.param("x,y\n\n1,2\n\n3,oops\n", ["line 5", "'y'", "'oops'"], id="blank-lines"),
        pytest.param("x,y\n1,nan\n", ["line 2", "'y'", "'nan'", "not finite"], id="nan"),
        pytest.param("x,y\n1,2\n-inf,1\n", ["line 3", "'x'", "not finite"], id="inf"),
        pytest.param("x,y\n1,1e999\n", ["line 2", "'y'", "not finite"], id="float64-overflow"),
        pytest.param("x,y\n1,\n", ["line 2", "'y'", "empty value"], id="empty-value"),
        pytest.param("x,y\n1,2\n3,4e39\n", ["line 3", "'y'", "overflows float32"], id="f32"),
        pytest.param(b"x,y\n1,\xff\n", ["line 2", "column 3", "0xff", "UTF-8"], id="binary"),
        pytest.param(
            b"\xef\xbb\xbfx,y\r\n1,2\r\n3,\xc3\xa94\xff\r\n",  # BOM, CRLF, an "é" before
            ["line 3", "column 5", "0xff", "not UTF-8"],
            id="binary-after-bom-crlf-and-a-two-byte-character",
        ),
        pytest.param(b"x,y\r1,2\r\xfe,1\r", ["line 3", "column 1", "0xfe"], id="binary-cr-lines"),
        pytest.param(b"x,\x80y\n1,2\n", ["line 1", "column 3", "0x80"], id="binary-header"),
        pytest.param(
            "x,y\n" + "1,2\n" * 3 + "1,\n", ["line 5", "'y'", "empty value"], id="empty-late"
        ),
    ],
)
def test_load_csv_errors_name_the_line_and_column(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        data.load_csv(path)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert str(path) in message


@contextlib.contextmanager
def deadline(seconds):
    """Fail (rather than hang) if the block runs longer than `seconds` (POSIX timer)."""

    def expire(signum, frame):
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# 200,000 columns: linear work is ~4e5 field parses (~0.5 s here); work quadratic in the
# columns (a `names.count(n)` or `names.index(n)` per column) is ~4e10 string
# comparisons, minutes (20,000 columns took 8 s before the fix). 60 s separates them
# by two orders of magnitude either way, so load does not make this flaky.
WIDE_COLUMNS = 200_000
WIDE_DEADLINE_S = 60


@pytest.mark.parametrize("selection", ["all", "reversed"])
def test_load_csv_is_linear_in_the_number_of_columns(tmp_path, selection):
    names = [f"c{j}" for j in range(WIDE_COLUMNS)]
    rows = [
        ",".join(names),
        ",".join(map(str, range(WIDE_COLUMNS))),
        ",".join(["-1.5"] * WIDE_COLUMNS),
    ]
    path = write(tmp_path, "\n".join(rows) + "\n")
    columns = None if selection == "all" else names[::-1]
    with deadline(WIDE_DEADLINE_S):
        cols = data.load_csv(path, columns=columns, dtype=np.float64)
    assert list(cols) == (names if columns is None else columns)
    for j in (0, 1, WIDE_COLUMNS // 2, WIDE_COLUMNS - 1):
        np.testing.assert_array_equal(cols[f"c{j}"], [j, -1.5])


def test_load_csv_float32_overflow_loads_as_float64(tmp_path):
    cols = data.load_csv(write(tmp_path, "x\n4e39\n"), dtype=np.float64)
    np.testing.assert_array_equal(cols["x"], [4e39])


def test_load_csv_unknown_column_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"no column\(s\) 'z'; available: 'x', 'y'"):
        data.load_csv(REGRESSION_CSV, columns=("x", "z"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"columns": "x"}, TypeError, "sequence of names"),
        ({"columns": ("x", "x")}, ValueError, "more than once"),
        ({"columns": ()}, ValueError, "columns is empty"),
        ({"dtype": np.int32}, TypeError, "float dtype"),
    ],
)
def test_load_csv_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        data.load_csv(REGRESSION_CSV, **kwargs)


def test_load_csv_missing_file(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        data.load_csv(missing)


# ------------------------------------------------------------------- design_matrix


@pytest.mark.parametrize(
    ("x", "dtype"),
    [
        (np.array([1.0, 2.0, 3.0], np.float32), np.float32),
        (np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), np.float64),
        (np.array([1, 2, 3]), np.float32),
        (np.array([True, False, True]), np.float32),
        ([1.0, 2.0, 3.0], np.float64),
    ],
)
def test_design_matrix_numpy(x, dtype):
    X = data.design_matrix(x)
    xs = np.asarray(x, np.float64).reshape(3, -1)
    assert isinstance(X, np.ndarray)
    assert X.shape == (3, 1 + xs.shape[1])
    assert X.dtype == dtype
    np.testing.assert_array_equal(X[:, 0], 1.0)
    np.testing.assert_array_equal(X[:, 1:], xs)


@pytest.mark.parametrize(
    ("dtype", "out_dtype"),
    [(jnp.float32, jnp.float32), (jnp.float64, jnp.float64), (jnp.int32, jnp.float32)],
)
@pytest.mark.parametrize("jit", [False, True])
def test_design_matrix_jax(dtype, out_dtype, jit):
    x = jnp.arange(8, dtype=dtype).reshape(4, 2)
    fn = jax.jit(data.design_matrix) if jit else data.design_matrix
    X = fn(x)
    assert isinstance(X, jax.Array)
    assert X.shape == (4, 3)
    assert X.dtype == out_dtype
    np.testing.assert_array_equal(np.asarray(X), np.c_[np.ones(4), np.arange(8).reshape(4, 2)])


def test_design_matrix_of_no_rows_is_empty():
    assert data.design_matrix(np.zeros((0, 2))).shape == (0, 3)


@pytest.mark.parametrize(
    ("x", "error"),
    [
        (np.float64(1.0), ValueError),
        (np.zeros((2, 2, 2)), ValueError),
        (np.ones(3, complex), TypeError),
    ],
)
def test_design_matrix_rejects(x, error):
    with pytest.raises(error):
        data.design_matrix(x)


# ---------------------------------------------------------------------- generators

GENERATORS = {
    "multivariate": data.multivariate,
    "logistic": data.logistic,
    "celsius": data.celsius,
}


@pytest.mark.parametrize("name", GENERATORS)
def test_generators_are_deterministic_by_seed(name):
    gen = GENERATORS[name]
    a, b, c = gen(seed=1), gen(seed=1), gen(seed=2)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    # y is random in every generator (celsius: through x).
    assert not np.array_equal(a.y, c.y)


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("n", [0, -3])
def test_generators_reject_bad_n(name, n):
    with pytest.raises(ValueError, match="n must be at least 1"):
        GENERATORS[name](n)


@pytest.mark.parametrize("gen", [*GENERATORS.values(), data.line])
def test_generators_reject_integer_dtype(gen):
    with pytest.raises(TypeError, match="float dtype"):
        gen(dtype=np.int64)


def test_generators_reject_non_integer_n():
    with pytest.raises(TypeError, match="n must be an int"):
        data.multivariate(2.5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_multivariate_shapes_and_dtypes(dtype):
    d = data.multivariate(dtype=dtype)
    assert d.x.shape == (100, 3) and d.y.shape == (100,)
    assert d.w0.shape == (3,) and d.true_w.shape == (3,)
    assert {a.dtype for a in d} == {np.dtype(dtype)}
    np.testing.assert_array_equal(d.x[:, 0], 1.0)
    np.testing.assert_array_equal(d.true_w, [1.0, 2.0, 3.0])


def test_multivariate_without_noise_is_exact():
    d = data.multivariate(50, noise=0.0, true_w=(0.5, -1.0, 2.0, 4.0))
    assert d.x.shape == (50, 4)
    np.testing.assert_allclose(d.y, d.x @ d.true_w, rtol=0, atol=1e-14)


def test_multivariate_statistics():
    n = 10_000
    d = data.multivariate(n, seed=3)
    r = d.y - d.x @ d.true_w
    # r ~ N(0, 0.5^2): the mean has standard error 0.5/sqrt(n) = 0.005 and the sample std
    # about 0.5/sqrt(2n) = 0.0035; the bounds are ~5 standard errors.
    assert abs(r.mean()) < 0.025
    assert abs(r.std() - 0.5) < 0.02
    # The features are standard normal and independent of each other.
    np.testing.assert_allclose(d.x[:, 1:].std(0), 1.0, atol=0.05)
    assert abs(np.corrcoef(d.x[:, 1], d.x[:, 2])[0, 1]) < 0.05


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logistic_shapes_values_and_statistics(dtype):
    d = data.logistic(dtype=dtype)
    assert d.x.shape == d.y.shape == d.prob.shape == (2000, 1)
    assert {a.dtype for a in d} == {np.dtype(dtype)}
    assert d.x[0, 0] == -1.0 and d.x[-1, 0] == 1.0
    assert set(np.unique(d.y)) == {0.0, 1.0}
    x = np.linspace(-1, 1, 2000).reshape(2000, 1)
    np.testing.assert_allclose(d.prob, 1 / (1 + np.exp(1 - 5 * x)), rtol=1e-6)
    # E[y] = E[prob]; the mean of 2000 Bernoullis has standard error <= 0.5/sqrt(2000)
    # = 0.011, the bound is ~5 of them. Same per half of the axis (1000 samples each).
    assert abs(d.y.mean() - d.prob.mean()) < 0.06
    assert abs(d.y[:1000].mean() - d.prob[:1000].mean()) < 0.08
    assert abs(d.y[1000:].mean() - d.prob[1000:].mean()) < 0.08


def test_logistic_options():
    d = data.logistic(5, bias=0.0, slope=0.0)
    np.testing.assert_array_equal(d.prob, 0.5)
    np.testing.assert_array_equal(data.logistic(200, bias=50.0).y, 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_celsius(dtype):
    d = data.celsius(dtype=dtype)
    assert d.x.shape == d.y.shape == (20,)
    assert d.w0.shape == (1, 1) and d.b0.shape == (1,)
    assert {a.dtype for a in d} == {np.dtype(dtype)}
    assert ((d.x >= 0.5) & (d.x < 13.3)).all()
    np.testing.assert_allclose(d.y, d.x.astype(np.float64) * 1.8 + 32, rtol=1e-6)


def test_celsius_targets_match_torch_bitwise():
    import torch

    d = data.celsius(n=1000, seed=5)
    expected = torch.from_numpy(d.x) * 9 / 5 + 32
    np.testing.assert_array_equal(d.y, expected.numpy())


@pytest.mark.parametrize("slope", [1.0, 2.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_line(slope, dtype):
    d = data.line(slope, dtype=dtype)
    assert d.x.shape == d.y.shape == (3, 1)
    assert d.x.dtype == d.y.dtype == dtype
    np.testing.assert_array_equal(d.x, [[1.0], [2.0], [3.0]])
    np.testing.assert_array_equal(d.y, [[slope], [2 * slope], [3 * slope]])
