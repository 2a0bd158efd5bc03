"""The scaling section (benchmarks/scaling.py) runs tiny and reports every configuration.

No timing assertions: only that each configuration ran where it says (the device and
process counts the child saw), that each row has a timing of the right unit, and that the
table is sound. About 25 s on a quiet 2-core machine: five JAX process starts and their
compiles.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import scaling

ROOT = Path(__file__).resolve().parents[1]
SMOKE_TIMEOUT_S = 4 * scaling.CHILD_TIMEOUT_S  # the section's own bound, all configurations


def test_smoke_run_reports_every_configuration(tmp_path):
    out = tmp_path / "scaling.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--smoke", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    sp = scaling.scaling_problem(smoke=True)
    expected = [
        (label, kind) for label, _, _ in scaling.CONFIGS for kind in (scaling.FULL, scaling.EPOCH)
    ]
    assert [(r["config"], r["kind"]) for r in rows] == expected
    for r in rows:
        assert "timing" in r, r
        t = r["timing"]
        assert 0 < t["min"] <= t["median"] <= t["max"] and t["repeats"] == sp.repeats
        assert t["work"] == (sp.steps if r["kind"] == scaling.FULL else 1)
        # the child saw the devices and processes the row is labelled with
        assert r["note"] == f"{r['devices']} device(s), {r['processes']} process(es)", r
        assert r["x_1_device"] > 0
        if r["config"] == "1 device":
            assert r["x_1_device"] == 1
    assert {(r["devices"], r["processes"]) for r in rows} == {(1, 1), (2, 1), (4, 1), (2, 2)}
    table = "\n".join(scaling.markdown(rows))
    assert table in proc.stdout
    assert "| scaling | configuration | kind |" in table
    assert "not a speed-up" in table


def test_a_failed_configuration_is_a_row_with_its_error():
    rows = [
        {"problem": "p", "config": "2 processes", "kind": scaling.FULL, "error": "E: a|b"},
    ]
    (line,) = [x for x in scaling.markdown(rows) if x.startswith("| p |")]
    assert line == "| p | 2 processes | full batch | n/a | | | E: a/b |"
    assert scaling.markdown([]) == []


def test_failure_cause_is_the_fatal_line_or_the_exception():
    xla_abort = (
        "E1203 21:09:33 rendezvous.cc:116] waiting\n"
        "F1203 21:10:13 rendezvous.cc:161] Termination timeout for `all reduce`\n"
        "*** Check failure stack trace: ***\n"
        "    @     0x7ff89023e643  tsl::AsyncValue::EnqueueWaiter<>()\n"
    )
    assert scaling.failure_cause(xla_abort) == "Termination timeout for `all reduce`"
    python = 'Traceback (most recent call last):\n  File "a.py", line 1\n    f()\n    ^^^\n'
    python += "ValueError: boom\n"
    assert scaling.failure_cause(python) == "ValueError: boom"
    assert scaling.failure_cause("") == "no output"
