"""`jaxreg.data.load_csv(..., rows=range(a, b))` and `count_csv_rows`: a row range equals
the same rows of a whole-file load, bit for bit, with the same error messages for the
header and the rows read; rows outside the range are not decoded, split or converted
(except that a file with quotes is split into fields whole, as documented)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxreg import _csvscan, data


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "data.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


# Files that exercise how rows are found: line ends (\n, \r\n, lone \r, none at the end),
# a byte-order mark, blank lines made of spaces, tabs, commas and a Unicode space
# (U+00A0, blank once decoded), spaces around values, text in an unused column, and a
# quoted field spanning two lines.
FILES = {
    "lf": "x,y\n1,2\n3,4\n5,6\n",
    "crlf-bom-blank": "\ufeff x , y \r\n\r\n1 , 2\r\n , \r\n3,4\r\n\t,\t\r\n5,6\r\n",
    "lone-cr-no-final-newline": "x,y\r1,2\r\r3,4\r5,6",
    "unicode-blank-and-text": "x,y,note\n1,2,é\n\u00a0,\u00a0,\n3,4,ü\n,,\n5,6,\u00a0a\n",
    "commas-only-lines": "\n,,\nx,y\n,\n1,2\n,\n3,4\n5,6\n,",
    "quoted-multiline": 'x,y,note\n1,2,"a\nb"\n3,4,"c, ""d"""\n\n5,6,e\n',
}


@pytest.fixture(params=[_csvscan.BLOCK, 3, 7], ids=["block-16MiB", "block-3", "block-7"])
def block(request, monkeypatch):
    """Tiny blocks put line ends, \\r\\n pairs and multi-byte characters across blocks."""
    monkeypatch.setattr(_csvscan, "BLOCK", request.param)
    return request.param


@pytest.mark.parametrize("name", FILES)
def test_every_row_range_equals_the_whole_file_sliced(tmp_path, name, block):
    path = write(tmp_path, FILES[name])
    columns = ("y", "x")
    whole = data.load_csv(path, dtype=np.float64, columns=columns)
    n = len(whole["x"])
    assert n == 3 and data.count_csv_rows(path) == n
    for a in range(n):
        for b in range(a + 1, n + 1):
            got = data.load_csv(path, dtype=np.float64, columns=columns, rows=range(a, b))
            assert list(got) == list(columns)
            for c in columns:
                np.testing.assert_array_equal(got[c], whole[c][a:b])


def test_a_large_file_over_many_blocks(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(5000, 3)).astype(np.float32)
    lines = ["a,b,c"] + [",".join(map(repr, map(float, r))) for r in table]
    path = write(tmp_path, "\r\n".join(lines) + "\r\n")
    monkeypatch.setattr(_csvscan, "BLOCK", 4096)
    assert data.count_csv_rows(path) == 5000
    got = data.load_csv(path, rows=range(1234, 4321))
    np.testing.assert_array_equal(np.stack(list(got.values()), 1), table[1234:4321])


ERRORS = [
    "",
    "\n  \n\n",
    "1,2\n3,4\n",
    "\n1.5\n",
    "x,,y\n1,2,3\n",
    "x,y,x\n1,2,3\n",
    "x,y\n",
    "x,y\n\n\n",
    "x,y\n1,2\n3\n",
    "x,y\n1,2,3\n",
    "x,y\n1,2\n3,abc\n",
    "x,y\n\n1,2\n\n3,oops\n",
    "x,y\n1,nan\n",
    "x,y\n1,2\n-inf,1\n",
    "x,y\n1,1e999\n",
    "x,y\n1,\n",
    "x,y\n1,2\n3,4e39\n",
    b"x,y\n1,\xff\n",
    b"\xef\xbb\xbfx,y\r\n1,2\r\n3,\xc3\xa94\xff\r\n",
    b"x,y\r1,2\r\xfe,1\r",
    b"x,\x80y\n1,2\n",
    b"x,y\n1,2\n\xa0\xff,\n",
    'x,y\n1,2\n"3,4\n',
]


@pytest.mark.parametrize("text", ERRORS, ids=range(len(ERRORS)))
def test_errors_in_the_rows_read_are_the_whole_file_errors(tmp_path, text):
    """Read with a range over every row, each error is the whole-file load's, word for word
    (header checks, field counts, numbers, overflow, bytes that are not UTF-8)."""
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as whole:
        data.load_csv(path)
    try:
        n = data.count_csv_rows(path)
    except ValueError as e:  # the file or its header: the same message
        assert str(e) == str(whole.value)
        return
    with pytest.raises(ValueError) as ranged:
        data.load_csv(path, rows=range(0, max(n, 1)))
    assert str(ranged.value) == str(whole.value)


@pytest.mark.parametrize(
    "bad",
    ["3", "3,4,5", "3,abc", "3,nan", "3,", "3,1e999"],
    ids=["few-fields", "many-fields", "text", "nan", "empty", "overflow"],
)
def test_a_bad_row_outside_the_range_is_not_seen(tmp_path, bad):
    path = write(tmp_path, f"x,y\n1,2\n3,4\n{bad}\n5,6\n")
    assert data.count_csv_rows(path) == 4
    got = data.load_csv(path, rows=range(0, 2), dtype=np.float32)
    np.testing.assert_array_equal(got["x"], [1, 3])
    np.testing.assert_array_equal(data.load_csv(path, rows=range(3, 4))["y"], [6])
    with pytest.raises(ValueError, match="line 4"):
        data.load_csv(path, rows=range(1, 3))


def test_a_byte_outside_the_range_is_not_decoded(tmp_path):
    path = write(tmp_path, b"x,y\n1,2\n3,\xff\n5,6\n")
    np.testing.assert_array_equal(data.load_csv(path, rows=range(0, 1))["y"], [2])
    got = data.load_csv(path, columns=("y",), rows=range(2, 3))
    np.testing.assert_array_equal(got["y"], [6])
    with pytest.raises(ValueError, match=r"line 3, column 3: byte 0xff"):
        data.load_csv(path, rows=range(1, 2))


def test_a_file_with_quotes_is_split_whole(tmp_path):
    """Quoted fields may span lines, so the csv module reads every record: a wrong field
    count anywhere is reported; a bad number outside the range is still not converted."""
    path = write(tmp_path, 'x,y,n\n1,2,"a"\n3,4\n5,6,"b"\n')
    with pytest.raises(ValueError, match="line 3: expected 3 fields"):
        data.load_csv(path, rows=range(0, 1))
    path = write(tmp_path, 'x,y,n\n1,2,"a"\n3,oops,"b"\n5,6,c\n')
    got = data.load_csv(path, columns=("y",), rows=range(2, 3))
    np.testing.assert_array_equal(got["y"], [6])


@pytest.mark.parametrize(
    ("rows", "error", "match"),
    [
        ([0, 1], TypeError, "rows must be a range of step 1"),
        (range(0, 4, 2), TypeError, "rows must be a range of step 1"),
        (range(2, 2), ValueError, r"not a non-empty range within the 4 data rows"),
        (range(3, 5), ValueError, r"within the 4 data rows of .*\(0\.\.3\)"),
        (range(-1, 2), ValueError, "within the 4 data rows"),
    ],
)
def test_bad_rows(tmp_path, rows, error, match):
    path = write(tmp_path, "x,y\n1,2\n3,4\n5,6\n7,8\n")
    with pytest.raises(error, match=match):
        data.load_csv(path, rows=rows)


def test_count_csv_rows_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        data.count_csv_rows(Path(tmp_path) / "nope.csv")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        data.load_csv(Path(tmp_path) / "nope.csv", rows=range(0, 1))
