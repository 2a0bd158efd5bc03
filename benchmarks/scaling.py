"""Scaling rows: `jr.fit` on row-sharded data over 1, 2 and 4 devices and over 2 processes.

    python -m benchmarks.scaling [--smoke | --quick] [--json FILE]   # this section alone

Each configuration runs in a fresh process, since JAX fixes its devices when it starts:
K simulated CPU devices in one process (`XLA_FLAGS=--xla_force_host_platform_device_count=K`,
a 1-D mesh of K devices, rows split evenly), or 2 processes of one CPU device each joined
by `jax.distributed` over gloo on localhost (`python -m jaxreg.launch -n 2`). Every
configuration trains the same problem (`cases.linear_data`: linear + MSE + plain SGD,
float32, parameters replicated) two ways, each timed by `timing.measure` (first call with
its compile apart, warm-up, median of the timed calls):

- full batch: one `jr.fit` of `steps` steps on a `jr.Dataset` built once; per step. Each
  device reduces its rows, one all-reduce of the gradient a step.
- mini-batch epoch: one shuffled epoch (`epochs=1`, `batch_size=batch`, a new key each
  call) per call; each batch is gathered from the shards (one all-reduce of its rows) and
  the step runs replicated.

Read these rows on CPU as the cost of sharding, not as a speed-up: the simulated devices
share the machine's cores (XLA's CPU backend already uses them all for one device), and
the two processes share them too, adding gloo's TCP collectives. On a machine with one
accelerator per device the same rows measure scaling. `× 1 device` is the 1-device
configuration's time over this one's (above 1: faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import jax
import numpy as np

import jaxreg as jr
from benchmarks import cases
from benchmarks.timing import fmt_time, jax_sync, measure
from jaxreg import distributed

ROOT = Path(__file__).resolve().parents[1]
FULL, EPOCH = "full batch", "mini-batch epoch"


@dataclasses.dataclass(frozen=True)
class ScalingProblem:
    """Linear + MSE + SGD on (n, d) float32, n divisible by 4 and by `batch`."""

    n: int
    d: int
    steps: int  # full-batch steps per timed call
    batch: int
    repeats: int
    lr: float = 0.01

    @property
    def name(self) -> str:
        return f"linear n={self.n} d={self.d}"


def scaling_problem(smoke: bool = False, quick: bool = False) -> ScalingProblem:
    if smoke:
        return ScalingProblem(4096, 4, steps=5, batch=256, repeats=3)
    return ScalingProblem(2**19, 32, steps=10, batch=8192, repeats=3 if quick else 5)


# (label, devices per process, processes)
CONFIGS = (("1 device", 1, 1), ("2 devices", 2, 1), ("4 devices", 4, 1), ("2 processes", 1, 2))
CHILD_TIMEOUT_S = 180  # one configuration: JAX's start, data, two compiles, the timed calls


def run(sp: ScalingProblem) -> list[dict]:
    """Every configuration, one fresh process (or two) each; one row per (config, kind)."""
    rows = []
    for label, per_process, processes in CONFIGS:
        head = {"problem": sp.name, "config": label, "n": sp.n, "d": sp.d}
        head |= {"devices": per_process * processes, "processes": processes}
        try:
            got = _spawn(sp, per_process, processes)
        except Exception as e:  # one configuration failing must not hide the others
            traceback.print_exc()
            got = {kind: {"error": f"{type(e).__name__}: {e}"} for kind in (FULL, EPOCH)}
        for kind in (FULL, EPOCH):
            rows.append(head | {"kind": kind} | got[kind])
        for r in rows[-2:]:
            _print_row(r)
    reference = {
        r["kind"]: r["timing"]["median"]
        for r in rows
        if r["config"] == "1 device" and "timing" in r
    }
    for r in rows:
        if "timing" in r and r["kind"] in reference:
            r["x_1_device"] = reference[r["kind"]] / r["timing"]["median"]
    return rows


def _spawn(sp: ScalingProblem, per_process: int, processes: int) -> dict:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    flags.append(f"--xla_force_host_platform_device_count={per_process}")
    env = {**os.environ, "XLA_FLAGS": " ".join(flags)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    child = ["--child", *map(str, (sp.n, sp.d, sp.steps, sp.batch, sp.repeats, sp.lr))]
    if processes == 1:
        cmd = [sys.executable, "-m", "benchmarks.scaling", *child]
    else:
        cmd = [sys.executable, "-m", "jaxreg.launch", "-n", str(processes)]
        cmd += ["--timeout", str(CHILD_TIMEOUT_S - 10), str(Path(__file__)), *child]
    proc = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            out[row.pop("kind")] = row
    if proc.returncode != 0:  # the kinds timed before the failure keep their rows
        why = f"exit status {proc.returncode}: {failure_cause(proc.stderr)}"
        print(proc.stderr[-3000:], file=sys.stderr)
        out = {kind: out.get(kind, {"error": why}) for kind in (FULL, EPOCH)}
    return out


def failure_cause(stderr: str) -> str:
    """The line of a child's stderr that says why it failed: XLA's fatal log message (a
    line `F<date> <time> <thread> <file:line>] message`) if any, else the last line that
    is not a stack frame; its first 300 characters."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    fatal = [x.split("] ", 1)[-1] for x in lines if re.match(r"F\d{4} ", x)]
    plain = [x for x in lines if not x.startswith(("@", "***", "File ", "^"))]
    return ((fatal or plain or ["no output"])[-1])[:300]


