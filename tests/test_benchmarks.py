"""The benchmark CLI runs (tiny smoke mode) and writes valid JSON, Markdown and a PNG.

No timing assertions: only that every backend produced a timing and the files are sound.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import timing

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]


def test_measure_reports_median_spread_and_first_call():
    calls = []
    t = timing.measure(lambda: calls.append(1), sync=timing.no_sync, work=4, repeats=5, warmup=2)
    assert len(calls) == 1 + 2 + 5
    assert t.repeats == 5 and t.work == 4
    assert t.min <= t.q1 <= t.median <= t.q3 <= t.max
    assert t.first_s >= 0 and t.compile_s >= 0 and t.per_second > 0


def test_smoke_run_writes_json_markdown_and_png(tmp_path):
    out = {k: tmp_path / f"bench.{k}" for k in ("json", "png", "md")}
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--json",
            str(out["json"]),
            "--plot",
            str(out["png"]),
            "--markdown",
            str(out["md"]),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out["json"].read_text())
    meta = results["meta"]
    assert meta["mode"] == "smoke" and meta["versions"]["jax"] and meta["device"]
    assert meta["date"]
    backends = {r["backend"] for r in results["rows"]}
    assert {"torch eager", "jaxreg make_step", "jaxreg fit"} <= backends
    for row in results["rows"]:
        assert "timing" in row, row
        assert row["timing"]["median"] > 0
        assert row["backend"] == "torch eager" or row["x_torch_eager"] > 0
    assert {r["backend"] for r in results["many"] if "timing" in r} == {
        "torch loop over models",
        "torch bmm (batched)",
        "jaxreg fit_many (vmap)",
    }
    assert results["targets"]
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| problem | backend |" in out["md"].read_text()


def test_gpu_request_without_gpu_is_skipped_cleanly(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--device", "gpu", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text())["skipped"] == "no GPU"
