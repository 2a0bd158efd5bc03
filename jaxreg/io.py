"""Save and load parameter pytrees as `.npz` files: atomic writes, no pickle.

A file holds one NumPy array per leaf, named by the leaf's path with keys joined by "."
(`Params` -> "weight", "bias"; `{"W": w, "b": b}` -> "W", "b";
`{"layer": Params(...)}` -> "layer.weight", "layer.bias"; a bare array -> ""), the same
names `torch`'s `state_dict()` uses for the same structure. One more entry,
`"__jaxreg__"`, holds JSON metadata as a 0-d unicode array: the format version, each
leaf's name, shape and dtype in tree order (`None` leaves such as `bias=None` included,
with shape and dtype `null`), and the tree structure as text (for people; loading
rebuilds the structure from `like`).

Files are read with `np.load(..., allow_pickle=False)`: loading never runs code.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "jaxreg.params"
VERSION = 1
_META = "__jaxreg__"


def save_params(path: str | os.PathLike, params: Any) -> None:
    """Write a pytree of arrays to `path` (exactly that name; no suffix is added).

    The write is atomic: the data goes to a temporary file in the same directory, which
    is flushed, fsync'ed and then renamed over `path` (`os.replace`). A crash or an error
    leaves either the old file or the new one, never a partial file, and no temporary
    file behind.

    Args:
      path: destination (`str` or `os.PathLike`); its directory must exist.
      params: any pytree (`Params`, dict, list, nested) whose leaves are arrays or
        numbers (NumPy or jax) or `None`.

    Raises:
      TypeError: a leaf that is not numeric (e.g. a string or object array).
      ValueError: two leaves with the same name (e.g. `{"a.b": x, "a": {"b": y}}`), or a
        leaf named `"__jaxreg__"`.
      FileNotFoundError: the directory of `path` does not exist.
    """
    path = Path(os.fspath(path))
    arrays, meta = _to_arrays(params)
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"save_params: directory {directory} does not exist")
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # O_EXCL: never reuse an existing file; mode 0o666 is narrowed by the umask as usual.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with open(fd, "wb") as f:
            _write_npz(f, {_META: np.array(json.dumps(meta)), **arrays})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def load_params(path: str | os.PathLike, like: Any = None) -> Any:
    """Read a file written by `save_params`.

    Args:
      path: the file (`str` or `os.PathLike`).
      like: optional pytree with the expected structure, shapes and dtypes (e.g. the
        output of `jaxreg.linear.zeros(...)`, or `jax.ShapeDtypeStruct` leaves).

    Returns:
      Without `like`: `{name: np.ndarray or None}` in the saved order. With `like`: a
      pytree of the same structure; a leaf is a jax array where `like`'s leaf is a jax
      array or `ShapeDtypeStruct`, a NumPy array otherwise.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: not a `.npz` archive, one not written by `save_params`, an entry holding
        pickled objects; with `like`: a name missing from the file or from `like`, a
        shape or dtype that differs (the message names both).
    """
    path = Path(os.fspath(path))
    saved = _read(path)
    if like is None:
        return saved

    paths, treedef = jax.tree_util.tree_flatten_with_path(like, is_leaf=lambda v: v is None)
    expected = {_name(p): leaf for p, leaf in paths}
    if len(expected) != len(paths):
        raise ValueError("load_params: like has two leaves with the same name")
    arrays = {n: a for n, a in saved.items() if a is not None}
    missing = [n for n, v in expected.items() if v is not None and n not in arrays]
    extra = [n for n in arrays if n not in expected or expected[n] is None]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"like has {_names(missing)} but the file does not")
        if extra:
            parts.append(f"the file has {_names(extra)} but like does not")
        raise ValueError(
            f"{path}: the saved parameters do not match like: {'; '.join(parts)}. "
            f"The file holds {_names(list(arrays))}."
        )
    leaves = []
    for name, want in expected.items():
        if want is None:
            leaves.append(None)
            continue
        arr = arrays[name]
        want_shape = tuple(np.shape(want))
        want_dtype = np.dtype(want.dtype if hasattr(want, "dtype") else np.result_type(want))
        if arr.shape != want_shape:
            raise ValueError(
                f"{path}: {name!r} has shape {arr.shape} in the file but like expects {want_shape}"
            )
        if arr.dtype != want_dtype:
            raise ValueError(
                f"{path}: {name!r} has dtype {arr.dtype} in the file but like expects "
                f"{want_dtype}; load without like (or with a like of dtype {arr.dtype}) "
                "and cast with .astype if you mean to convert"
            )
        is_jax = isinstance(want, jax.Array | jax.ShapeDtypeStruct)
        leaves.append(jnp.asarray(arr) if is_jax else arr)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _write_npz(f: Any, arrays: dict[str, np.ndarray]) -> None:
    """What `np.savez` writes (a zip of .npy members), without its keyword arguments
    (a leaf named "file" or "allow_pickle" would collide with them) and without pickle."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _name(path: tuple) -> str:
    return jax.tree_util.keystr(path, simple=True, separator=".")


