"""Where `python -m parity` and `python -m benchmarks` write: standard output that goes
away (`| head -1`) or fills up (`> /dev/full`) ends the program cleanly, and results
files are written whole (atomically) to what their path names."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_io_targets import a_null_device

from benchmarks import __main__ as bench
from jaxreg import cli, files
from parity import __main__ as parity_cli

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--only", "t3-line-2x-lesson-grad-2w2+5-f64"]  # one scenario, well under a second


def closed_pipe() -> int:
    """The write end of a pipe whose reader has already gone (as after `| head -1`)."""
    read, write = os.pipe()
    os.close(read)
    return write


def stdout_to(kind: str):
    if kind == "closed-pipe":
        return closed_pipe()
    return os.open({"full": "/dev/full", "null": os.devnull}[kind], os.O_WRONLY)


# (module, arguments, standard output, exit status, stderr: "" or its one line)
STDOUT = [
    ("parity", ["--list"], "closed-pipe", cli.EXIT_PIPE, ""),
    (
        "parity",
        ["--list"],
        "full",
        cli.EXIT_IO,
        "python -m parity: error: cannot write standard output: No space left on device",
    ),
    ("parity", ["--list"], "null", 0, ""),
    ("parity", ["--list", "--only", "t5*"], "closed-pipe", cli.EXIT_PIPE, ""),
    ("benchmarks", ["--smoke", "--no-many"], "closed-pipe", cli.EXIT_PIPE, ""),
    (
        "benchmarks",
        ["--smoke", "--no-many"],
        "full",
        cli.EXIT_IO,
        "python -m benchmarks: error: cannot write standard output: No space left on device",
    ),
]


@pytest.mark.parametrize(("module", "argv", "kind", "status", "stderr"), STDOUT)
def test_standard_output_that_fails(module, argv, kind, status, stderr):
    fd = stdout_to(kind)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, *argv],
            cwd=ROOT,
            stdout=fd,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(fd)
    assert proc.returncode == status, proc.stderr[-3000:]
    assert proc.stderr.strip() == stderr, proc.stderr[-3000:]


def test_parity_json_to_a_device_writes_it_in_place(tmp_path):
    device = a_null_device(tmp_path)
    before = os.stat(device)
    assert parity_cli.main([*FAST, "--json", str(device)]) == 0
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_parity_json_through_a_symlink_keeps_the_link_and_the_mode(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("[]")
    os.chmod(target, 0o600)
    link = tmp_path / "latest.json"
    link.symlink_to(target.name)
    assert parity_cli.main([*FAST, "--json", str(link)]) == 0
    assert link.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [r["name"] for r in json.loads(target.read_text())] == [FAST[1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "results.json"]


def test_parity_json_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "parity", *FAST, "--json", "/dev/full"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == cli.EXIT_IO, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "python -m parity: error: cannot write --json /dev/full: No space left on device"
    ]


def test_parity_report_leaves_no_temporary_files(tmp_path):
    out = tmp_path / "report"
    assert parity_cli.main([*FAST, "--report", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["summary.md", "t3-line-2x-lesson-grad-2w2_5-f64.png"]


class Unserializable:
    """Not JSON: a streaming `json.dump` writes the results before it, then fails (as a
    kill mid-write would leave the file)."""


def test_benchmarks_json_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text('{"earlier": "results"}')
    args = bench._parse(["--json", str(path), "--no-many"])
    results = {"meta": {"date": "now"}, "rows": [{"a": 1}, {"b": Unserializable()}]}
    with pytest.raises(TypeError):
        bench._write(results, args)
    assert json.loads(path.read_text()) == {"earlier": "results"}
    assert files.temporary_names(str(tmp_path), "bench.json") == []
    results["rows"][1] = {"b": 2}
    bench._write(results, args)
    assert json.loads(path.read_text())["rows"] == [{"a": 1}, {"b": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]
