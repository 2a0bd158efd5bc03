"""`python -m parity --distributed` for real: torch DistributedDataParallel (2 gloo
processes) against jaxreg's 2-process fit (jax.distributed, gloo), one launch of each
program for three scenarios: a full batch, per-replica mini-batches (torch's
DistributedSampler order replayed by jaxreg, checked rank by rank), and the same
mini-batches with jaxreg's learning rate off by 0.1%, which must FAIL. Every wait is
bounded (`parity.distributed.run`'s timeout per launch, ports picked free).
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from parity import distributed
from parity.__main__ import parse_args

TIMEOUT_S = 300  # per launch of 2 processes: generous for a loaded 2-core machine


def test_ddp_parity_and_its_teeth():
    full, batches = distributed.select(["ddp-linear-full-sgd-f64", "ddp-logistic-batches-adam"])
    broken = dataclasses.replace(batches, name=batches.name + "-lr-off", jax_lr_factor=1.001)
    rows = {r["name"]: r for r in distributed.run([full, batches, broken], timeout_s=TIMEOUT_S)}
    for s in (full, batches):
        r = rows[s.name]
        assert r["passed"] and "error" not in r, r
        assert r["steps"] > 1 and r["max_rel_dev"] <= r["tolerance"], r
    bad = rows[broken.name]
    assert "error" not in bad, bad  # the order check passed; the trajectory is what fails
    assert not bad["passed"] and bad["max_rel_dev"] > 10 * bad["tolerance"], bad


def test_cli_lists_the_family(capsys):
    assert distributed.main_rows(parse_args(["--distributed", "--list"])) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in out]
    assert names == [s.name for s in distributed.ddp_scenarios()]
    assert any("full" in n for n in names) and any("batches" in n for n in names)
    assert {"linear", "logistic"} <= {n.split("-")[1] for n in names}


def test_cli_refuses_perturbations_it_cannot_apply(capsys):
    args = parse_args(["--distributed", "--perturb", "pred=1e-4"])
    assert distributed.main_rows(args) == 2
    assert "only --perturb lr=FACTOR" in capsys.readouterr().err


def test_a_run_past_its_time_is_stopped_with_a_clear_error():
    scenarios = distributed.select(["ddp-linear-full-sgd-f64"])
    with pytest.raises(
        RuntimeError, match=r"parity.programs.ddp rank \d timed out \(limit 0.5 s\)"
    ):
        distributed.run(scenarios, timeout_s=0.5)


def test_a_rank_killed_from_outside_is_named_with_every_ranks_fate(tmp_path):
    """A rank killed by SIGKILL that parity did not send (the OOM killer, say) is the one
    reported, named as such, and the rank parity then stopped is listed as stopped."""
    (tmp_path / "victim.py").write_text(
        "import os, signal, sys, time\n"
        "if sys.argv[1] == '0':\n"
        "    time.sleep(0.5)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "time.sleep(60)\n"
    )
    path = f"{distributed.ROOT}{os.pathsep}{tmp_path}"
    with pytest.raises(RuntimeError) as err:
        distributed._launch("victim", tmp_path, timeout_s=30, env={"PYTHONPATH": path})
    message = str(err.value)
    assert message.startswith("victim rank 0 killed by SIGKILL (not sent by parity"), message
    assert "[rank 0: killed by SIGKILL" in message and "rank 1: stopped here]" in message