def _names(names: list[str]) -> str:
    return ", ".join(map(repr, names)) if names else "nothing"


def _to_arrays(params: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays to store, by name, and the metadata describing them."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda v: v is None)
    arrays: dict[str, np.ndarray] = {}
    leaves, seen = [], set()
    for p, leaf in paths:
        name = _name(p)
        if name in seen or name == _META:
            why = "is reserved" if name == _META else "names two leaves"
            raise ValueError(f"save_params: the name {name!r} {why}; rename the key")
        seen.add(name)
        if leaf is None:
            leaves.append({"name": name, "shape": None, "dtype": None})
            continue
        arr = np.asarray(leaf)
        if arr.dtype.kind not in "biufc" and not _is_ml_dtype(arr.dtype):
            raise TypeError(
                f"save_params: leaf {name!r} has dtype {arr.dtype}; only numeric arrays can "
                "be saved (no pickle)"
            )
        arrays[name] = arr
        leaves.append({"name": name, "shape": list(arr.shape), "dtype": arr.dtype.name})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "leaves": leaves,
        "treedef": str(treedef),
    }
    return arrays, meta


def _is_ml_dtype(dtype: np.dtype) -> bool:
    """bfloat16, float8_* and friends: NumPy stores them as raw bytes ("V" kind)."""
    return dtype.kind == "V" and dtype.fields is None and _ml_dtype(dtype.name) == dtype


def _ml_dtype(name: str) -> np.dtype | None:
    try:
        return np.dtype(jnp.dtype(name))
    except TypeError:
        return None


def _read(path: Path) -> dict[str, np.ndarray | None]:
    """`{name: array or None}` in saved order, validated against the metadata."""
    try:
        f = open(path, "rb")  # closed by the `with f` below
    except FileNotFoundError:
        raise FileNotFoundError(f"load_params: no such file: {path}") from None
    with f:
        magic = f.read(4)
        if magic != b"PK\x03\x04":
            kind = " (a .npy array, not a .npz archive)" if magic == b"\x93NUM" else ""
            raise ValueError(f"{path} is not a .npz file{kind}; write it with save_params")
        f.seek(0)
        try:
            with np.load(f, allow_pickle=False) as npz:
                return _read_npz(path, npz)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise ValueError(f"{path}: corrupt or truncated .npz file ({e})") from None


def _read_npz(path: Path, npz: Any) -> dict[str, np.ndarray | None]:
    files = list(npz.files)
    if _META not in files:
        raise ValueError(
            f"{path} is an .npz archive but was not written by save_params (no {_META!r} "
            f"entry; it holds {_names(files)}). Read it with np.load(path, allow_pickle=False)."
        )
    meta = _parse_meta(path, npz[_META])
    names = [leaf["name"] for leaf in meta["leaves"] if leaf["dtype"] is not None]
    if sorted(names) != sorted(n for n in files if n != _META):
        raise ValueError(
            f"{path}: the archive's entries ({_names(files)}) do not match its metadata "
            f"({_names(names)}); the file was modified or is corrupt"
        )
    return {
        leaf["name"]: None if leaf["dtype"] is None else _entry(path, npz, leaf)
        for leaf in meta["leaves"]
    }


def _parse_meta(path: Path, entry: np.ndarray) -> dict[str, Any]:
    bad = ValueError(f"{path}: the {_META!r} entry is not jaxreg metadata")
    try:
        meta = json.loads(str(entry[()]))
        if meta["format"] != FORMAT or not isinstance(meta["version"], int):
            raise bad
        if meta["version"] > VERSION:
            raise ValueError(
                f"{path} uses format version {meta['version']}; this jaxreg reads up to "
                f"{VERSION}. Upgrade jaxreg."
            )
        if not all(set(leaf) == {"name", "shape", "dtype"} for leaf in meta["leaves"]):
            raise bad
    except (TypeError, KeyError, IndexError, json.JSONDecodeError):
        raise bad from None
    return meta


def _entry(path: Path, npz: Any, leaf: dict[str, Any]) -> np.ndarray:
    name = leaf["name"]
    try:
        arr = npz[name]
    except ValueError as e:
        if "pickle" not in str(e):
            raise ValueError(f"{path}: entry {name!r} is corrupt ({e})") from None
        raise ValueError(
            f"{path}: entry {name!r} holds Python objects, which only pickle can load; "
            "refusing (jaxreg files hold numeric arrays only)"
        ) from None
    if arr.dtype.kind == "V" and leaf["dtype"] != arr.dtype.name:
        ml = _ml_dtype(leaf["dtype"])  # e.g. bfloat16, stored as raw 2-byte records
        if ml is not None and ml.itemsize == arr.dtype.itemsize:
            arr = arr.view(ml)
    if list(arr.shape) != leaf["shape"] or arr.dtype.name != leaf["dtype"]:
        raise ValueError(
            f"{path}: entry {name!r} is {arr.dtype}{list(arr.shape)} but the metadata says "
            f"{leaf['dtype']}{leaf['shape']}; the file was modified or is corrupt"
        )
    return arr


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
