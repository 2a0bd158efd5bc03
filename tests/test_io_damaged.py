"""`load_params` on damaged and crafted files: a `ValueError` naming the file and what is
wrong, never a raw zipfile/JSON/NumPy error, a `RecursionError` or a `MemoryError`."""

from __future__ import annotations

import io as stdio
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jaxreg import io
from jaxreg import optim as jr_optim
from jaxreg.linear import Params

W = np.arange(6, dtype=np.float32).reshape(2, 3)
B = np.array([0.5, -1.5], np.float32)
META = {
    "format": "jaxreg.params",
    "version": 1,
    "leaves": [{"name": "w", "shape": [2, 3], "dtype": "float32"}],
    "treedef": "",
}


def npy(array: np.ndarray) -> bytes:
    f = stdio.BytesIO()
    np.lib.format.write_array(f, array, allow_pickle=False)
    return f.getvalue()


def npy_declaring(shape, descr="<f8", data=b"\0" * 16) -> bytes:
    """A .npy member whose header declares `shape` but which holds only `data`."""
    f = stdio.BytesIO()
    np.lib.format.write_array_header_1_0(
        f, {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    )
    return f.getvalue() + data


def archive(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def with_meta(meta, **members) -> dict[str, bytes]:
    text = meta if isinstance(meta, str) else json.dumps(meta)
    return {"__jaxreg__.npy": npy(np.array(text)), **{f"{k}.npy": v for k, v in members.items()}}


def leaves(*leaf) -> dict:
    return dict(META, leaves=list(leaf))


def deep(n: int) -> str:
    return json.dumps(dict(META, treedef="")).replace(
        '"treedef": ""', f'"treedef": {"[" * n}{"]" * n}'
    )


def with_leaf(path: Path, entry: bytes | None = None, **changes) -> None:
    """An archive of one leaf "w": META's leaf with `changes`, holding `entry` (W's .npy)."""
    leaf = {**META["leaves"][0], **changes}
    archive(path, with_meta(leaves(leaf), w=npy(W) if entry is None else entry))


def duplicate_entries(path: Path) -> None:
    archive(path, with_meta(META, w=npy(W)))
    with warnings.catch_warnings(), zipfile.ZipFile(path, "a") as z:
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name", and writes it
        z.writestr("w.npy", npy(W + 1))


# name -> (write the file, what the message says)
CRAFTED = {
    "meta-is-a-list": (lambda p: archive(p, with_meta([META], w=npy(W))), "no format"),
    "leaves-is-an-object": (
        lambda p: archive(p, with_meta(dict(META, leaves={"w": 1}), w=npy(W))),
        "'leaves' is not a list",
    ),
    "leaf-is-a-list": (
        lambda p: archive(p, with_meta(leaves(["w", [2, 3], "float32"]), w=npy(W))),
        "leaf 0: not an object",
    ),
    "nested-100000-deep": (lambda p: archive(p, with_meta(deep(100_000), w=npy(W))), "JSON"),
    "numeric-leaf-name": (lambda p: with_leaf(p, name=5), "name 5 is not a string"),
    "shape-of-strings": (lambda p: with_leaf(p, shape=["2"]), "non-negative integers"),
    "negative-shape": (lambda p: with_leaf(p, shape=[-2]), "non-negative integers"),
    "boolean-shape": (lambda p: with_leaf(p, shape=[True]), "non-negative integers"),
    "dtype-not-a-string": (lambda p: with_leaf(p, dtype=4), "dtype 4 is not a string"),
    "null-shape-only": (lambda p: with_leaf(p, shape=None), "only one of shape, dtype null"),
    "version-a-string": (
        lambda p: archive(p, with_meta(dict(META, version="1"), w=npy(W))),
        "not a positive integer",
    ),
    "version-5000-digits": (
        lambda p: archive(
            p,
            with_meta(
                json.dumps(META).replace('"version": 1', '"version": ' + "9" * 5000), w=npy(W)
            ),
        ),
        "not valid JSON",
    ),
    "two-leaves-one-name": (
        lambda p: archive(p, with_meta(leaves(META["leaves"][0], META["leaves"][0]), w=npy(W))),
        "same name",
    ),
    "metadata-not-text": (
        lambda p: archive(p, {"__jaxreg__.npy": npy(W), "w.npy": npy(W)}),
        "not text",
    ),
    "10**13-elements": (
        lambda p: with_leaf(p, npy_declaring([10**13]), shape=[10**13], dtype="float64"),
        r"declares float64\[10000000000000\].*holds 16 bytes",
    ),
    "10**13-element-metadata": (
        lambda p: archive(p, {"__jaxreg__.npy": npy_declaring([10**13], descr="<U1")}),
        "holds 16 bytes",
    ),
    "zero-size-dtype-metadata": (
        lambda p: archive(p, {"__jaxreg__.npy": npy_declaring([10**13], "<U0", b"")}),
        r"declares <U0\[10000000000000\]",
    ),
    "void-entry": (
        lambda p: with_leaf(p, npy(np.zeros(3, "V16")), shape=[3], dtype="void16"),
        "modified or is corrupt",
    ),
    "structured-entry": (
        lambda p: with_leaf(p, npy(np.zeros(2, "f8,i4")), shape=[2], dtype="void12"),
        "modified or is corrupt",
    ),
    "compressed-entry": (
        lambda p: archive(p, with_meta(META, w=npy(W)), zipfile.ZIP_DEFLATED),
        "compressed",
    ),
    "duplicate-entry": (duplicate_entries, "appears twice"),
    "header-says-more-than-it-holds": (
        lambda p: archive(p, with_meta(META, w=npy(W)[:-4])),
        r"declares float32\[2, 3\].*holds 20 bytes",
    ),
    "bad-npy-header": (
        lambda p: archive(p, with_meta(META, w=b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4}  \n")),
        "bad .npy header",
    ),
    "npy-version-9": (
        lambda p: archive(p, with_meta(META, w=b"\x93NUMPY\x09\x00" + npy(W)[8:])),
        "bad .npy header",
    ),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_files_give_a_value_error_naming_the_file(tmp_path, case):
    make, match = CRAFTED[case]
    path = tmp_path / "p.npz"
    make(path)
    with pytest.raises(ValueError, match=match) as info:
        io.load_params(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------ fuzzing


def small_file(tmp_path: Path) -> tuple[Path, bytes, dict]:
    path = tmp_path / "p.npz"
    io.save_params(path, Params(W, B))
    return path, path.read_bytes(), io.load_params(path)


def same(got: dict, want: dict) -> bool:
    return list(got) == list(want) and all(
        np.array_equal(got[k], want[k]) and got[k].dtype == want[k].dtype for k in want
    )


@pytest.mark.parametrize("flip", [0xFF, 0x01, 0x80])
def test_every_flipped_byte_gives_the_documented_error_or_the_same_parameters(tmp_path, flip):
    """Each byte of a small saved file (~1.7 kB) flipped in turn: `load_params` raises
    ValueError naming the file, or (a byte zip does not read, like a timestamp) loads
    exactly the saved parameters. The CRC of each member catches any change to data."""
    path, good, want = small_file(tmp_path)
    loaded = 0
    for i in range(len(good)):
        damaged = bytearray(good)
        damaged[i] ^= flip
        path.write_bytes(damaged)
        try:
            got = io.load_params(path)
        except ValueError as e:
            assert str(path) in str(e), (i, str(e))
            continue
        assert same(got, want), (i, got)
        loaded += 1
    assert 0 < loaded < len(good) // 2  # most flips are caught; a few bytes are unused


def test_every_truncation_gives_a_value_error(tmp_path):
    path, good, _ = small_file(tmp_path)
    for n in range(len(good)):
        path.write_bytes(good[:n])
        with pytest.raises(ValueError, match=r"p\.npz"):
            io.load_params(path)


# ------------------------------------------------------------------------ optimizer states

STATE_META = dict(META, format="jaxreg.optstate", states=[])


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (dict(STATE_META, states=None), "'states' is not a list"),
        (dict(STATE_META, states=[{"at": "", "optimizer": 3}]), "'states' is not a list"),
        (dict(STATE_META, states=[{"at": ""}]), "'states' is not a list"),
        ({k: v for k, v in STATE_META.items() if k != "states"}, "'states' is not a list"),
        (META, r"holds parameters \(written by save_params\); read it with load_params"),
        (dict(STATE_META, format="jaxreg.other"), "no format 'jaxreg.optstate'"),
    ],
)
def test_crafted_state_files_give_a_value_error_naming_the_file(tmp_path, meta, match):
    path = tmp_path / "s.npz"
    archive(path, with_meta(meta, w=npy(W)))
    with pytest.raises(ValueError, match=match) as info:
        io.load_state(path)
    assert str(path) in str(info.value)


def test_a_state_file_is_not_parameters(tmp_path):
    path = tmp_path / "s.npz"
    archive(path, with_meta(STATE_META, w=npy(W)))
    with pytest.raises(ValueError, match=r"an optimizer state \(written by save_state\)"):
        io.load_params(path)


def small_state_file(tmp_path: Path) -> tuple[Path, bytes, dict]:
    path = tmp_path / "s.npz"
    tx = jr_optim.sgd(lr=0.1, momentum=0.9)  # stripped: a small file (each byte is a load)
    io.save_state(path, jr_optim.strip_hyperparams(tx.init(Params(W, None))))
    return path, path.read_bytes(), io.load_state(path)


def test_every_flipped_byte_of_a_state_file_gives_an_error_or_the_same_state(tmp_path):
    path, good, want = small_state_file(tmp_path)
    loaded = 0
    for i in range(len(good)):
        damaged = bytearray(good)
        damaged[i] ^= 0xFF
        path.write_bytes(damaged)
        try:
            got = io.load_state(path)
        except ValueError as e:
            assert str(path) in str(e), (i, str(e))
            continue
        assert list(got) == list(want), i
        for k, v in want.items():
            assert (v is None and got[k] is None) or (
                np.array_equal(got[k], v) and got[k].dtype == v.dtype
            ), (i, k)
        loaded += 1
    assert 0 < loaded < len(good) // 2


def test_every_truncation_of_a_state_file_gives_a_value_error(tmp_path):
    path, good, _ = small_state_file(tmp_path)
    for n in range(len(good)):
        path.write_bytes(good[:n])
        with pytest.raises(ValueError, match=r"s\.npz"):
            io.load_state(path)
