"""Writing a file safely: what a path names, and replacing it atomically.

`writable_target(path)` says which file a write to `path` changes (a symlink's final
target, as `open(path, "w")`, `np.save` and `torch.save` do) and checks, creating
nothing, that it can be written. `atomic_write(path)` then writes it:

- a regular file (or a name that does not exist yet) is written as a temporary file in
  the same directory, flushed, fsync'ed and renamed over the target (`os.replace`), so a
  crash leaves the old file or the new one, never a partial one. The new file keeps the
  old one's permission bits (and its owner, where the process may set it); a new file
  gets `0o666` narrowed by the umask, as `open` gives.
- a character device (`/dev/null`, a terminal) or a named pipe is written directly, in
  one write once the data is complete: there is no file to replace, and it is never
  replaced by one.
- a directory, a block device, a socket or anything else is refused.

Temporary files are named `.<name>.jaxreg-<16 hex digits>.tmp` and are locked
(`flock`) while their writer lives. A writer killed outright (SIGKILL, power loss)
leaves its temporary file behind; the next `atomic_write` to the same path removes every
such file whose writer is gone (its lock is free), and never one still being written.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from io import BytesIO
from typing import BinaryIO

try:  # POSIX; elsewhere an open file cannot be deleted, which protects it the same way
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_TEMP_SUFFIX = r"\.jaxreg-[0-9a-f]{16}\.tmp"
_NAME_BYTES = 200  # of the target's name kept in a temporary name (names are <= 255 bytes)


def writable_target(path: str | os.PathLike, who: str | None = None) -> str:
    """The file a write to `path` changes, after checking that it can be written.

    Args:
      path: where to write.
      who: how messages start, e.g. `"save_params"`; None: they start "cannot write".

    Returns:
      `path` itself for a character device or a pipe (written in place), else the real
      path of the file to create or replace (symlinks resolved).

    Raises:
      ValueError: an empty path, or a path naming a block device, socket or other file
        that is neither a regular file, a character device nor a pipe.
      IsADirectoryError: `path` is (or ends in a separator like) a directory.
      FileNotFoundError: the directory it would be written in does not exist.
      NotADirectoryError: a component of that directory is not a directory.
      PermissionError: the file or its directory is not writable.
    """
    return _resolve(path, who)[0]


def _resolve(path: str | os.PathLike, who: str | None) -> tuple[str, bool]:
    """(`writable_target(path, who)`, whether it is a device or pipe written in place)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise ValueError(f"{who}: the path is empty" if who else "the path is empty")
    where = f"{who}: cannot write {text}" if who else f"cannot write {text}"
    if text.endswith(("/", os.sep)):
        raise IsADirectoryError(f"{where}: the path names a directory")
    try:
        st = os.stat(text)
    except FileNotFoundError:
        st = None
    except OSError as e:  # e.g. a component that is a file, a symlink loop
        raise _error(e, where) from None
    if st is not None and _is_stream(st.st_mode):
        _check_access(text, where)
        return text, True
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{where}: it is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"{where}: it is a {_kind(st.st_mode)}; only regular files, character devices "
            "(such as /dev/null) and pipes are written"
        )
    target = os.path.realpath(text)  # a new file, or an existing regular one
    if st is not None:
        _check_access(target, where)
    check_directory(os.path.dirname(target), where)
    return target, False


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, who: str | None = None) -> Iterator[BinaryIO]:
    """A binary file to write `path` with: replaced atomically when the block ends.

    An exception inside the block leaves the old file (or none) and no temporary file.
    See the module docstring for devices, pipes and symlinks; errors as `writable_target`
    (checked first), plus whatever writing raises (`OSError`).
    """
    target, in_place = _resolve(path, who)
    if in_place:  # collected first: writers such as zipfile need a file that can seek
        buffer = BytesIO()
        yield buffer
        with open(target, "wb") as f:
            f.write(buffer.getbuffer())
        return
    directory, name = os.path.split(target)
    remove_stale_temporaries(directory, name)
    fd, tmp = _create_temporary(directory, name)
    try:
        with open(fd, "wb") as f:
            _copy_mode(f.fileno(), target)
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def write_bytes(path: str | os.PathLike, data: bytes, *, who: str | None = None) -> None:
    """`atomic_write` of `data` (a JSON or Markdown results file, ...)."""
    with atomic_write(path, who=who) as f:
        f.write(data)


def temporary_names(directory: str, name: str) -> list[str]:
    """The temporary files in `directory` that writes to `name` use or left behind."""
    pattern = re.compile(re.escape(_temp_prefix(name)) + _TEMP_SUFFIX)
    try:
        with os.scandir(directory) as entries:
            return sorted(e.name for e in entries if pattern.fullmatch(e.name))
    except OSError:
        return []


def remove_stale_temporaries(directory: str, name: str) -> None:
    """Delete the temporary files of writes to `name` whose writer is gone."""
    for tmp in temporary_names(directory, name):
        full = os.path.join(directory, tmp)
        if fcntl is None:  # pragma: no cover - Windows: a file being written can't be deleted
            with contextlib.suppress(OSError):
                os.unlink(full)
            continue
        try:
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: its writer is gone
            os.unlink(full)
        except OSError:
            pass  # locked (still being written) or already removed
        finally:
            os.close(fd)


def _temp_prefix(name: str) -> str:
    kept = os.fsencode(name)[:_NAME_BYTES]
    return "." + os.fsdecode(kept)


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """(fd, path) of a new, locked temporary file beside `name`."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f"{_temp_prefix(name)}.jaxreg-{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, flags, 0o666)  # never an existing file; the umask applies
        if fcntl is None:  # pragma: no cover - Windows
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            return fd, tmp
        os.close(fd)  # a cleaner took it for stale between open and flock: start again


def _copy_mode(fd: int, target: str) -> None:
    """Give the new file the permission bits (and owner, if allowed) of the file it replaces."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        return
    new = os.fstat(fd)
    if (old.st_uid, old.st_gid) != (new.st_uid, new.st_gid):
        with contextlib.suppress(OSError):  # only root may give a file away
            os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode))


def check_directory(directory: str, where: str) -> None:
    """Raise (`where` starting the message) unless `directory` is a writable directory."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: directory {directory} does not exist") from None
    except OSError as e:
        raise _error(e, where) from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{where}: {directory} is not a directory")
    _check_access(directory, where, os.W_OK | os.X_OK)


def _check_access(path: str, where: str, mode: int = os.W_OK) -> None:
    if not os.access(path, mode):
        what = "directory" if mode != os.W_OK else "file"
        raise PermissionError(f"{where}: the {what} {path} is not writable")


def _error(e: OSError, where: str) -> OSError:
    """`e` as the same OSError subclass (and errno), with a message saying where."""
    error = type(e)(f"{where}: {e.strerror or e}")
    error.errno = e.errno
    return error


def _is_stream(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _kind(mode: int) -> str:
    kinds = {stat.S_ISBLK: "block device", stat.S_ISSOCK: "socket", stat.S_ISLNK: "symlink"}
    return next((k for test, k in kinds.items() if test(mode)), "special file")


def _fsync_directory(directory: str) -> None:
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
