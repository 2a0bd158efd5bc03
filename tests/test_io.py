"""jaxreg.io: round trips, atomic writes, no pickle, clear errors."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import io
from jaxreg.linear import Params

W = np.arange(6, dtype=np.float32).reshape(2, 3)
B = np.array([0.5, -1.5], np.float32)

TREES = {
    "params": Params(jnp.asarray(W), jnp.asarray(B)),
    "params-no-bias": Params(jnp.asarray(W), None),
    "numpy-float64": Params(W.astype(np.float64), B.astype(np.float64)),
    "dict": {"W": jnp.asarray(W), "b": jnp.asarray(B)},
    "nested": {"layer": Params(W, B), "scale": np.float32(2.0), "steps": [np.arange(3)]},
    "bfloat16": {"w": jnp.asarray(W, jnp.bfloat16)},
    "bare-array": jnp.asarray(B),
}
NAMES = {
    "params": ["weight", "bias"],
    "params-no-bias": ["weight", "bias"],
    "numpy-float64": ["weight", "bias"],
    "dict": ["W", "b"],
    "nested": ["layer.weight", "layer.bias", "scale", "steps.0"],
    "bfloat16": ["w"],
    "bare-array": [""],
}


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def assert_trees_equal(got, want):
    got_leaves, got_def = jax.tree_util.tree_flatten(got, is_leaf=lambda v: v is None)
    want_leaves, want_def = jax.tree_util.tree_flatten(want, is_leaf=lambda v: v is None)
    assert got_def == want_def
    for g, w in zip(got_leaves, want_leaves, strict=True):
        if w is None:
            assert g is None
            continue
        # A jax leaf in `like` gives a jax array back, anything else a NumPy array.
        assert isinstance(g, jax.Array if isinstance(w, jax.Array) else np.ndarray)
        assert g.dtype == np.asarray(w).dtype
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize("name", TREES)
def test_round_trip_with_like(tmp_path, name):
    path = tmp_path / "p.npz"
    io.save_params(path, TREES[name])
    assert_trees_equal(io.load_params(path, like=TREES[name]), TREES[name])
    assert files_in(tmp_path) == ["p.npz"]


@pytest.mark.parametrize("name", TREES)
def test_round_trip_without_like_gives_names_in_tree_order(tmp_path, name):
    path = str(tmp_path / "p.npz")
    io.save_params(path, TREES[name])
    loaded = io.load_params(path)
    assert list(loaded) == NAMES[name]
    leaves = jax.tree_util.tree_leaves(TREES[name], is_leaf=lambda v: v is None)
    for got, want in zip(loaded.values(), leaves, strict=True):
        if want is None:
            assert got is None
        else:
            assert isinstance(got, np.ndarray)
            assert got.dtype == np.asarray(want).dtype
            np.testing.assert_array_equal(got, np.asarray(want))


def test_file_is_a_plain_npz_with_json_metadata(tmp_path):
    path = tmp_path / "p.npz"
    io.save_params(path, TREES["params-no-bias"])
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["__jaxreg__", "weight"]
        np.testing.assert_array_equal(npz["weight"], W)
        meta = json.loads(str(npz["__jaxreg__"][()]))
    assert meta["format"] == "jaxreg.params" and meta["version"] == 1
    assert meta["leaves"] == [
        {"name": "weight", "shape": [2, 3], "dtype": "float32"},
        {"name": "bias", "shape": None, "dtype": None},
    ]


def test_like_of_shape_dtype_structs_gives_jax_arrays(tmp_path):
    path = tmp_path / "p.npz"
    io.save_params(path, Params(W, B))
    like = jax.eval_shape(lambda: Params(jnp.zeros((2, 3), jnp.float32), jnp.zeros(2)))
    like = like._replace(bias=jax.ShapeDtypeStruct((2,), jnp.float32))
    got = io.load_params(path, like=like)
    assert isinstance(got.weight, jax.Array) and isinstance(got.bias, jax.Array)
    np.testing.assert_array_equal(got.weight, W)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_saved_file_has_ordinary_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    io.save_params(tmp_path / "p.npz", TREES["dict"])
    assert (tmp_path / "p.npz").stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------------ atomicity


REAL_WRITE_ARRAY = np.lib.format.write_array


def write_then_fail(error):
    """A `write_array` that writes the first array, starts the second, then raises."""
    calls = []

    def write_array(fp, array, *args, **kwargs):
        calls.append(array)
        if len(calls) == 1:
            return REAL_WRITE_ARRAY(fp, array, *args, **kwargs)
        fp.write(b"\x93NUMPY half an array")
        raise error

    return write_array


def failing(error):
    def fail(*args, **kwargs):
        raise error

    return fail


# name -> (module, attribute, a factory for the fake, the error save_params lets through)
FAILURES = {
    "write-midway": (
        np.lib.format,
        "write_array",
        lambda: write_then_fail(OSError("full")),
        OSError,
    ),
    "interrupted": (
        np.lib.format,
        "write_array",
        lambda: write_then_fail(KeyboardInterrupt()),
        KeyboardInterrupt,
    ),
    "fsync": (os, "fsync", lambda: failing(OSError("fsync failed")), OSError),
    "replace": (os, "replace", lambda: failing(PermissionError("read-only")), PermissionError),
}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("existing", [True, False])
def test_failed_save_leaves_old_file_and_no_temp_file(tmp_path, monkeypatch, failure, existing):
    path = tmp_path / "p.npz"
    old = Params(W, B)
    if existing:
        io.save_params(path, old)
        before = path.read_bytes()
    module, name, make_fake, error = FAILURES[failure]
    monkeypatch.setattr(module, name, make_fake())
    with pytest.raises(error):
        io.save_params(path, Params(W + 1, B + 1))
    monkeypatch.undo()
    if existing:
        assert files_in(tmp_path) == ["p.npz"]
        assert path.read_bytes() == before
        assert_trees_equal(io.load_params(path, like=old), old)
    else:
        assert files_in(tmp_path) == []


def test_names_that_are_np_savez_keywords_are_fine(tmp_path):
    tree = {"file": W, "allow_pickle": B, "args": [W]}
    io.save_params(tmp_path / "p.npz", tree)
    assert_trees_equal(io.load_params(tmp_path / "p.npz", like=tree), tree)


@pytest.mark.parametrize("key", ["a/", "/", "..", "a\\b", "ü", "\n", " ", "a.npy", "x/../y"])
def test_unusual_names_round_trip(tmp_path, key):
    tree = {key: W, "other": B}
    io.save_params(tmp_path / "p.npz", tree)
    assert list(io.load_params(tmp_path / "p.npz")) == sorted(tree)  # jax sorts dict keys
    assert_trees_equal(io.load_params(tmp_path / "p.npz", like=tree), tree)


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "p.npz"
    io.save_params(path, Params(W, B))
    io.save_params(path, Params(W + 1, None))
    assert files_in(tmp_path) == ["p.npz"]
    assert_trees_equal(io.load_params(path), {"weight": W + 1, "bias": None})


@pytest.mark.parametrize(
    ("tree", "error", "match"),
    [
        ({"a": np.array(["text"])}, TypeError, "'a' has dtype <U4"),
        ({"a": np.array([object()])}, TypeError, "no pickle"),
        ({"a.b": W, "a": {"b": W}}, ValueError, "'a.b' names two leaves"),
        ({"__jaxreg__": W}, ValueError, "reserved"),
        ({"a\0b": W}, ValueError, "NUL byte"),
        ({"ok": W, "b\ud800": W}, ValueError, "not valid Unicode"),
        ({"a": np.zeros(2, "V16")}, TypeError, "'a' has dtype"),
        ({"a": np.zeros(2, "f8,i4")}, TypeError, "'a' has dtype"),
    ],
)
def test_unsavable_trees_are_refused_before_writing(tmp_path, tree, error, match):
    path = tmp_path / "p.npz"
    io.save_params(path, Params(W, B))
    before = path.read_bytes()
    with pytest.raises(error, match=match):
        io.save_params(path, tree)
    assert files_in(tmp_path) == ["p.npz"]
    assert path.read_bytes() == before


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.save_params(tmp_path / "no" / "p.npz", TREES["dict"])


# --------------------------------------------------------------------- load errors


def write_npz(path: Path, meta, **arrays):
    entries = dict(arrays)
    if meta is not None:
        entries["__jaxreg__"] = np.array(meta if isinstance(meta, str) else json.dumps(meta))
    np.savez(path, **entries)


def write_npy(path: Path, array):
    with path.open("wb") as f:  # np.save(path) would append ".npy" to the name
        np.save(f, array)


GOOD_META = {
    "format": "jaxreg.params",
    "version": 1,
    "leaves": [{"name": "w", "shape": [2, 3], "dtype": "float32"}],
    "treedef": "",
}


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    meta = dict(GOOD_META, leaves=[{"name": "w", "shape": [1], "dtype": "object"}])
    write_npz(path, meta, w=np.array([{"not": "numbers"}], dtype=object))
    with pytest.raises(ValueError, match=r"'w' holds Python objects.*refusing"):
        io.load_params(path)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.write_text("weight,bias\n1,2\n"), "not a .npz file"),
        (lambda p: write_npy(p, W), r"a \.npy array"),
        (lambda p: write_npz(p, None, w=W), "not written by save_params.*'w'"),
        (lambda p: write_npz(p, "{not json", w=W), "not jaxreg metadata"),
        (lambda p: write_npz(p, dict(GOOD_META, format="other"), w=W), "not jaxreg metadata"),
        (lambda p: write_npz(p, dict(GOOD_META, version=99), w=W), "version 99.*Upgrade"),
        (lambda p: write_npz(p, GOOD_META, v=W), "do not match its metadata"),
        (lambda p: write_npz(p, GOOD_META, w=W.T), r"metadata says float32\[2, 3\]"),
        (lambda p: write_npz(p, GOOD_META, w=W.astype(np.int32)), "modified or is corrupt"),
    ],
)
def test_foreign_and_damaged_files(tmp_path, make, match):
    path = tmp_path / "p.npz"
    make(path)
    with pytest.raises(ValueError, match=match):
        io.load_params(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "p.npz"
    io.save_params(path, {"w": np.zeros(1000)})
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        io.load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nope\.npz"):
        io.load_params(tmp_path / "nope.npz")


@pytest.mark.parametrize(
    ("saved", "like", "match"),
    [
        (Params(W, B), Params(W, None), "the file has 'bias' but like does not"),
        (Params(W, None), Params(W, B), "like has 'bias' but the file does not"),
        ({"W": W}, {"W": W, "b": B}, "like has 'b' but the file does not"),
        ({"W": W, "b": B}, {"W": W}, "the file has 'b' but like does not"),
        (Params(W, B), Params(W.T, B), r"'weight' has shape \(2, 3\) in the file .* \(3, 2\)"),
        (
            Params(W, B),
            Params(W.astype(np.float64), B),
            "'weight' has dtype float32 in the file but like expects float64",
        ),
    ],
)
def test_like_mismatch(tmp_path, saved, like, match):
    path = tmp_path / "p.npz"
    io.save_params(path, saved)
    with pytest.raises(ValueError, match=match):
        io.load_params(path, like=like)


def test_zip_without_npy_entries_is_refused(tmp_path):
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not written by save_params"):
        io.load_params(path)
