"""Data for the tutorials: a strict CSV loader, the design matrix, seeded generators.

Everything here returns plain NumPy arrays (`design_matrix` keeps jax arrays as jax
arrays). The generators use `np.random.default_rng(seed)`, so a seed gives the same data
on every machine; they reproduce the tutorials' *distributions*, not torch's random
numbers (`parity` copies one framework's data into the other when it needs the same
numbers).
"""

from __future__ import annotations

import codecs
import collections
import csv
import math
import operator
import os
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import _csvscan

# ----------------------------------------------------------------------------- CSV


def load_csv(
    path: str | os.PathLike,
    *,
    columns: Sequence[str] | None = None,
    dtype: Any = np.float32,
    rows: range | None = None,
) -> dict[str, np.ndarray]:
    """Read a numeric CSV file with a header row into 1-D arrays, one per column.

    The first non-blank line names the columns; every later non-blank line is a data row
    with exactly that many comma-separated fields. Fields may be quoted and surrounded by
    spaces. Blank lines are skipped. Line numbers in errors are 1-based lines of the file.
    Time and memory are linear in the size of the file (any number of columns).

    With `rows=range(a, b)` only data rows a..b-1 are read (what each process of a
    data-parallel run needs, `jaxreg.distributed.load_csv_rows`). The file is memory-mapped
    and its bytes scanned once with NumPy for line ends and blank lines (`count_csv_rows`);
    only the header and rows a..b-1 are decoded, split into fields and converted, in
    memory proportional to b - a. So the errors promised are those of the header and of
    rows a..b-1, with the same messages and line numbers as a whole-file load; a bad
    value, field count or byte outside them is not seen. A file holding a quote character
    (`"`) is the exception: a quoted field may span lines, so the `csv` module splits the
    whole file into fields to find the rows (malformed CSV and wrong field counts anywhere
    are reported; values outside the range are still not converted).

    Args:
      path: the file (`str` or `os.PathLike`), UTF-8 (a byte-order mark is accepted).
      columns: names to return, in this order; default: all columns, in file order.
        Columns that are not selected are not parsed (they may hold text).
      dtype: a float dtype for the arrays (float32 by default, torch's default dtype).
      rows: a `range` (step 1) of 0-based data-row indices (the header and blank lines
        are not counted); default: every row.

    Returns:
      `{name: array of shape (n_rows,)}` (`len(rows)` rows with `rows`).

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: a byte that is not UTF-8 (the message names the line and the column,
        1-based characters), an empty file, a missing header, empty or duplicate column
        names, unknown `columns` (the message lists the available ones), a row with the
        wrong number of fields, an empty, non-numeric, NaN or infinite value (the message
        names the line and the column), a value that overflows `dtype`, no data rows, or
        `rows` empty or past the file's last data row (the message gives the count).
      TypeError: a `dtype` that is not floating point, `columns` given as one string, or
        `rows` not a `range` of step 1.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"load_csv: dtype must be a float dtype, got {dtype}")
    if isinstance(columns, str):
        raise TypeError(f"load_csv: columns must be a sequence of names, e.g. ({columns!r},)")
    if rows is not None and (not isinstance(rows, range) or rows.step != 1):
        raise TypeError(
            f"load_csv: rows must be a range of step 1, e.g. range(0, 100), got {rows!r}"
        )
    path = Path(os.fspath(path))
    if rows is None:
        names, table, lines = _read_rows(
            StringIO(_decode_utf8(_read(path), path), newline=""), path
        )
    else:
        names, table, lines = _read_range(path, rows)
    wanted = names if columns is None else _check_columns(columns, names, path)
    return _to_columns(names, table, lines, wanted, dtype, path)


def count_csv_rows(path: str | os.PathLike) -> int:
    """The number of data rows of a CSV file, as `load_csv` counts them (header and blank
    lines excluded), without parsing the rows: the file is memory-mapped and its bytes
    scanned with NumPy for line ends (a file holding a `"` is split into fields by the
    `csv` module, since a quoted field may span lines). The header is read and checked.

    Raises:
      FileNotFoundError, ValueError: as `load_csv` for the file and its header.
    """
    path = Path(os.fspath(path))
    return len(_index(path)[1])


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"load_csv: no such file: {path}") from None


def _map(path: Path) -> np.ndarray:
    """The file's bytes, memory-mapped (an empty array for an empty file)."""
    try:
        if path.stat().st_size == 0:
            return np.empty(0, np.uint8)
        return np.memmap(path, np.uint8, mode="r")
    except FileNotFoundError:
        raise FileNotFoundError(f"load_csv: no such file: {path}") from None


