"""Where the lines of a CSV file start and end, found in its bytes without parsing a field.

`scan(buf, start)` walks the bytes in blocks of `BLOCK` (NumPy, no Python loop per line)
and returns, for every physical line, its byte offsets and whether it certainly holds a
value. Lines end at `\\n`, `\\r\\n` or a lone `\\r`, as `io.StringIO(newline="")` splits them
for the `csv` module. This is only sound when no field is quoted (a quoted field may span
lines): a file holding a `"` byte is reported as such and read by the `csv` module instead.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

BLOCK = 1 << 24  # bytes a step: the temporaries are a few times this, whatever the file

# Bytes that leave a field empty once `str.strip`ped (ASCII whitespace), the separator,
# and the line ends. A line of only these is blank to `jaxreg.data.load_csv`.
_BLANK = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f,"
_QUOTE = ord('"')
# True for an ASCII byte that makes a line hold a value; bytes >= 0x80 are decided apart
# (U+00A0 and other Unicode spaces are blank once decoded).
_VALUE = np.array([b < 0x80 and b not in _BLANK for b in range(256)])
_VALUE.flags.writeable = False


class Lines(NamedTuple):
    """Per physical line (1-based line i is entry i - 1), in file order.

    Attributes:
      starts: (L,) int64 byte offset of the line's first byte.
      ends: (L,) int64 byte offset just past its line end (or the end of the file).
      value: (L,) bool, the line holds a byte that is not blank (so it is not blank).
      unicode: (L,) bool, the line holds a byte >= 0x80 (blank or not: decode to know).
    """

    starts: np.ndarray
    ends: np.ndarray
    value: np.ndarray
    unicode: np.ndarray


def scan(buf: np.ndarray, start: int = 0) -> Lines | None:
    """The lines of `buf[start:]` (a uint8 array, e.g. a `np.memmap`), or None when it
    holds a `"` byte (quoted fields: the `csv` module must find the records)."""
    n = len(buf)
    parts: list[tuple[np.ndarray, ...]] = []
    open_start, open_value, open_unicode = start, False, False
    for lo in range(start, n, BLOCK):
        hi = min(lo + BLOCK, n)
        block = np.asarray(buf[lo : min(hi + 1, n)])  # one byte more: is a \r a \r\n?
        here = block[: hi - lo]
        if (here == _QUOTE).any():
            return None
        after = np.zeros(len(here), bool)
        after[: len(block) - 1] = block[1:] == 10
        ends = np.flatnonzero((here == 10) | ((here == 13) & ~after)) + 1  # relative
        seg = np.concatenate([[0], ends[ends < len(here)]])
        value = np.logical_or.reduceat(_VALUE[here], seg)
        unicode = np.logical_or.reduceat(here >= 0x80, seg)
        value[0] |= open_value
        unicode[0] |= open_unicode
        done = len(ends)
        starts = np.concatenate([[open_start], ends[:-1] + lo]) if done else np.empty(0)
        parts.append((starts, ends + lo, value[:done], unicode[:done]))
        if len(seg) > done:  # the last line goes on into the next block
            if done:  # else it is the line that was open already
                open_start = lo + int(seg[-1])
            open_value, open_unicode = bool(value[-1]), bool(unicode[-1])
        else:
            open_start, open_value, open_unicode = hi, False, False
    if open_start < n:  # a last line without a line end
        parts.append(([open_start], [n], [open_value], [open_unicode]))
    if not parts:
        return Lines(
            np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool), np.empty(0, bool)
        )
    cat = [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(4)]
    return Lines(
        cat[0].astype(np.int64), cat[1].astype(np.int64), cat[2].astype(bool), cat[3].astype(bool)
    )
