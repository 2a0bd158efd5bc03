"""Bad option values of `python -m parity` and `python -m benchmarks`: each one is an
argparse-style error naming the option (and the path), exit status 2, before any work,
with nothing written or overwritten. A new bad input is a new row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as bench
from jaxreg import cli
from parity import __main__ as parity_cli

ROOT = Path(__file__).resolve().parents[1]
KEEP = "earlier results\n"

# (arguments, the option the message names, a fragment of the message); paths are
# relative to a directory holding "adir/" (empty) and "afile" (KEEP).
PARITY_BAD = [
    (["--perturb", "lr=abc"], "--perturb", "'abc' is not a number"),
    (["--perturb", "lr="], "--perturb", "'' is not a number"),
    (["--perturb", "lr"], "--perturb", "expected lr=FACTOR"),
    (["--perturb", "speed=2"], "--perturb", "expected lr=FACTOR"),
    (["--perturb", "lr=nan"], "--perturb", "positive, finite factor"),
    (["--perturb", "lr=inf"], "--perturb", "positive, finite factor"),
    (["--perturb", "lr=0"], "--perturb", "positive, finite factor"),
    (["--perturb", "lr=-1.5"], "--perturb", "positive, finite factor"),
    (["--perturb", "pred=nan"], "--perturb", "finite number"),
    (["--perturb", "loss=-inf"], "--perturb", "finite number"),
    (["--perturb", "lr=1.1", "--perturb", "lr=1.2"], "--perturb", "lr= given twice"),
    (["-j", "0"], "--jobs/-j", "must be at least 1"),
    (["-j", "-2"], "--jobs/-j", "must be at least 1"),
    (["-j", "abc"], "--jobs/-j", "'abc' is not an integer"),
    (["-j", "1.5"], "--jobs/-j", "'1.5' is not an integer"),
    (["--dtype", "float16"], "--dtype", "invalid choice"),
    (["--json", "adir"], "--json", "cannot write adir: it is a directory"),
    (["--json", "adir/"], "--json", "names a directory"),
    (["--json", "missing/x.json"], "--json", "missing does not exist"),
    (["--json", "afile/x.json"], "--json", "cannot write afile/x.json: Not a directory"),
    (["--json", ""], "--json", "the path is empty"),
    (["--report", "afile"], "--report", "cannot write afile: it is not a directory"),
    (["--report", "missing/report"], "--report", "missing does not exist"),
    (["--report", "afile/report"], "--report", "Not a directory"),
    (["--data", "missing.csv"], "--data", "missing.csv does not exist"),
    (["--data", "adir"], "--data", "adir is not a file"),
]
BENCH_BAD = [
    (["--sizes", "bogus"], "--sizes", "unknown size 'bogus'"),
    (["--sizes", ""], "--sizes", "unknown size ''"),
    (["--sizes", "tutorial,,large"], "--sizes", "unknown size ''"),
    (["--sizes", "tutorial,tutorial"], "--sizes", "names a size twice"),
    (["--only", "nosuch"], "--only", "'nosuch' is in no backend's name"),
    (["--device", "tpu"], "--device", "invalid choice"),
    (["--json", "adir"], "--json", "cannot write adir: it is a directory"),
    (["--json", "missing/x.json"], "--json", "missing does not exist"),
    (["--markdown", "afile/x.md"], "--markdown", "Not a directory"),
    (["--markdown", "adir"], "--markdown", "is a directory"),
    (["--plot", "out.txt"], "--plot", "out.txt: matplotlib cannot write .txt files"),
    (["--plot", "adir"], "--plot", "cannot write adir: it is a directory"),
    (["--plot", "missing/p.png"], "--plot", "missing does not exist"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text(KEEP)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def no_work(*args, **kwargs):
    raise AssertionError("work started before the options were checked")


def assert_usage_error(info, capsys, option, fragment, prog):
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: error: argument {option}: "), last
    assert fragment in last, last


def assert_untouched(workdir: Path):
    assert sorted(p.name for p in workdir.iterdir()) == ["adir", "afile"]
    assert list((workdir / "adir").iterdir()) == []
    assert (workdir / "afile").read_text() == KEEP


@pytest.mark.parametrize(("argv", "option", "fragment"), PARITY_BAD)
def test_parity_bad_option(workdir, capsys, monkeypatch, argv, option, fragment):
    monkeypatch.setattr(parity_cli, "select", no_work)
    monkeypatch.setattr(parity_cli, "_run_all", no_work)
    with pytest.raises(SystemExit) as info:
        parity_cli.main(argv)
    assert_usage_error(info, capsys, option, fragment, "python -m parity")
    assert_untouched(workdir)


@pytest.mark.parametrize(("argv", "option", "fragment"), BENCH_BAD)
def test_benchmarks_bad_option(workdir, capsys, monkeypatch, argv, option, fragment):
    monkeypatch.setattr(bench, "_meta", no_work)
    monkeypatch.setattr(bench.cases, "problems", no_work)
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert_usage_error(info, capsys, option, fragment, "python -m benchmarks")
    assert_untouched(workdir)


def test_a_selection_that_matches_nothing_names_it(capsys):
    assert parity_cli.main(["--only", "no-such", "--dtype", "float64"]) == 2
    err = capsys.readouterr().err
    assert err == "python -m parity: error: no scenario matches --only no-such --dtype float64\n"


# A whole parity run or benchmark takes minutes: these end in seconds because the check
# comes first (the timeout is what fails if it does not).
END_TO_END = [
    ("parity", ["--json", "adir"], "--json"),
    ("parity", ["--report", "afile", "--json", "out.json"], "--report"),
    ("benchmarks", ["--plot", "out.txt"], "--plot"),
    ("benchmarks", ["--json", "missing/x.json"], "--json"),
]


@pytest.mark.parametrize(("module", "argv", "option"), END_TO_END)
def test_bad_paths_stop_the_command_before_any_work(workdir, module, argv, option):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert f"error: argument {option}: " in proc.stderr.strip().splitlines()[-1]
    assert_untouched(workdir)


# -------------------------------------------------------------------------- workers


@pytest.mark.parametrize(
    ("requested", "cpus", "tasks", "workers"),
    [
        (1000, 2, 48, 2),  # -j 1000 on a 2-core machine
        (1000, 64, 3, 3),  # never more than the scenarios
        (4, 64, 48, 4),
        (1, 64, 48, 1),
        (8, 1, 48, 1),
    ],
)
def test_worker_count_is_capped(monkeypatch, requested, cpus, tasks, workers):
    monkeypatch.setattr(cli, "usable_cpus", lambda: cpus)
    assert cli.worker_count(requested, tasks) == workers


def test_parity_starts_no_more_workers_than_scenarios_or_cpus(monkeypatch):
    monkeypatch.setattr(cli, "usable_cpus", lambda: 64)
    started = []

    class Pool:
        def __init__(self, max_workers, **kwargs):
            started.append(max_workers)
            raise RuntimeError("stop here")

    monkeypatch.setattr(parity_cli, "ProcessPoolExecutor", Pool)
    with pytest.raises(RuntimeError, match="stop here"):
        parity_cli.main(["-j", "1000", "--only", "t5a-*"])  # two scenarios
    assert started == [2]


def test_help_says_how_jobs_are_capped(capsys):
    with pytest.raises(SystemExit):
        parity_cli.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "capped at the usable CPUs" in help_text and "number of selected scenarios" in help_text


def test_benchmark_problems_refuse_an_unknown_size_instead_of_running_none():
    with pytest.raises(ValueError, match="unknown problem size 'bogus'"):
        bench.cases.problems(["tutorial", "bogus"])