def _index(path: Path):
    """(names, data rows' start offsets, their line numbers, the mapped bytes); for a
    file holding a quote: (names, the parsed rows, their line numbers, None)."""
    buf = _map(path)
    bom = len(codecs.BOM_UTF8) if bytes(buf[:3]) == codecs.BOM_UTF8 else 0
    lines = _csvscan.scan(buf, bom)
    if lines is None:  # quoted fields: the csv module finds the records
        body = StringIO(_decode_utf8(bytes(buf), path), newline="")
        names, table, numbers = _read_rows(body, path)
        return names, table, numbers, None
    data = lines.value.copy()
    for i in np.flatnonzero(lines.unicode & ~lines.value):  # blank once decoded?
        raw = bytes(buf[lines.starts[i] : lines.ends[i]])
        try:
            data[i] = any(f.strip() for f in next(csv.reader([raw.decode("utf-8")]), []))
        except UnicodeDecodeError:  # not blank: an error if it is read
            data[i] = True
    found = np.flatnonzero(data)
    if not len(found):
        raise ValueError(f"{path}: the file is empty; expected a header line such as 'x,y'")
    h = found[0]
    header = _decode_lines(bytes(buf[lines.starts[h] : lines.ends[h]]), path, h + 1)
    try:
        row = next(csv.reader(StringIO(header, newline=""), skipinitialspace=True))
    except csv.Error as e:
        raise ValueError(f"{path}, line {h + 1}: malformed CSV: {e}") from None
    names = _check_header(row, f"{path}, line {h + 1}")
    rows = found[1:]
    return names, lines.starts[rows], rows + 1, (buf, lines.ends[rows])


def _read_range(path: Path, rows: range) -> tuple[list[str], list[list[str]], list[int]]:
    """`_read_rows` for data rows `rows` only (see `load_csv`)."""
    names, starts, numbers, mapped = _index(path)
    n = len(starts)
    if not n:
        raise ValueError(f"{path}: there is a header ({', '.join(names)}) but no data rows")
    if not rows or rows.start < 0 or rows.stop > n:
        raise ValueError(
            f"load_csv: rows={rows!r} is not a non-empty range within the {n} data rows "
            f"of {path} (0..{n - 1})"
        )
    if mapped is None:  # quoted: starts are the parsed rows
        return names, starts[rows.start : rows.stop], numbers[rows.start : rows.stop]
    buf, ends = mapped
    a, b = rows.start, rows.stop
    first = int(numbers[a])
    text = _decode_lines(bytes(buf[starts[a] : ends[b - 1]]), path, first)
    table, lines = [], []
    reader = csv.reader(StringIO(text, newline=""), skipinitialspace=True)
    try:
        for row in reader:
            line = first + reader.line_num - 1
            if any(field.strip() for field in row):
                table.append(_check_fields(row, names, path, line))
                lines.append(line)
    except csv.Error as e:
        raise ValueError(
            f"{path}, line {first + reader.line_num - 1}: malformed CSV: {e}"
        ) from None
    return names, table, lines