def child(n: int, d: int, steps: int, batch: int, repeats: int, lr: float) -> None:
    """One configuration, in this process (and its peers): prints one JSON line per kind
    (process 0 only). Every process makes the same calls: no timing cut-off by elapsed
    time, which could leave one process waiting in a collective for the other."""
    if os.environ.get(distributed.ENV_NUM_PROCESSES):
        distributed.initialize(timeout_s=60)
    data = cases.linear_data(n, d)
    if jax.device_count() == 1:  # the baseline: one device, no mesh (as jr.fit is used)
        x, y = jax.device_put(data.x), jax.device_put(data.y)
    else:
        rows = distributed.row_sharding()
        mine = distributed.process_rows(n, rows)
        x = distributed.global_rows(data.x[mine.start : mine.stop], rows, n)
        y = distributed.global_rows(data.y[mine.start : mine.stop], rows, n)
    params = jr.linear.Params(data.weight, data.bias)  # host values: replicated by fit
    del data
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    tx = jr.optim.sgd(lr)
    dataset = jr.Dataset(x, y)
    calls = iter(range(2**31))

    def full():
        return jr.fit(loss_fn, tx, params, dataset, steps=steps).params

    def epoch():
        key = jax.random.key(np.uint32(next(calls)))
        return jr.fit(loss_fn, tx, params, dataset, epochs=1, batch_size=batch, key=key).params

    for kind, fn, work in ((FULL, full, steps), (EPOCH, epoch, 1)):
        t = measure(fn, sync=jax_sync, work=work, repeats=repeats, warmup=1)
        if jax.process_index() == 0:
            note = f"{jax.device_count()} device(s), {jax.process_count()} process(es)"
            row = {"kind": kind, "timing": t.as_dict(), "note": note}
            print(json.dumps(row), flush=True)


# ---------------------------------------------------------------------------- report


def _unit(kind: str) -> str:
    return "step" if kind == FULL else "epoch"


def _print_row(r: dict) -> None:
    t = r.get("timing")
    head = f"{r['problem']:28s} {r['config']:12s} {r['kind']:17s}"
    if t is None:
        print(f"{head} {r.get('error', '')}", flush=True)
        return
    ratio = f"  x{r['x_1_device']:.3g} vs 1 device" if "x_1_device" in r else ""
    print(
        f"{head} {fmt_time(t['median']):>10s}/{_unit(r['kind'])} "
        f"[{fmt_time(t['q1'])} - {fmt_time(t['q3'])}]  first call {fmt_time(t['first_s'])}" + ratio,
        flush=True,
    )


def markdown(rows: list[dict]) -> list[str]:
    """The scaling table (empty when there are no rows)."""
    if not rows:
        return []
    lines = [
        "",
        "Scaling: row-sharded data, simulated CPU devices in one process or 2 processes over "
        "gloo (benchmarks/scaling.py). On CPU the devices and processes share the same cores: "
        "these rows measure the overhead of sharding, not a speed-up.",
        "",
        "| scaling | configuration | kind | per step or epoch | IQR | × 1 device | first call |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['problem']} | {r['config']} | {r['kind']} |"
        t = r.get("timing")
        if t is None:
            why = " ".join(r.get("error", "").split())[:120].replace("|", "/")
            lines.append(f"{head} n/a | | | {why} |")
            continue
        x = r.get("x_1_device")
        lines.append(
            f"{head} {fmt_time(t['median'])}/{_unit(r['kind'])} | {fmt_time(t['q1'])} – "
            f"{fmt_time(t['q3'])} | {f'{x:.3g}' if x else ''} | {fmt_time(t['first_s'])} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (for tests)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    ap.add_argument("--child", nargs=6, metavar="ARG", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        n, d, steps, batch, repeats = map(int, args.child[:5])
        child(n, d, steps, batch, repeats, float(args.child[5]))
        return 0
    t0 = time.perf_counter()
    rows = run(scaling_problem(args.smoke, args.quick))
    print("\n".join(markdown(rows)))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all("timing" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
