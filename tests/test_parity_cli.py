"""`python -m parity`: selection, JSON, the report, exit statuses, and the full run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import parity

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"name", "source", "dtype", "steps", "max_abs_dev", "max_rel_dev", "tolerance", "passed"}


def _cli(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "parity", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_list_and_selection():
    out = _cli("--list")
    assert out.returncode == 0, out.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names == [s.name for s in parity.all_scenarios()]
    f64 = _cli("--list", "--dtype", "float64", "--only", "t5*")
    listed = [line.split()[0] for line in f64.stdout.splitlines()]
    assert listed and all(n.startswith("t5") and n.endswith("-f64") for n in listed)
    sub = _cli("--list", "--only", "nesterov", "--source", "matrix")
    assert all("nesterov" in line.split()[0] for line in sub.stdout.splitlines())
    none = _cli("--list", "--only", "no-such-scenario")
    assert none.returncode == 2


def test_json_and_report(tmp_path):
    out = _cli(
        "--only", "t5c-*", "--only", "m-adagrad-lr_decay-logistic*",
        "--json", str(tmp_path / "out.json"), "--report", str(tmp_path / "report"),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [r["name"] for r in rows] == ["t5c-real-nn-linear-manual-f32", "t5c-real-nn-linear-manual-f64", "m-adagrad-lr_decay-logistic-bce-MultiStepLR-mb16-f32"]  # fmt: skip
    for r in rows:
        assert FIELDS <= set(r) and r["passed"] is True and r["max_rel_dev"] <= r["tolerance"]
    assert "\r" not in out.stdout  # no progress bar when not on a terminal
    lines = out.stdout.splitlines()
    assert lines[0].split()[:2] == ["scenario", "source"] and "3 of 3 scenarios passed" in out.stdout
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "t5c-real-nn-linear-manual-f32" in summary and "float32-sgd" in summary
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert len(pngs) == 3


def test_missing_data_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.csv"
    out = _cli("--only", "t5a-*", "--data", str(missing))
    assert out.returncode == 2
    assert str(missing) in out.stderr and "--data" in out.stderr
    env = _cli("--only", "t5a-*-f64", env={"JAXREG_PARITY_DATA": str(missing)})
    assert env.returncode == 2 and str(missing) in env.stderr


def test_imports_stay_light():
    code = (
        "import sys, parity, jaxreg; "
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.slow
def test_full_run_passes(tmp_path):
    """Every scenario, as CI runs it: exit status 0, >= 14 + 40 scenarios, all PASS."""
    out = _cli("--json", str(tmp_path / "all.json"))
    rows = json.loads((tmp_path / "all.json").read_text())
    failed = [r["name"] for r in rows if not r["passed"]]
    assert out.returncode == 0 and not failed, out.stdout[-3000:] + out.stderr[-3000:]
    assert all(FIELDS <= set(r) for r in rows)
    assert sum(r["source"] == "seed" for r in rows) >= 14
    assert sum(r["source"] == "matrix" for r in rows) >= 40
    assert {r["dtype"] for r in rows} == {"float32", "float64"}