def _to_columns(names, rows, lines, wanted, dtype, path) -> dict[str, np.ndarray]:
    """The selected columns of the split rows, as `dtype` arrays; errors name the line."""
    if not rows:
        raise ValueError(f"{path}: there is a header ({', '.join(names)}) but no data rows")
    index = {name: j for j, name in enumerate(names)}
    picked = [index[n] for n in wanted]
    table = _parse_table(rows, picked, path, lines, names)
    with np.errstate(over="ignore"):  # reported below, with the line
        cast = table.astype(dtype)
    bad = ~np.isfinite(cast)
    if bad.any():
        i, k = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise ValueError(
            f"{path}, line {lines[i]}, column {wanted[k]!r}: value "
            f"{rows[i][picked[k]].strip()!r} overflows {dtype}; load it with dtype=np.float64"
        )
    return {name: np.ascontiguousarray(cast[:, k]) for k, name in enumerate(wanted)}


def _decode_utf8(raw: bytes, path: Path) -> str:
    """The file's text (a leading byte-order mark dropped); a byte that is not UTF-8 is
    reported with its line and column (1-based; lines end at \\n, \\r or \\r\\n, as csv's)."""
    return _decode_lines(raw.removeprefix(codecs.BOM_UTF8), path, 1)


def _decode_lines(body: bytes, path: Path, first_line: int) -> str:
    """`body` (whole lines of the file, the first being line `first_line`) as text."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = max(body.rfind(b"\n", 0, e.start), body.rfind(b"\r", 0, e.start)) + 1
        line = len(body[:line_start].splitlines()) + first_line
        column = len(body[line_start : e.start].decode("utf-8")) + 1
        raise ValueError(
            f"{path}, line {line}, column {column}: byte 0x{body[e.start]:02x} is not "
            f"UTF-8 ({e.reason}); save the file as UTF-8"
        ) from None


def _parse_table(
    rows: list[list[str]], columns: list[int], path: Path, lines: list[int], names: list[str]
) -> np.ndarray:
    """float64 (n_rows, len(columns)) of the selected fields; the first bad one (in file
    order) raises with its line and column, and so does a NaN or inf."""
    cells = (row[j] for row in rows for j in columns)
    try:
        flat = np.fromiter(map(float, cells), np.float64, count=len(rows) * len(columns))
    except ValueError:  # find the field, for the message
        flat = np.array(
            [
                _parse(row[j], path, line, names[j])
                for row, line in zip(rows, lines, strict=True)
                for j in columns
            ]
        )
    table = flat.reshape(len(rows), len(columns))
    bad = ~np.isfinite(table)
    if bad.any():
        i, k = np.unravel_index(int(np.argmax(bad)), bad.shape)
        j = columns[k]
        _parse(rows[i][j], path, lines[i], names[j])  # raises: not finite
    return table


def _read_rows(f, path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """(column names, data rows, the rows' line numbers); blank lines are skipped."""
    reader = csv.reader(f, skipinitialspace=True)
    names: list[str] | None = None
    rows, lines = [], []
    try:
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            if names is None:
                names = _check_header(row, f"{path}, line {reader.line_num}")
                continue
            rows.append(_check_fields(row, names, path, reader.line_num))
            lines.append(reader.line_num)
    except csv.Error as e:
        raise ValueError(f"{path}, line {reader.line_num}: malformed CSV: {e}") from None
    if names is None:
        raise ValueError(f"{path}: the file is empty; expected a header line such as 'x,y'")
    return names, rows, lines


def _check_fields(row: list[str], names: list[str], path: Path, line: int) -> list[str]:
    if len(row) != len(names):
        raise ValueError(
            f"{path}, line {line}: expected {len(names)} fields "
            f"({', '.join(names)}) but found {len(row)}"
        )
    return row


def _check_header(header: list[str], where: str) -> list[str]:
    names = [h.strip() for h in header]
    if all(_is_number(n) for n in names):
        raise ValueError(
            f"{where}: the first line ({','.join(names)}) holds numbers, not column names; "
            "add a header line such as 'x,y'"
        )
    for i, n in enumerate(names):
        if not n:
            raise ValueError(f"{where}: column {i + 1} of the header has no name")
    dupes = sorted(n for n, count in collections.Counter(names).items() if count > 1)
    if dupes:
        raise ValueError(f"{where}: duplicate column name(s) {', '.join(map(repr, dupes))}")
    return names


def _check_columns(columns: Sequence[str], names: list[str], path: Path) -> list[str]:
    wanted = list(columns)
    known = set(names)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ValueError(
            f"{path}: no column(s) {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(map(repr, names))}"
        )
    dupes = sorted((c for c, n in collections.Counter(wanted).items() if n > 1), key=str)
    if dupes:
        raise ValueError(f"load_csv: columns lists {', '.join(map(repr, dupes))} more than once")
    if not wanted:
        raise ValueError("load_csv: columns is empty; pass None for all columns")
    return wanted


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _parse(field: str, path: Path, line: int, name: str) -> float:
    s = field.strip()
    where = f"{path}, line {line}, column {name!r}"
    if not s:
        raise ValueError(f"{where}: empty value")
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"{where}: {field!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{where}: value {s!r} is not finite (NaN or inf); clean or drop the row")
    return v


