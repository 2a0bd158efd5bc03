"""`python -m parity`: selection, JSON, the report, exit statuses, and the full run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import parity
from parity import __main__ as cli
from parity.problem import default_data_path

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


def _listed(capsys, *args):
    assert cli.main(["--list", *args]) == 0
    return [line.split()[0] for line in capsys.readouterr().out.splitlines()]


def test_list_and_selection(capsys):
    assert _listed(capsys) == [s.name for s in parity.all_scenarios()]
    listed = _listed(capsys, "--dtype", "float64", "--only", "t5*")
    assert len(listed) == 7 and all(n.startswith("t5") and n.endswith("-f64") for n in listed)
    listed = _listed(capsys, "--only", "nesterov", "--source", "matrix")
    assert listed and all("nesterov" in n and n.startswith("m-") for n in listed)
    assert cli.main(["--list", "--only", "no-such-scenario"]) == 2


def test_json_and_report(tmp_path):
    out = _cli(
        "--only",
        "t5c-*",
        "--only",
        "m-adagrad-lr_decay-logistic-bce-MultiStepLR*",
        "--json",
        str(tmp_path / "out.json"),
        "--report",
        str(tmp_path / "report"),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [r["name"] for r in rows] == [
        "t5c-real-nn-linear-manual-f32",
        "t5c-real-nn-linear-manual-f64",
        "m-adagrad-lr_decay-logistic-bce-MultiStepLR-mb16-f32",
    ]
    for r in rows:
        assert FIELDS <= set(r) and r["passed"] is True and r["max_rel_dev"] <= r["tolerance"]
    assert "\r" not in out.stdout  # no progress bar when not on a terminal
    lines = out.stdout.splitlines()
    assert (
        lines[0].split()[:2] == ["scenario", "source"] and "3 of 3 scenarios passed" in out.stdout
    )
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "t5c-real-nn-linear-manual-f32" in summary and "float32-sgd" in summary
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert len(pngs) == 3
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(["summary.md", *pngs])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "report"]  # no temp files


def test_missing_data_is_a_clear_error(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "nope.csv"
    with pytest.raises(SystemExit) as info:  # --data is checked with the other options
        cli.main(["--only", "t5a-*", "--data", str(missing)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("python -m parity: error: argument --data: ") and str(missing) in err
    monkeypatch.setenv("JAXREG_PARITY_DATA", str(missing))
    assert cli.main(["--only", "t5a-*-f64"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "--data" in err and "JAXREG_PARITY_DATA" in err


def test_data_path_default_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXREG_PARITY_DATA", raising=False)
    assert default_data_path() == ROOT.parent / "shared" / "data" / "regression.csv"
    copy = tmp_path / "mine.csv"
    copy.write_text("x,y\n0,1\n1,3\n2,5\n")  # y = 2x + 1
    scenario = parity.get("t5b-real-mean-manual-f64")
    res = parity.run(scenario, data_path=copy)
    assert res.problem.data.x.shape == (3, 2) and res.passed


def test_imports_stay_light():
    code = "import sys, parity, jaxreg; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.slow
def test_full_run_passes(tmp_path):
    """Every scenario, as CI runs it: exit status 0, >= 14 + 40 scenarios, all PASS."""
    out = _cli("--jobs", "2", "--json", str(tmp_path / "all.json"))
    rows = json.loads((tmp_path / "all.json").read_text())
    failed = [r["name"] for r in rows if not r["passed"]]
    assert out.returncode == 0 and not failed, out.stdout[-3000:] + out.stderr[-3000:]
    assert all(FIELDS <= set(r) for r in rows)
    assert sum(r["source"] == "seed" for r in rows) >= 14
    assert sum(r["source"] == "matrix" for r in rows) >= 40
    assert {r["dtype"] for r in rows} == {"float32", "float64"}


def test_a_side_that_raises_is_a_failing_row_not_a_crash(capsys, monkeypatch, tmp_path):
    from parity import jax_side

    def broken(*args, **kwargs):
        raise RuntimeError("jax side exploded")

    monkeypatch.setattr(jax_side, "run", broken)
    out_json = tmp_path / "rows.json"
    assert cli.main(["--only", "t3-line-2x-lesson-grad-2w2+5-*", "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == 3 and "jax side exploded" in out  # 2 rows + the FAILED line
    rows = json.loads(out_json.read_text())
    assert [r["passed"] for r in rows] == [False, False]
    assert rows[0]["error"] == "RuntimeError: jax side exploded"
