"""Save and load parameter pytrees and optimizer states as `.npz` files: atomic, no pickle.

`save_params`/`load_params` hold parameters; `save_state`/`load_state` an optimizer state
(`tx.init(params)`'s `OptState`, an `optax.chain`'s tuple, a batch of them, or any pytree
holding them, e.g. `{"params": params, "opt_state": state}` to keep both in one file):
every leaf, step counts, hyperparameters and `origin` included, bit for bit. The two
kinds of file are told apart by their metadata's `format`, so loading one with the other
function says which to use.

A file holds one NumPy array per leaf, named by the leaf's path with keys joined by "."
(`Params` -> "weight", "bias"; `{"W": w, "b": b}` -> "W", "b";
`{"layer": Params(...)}` -> "layer.weight", "layer.bias"; a bare array -> ""), the same
names `torch`'s `state_dict()` uses for the same structure. One more entry,
`"__jaxreg__"`, holds JSON metadata as a 0-d unicode array: the format version, each
leaf's name, shape and dtype in tree order (`None` leaves such as `bias=None` included,
with shape and dtype `null`), and the tree structure as text (for people; loading
rebuilds the structure from `like`).

Writing goes through `jaxreg.files.atomic_write`: a regular file is replaced atomically
(temporary file beside it, fsync, `os.replace`), keeping its permission bits; a symlink
is followed and its target written; a character device or pipe (`/dev/null`) is written
in place, never replaced; a directory, block device or socket is refused. A save killed
outright leaves a temporary file named `.<name>.jaxreg-<hex>.tmp`, which the next save
to the same path removes.

Loading parses the archive itself (zip, then each `.npy` header) and checks every size
against the file before reading: no pickle, no code run, and a damaged or crafted file
gives a `ValueError` naming the file and what is wrong, never an allocation the file
cannot back.
"""

from __future__ import annotations

import json
import os
from io import BytesIO
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import _npz, files
from jaxreg.optim import OptState, is_optimizer_state

FORMAT = "jaxreg.params"
STATE_FORMAT = "jaxreg.optstate"
VERSION = 1
_META = "__jaxreg__"
# format -> (the function that writes it, the one that reads it)
_KINDS = MappingProxyType(
    {FORMAT: ("save_params", "load_params"), STATE_FORMAT: ("save_state", "load_state")}
)