# ------------------------------------------------------------------- design matrix


def design_matrix(x: Any) -> Any:
    """`[1, x]`: a column of ones (the intercept) before the features.

    With it a model without bias, `X @ w` (torch: `torch.mv(X, w)` or
    `nn.Linear(1 + k, 1, bias=False)`), has `w[0]` as its intercept.

    Args:
      x: (n,) or (n, k). NumPy (or anything `np.asarray` accepts) or a jax array.

    Returns:
      (n, 1 + k), NumPy for NumPy input and jax for jax input. Float input keeps its
      dtype; integer and bool input become float32 (torch's default dtype).

    Raises:
      ValueError: `x` is not 1-D or 2-D.
      TypeError: complex `x`.
    """
    xp = jnp if isinstance(x, jax.Array) else np
    if xp is np:
        x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"design_matrix: x must have shape (n,) or (n, k), got {x.shape}")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise TypeError(f"design_matrix: x must be real, got dtype {x.dtype}")
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
    x = x.astype(dtype)
    if x.ndim == 1:
        x = x[:, None]
    return xp.concatenate([xp.ones((x.shape[0], 1), dtype), x], axis=1)


# ---------------------------------------------------------------------- generators


class MultivariateData(NamedTuple):
    """Tutorial 4's data. `k = len(true_w) - 1` features (2 by default).

    Attributes:
      x: (n, 1 + k) design matrix `[1, randn(n, k)]` (the tutorial's `X`).
      y: (n,) targets `x @ true_w + noise * randn(n)`.
      w0: (1 + k,) the tutorial's initial weights `randn(1 + k)`.
      true_w: (1 + k,) the weights the data was made with.
    """

    x: np.ndarray
    y: np.ndarray
    w0: np.ndarray
    true_w: np.ndarray


class LogisticData(NamedTuple):
    """Tutorial 6's data.

    Attributes:
      x: (n, 1) `linspace(-1, 1, n)`.
      y: (n, 1) labels 0.0 or 1.0, `bernoulli(prob)`.
      prob: (n, 1) `sigmoid(bias + slope * x)` (the tutorial's `v`).
    """

    x: np.ndarray
    y: np.ndarray
    prob: np.ndarray


class CelsiusData(NamedTuple):
    """Tutorial 7's data.

    Attributes:
      x: (n,) temperatures in Celsius, `uniform(0.5, 13.3)`.
      y: (n,) in Fahrenheit, `x * 9 / 5 + 32` computed in `dtype` (as torch does).
      w0: (1, 1) the tutorial's initial `w = randn(1, 1)`.
      b0: (1,) the tutorial's initial `b = randn(1)`.
    """

    x: np.ndarray
    y: np.ndarray
    w0: np.ndarray
    b0: np.ndarray


class LineData(NamedTuple):
    """Tutorials 1-3's data. Attributes: x (3, 1) `[[1], [2], [3]]`; y (3, 1) `slope * x`."""

    x: np.ndarray
    y: np.ndarray


