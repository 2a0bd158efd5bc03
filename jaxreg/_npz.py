"""The `.npz` container, written and read without pickle and without trusting the file.

`write` produces what `np.savez` does (a zip of `.npy` members, uncompressed). `entries`
reads every member's bytes after checking the sizes the archive declares against its
real size (so a crafted size cannot make it allocate what the file cannot back), and
each CRC; `header` parses one member's `.npy` header and checks that the data it
declares is exactly the data present; `array` then views the bytes. Every error a
damaged or crafted file can cause comes out as a `ValueError` naming the file.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from io import BytesIO
from types import MappingProxyType
from typing import Any

import numpy as np

# What a damaged or crafted archive makes `zipfile` raise (a flipped byte alone gives
# BadZipFile, NotImplementedError "zip file version", RuntimeError "encrypted", ...).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    UnicodeDecodeError,
    ValueError,
    OverflowError,
)
# What a damaged `.npy` header makes NumPy's header parser raise.
_HEADER_ERRORS = (ValueError, TypeError, OverflowError, SyntaxError, RecursionError, KeyError)
_READ_HEADER = MappingProxyType(
    {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
)


def write(f: Any, arrays: dict[str, np.ndarray]) -> None:
    """What `np.savez` writes (a zip of .npy members), without its keyword arguments
    (a leaf named "file" or "allow_pickle" would collide with them) and without pickle."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def entries(f: Any, path: str) -> dict[str, bytes]:
    """Each member's bytes by name (".npy" dropped), CRC-checked, sizes checked first.

    Raises:
      ValueError: a damaged, truncated or crafted archive (the message names `path`).
    """
    try:
        return _entries(f)
    except _ZIP_ERRORS as e:
        raise ValueError(
            f"{path}: corrupt or truncated .npz file ({e or type(e).__name__})"
        ) from None


def _entries(f: Any) -> dict[str, bytes]:
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        infos = zf.infolist()
        declared = sum(info.compress_size for info in infos)
        if declared > size:
            raise zipfile.BadZipFile(f"its entries declare {declared} bytes; it has {size}")
        entries = {}
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                raise zipfile.BadZipFile(f"entry {info.filename!r} is compressed")
            name = info.filename.removesuffix(".npy")
            if name in entries:
                raise zipfile.BadZipFile(f"entry {info.filename!r} appears twice")
            entries[name] = zf.read(info)
    return entries


def header(data: bytes, where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, Fortran order, dtype, data offset) of a `.npy` member; sizes checked."""
    fp = BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version not in _READ_HEADER:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran, dtype = _READ_HEADER[version](fp)
    except _HEADER_ERRORS as e:
        raise ValueError(f"{where} is corrupt (bad .npy header: {e})") from None
    if dtype.hasobject:
        raise ValueError(
            f"{where} holds Python objects, which only pickle can load; "
            "refusing (jaxreg files hold numeric arrays only)"
        )
    stored = len(data) - fp.tell()
    if dtype.itemsize == 0 or math.prod(shape) * dtype.itemsize != stored:
        raise ValueError(
            f"{where} is corrupt: its header declares {dtype}{list(shape)} "
            f"({math.prod(shape)} elements) but it holds {stored} bytes of data"
        )
    return shape, fortran, dtype, fp.tell()


def array(data: bytes, parsed: tuple, dtype: np.dtype | None = None) -> np.ndarray:
    """A `.npy` member's array (a copy) from its parsed `header`, read as `dtype`
    (default: the header's; same itemsize)."""
    shape, fortran, stored, offset = parsed
    arr = np.frombuffer(data, dtype or stored, math.prod(shape), offset)
    if fortran:
        return arr.reshape(shape[::-1]).transpose().copy()
    return arr.reshape(shape).copy()
