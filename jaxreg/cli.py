"""What `python -m parity` and `python -m benchmarks` share as command-line tools.

- `run(main, prog)`: the process around `main`. A reader that goes away (`| head -1`)
  ends the program quietly with status 141 (128 + SIGPIPE, what a tool killed by SIGPIPE
  returns); any other failure to write standard output or a results file (a full disk,
  `> /dev/full`) is one line on stderr and status 74 (EX_IOERR), never a traceback.
  SIGTERM exits with status 143 and Ctrl-C with 130, after `finally` blocks have run (so
  a worker pool is stopped, see `stop_workers`).
- Option checks that run before any work: `output_file` and `output_dir` (argparse's
  `type=`), so a bad path is `error: argument --json: ...` and exit status 2.
- Worker processes: `worker_count` (never more than the CPUs or the tasks),
  `ctrl_c_deferred` and `worker_init` (workers ignore Ctrl-C, from their start, and exit
  when their parent is gone) and `stop_workers`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from jaxreg import files

EXIT_IO = 74  # sysexits.h EX_IOERR: an output could not be written
EXIT_PIPE = 128 + getattr(signal, "SIGPIPE", 13)
EXIT_INTERRUPTED = 128 + signal.SIGINT
PARENT_POLL_S = 0.5  # how often a worker checks that its parent is alive


class OutputError(Exception):
    """An output (standard output or a results file) could not be written."""


class _ReaderGone(Exception):
    """Standard output is a pipe whose reader has exited."""


class _Stdout:
    """`sys.stdout`, with its write errors raised as `OutputError` / `_ReaderGone`, so they
    are told apart from every other `OSError` the program may raise."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with _stdout_errors():
            return self._stream.write(text)

    def flush(self) -> None:
        with _stdout_errors():
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _stdout_errors() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise _ReaderGone from None
    except OSError as e:
        raise OutputError(f"cannot write standard output: {e.strerror or e}") from None


@contextlib.contextmanager
def writing(option: str, path: str) -> Iterator[None]:
    """Turn an `OSError` while writing `option`'s file into an `OutputError`."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"cannot write {option} {path}: {e.strerror or e}") from None


def run(main: Callable[[], int], prog: str) -> int:
    """`main()`'s exit status, with the command-line tool's handling of stdout and signals."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    sys.stdout = _Stdout(sys.stdout)
    try:
        status = main()
        sys.stdout.flush()
        return status
    except _ReaderGone:
        _discard_stdout()
        return EXIT_PIPE
    except OutputError as e:
        _discard_stdout()
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_IO
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit_on_signal(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second one kills at once
    raise SystemExit(128 + signum)


def _discard_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's final flush of what is still
    buffered does not fail a second time (the recipe in Python's `signal` docs)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)


# --------------------------------------------------------------------- option checks


def output_file(path: str) -> str:
    """argparse `type=` for a results file: `path` unchanged, once `files.writable_target`
    accepts it (creating nothing); its directory must exist."""
    try:
        files.writable_target(path)
    except (OSError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return path


def output_dir(path: str) -> str:
    """argparse `type=` for a report directory: an existing writable directory, or a new
    one whose parent exists and is writable (created when the report is written)."""
    name = path.rstrip("/" + os.sep) or path
    try:
        if os.path.isdir(name):
            files.check_directory(name, f"cannot write {path}")
        else:  # a new one is checked as a new file; an existing file is refused
            files.writable_target(name)
            if os.path.lexists(name):
                raise NotADirectoryError(f"cannot write {path}: it is not a directory")
    except (OSError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return path


# ------------------------------------------------------------------ worker processes


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def worker_count(requested: int, tasks: int) -> int:
    """Workers to start: `requested`, but no more than the usable CPUs or the tasks."""
    return max(1, min(requested, usable_cpus(), tasks))


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Start worker processes inside this block: SIGINT is blocked meanwhile, and they
    inherit the blocked mask, so Ctrl-C never reaches a worker that is still starting up
    (before `worker_init`); the parent gets it when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def worker_init(parent: int) -> None:
    """A worker's initializer: Ctrl-C is its parent's to handle (it stops the workers),
    and the worker exits as soon as `parent` is gone, however it died."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def stop_workers(pool: Any) -> None:
    """Terminate a `ProcessPoolExecutor`'s workers now (not after their current task)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.terminate()