def multivariate(
    n: int = 100,
    *,
    seed: int = 0,
    true_w: Sequence[float] = (1.0, 2.0, 3.0),
    noise: float = 0.5,
    dtype: Any = np.float64,
) -> MultivariateData:
    """Tutorial 4: `X = [1, randn(n, 2)]`, `y = X @ [1, 2, 3] + 0.5 * randn(n)`, `w = randn(3)`.

    Draws, in this order, from `np.random.default_rng(seed)`: the features, the noise,
    `w0`. Computed in float64, then cast to `dtype`. Shapes: see `MultivariateData`.
    """
    n, dtype = _check_n(n, "multivariate"), _float_dtype(dtype, "multivariate")
    true = np.asarray(true_w, np.float64)
    if true.ndim != 1 or true.size < 1:
        raise ValueError(f"multivariate: true_w must be a non-empty 1-D sequence, got {true_w}")
    rng = np.random.default_rng(seed)
    x = design_matrix(rng.standard_normal((n, true.size - 1)))
    y = x @ true + noise * rng.standard_normal(n)
    w0 = rng.standard_normal(true.size)
    return MultivariateData(*(a.astype(dtype) for a in (x, y, w0, true)))


def logistic(
    n: int = 2000,
    *,
    seed: int = 0,
    bias: float = -1.0,
    slope: float = 5.0,
    dtype: Any = np.float64,
) -> LogisticData:
    """Tutorial 6: `x = linspace(-1, 1, n)`, `v = sigmoid(-1 + 5x)`, `y = bernoulli(v)`.

    `y[i] = 1.0` with probability `prob[i]` (one uniform draw per sample from
    `np.random.default_rng(seed)`). Shapes: see `LogisticData`, all (n, 1).
    """
    n, dtype = _check_n(n, "logistic"), _float_dtype(dtype, "logistic")
    x = np.linspace(-1.0, 1.0, n).reshape(n, 1)
    prob = np.exp(-np.logaddexp(0.0, -(bias + slope * x)))  # sigmoid, overflow-free
    y = np.random.default_rng(seed).random((n, 1)) < prob
    return LogisticData(x.astype(dtype), y.astype(dtype), prob.astype(dtype))


def celsius(n: int = 20, *, seed: int = 0, dtype: Any = np.float32) -> CelsiusData:
    """Tutorial 7: Celsius to Fahrenheit, `x = uniform(0.5, 13.3, n)`, `y = x * 9/5 + 32`.

    The initial parameters are `w = randn(1, 1)`, `b = randn(1)`. Draws, in this order,
    from `np.random.default_rng(seed)`: x, w0, b0. `y` is computed from the `dtype` values
    of x in `dtype`, in the tutorial's order (`(x * 9) / 5 + 32`), so it is what torch
    computes from the same x. Shapes: see `CelsiusData`.
    """
    n, dtype = _check_n(n, "celsius"), _float_dtype(dtype, "celsius")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 13.3, n).astype(dtype)
    c = dtype.type
    y = x * c(9) / c(5) + c(32)
    w0 = rng.standard_normal((1, 1)).astype(dtype)
    b0 = rng.standard_normal(1).astype(dtype)
    return CelsiusData(x, y, w0, b0)


def line(slope: float = 1.0, *, dtype: Any = np.float32) -> LineData:
    """Tutorials 1-3: `x = [[1], [2], [3]]`, `y = slope * x` (`slope=2.0` for `y = 2x`).

    float32 by default, like the tutorials' `torch.FloatTensor`. Shapes: (3, 1) each.
    """
    dtype = _float_dtype(dtype, "line")
    x = np.array([[1.0], [2.0], [3.0]])
    return LineData(x.astype(dtype), (slope * x).astype(dtype))


def _check_n(n: int, fn: str) -> int:
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{fn}: n must be an int, got {n!r}") from None
    if n < 1:
        raise ValueError(f"{fn}: n must be at least 1, got {n}")
    return n


def _float_dtype(dtype: Any, fn: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"{fn}: dtype must be a float dtype, got {dtype}")
    return dtype
