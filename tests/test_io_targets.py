"""What `save_params` (and every results file, via `jaxreg.files`) writes to.

A symlink's target, never the link; a device or pipe in place, never replaced by a file;
the old file's mode (and owner); nothing at all for a path it refuses; and no temporary
file left behind, even by a save that was killed: the next save removes it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from jaxreg import files, io
from jaxreg.linear import Params

ROOT = Path(__file__).resolve().parents[1]
OLD = Params(np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.5], np.float32))
NEW = Params(OLD.weight + 1, None)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def assert_loads(path, tree):
    got = io.load_params(path, like=tree)
    np.testing.assert_array_equal(got.weight, tree.weight)
    assert (got.bias is None) == (tree.bias is None)


# ------------------------------------------------------------ paths it refuses


def make_socket(tmp_path: Path) -> Path:
    cwd = os.getcwd()
    os.chdir(tmp_path)  # AF_UNIX paths are limited to ~100 bytes: bind a relative one
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("sock")
    finally:
        os.chdir(cwd)
    return tmp_path / "sock"


def make_loop(tmp_path: Path) -> Path:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path / "loop"


# name -> (make the path under tmp_path, the error, what the message says)
REFUSED = {
    "empty": (lambda t: "", ValueError, "path is empty"),
    "directory": (lambda t: t, IsADirectoryError, "is a directory"),
    "trailing-slash": (lambda t: f"{t}/new/", IsADirectoryError, "names a directory"),
    "missing-directory": (lambda t: t / "no" / "p.npz", FileNotFoundError, "does not exist"),
    "under-a-file": (lambda t: t / "old.npz" / "p.npz", NotADirectoryError, "Not a directory"),
    "socket": (make_socket, ValueError, "is a socket"),
    "symlink-loop": (make_loop, OSError, "symbolic links"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_paths_are_an_error_before_anything_is_written(tmp_path, case):
    make, error, match = REFUSED[case]
    io.save_params(tmp_path / "old.npz", OLD)
    path = make(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(error, match=match) as info:
        io.save_params(path, NEW)
    assert str(info.value).startswith("save_params:")
    assert listing(tmp_path) == before
    assert_loads(tmp_path / "old.npz", OLD)


# ------------------------------------------------------------ what it writes to


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.npz"
    io.save_params(target, OLD)
    link = tmp_path / "link.npz"
    link.symlink_to(Path("store") / "real.npz")  # relative, as `ln -s` makes them
    io.save_params(link, NEW)
    assert link.is_symlink() and os.readlink(link) == os.path.join("store", "real.npz")
    assert_loads(target, NEW)  # the target has the new parameters, not the old ones
    assert listing(tmp_path) == ["link.npz", "store"]
    assert listing(tmp_path / "store") == ["real.npz"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "later.npz")
    io.save_params(link, OLD)
    assert link.is_symlink()
    assert_loads(tmp_path / "later.npz", OLD)


def a_null_device(tmp_path: Path) -> Path:
    """A character device that discards writes: a fresh copy of /dev/null where this
    process may create one (root), else /dev/null itself (which it cannot replace)."""
    path = tmp_path / "null"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        return Path(os.devnull)
    return path


def test_a_character_device_is_written_in_place_not_replaced(tmp_path):
    device = a_null_device(tmp_path)
    before = os.stat(device)
    io.save_params(device, OLD)
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev, after.st_mode) == (
        before.st_ino,
        before.st_rdev,
        before.st_mode,
    )
    assert listing(tmp_path) == (["null"] if device.parent == tmp_path else [])


def test_a_pipe_is_written_in_place_and_can_be_loaded_from(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    io.save_params(fifo, OLD)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    (tmp_path / "copy.npz").write_bytes(received[0])
    assert_loads(tmp_path / "copy.npz", OLD)
    writer = threading.Thread(target=lambda: fifo.write_bytes(received[0]))
    writer.start()
    assert_loads(fifo, OLD)  # zip needs to seek: read into memory first
    writer.join(timeout=30)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604, 0o755], ids=oct)
def test_the_old_files_mode_is_kept(tmp_path, mode):
    path = tmp_path / "p.npz"
    io.save_params(path, OLD)
    os.chmod(path, mode)
    io.save_params(path, NEW)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert_loads(path, NEW)


def test_the_old_files_owner_is_kept_where_it_can_be(tmp_path):
    path = tmp_path / "p.npz"
    io.save_params(path, OLD)
    try:  # only root may give a file away; otherwise it stays ours, which is kept too
        os.chown(path, 4321, 4321)
    except PermissionError:
        pass
    before = os.stat(path)
    io.save_params(path, NEW)
    after = os.stat(path)
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)


# ------------------------------------------------------------ temporary files


KILLED_SAVE = """
import os, signal, sys
import numpy as np
from jaxreg import io

real = np.lib.format.write_array

def write_then_die(fp, array, *args, **kwargs):
    if array.size > 1000:  # the big leaf: half of it, then killed as by the OOM killer
        fp.write(array.tobytes()[: array.nbytes // 2])
        fp.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real(fp, array, *args, **kwargs)

np.lib.format.write_array = write_then_die
io.save_params(sys.argv[1], {"big": np.ones(200_000), "small": np.zeros(3)})
"""


def test_a_killed_saves_temporary_file_is_removed_by_the_next_save(tmp_path):
    path = tmp_path / "p.npz"
    io.save_params(path, OLD)
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(path)], cwd=ROOT, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    leftovers = files.temporary_names(str(tmp_path), "p.npz")
    assert len(leftovers) == 1 and (tmp_path / leftovers[0]).stat().st_size > 500_000
    assert_loads(path, OLD)  # the old file is intact
    io.save_params(path, NEW)
    assert listing(tmp_path) == ["p.npz"]
    assert_loads(path, NEW)


def test_only_stale_temporary_files_of_the_same_target_are_removed(tmp_path):
    path = tmp_path / "p.npz"
    stale = tmp_path / ".p.npz.jaxreg-0123456789abcdef.tmp"
    busy = tmp_path / ".p.npz.jaxreg-fedcba9876543210.tmp"
    others = [
        ".other.npz.jaxreg-0123456789abcdef.tmp",  # another file's
        ".p.npz.jaxreg-notahexnumber00.tmp",  # not a name this library makes
        "p.npz.tmp",
    ]
    for p in [stale, busy, *(tmp_path / o for o in others)]:
        p.write_bytes(b"partial")
    with open(busy, "rb") as held:  # a live writer holds the lock on its temporary file
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        io.save_params(path, OLD)
        assert sorted(listing(tmp_path)) == sorted([busy.name, "p.npz", *others])
    assert_loads(path, OLD)


def test_a_long_name_gets_a_temporary_name_that_fits(tmp_path):
    path = tmp_path / ("p" * 251 + ".npz")  # 255 bytes, the usual limit
    io.save_params(path, OLD)
    io.save_params(path, NEW)
    assert listing(tmp_path) == [path.name]
    assert_loads(path, NEW)
