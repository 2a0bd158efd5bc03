"""`python -m parity --distributed`: torch DistributedDataParallel against jaxreg's
multi-process fit, two processes each, over gloo on this machine.

Every scenario starts both programs from the same arrays (written once to a temporary
directory): the torch DDP program (`parity.programs.ddp`, `init_process_group("gloo")`,
`DistributedSampler`) and the jaxreg program (`parity.programs.jax_processes`,
`jax.distributed` with gloo CPU collectives, each process reading only its rows). All
scenarios run in one launch of each program (two processes each, ports picked free,
every wait bounded by `timeout_s`). Then, per scenario:

- the rows torch's `DistributedSampler` gave each rank at each step must be the rows
  `jaxreg.distributed.DistributedSampler(seed).indices(n, epoch, 2)` names, exactly;
- the trajectories (the loss each step, the mean of the ranks' losses; the parameters
  after each step) are compared with `parity.compare` against the tolerance of the dtype
  and optimizer family (`parity.tolerances`), as `python -m parity` compares its own.

Full batch: each rank (process) holds its contiguous half of the rows; the gradient is
the mean of the ranks' means (torch) or the mean over the row-sharded data (jaxreg), the
same number up to the order of the sums. Mini-batches: per-replica batches of
`batch_size` rows, gradients averaged (`fit(..., sampler=...)`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxreg import cli, distributed, launch
from parity import report, vocab
from parity.compare import compare
from parity.registry import matches
from parity.scenario import Trajectory
from parity.tolerances import default_tolerance

__all__ = ["WORLD", "DDPScenario", "ddp_scenarios", "main_rows", "run"]

WORLD = 2  # processes on each side
ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class DDPScenario:
    """One data-parallel training run, described once for both programs.

    Attributes:
      name: unique, "ddp-..."; `--only` matches it.
      model, loss: `parity.vocab` rows ("linear" + "mse", "logistic" + "bce").
      optimizer, opt_kwargs: a `parity.vocab.OPTIMIZERS` row and its torch arguments.
      epochs: passes over the data (full batch: steps).
      batch_size: rows per replica and step; None: full batch (each rank its rows).
      drop_last: the per-rank DataLoader's `drop_last`.
      seed: the `DistributedSampler`'s seed.
      dtype: "float32" or "float64".
      n, features: the data's shape.
      jax_lr_factor: multiplies the jaxreg side's learning rate (`--perturb lr=1.001`: a
        run that must FAIL, to show the comparison's teeth).
    """

    name: str
    model: str
    loss: str
    optimizer: str
    opt_kwargs: tuple[tuple[str, Any], ...]
    epochs: int
    batch_size: int | None = None
    drop_last: bool = False
    seed: int = 0
    dtype: str = "float64"
    n: int = 64
    features: int = 3
    jax_lr_factor: float = 1.0

    def describe(self) -> str:
        opt = ", ".join(f"{k}={v}" for k, v in self.opt_kwargs)
        how = (
            "full batch, each rank its rows"
            if self.batch_size is None
            else f"DistributedSampler(seed={self.seed}), batches of {self.batch_size} a rank"
            + (", drop_last" if self.drop_last else "")
        )
        torch_opt = vocab.OPTIMIZERS[self.optimizer].torch
        return f"DDP x{WORLD} gloo; optim.{torch_opt}({opt}); {self.loss}; {how}"


def ddp_scenarios() -> list[DDPScenario]:
    """Linear (mse) and logistic (bce) models; full batch and per-replica mini-batches;
    SGD (with momentum) and Adam; float64 and float32."""
    sgd = (("lr", 0.05),)
    return [
        DDPScenario("ddp-linear-full-sgd-f64", "linear", "mse", "sgd", sgd, 30),
        DDPScenario("ddp-logistic-full-sgd-f64", "logistic", "bce", "sgd", (("lr", 0.5),), 30),
        DDPScenario(
            "ddp-linear-batches-sgd-momentum-f64",
            "linear",
            "mse",
            "sgd",
            (("lr", 0.02), ("momentum", 0.9)),
            3,
            batch_size=8,
            seed=5,
        ),
        DDPScenario(
            "ddp-logistic-batches-adam-f64",
            "logistic",
            "bce",
            "adam",
            (("lr", 0.05),),
            3,
            batch_size=10,
            drop_last=True,
            seed=1,
        ),
        DDPScenario("ddp-linear-full-sgd-f32", "linear", "mse", "sgd", sgd, 30, dtype="float32"),
        DDPScenario(
            "ddp-logistic-batches-sgd-f32",
            "logistic",
            "bce",
            "sgd",
            (("lr", 0.5),),
            3,
            batch_size=10,
            dtype="float32",
        ),
    ]


def select(only=None, dtype: str | None = None) -> list[DDPScenario]:
    """The scenarios whose name matches any pattern of `only` (and whose dtype is `dtype`)."""
    patterns = list(only or [])
    return [
        s
        for s in ddp_scenarios()
        if (not patterns or any(matches(s.name, p) for p in patterns))
        and (dtype is None or s.dtype == dtype)
    ]


def _write_problem(s: DDPScenario, workdir: Path, seed: int) -> None:
    """x, y and the initial parameters (nn.Linear's distribution) of `s`, as files."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(s.dtype)
    x = rng.normal(size=(s.n, s.features)) * rng.uniform(0.5, 2.0, size=s.features)
    z = x @ np.array([1.5, -2.0, 2.5][: s.features]) - 0.5
    if s.model == "logistic":
        y = (rng.uniform(size=s.n) < 1 / (1 + np.exp(-z))).astype(np.float64)
    else:
        y = z + 0.3 * rng.normal(size=s.n)
    bound = 1 / np.sqrt(s.features)
    np.save(workdir / f"{s.name}.x.npy", x.astype(dtype))
    np.save(workdir / f"{s.name}.y.npy", y[:, None].astype(dtype))
    np.savez(
        workdir / f"{s.name}.init.npz",
        weight=rng.uniform(-bound, bound, size=(1, s.features)).astype(dtype),
        bias=rng.uniform(-bound, bound, size=1).astype(dtype),
    )


def _spec(s: DDPScenario) -> dict[str, Any]:
    """`s` as JSON for the programs, with its rows' torch names (the DDP program imports
    only torch)."""
    return dataclasses.asdict(s) | {
        "opt_kwargs": dict(s.opt_kwargs),
        "torch_optimizer": vocab.OPTIMIZERS[s.optimizer].torch,
        "torch_loss": vocab.LOSSES[s.loss].torch,
        "torch_link": vocab.MODELS[s.model].torch_link,
    }


def _launch(module: str, workdir: Path, timeout_s: float, env=None) -> None:
    """`python -m module RANK WORLD PORT WORKDIR ...` in WORLD processes; waits at most
    `timeout_s`, stops them all on the first failure or the timeout (RuntimeError)."""
    port = launch.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    env.pop("XLA_FLAGS", None)  # one CPU device per process: one replica per rank
    logs = [workdir / f"{module}-rank{r}.log" for r in range(WORLD)]
    procs = []
    for r, log in enumerate(logs):
        with open(log, "w") as out:  # a file, not a pipe: no process blocks on its output
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", module, str(r), str(WORLD), str(port), str(workdir)],
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + timeout_s
    stopped: set[int] = set()  # ranks this function killed (after another's failure)
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        for r, p in enumerate(procs):
            if p.poll() is None:
                p.kill()
                stopped.add(r)
            p.wait()
    timed_out = time.monotonic() > deadline
    bad = [r for r, p in enumerate(procs) if p.returncode != 0]
    if bad:
        first = next((r for r in bad if r not in stopped), bad[0])  # the rank that failed
        why = "timed out" if timed_out and first in stopped else _exit(procs[first].returncode)
        ranks = "; ".join(
            f"rank {r}: " + ("stopped here" if r in stopped else _exit(procs[r].returncode))
            for r in range(WORLD)
        )
        output = logs[first].read_text(errors="replace")[-3000:]
        raise RuntimeError(
            f"{module} rank {first} {why} (limit {timeout_s:g} s) [{ranks}]; its output:\n{output}"
        )


def _exit(code: int) -> str:
    """A process's return code in words; a signal this module did not send is named."""
    if code >= 0:
        return f"exited with {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (not sent by parity: the system's out-of-memory killer?)" if code == -9 else ""
    return f"killed by {name}{hint}"


def _trajectory(path: Path) -> Trajectory:
    with np.load(path) as f:
        return Trajectory(f["losses"], {"weight": f["weight"], "bias": f["bias"]})


def _check_order(s: DDPScenario, workdir: Path) -> str | None:
    """Where torch's sampler gave a rank other rows than jaxreg's replay names, or None."""
    if s.batch_size is None:
        return None
    sampler = distributed.DistributedSampler(seed=s.seed)
    per = sampler.num_samples(s.n, WORLD)
    starts = list(range(0, per, s.batch_size))
    if s.drop_last:
        starts = starts[: per // s.batch_size]
    for r in range(WORLD):
        seen = np.load(workdir / f"torch-{s.name}-rank{r}.npy")
        expect = [
            sampler.indices(s.n, e, WORLD)[r, a : a + s.batch_size]
            for e in range(s.epochs)
            for a in starts
        ]
        if len(expect) != len(seen):
            return f"rank {r}: torch made {len(seen)} steps, the replay {len(expect)}"
        for step, (want, got) in enumerate(zip(expect, seen, strict=True)):
            if not np.array_equal(got[got >= 0], want):
                return f"rank {r} step {step}: torch's rows {got.tolist()}, replay {want.tolist()}"
    return None


def run(scenarios: list[DDPScenario], *, timeout_s: float = 240.0) -> list[dict[str, Any]]:
    """Train `scenarios` with torch DDP and with jaxreg, 2 processes each; one result row
    per scenario (the keys of `parity.report.row`, plus "description").

    Raises:
      RuntimeError: a program failed or ran past `timeout_s` (each launch), with its output.
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="parity-ddp-") as tmp:
        workdir = Path(tmp)
        for i, s in enumerate(scenarios):
            _write_problem(s, workdir, seed=i)
        specs = [_spec(s) for s in scenarios]
        (workdir / "scenarios.json").write_text(json.dumps(specs))
        start = time.perf_counter()
        _launch("parity.programs.ddp", workdir, timeout_s)
        torch_s = time.perf_counter() - start
        start = time.perf_counter()
        _launch(
            "parity.programs.jax_processes",
            workdir,
            timeout_s,
            env={"JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"},
        )
        jax_s = time.perf_counter() - start
        for s in scenarios:
            rows.append(_row(s, workdir, torch_s / len(scenarios), jax_s / len(scenarios)))
    return rows


def _row(s: DDPScenario, workdir: Path, torch_s: float, jax_s: float) -> dict[str, Any]:
    family = vocab.OPTIMIZERS[s.optimizer].family
    tol = default_tolerance(s.dtype, family)
    base = {
        "name": s.name,
        "source": "ddp",
        "dtype": s.dtype,
        "tolerance": tol.rtol,
        "tolerance_name": tol.name,
        "description": s.describe(),
        "torch_seconds": round(torch_s, 4),
        "jax_seconds": round(jax_s, 4),
    }
    wrong = _check_order(s, workdir)
    if wrong is not None:
        error = f"torch's DistributedSampler order is not jaxreg's replay: {wrong}"
        return (
            base
            | {"steps": None, "max_abs_dev": None, "max_rel_dev": None}
            | {
                "passed": False,
                "error": error,
            }
        )
    c = compare(
        s.name,
        _trajectory(workdir / f"torch-{s.name}.npz"),
        _trajectory(workdir / f"jax-{s.name}.npz"),
        tol,
    )
    w = c.worst
    return base | {
        "steps": c.steps,
        "max_abs_dev": c.max_abs,
        "max_rel_dev": c.max_rel,
        "passed": c.passed,
        "worst_quantity": w.name,
        "worst_step": w.worst_step,
        "summary": c.summary(),
    }


def main_rows(args) -> int:
    """`python -m parity --distributed` with the parsed options (`--only`, `--dtype`,
    `--list`, `--json`, `--perturb lr=...`): prints the table; exit status 0, 1 or 2."""
    scenarios = select(args.only, args.dtype)
    if not scenarios:
        print("python -m parity --distributed: error: no scenario matches", file=sys.stderr)
        return 2
    if args.list:
        for s in scenarios:
            print(f"{s.name:45s} ddp    {s.dtype:7s} {s.describe()}")
        return 0
    p = args.perturbation
    if p.pred_offset or p.loss_scale != 1.0:
        print(
            "python -m parity --distributed: error: only --perturb lr=FACTOR applies here",
            file=sys.stderr,
        )
        return 2
    if p.lr_factor != 1.0:
        scenarios = [dataclasses.replace(s, jax_lr_factor=p.lr_factor) for s in scenarios]
    start = time.perf_counter()
    rows = run(scenarios)
    print(report.table(rows))
    failed = [r["name"] for r in rows if not r["passed"]]
    print(
        f"\n{len(rows) - len(failed)} of {len(rows)} distributed scenarios passed in "
        f"{time.perf_counter() - start:.1f} s (torch DDP and jaxreg, {WORLD} processes each, "
        "gloo on 127.0.0.1)" + (f"; jax side perturbed: {p}" if p.active else "")
    )
    if failed:
        print("FAILED: " + ", ".join(failed))
    if args.json:
        with cli.writing("--json", args.json):
            report.write_json(args.json, rows)
    return 1 if failed else 0