def save_params(path: str | os.PathLike, params: Any) -> None:
    """Write a pytree of arrays to `path` (exactly that name; no suffix is added).

    The write is atomic: the data goes to a temporary file in the same directory, which
    is flushed, fsync'ed and then renamed over `path` (`os.replace`). An error leaves the
    old file (or none) and no temporary file; a process killed mid-write leaves the old
    file and a temporary file that the next save to `path` removes. The file keeps the
    permission bits of the one it replaces. A symlink is followed (its target is
    written); a character device or pipe (e.g. `/dev/null`) is written directly.

    Args:
      path: destination (`str` or `os.PathLike`); its directory must exist.
      params: any pytree (`Params`, dict, list, nested) whose leaves are arrays or
        numbers (NumPy or jax) or `None`.

    Raises:
      TypeError: a leaf that is not numeric (e.g. a string or object array).
      ValueError: two leaves with the same name (e.g. `{"a.b": x, "a": {"b": y}}`), a
        leaf named `"__jaxreg__"`, a name with a NUL byte or one that is not valid
        Unicode, an empty `path`, or a `path` that is a block device, socket or other
        special file. All are checked before anything is written.
      IsADirectoryError: `path` is a directory.
      FileNotFoundError: the directory of `path` does not exist.
      PermissionError: the file or its directory is not writable.
    """
    arrays, meta = _to_arrays(params, "save_params")
    with files.atomic_write(path, who="save_params") as f:
        _npz.write(f, {_META: np.array(json.dumps(meta)), **arrays})


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
      ValueError: an empty `path`; a file that is not a `.npz` archive, one not written
        by `save_params`, a damaged, truncated or crafted one (the message names the file
        and what is wrong), an entry holding pickled objects; with `like`: a name
        missing from the file or from `like`, a shape or dtype that differs (the
        message names both).
      OSError: `path` cannot be read (e.g. a directory, no permission).
    """
    path = os.fsdecode(path)
    if not path:
        raise ValueError("load_params: the path is empty")
    saved, _ = _read(path, FORMAT)
    return saved if like is None else _like(path, saved, like, "load_params")


def save_state(path: str | os.PathLike, opt_state: Any) -> None:
    """Write an optimizer state to `path` (exactly that name), to be resumed bit for bit.

    Everything in the state is written with its dtype: the buffers, the step count
    (int32), scalars such as NAdam's `mu_product` or ASGD's `eta`, the `hyperparams`
    (the learning rate a schedule or `set_lr` reached included) and `origin` (so
    `adopt` keeps that learning rate when the run goes on with the same optimizer). A
    run continued from `load_state` computes exactly what the uninterrupted run does.

        jr.io.save_state("ckpt.npz", {"params": result.params, "opt_state": result.opt_state})
        like = {"params": params, "opt_state": tx.init(params)}
        saved = jr.io.load_state("ckpt.npz", like=like)
        jr.fit(loss_fn, tx, saved["params"], x, y, opt_state=saved["opt_state"], steps=...)

    The file is the one `save_params` writes (a `.npz` of one array per leaf, named by
    its path, e.g. `"inner.exp_avg.weight"`, `"hyperparams.lr"`), with metadata marking it
    a state and naming the optimizer of each jaxreg state in it (`AdamState`, ...), so
    `load_state` can say so when it is loaded into another optimizer's. Written
    atomically, as `save_params` writes.

    Args:
      path: destination (`str` or `os.PathLike`); its directory must exist.
      opt_state: a jaxreg `OptState`, any optax state, or a pytree holding them (and
        parameters); leaves are arrays, numbers or `None`.

    Raises:
      As `save_params`.
    """
    arrays, meta = _to_arrays(opt_state, "save_state")
    meta["format"] = STATE_FORMAT
    meta["states"] = _states(opt_state)
    with files.atomic_write(path, who="save_state") as f:
        _npz.write(f, {_META: np.array(json.dumps(meta)), **arrays})


def load_state(path: str | os.PathLike, like: Any = None) -> Any:
    """Read a file written by `save_state`.

    Args:
      path: the file (`str` or `os.PathLike`).
      like: a pytree of the saved structure, shapes and dtypes: `tx.init(params)` for
        the optimizer that saved it (or what was saved around it, e.g.
        `{"params": params, "opt_state": tx.init(params)}`); `jax.eval_shape` of that
        works too.

    Returns:
      With `like`: the saved pytree, each leaf with its saved bits (a jax array where
      `like`'s leaf is a jax array or `ShapeDtypeStruct`, a NumPy array otherwise).
      Without `like`: `{name: np.ndarray or None}` in the saved order.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: as `load_params` (a damaged or crafted file, names, shapes or dtypes
        that differ from `like`'s), and: a parameters file (`save_params`'s); a state
        of another optimizer than `like`'s (the message names both).
      OSError: `path` cannot be read.
    """
    path = os.fsdecode(path)
    if not path:
        raise ValueError("load_state: the path is empty")
    saved, meta = _read(path, STATE_FORMAT)
    if like is None:
        return saved
    ours, theirs = meta["states"], _states(like)
    if ours != theirs:
        raise ValueError(
            f"{path} holds {_optimizers(ours)}, but like holds {_optimizers(theirs)}; pass "
            "like=tx.init(params) for the optimizer (and options) that saved it"
        )
    return _like(path, saved, like, "load_state")


def _states(tree: Any) -> list[dict[str, str]]:
    """Where each jaxreg optimizer state in `tree` is, and whose it is."""
    found = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_optimizer_state)[0]
    return [
        {"at": _name(p), "optimizer": type(s.inner).__name__}
        for p, s in found
        if isinstance(s, OptState)
    ]


def _optimizers(states: list[dict[str, str]]) -> str:
    if not states:
        return "no jaxreg optimizer state"
    return ", ".join(
        f"the state of {s['optimizer']}" + (f" at {s['at']!r}" if s["at"] else "") for s in states
    )


def _like(path: str, saved: dict[str, np.ndarray | None], like: Any, who: str) -> Any:
    """`saved` in `like`'s structure, each name, shape and dtype checked against it."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(like, is_leaf=lambda v: v is None)
    expected = {_name(p): leaf for p, leaf in paths}
    if len(expected) != len(paths):
        raise ValueError(f"{who}: like has two leaves with the same name")
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
            f"{path}: the saved {'state' if who == 'load_state' else 'parameters'} do not "
            f"match like: {'; '.join(parts)}. "
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


def _name(path: tuple) -> str:
    return jax.tree_util.keystr(path, simple=True, separator=".")


def _names(names: list[str]) -> str:
    return ", ".join(map(repr, names)) if names else "nothing"


def _to_arrays(params: Any, who: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays to store, by name, and the metadata describing them."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda v: v is None)
    arrays: dict[str, np.ndarray] = {}
    leaves, seen = [], set()
    for p, leaf in paths:
        name = _name(p)
        _check_name(name, seen, who)
        seen.add(name)
        if leaf is None:
            leaves.append({"name": name, "shape": None, "dtype": None})
            continue
        arr = np.asarray(leaf)
        if arr.dtype.kind not in "biufc" and not _is_ml_dtype(arr.dtype):
            raise TypeError(
                f"{who}: leaf {name!r} has dtype {arr.dtype}; only numeric arrays can "
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


def _check_name(name: str, seen: set[str], who: str) -> None:
    """A leaf name that a zip member name and the metadata can hold, used once."""
    why = None
    if name in seen or name == _META:
        why = "is reserved" if name == _META else "names two leaves"
    elif "\0" in name:
        why = "contains a NUL byte, which a zip entry name cannot hold"
    elif not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            why = "is not valid Unicode (it has a lone surrogate)"
    if why:
        raise ValueError(f"{who}: the name {name!r} {why}; rename the key")


def _is_ml_dtype(dtype: np.dtype) -> bool:
    """bfloat16, float8_* and friends: NumPy stores them as raw bytes ("V" kind); not a
    plain void or structured dtype."""
    plain = dtype.kind != "V" or dtype.fields is not None or dtype.type is np.void
    return not plain and _ml_dtype(dtype.name) == dtype


def _ml_dtype(name: str) -> np.dtype | None:
    try:
        return np.dtype(jnp.dtype(name))
    except TypeError:
        return None


def _read(path: str, fmt: str) -> tuple[dict[str, np.ndarray | None], dict[str, Any]]:
    """`{name: array or None}` in saved order, validated against the metadata, and the
    metadata; `fmt` is the format expected (`FORMAT` or `STATE_FORMAT`)."""
    writer, reader = _KINDS[fmt]
    try:
        f = open(path, "rb")  # closed by the `with f` below
    except FileNotFoundError:
        raise FileNotFoundError(f"{reader}: no such file: {path}") from None
    with f:
        magic = f.read(4)
        if magic != b"PK\x03\x04":
            kind = " (a .npy array, not a .npz archive)" if magic == b"\x93NUM" else ""
            raise ValueError(f"{path} is not a .npz file{kind}; write it with {writer}")
        if not f.seekable():  # a pipe: zip needs to seek
            f = BytesIO(magic + f.read())
        entries = _npz.entries(f, path)
    return _decode(path, entries, fmt)


def _decode(
    path: str, entries: dict[str, bytes], fmt: str
) -> tuple[dict[str, np.ndarray | None], dict[str, Any]]:
    if _META not in entries:
        raise ValueError(
            f"{path} is an .npz archive but was not written by {_KINDS[fmt][0]} (no {_META!r} "
            f"entry; it holds {_names(list(entries))}). Read it with "
            "np.load(path, allow_pickle=False)."
        )
    meta = _parse_meta(path, entries[_META], fmt)
    leaves = meta["leaves"]
    names = [leaf["name"] for leaf in leaves if leaf["dtype"] is not None]
    if sorted(names) != sorted(n for n in entries if n != _META):
        raise ValueError(
            f"{path}: the archive's entries ({_names(list(entries))}) do not match its "
            f"metadata ({_names(names)}); the file was modified or is corrupt"
        )
    saved = {
        leaf["name"]: None if leaf["dtype"] is None else _entry(path, entries[leaf["name"]], leaf)
        for leaf in leaves
    }
    return saved, meta


def _parse_meta(path: str, data: bytes, fmt: str) -> dict[str, Any]:
    """The metadata, its leaves each checked to be `{"name": str, "shape", "dtype"}` (and
    for a state, its `states` each `{"at": str, "optimizer": str}`)."""
    where = f"{path}: the {_META!r} entry is not jaxreg metadata"
    text = _npz.array(data, _npz.header(data, f"{path}: entry {_META!r}"))
    if text.dtype.kind != "U" or text.shape != ():
        raise ValueError(f"{where} (it holds {text.dtype}{list(text.shape)}, not text)")
    try:
        meta = json.loads(str(text[()]))
    except (ValueError, RecursionError) as e:  # also: nested too deep, a 5000-digit number
        raise ValueError(f"{where} (not valid JSON: {type(e).__name__}: {e})") from None
    if isinstance(meta, dict) and meta.get("format") in _KINDS and meta["format"] != fmt:
        writer, reader = _KINDS[meta["format"]]
        what = "an optimizer state" if meta["format"] == STATE_FORMAT else "parameters"
        raise ValueError(
            f"{path} holds {what} (written by {writer}); read it with {reader}, not "
            f"{_KINDS[fmt][1]}"
        )
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ValueError(f"{where} (no format {fmt!r})")
    version = meta.get("version")
    if type(version) is not int or version < 1:
        raise ValueError(f"{where} (version {version!r} is not a positive integer)")
    if version > VERSION:
        raise ValueError(
            f"{path} uses format version {version}; this jaxreg reads up to {VERSION}. "
            "Upgrade jaxreg."
        )
    leaves = meta.get("leaves")
    if not isinstance(leaves, list):
        raise ValueError(f"{where} ('leaves' is not a list)")
    for i, leaf in enumerate(leaves):
        problem = _leaf_problem(leaf)
        if problem:
            raise ValueError(f"{where} (leaf {i}: {problem})")
    if len({leaf["name"] for leaf in leaves}) != len(leaves):
        raise ValueError(f"{where} (two leaves have the same name)")
    if fmt == STATE_FORMAT:
        states = meta.get("states")
        fields = {"at", "optimizer"}
        if not isinstance(states, list) or not all(
            isinstance(s, dict) and set(s) == fields and all(isinstance(s[k], str) for k in fields)
            for s in states
        ):
            raise ValueError(f"{where} ('states' is not a list of {{at, optimizer}} strings)")
    return meta


def _leaf_problem(leaf: Any) -> str | None:
    """What is wrong with one leaf's metadata, or None."""
    if not isinstance(leaf, dict) or set(leaf) != {"name", "shape", "dtype"}:
        return "not an object with exactly name, shape and dtype"
    if not isinstance(leaf["name"], str):
        return f"name {leaf['name']!r} is not a string"
    if leaf["dtype"] is None or leaf["shape"] is None:
        return None if leaf["dtype"] is leaf["shape"] is None else "only one of shape, dtype null"
    if not isinstance(leaf["dtype"], str):
        return f"dtype {leaf['dtype']!r} is not a string"
    shape = leaf["shape"]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        return f"shape {shape!r} is not a list of non-negative integers"
    return None


def _entry(path: str, data: bytes, leaf: dict[str, Any]) -> np.ndarray:
    """One leaf's array, its dtype and shape checked against the metadata."""
    name = leaf["name"]
    where = f"{path}: entry {name!r}"
    header = _npz.header(data, where)
    shape, dtype = header[0], header[2]
    if dtype.kind == "V" and dtype.fields is None and leaf["dtype"] != dtype.name:
        ml = _ml_dtype(leaf["dtype"])  # e.g. bfloat16, stored as raw 2-byte records
        if ml is not None and _is_ml_dtype(ml) and ml.itemsize == dtype.itemsize:
            dtype = ml
    numeric = dtype.kind in "biufc" or _is_ml_dtype(dtype)
    if list(shape) != leaf["shape"] or dtype.name != leaf["dtype"] or not numeric:
        raise ValueError(
            f"{where} is {dtype}{list(shape)} but the metadata says "
            f"{leaf['dtype']}{leaf['shape']}; the file was modified or is corrupt"
        )
    return _npz.array(data, header, dtype)
