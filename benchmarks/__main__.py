"""`python -m benchmarks`: training-step throughput, jaxreg against PyTorch, on CPU or GPU.

    python -m benchmarks                       # full run (about 10 minutes on 2 CPU cores)
    python -m benchmarks --quick               # fewer repeats (a few minutes)
    python -m benchmarks --json out.json --plot out.png --markdown out.md
    python -m benchmarks --device gpu          # torch cuda + jax gpu; skipped when absent
    python -m benchmarks --only fit --sizes tutorial

Each row: the median time per training step with its interquartile range, steps per
second, the ratio to the torch eager loop measured in the same run, the one-off cost of
the first call (compilation), and for the large problems the share of the one-read floor
(bytes of X / the read bandwidth measured at the start of the run).

With the large size (and, shrunk, in --smoke) three more sections, on 1e6 x 32 float32
linear regression: one shuffled mini-batch SGD epoch (batch 256 and 4096) of `jr.fit`
against torch's DataLoader loop and a randperm+index loop; the least-squares Gram path
(`gram=True`, 1000 steps, the precompute counted) per step against torch eager; and the
peak memory of each fit over a process holding X, each in a fresh process
(benchmarks/memory.py; CPU only). And the scaling rows (benchmarks/scaling.py; CPU only):
a full-batch fit and a mini-batch epoch on row-sharded data over 1, 2 and 4 simulated
devices and 2 processes (on CPU: the overhead of sharding, not a speed-up).

Every option is checked before anything runs (a bad value, an output path that cannot be
written, a plot format matplotlib cannot write: exit status 2). Output files are written
atomically. Exit status 74: an output could not be written; 141: standard output closed
early (`| head`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import traceback

import jax
import jaxlib
import numpy as np

import jaxreg
from benchmarks import cases, memory, plot, roofline, scaling
from benchmarks.timing import fmt_time, measure
from jaxreg import cli, files

TORCH_EAGER = "torch eager"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    meta = _meta(args)
    print(f"# jaxreg benchmarks - {meta['device']} - {meta['date']}", flush=True)
    if args.device == "gpu" and not meta["gpu"]["torch"] and not meta["gpu"]["jax"]:
        print("No GPU here (torch.cuda and jax see none): nothing to run, skipped.")
        results = {"meta": meta, "skipped": "no GPU", "rows": [], "many": [], "targets": []}
        results |= {"minibatch": [], "gram": [], "memory": [], "scaling": []}
        _write(results, args)
        return 0
    problems = cases.problems(args.sizes, smoke=args.smoke)
    floors = {}
    # The floor first, before any JAX work on large arrays (see roofline.py).
    for p in problems:
        if p.size == "large" and (p.n, p.d) not in floors:
            data = cases.make_data(p)
            floors[(p.n, p.d)] = roofline.read_floor(data.x, repeats=5 if args.quick else 15)
            f = floors[(p.n, p.d)]
            print(
                f"one-read floor over X ({p.n} x {p.d} float32, {f['bytes'] / 1e6:.0f} MB): "
                f"{f['floor_s'] * 1e3:.2f} ms ({f['bandwidth_gb_s']:.1f} GB/s)",
                flush=True,
            )
    extra = "large" in args.sizes or args.smoke  # the 1e6 x 32 sections (tiny in --smoke)
    gram_problem = None
    if extra and not args.no_gram:
        linear = (p for p in problems if p.model == "linear" and p.out == 1)
        gram_problem = max(linear, key=lambda p: p.n * p.d)
    rows, gram = [], []
    for p in problems:
        data = cases.make_data(p)
        reference = None
        for name, make in cases.BACKENDS.items():
            if name != TORCH_EAGER and args.only and args.only not in name:
                continue
            if name == "torch.compile" and args.no_compile:
                continue
            row = _row(p, name, make, data, args, floors.get((p.n, p.d)))
            if name == TORCH_EAGER:
                reference = row.get("timing")
            if reference and row.get("timing"):
                row["x_torch_eager"] = reference["median"] / row["timing"]["median"]
            rows.append(row)
            _print_row(row)
        if p is gram_problem:
            gram.append(_gram_row(p, data, args, reference))
        del data
    minibatch = _minibatch(args) if extra and not args.no_minibatch else []
    mem = []
    if extra and not args.no_memory and args.device == "cpu":
        mem = _memory(args)
    scale = []
    if extra and not args.no_scaling and args.device == "cpu":
        scale = scaling.run(scaling.scaling_problem(args.smoke, args.quick))
    many = [] if args.no_many else _many(args)
    results = {"meta": meta, "floors": {f"{k[0]}x{k[1]}": v for k, v in floors.items()}}
    results |= {"rows": rows, "many": many, "minibatch": minibatch, "gram": gram, "memory": mem}
    results["scaling"] = scale
    results["targets"] = targets(results)
    print()
    print(markdown(results))
    _write(results, args)
    return 0


def _row(p, name, make, data, args, floor) -> dict:
    row = {"problem": p.name, "model": p.model, "n": p.n, "d": p.d, "size": p.size}
    row |= {"out": p.out, "backend": name}
    try:
        runner = make(p, data, _torch_device(args.device) if "torch" in name else args.device)
        reps = {"tutorial": 30, "middle": 15, "large": 7}[p.size]
        if args.quick:
            reps = max(5, reps // 3)
        if args.smoke:
            reps = 3
        t = measure(
            runner.run,
            sync=runner.sync,
            work=runner.work,
            repeats=reps,
            warmup=1 if args.smoke else 2,
            max_seconds=2 if args.smoke else (6 if args.quick else 20),
        )
        row["timing"] = t.as_dict()
        if runner.setup_s is not None:  # compiled before the first timed call
            row["timing"]["first_s"] = runner.setup_s
            row["timing"]["compile_s"] = max(0.0, runner.setup_s - t.median * runner.work)
        row["steps_per_call"] = runner.work
        if floor:
            row["floor_share"] = floor["floor_s"] / t.median
    except cases.Unsupported as e:
        row["unsupported"] = str(e)
    except Exception as e:  # a backend failing must not hide the others' numbers
        row["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    return row


def _gram_row(p, data, args, reference) -> dict:
    """`jr.fit(..., gram=True)`, 1000 steps a call on a fresh Dataset (the precompute
    counted), per step against the torch eager loop of the same problem in this run."""
    row = {"problem": p.name, "backend": cases.GRAM_BACKEND, "n": p.n, "d": p.d}
    try:
        runner = cases.gram_fit(p, data, args.device)
        t = measure(
            runner.run,
            sync=runner.sync,
            work=runner.work,
            repeats=3 if args.smoke else (5 if args.quick else 15),
            warmup=1,
            max_seconds=2 if args.smoke else (6 if args.quick else 20),
        )
        row["timing"] = t.as_dict()
        row["steps_per_call"] = runner.work
        row["note"] = runner.note
        if reference:
            row["x_torch_eager"] = reference["median"] / t.median
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    t = row.get("timing")
    if t:
        ratio = f"  x{row['x_torch_eager']:.3g} vs eager" if "x_torch_eager" in row else ""
        print(
            f"{p.name:28s} {row['backend']:18s} {fmt_time(t['median']):>10s}/step "
            f"({fmt_time(t['median'] * t['work'])} a {t['work']}-step call, precompute "
            f"counted)" + ratio,
            flush=True,
        )
    else:
        print(f"{p.name:28s} {row['backend']:18s} {row.get('error')}", flush=True)
    return row


def _minibatch(args) -> list[dict]:
    """One shuffled epoch per timed call, each batch size: jr.fit against the torch loops.

    The DataLoader epoch takes ~5 s (b=256) to ~12 s (b=4096) at 1e6 x 32 on 2 cores: it is
    timed fewer times (the note says how many)."""
    mp = cases.minibatch_problem(args.smoke)
    data = cases.linear_data(mp.n, mp.d)
    out = []
    for b in mp.batch_sizes:
        reference = {}
        for name, make in cases.MINIBATCH_BACKENDS.items():
            row = {"problem": mp.name, "backend": name, "batch": b, "n": mp.n, "d": mp.d}
            slow = name == cases.TORCH_LOADER and not args.smoke
            reps = 3 if args.smoke else (1 if slow and args.quick else 2 if slow else 5)
            jax_side = name.startswith("jaxreg")
            try:
                dev = _torch_device(args.device) if "torch" in name else args.device
                runner = make(mp, data, b, dev)
                t = measure(
                    runner.run,
                    sync=runner.sync,
                    work=runner.work,
                    repeats=reps,
                    warmup=1 if jax_side else 0,
                    max_seconds=2 if args.smoke else (6 if args.quick else 20),
                )
                row["timing"] = t.as_dict()
                untimed = 2 if jax_side else 1
                row["note"] = f"{t.repeats} timed epoch(s) after {untimed} untimed"
                reference[name] = t.median
                for ref in (cases.TORCH_LOADER, cases.TORCH_RANDPERM):
                    if ref in reference and ref != name:
                        row[f"x_{ref}"] = reference[ref] / t.median
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {e}"
                traceback.print_exc()
            out.append(row)
            t = row.get("timing")
            ratios = "".join(
                f"  x{row[f'x_{r}']:.3g} vs {r}"
                for r in (cases.TORCH_LOADER, cases.TORCH_RANDPERM)
                if f"x_{r}" in row
            )
            print(
                f"{mp.name:28s} b={b:<5d} {name:22s} "
                + (
                    f"{fmt_time(t['median']):>10s}/epoch ({row['note']})" + ratios
                    if t
                    else row.get("error", "")
                ),
                flush=True,
            )
    return out


def _memory(args) -> list[dict]:
    """Peak RSS of each fit over a process holding X, one fresh process each (memory.py)."""
    mp = cases.minibatch_problem(args.smoke)
    out = []
    for config in memory.configurations(mp, smoke=args.smoke):
        row = {"problem": mp.name, **config}
        try:
            row |= memory.measure(config, mp.n, mp.d)
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {e}"
        out.append(row)
        batch = f"b={row['batch']}" if row.get("batch") else "full batch"
        if "error" in row:
            print(f"{mp.name:28s} {row['backend']:22s} {batch:10s} {row['error']}", flush=True)
            continue
        x = row["x_bytes"]
        print(
            f"{mp.name:28s} {row['backend']:22s} {batch:10s} peak "
            f"{row['peak_extra'] / x:5.2f} X over the process holding X "
            f"({_fmt_bytes(row['peak_extra'])}); the call's own "
            f"{row['call_extra'] / x:.2f} X; first call {row['first_extra'] / x:.2f} X",
            flush=True,
        )
    return out


def _many(args) -> list[dict]:
    mp = cases.ManyProblem(models=10_000, n=100, d=3, steps=100)
    if args.smoke:
        mp = cases.ManyProblem(models=20, n=10, d=2, steps=5, loop_sample=4)
    data = cases.many_data(mp)
    out, reference = [], {}
    for name, make in cases.MANY_BACKENDS.items():
        row = {"problem": mp.name, "backend": name, "models": mp.models, "steps": mp.steps}
        try:
            dev = _torch_device(args.device) if "torch" in name else args.device
            runner = make(mp, data, dev)
            t = measure(
                runner.run,
                sync=runner.sync,
                work=runner.work,
                repeats=3 if args.smoke else (5 if args.quick else 10),
                max_seconds=2 if args.smoke else 20,
            )
            row["timing"] = t.as_dict()
            row["note"] = runner.note
            reference[name] = t.median
            for ref in ("torch loop over models", "torch bmm (batched)"):
                if ref in reference and ref != name:
                    row[f"x_{ref}"] = reference[ref] / t.median
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        out.append(row)
        t = row.get("timing")
        print(
            f"{mp.name:32s} {name:26s} "
            + (f"{t['median'] * 1e3:10.3f} ms/step (all models)" if t else row.get("error", "")),
            flush=True,
        )
    return out


# ---------------------------------------------------------------------------- report


def _fmt_bytes(b: float) -> str:
    return f"{b / 2**20:.0f} MiB" if abs(b) >= 2**20 else f"{b / 2**10:.0f} KiB"


def _print_row(row: dict) -> None:
    t = row.get("timing")
    if t is None:
        print(
            f"{row['problem']:28s} {row['backend']:18s} "
            f"{row.get('unsupported') or row.get('error')}",
            flush=True,
        )
        return
    extra = f"  x{row['x_torch_eager']:.3g} vs eager" if "x_torch_eager" in row else ""
    if "floor_share" in row:
        extra += f"  {row['floor_share'] * 100:.0f}% of floor"
    print(
        f"{row['problem']:28s} {row['backend']:18s} {fmt_time(t['median']):>10s}/step "
        f"[{fmt_time(t['q1'])} - {fmt_time(t['q3'])}]  first call {fmt_time(t['first_s'])}" + extra,
        flush=True,
    )


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        f"Measured {meta['date']} on {meta['device']}; jax {meta['versions']['jax']}, "
        f"torch {meta['versions']['torch']}, numpy {meta['versions']['numpy']}. float32, "
        "full batch, plain SGD; times per training step, median [interquartile range]; "
        "ratios to the torch eager loop in the same run.",
        "",
        "| problem | backend | per step | IQR | steps/s | × torch eager | first call | "
        "% of one-read floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        t = r.get("timing")
        if t is None:
            why = (r.get("unsupported") or r.get("error") or "")[:120].replace("|", "/")
            lines.append(f"| {r['problem']} | {r['backend']} | n/a | | | | | {why} |")
            continue
        ratio = f"{r['x_torch_eager']:.3g}" if "x_torch_eager" in r else ""
        floor = f"{r['floor_share'] * 100:.0f}%" if "floor_share" in r else ""
        lines.append(
            f"| {r['problem']} | {r['backend']} | {fmt_time(t['median'])} | "
            f"{fmt_time(t['q1'])} – {fmt_time(t['q3'])} | {t['per_second']:.3g} | {ratio} | "
            f"{fmt_time(t['first_s'])} | {floor} |"
        )
    if results.get("many"):
        lines += [
            "",
            "| many models | backend | per step, all models | × torch loop | × torch bmm | note |",
            "|---|---|---|---|---|---|",
        ]
        for r in results["many"]:
            t = r.get("timing")
            if t is None:
                lines.append(f"| {r['problem']} | {r['backend']} | {r.get('error', '')} | | | |")
                continue
            a = r.get("x_torch loop over models")
            b = r.get("x_torch bmm (batched)")
            lines.append(
                f"| {r['problem']} | {r['backend']} | {fmt_time(t['median'])} | "
                f"{f'{a:.3g}' if a else ''} | {f'{b:.3g}' if b else ''} | {r.get('note', '')} |"
            )
    lines += _markdown_extra(results)
    lines += scaling.markdown(results.get("scaling", []))
    if results.get("targets"):
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        for tg in results["targets"]:
            lines.append(f"| {tg['target']} | {tg['measured']} | {'yes' if tg['met'] else 'NO'} |")
    return "\n".join(lines)


def _markdown_extra(results: dict) -> list[str]:
    """The mini-batch, Gram path and peak memory tables (those the run has)."""
    lines = []
    loader, perm = cases.TORCH_LOADER, cases.TORCH_RANDPERM
    if results.get("minibatch"):
        lines += [
            "",
            "| mini-batch SGD, one shuffled epoch | batch | backend | per epoch | IQR | "
            f"× {loader} | × {perm} | timed |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in results["minibatch"]:
            t = r.get("timing")
            head = f"| {r['problem']} | {r['batch']} | {r['backend']} |"
            if t is None:
                lines.append(f"{head} n/a | | | | {r.get('error', '')[:120]} |")
                continue
            a, b = r.get(f"x_{loader}"), r.get(f"x_{perm}")
            lines.append(
                f"{head} {fmt_time(t['median'])} | {fmt_time(t['q1'])} – "
                f"{fmt_time(t['q3'])} | {f'{a:.3g}' if a else ''} | {f'{b:.3g}' if b else ''} "
                f"| {r['note']} |"
            )
    if results.get("gram"):
        lines += [
            "",
            "| least squares, Gram path | backend | steps a call | per call | per step | "
            "× torch eager per step | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["gram"]:
            t = r.get("timing")
            if t is None:
                lines.append(f"| {r['problem']} | {r['backend']} | n/a | | | | {r.get('error')} |")
                continue
            x = r.get("x_torch_eager")
            lines.append(
                f"| {r['problem']} | {r['backend']} | {t['work']} | "
                f"{fmt_time(t['median'] * t['work'])} | {fmt_time(t['median'])} | "
                f"{f'{x:.3g}' if x else ''} | {r.get('note', '')} |"
            )
    if results.get("memory"):
        lines += [
            "",
            "Peak memory: each fit in a fresh process; the peak RSS during its second call "
            "over the RSS of the process holding X (after the same fit on 1024 rows, so that "
            "library pages and thread pools are in the baseline), in multiples of X's size "
            '(benchmarks/memory.py). "the call\'s own": over the RSS just before that call.',
            "",
            "| peak memory | backend | batch | X | peak over X-holding process | × X | "
            "bytes/row | the call's own, × X | first call, × X |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results["memory"]:
            batch = r.get("batch") or "full"
            head = f"| {r['problem']} | {r['backend']} | {batch} |"
            if "error" in r:
                lines.append(f"{head} | n/a | | | | {r['error'][:120]} |")
                continue
            x = r["x_bytes"]
            lines.append(
                f"{head} {_fmt_bytes(x)} | {_fmt_bytes(r['peak_extra'])} | "
                f"{r['peak_extra'] / x:.2f} | {r['peak_extra'] / r['n']:.0f} | "
                f"{r['call_extra'] / x:.2f} | {r['first_extra'] / x:.2f} |"
            )
    return lines


# Large full batch, per model: (× torch eager, share of the one-read floor) that issue 7
# asks of `fit` (logistic: 3x and 50%; linear: 2x), and the earlier stretch goal of 75% of
# the floor for both.
_LARGE_TARGETS = {"linear": (2, 0.75), "logistic": (3, 0.5)}
_FLOOR_STRETCH = 0.75


def targets(results: dict) -> list[dict]:
    """The issue's speed targets, checked against this run's rows."""
    rows = {(r["problem"], r["backend"]): r for r in results["rows"]}
    out = []

    def ratio(problem, backend):
        return rows.get((problem, backend), {}).get("x_torch_eager")

    for problem, need in (
        ("linear n=3 d=1", 300),
        ("logistic n=3 d=1", 300),
        ("linear n=100 d=3", 300),
        ("logistic n=100 d=3", 100),
    ):
        r = ratio(problem, "jaxreg fit")
        if r is not None:
            out.append(
                {
                    "target": f"fit ≥{need}× torch eager, {problem}",
                    "measured": f"{r:.0f}×",
                    "met": r >= need,
                }
            )
    for (problem, backend), row in rows.items():
        if (
            backend == "jaxreg make_step"
            and row.get("size") == "tutorial"
            and "x_torch_eager" in row
        ):
            r = row["x_torch_eager"]
            out.append(
                {
                    "target": f"make_step ≥5× torch eager, {problem}",
                    "measured": f"{r:.1f}×",
                    "met": r >= 5,
                }
            )
        if backend == "jaxreg fit" and row.get("timing"):
            c = row["timing"]["compile_s"]
            out.append(
                {
                    "target": f"first compile of fit < 1 s, {problem}",
                    "measured": f"{c:.2f} s",
                    "met": c < 1,
                }
            )
        one = row.get("out", 1) == 1  # issue 7's large targets are the one-output models
        if backend == "jaxreg fit" and row.get("size") == "large" and one and row.get("timing"):
            need, floor = _LARGE_TARGETS[problem.split()[0]]
            r = row.get("x_torch_eager", 0)
            out.append(
                {
                    "target": f"fit ≥{need}× torch eager, {problem}",
                    "measured": f"{r:.2f}×",
                    "met": r >= need,
                }
            )
            s = row.get("floor_share", 0)
            for share in sorted({floor, _FLOOR_STRETCH}):
                out.append(
                    {
                        "target": f"fit ≥{share:.0%} of the one-read floor, {problem}",
                        "measured": f"{s * 100:.0f}%",
                        "met": s >= share,
                    }
                )
    out += _targets_extra(results)
    for r in results.get("many", []):
        if r["backend"].startswith("jaxreg") and r.get("timing"):
            a = r.get("x_torch loop over models", 0)
            b = r.get("x_torch bmm (batched)", 0)
            out.append(
                {
                    "target": f"fit_many ≥100× torch loop, {r['problem']}",
                    "measured": f"{a:.0f}×",
                    "met": a >= 100,
                }
            )
            out.append(
                {
                    "target": f"fit_many faster than torch bmm, {r['problem']}",
                    "measured": f"{b:.2f}×",
                    "met": b > 1,
                }
            )
    return out


def _targets_extra(results: dict) -> list[dict]:
    """The issue's mini-batch, Gram path and memory targets."""
    out = []
    rows = [r for r in results.get("minibatch", []) if r["backend"].startswith("jaxreg")]
    sizes = sorted({r["batch"] for r in rows})
    for r in rows:
        if r["batch"] == sizes[0] and f"x_{cases.TORCH_LOADER}" in r:
            x = r[f"x_{cases.TORCH_LOADER}"]
            out.append(
                {
                    "target": f"mini-batch b={r['batch']} ≥10× torch DataLoader, {r['problem']}",
                    "measured": f"{x:.1f}×",
                    "met": x >= 10,
                }
            )
        if r["batch"] == sizes[-1] and f"x_{cases.TORCH_RANDPERM}" in r:
            x = r[f"x_{cases.TORCH_RANDPERM}"]
            out.append(
                {
                    "target": f"mini-batch b={r['batch']} faster than torch randperm+index, "
                    f"{r['problem']}",
                    "measured": f"{x:.2f}×",
                    "met": x > 1,
                }
            )
    for r in results.get("gram", []):
        if "x_torch_eager" in r:
            x = r["x_torch_eager"]
            out.append(
                {
                    "target": "Gram path ≥100× torch eager per step over a 1000-step fit, "
                    f"counting the precompute, {r['problem']}",
                    "measured": f"{x:.0f}×",
                    "met": x >= 100,
                }
            )
    if results["meta"].get("mode") != "smoke":  # a tiny X is lost in the RSS's noise
        for r in results.get("memory", []):
            if r["backend"].startswith("jaxreg") and "peak_extra" in r:
                x = r["peak_extra"] / r["x_bytes"]
                batch = f"b={r['batch']}" if r.get("batch") else "full batch"
                out.append(
                    {
                        "target": f"peak ≤ X + O(n) (extra < 1× X: no copy of X), "
                        f"{r['problem']}, {r['backend']}, {batch}",
                        "measured": f"{x:.2f}× X",
                        "met": x < 1,
                    }
                )
    return out


# ----------------------------------------------------------------------------- setup


def _sizes(text: str) -> list[str]:
    """argparse `type=` for `--sizes`: known size names, each once."""
    sizes = [s.strip() for s in text.split(",")]
    unknown = [s for s in sizes if s not in cases.SIZES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown size {unknown[0]!r} in {text!r}; choose from {', '.join(cases.SIZES)}"
        )
    if len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"{text!r} names a size twice")
    return sizes


def _only(text: str) -> str:
    """argparse `type=` for `--only`: a part of at least one backend's name."""
    if not any(text in name for name in cases.BACKENDS if name != TORCH_EAGER):
        names = ", ".join(n for n in cases.BACKENDS if n != TORCH_EAGER)
        raise argparse.ArgumentTypeError(f"{text!r} is in no backend's name ({names})")
    return text


def _plot_file(path: str) -> str:
    """argparse `type=` for `--plot`: a writable path in a format matplotlib writes."""
    try:
        plot.image_format(path)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return cli.output_file(path)


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a few minutes)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (for tests)")
    ap.add_argument(
        "--json", metavar="FILE", type=cli.output_file, help="write all results as JSON"
    )
    ap.add_argument(
        "--plot",
        metavar="FILE.png",
        type=_plot_file,
        help="steps/s vs size, one line per backend (format from the suffix: png, pdf, svg, ...)",
    )
    ap.add_argument(
        "--markdown", metavar="FILE.md", type=cli.output_file, help="write the results table"
    )
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument(
        "--sizes",
        type=_sizes,
        default=",".join(cases.SIZES),
        help=f"comma-separated: {', '.join(cases.SIZES)}",
    )
    ap.add_argument(
        "--only",
        type=_only,
        help="only backends whose name contains this (torch eager always)",
    )
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--no-many", action="store_true", help="skip the many-models benchmark")
    ap.add_argument(
        "--no-minibatch",
        action="store_true",
        help="skip the mini-batch epoch benchmark (runs with the large size; the torch "
        "DataLoader epochs alone take about a minute)",
    )
    ap.add_argument(
        "--no-gram", action="store_true", help="skip the Gram path (least squares) benchmark"
    )
    ap.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory measurements (a fresh process each; CPU only)",
    )
    ap.add_argument(
        "--no-scaling",
        action="store_true",
        help="skip the scaling rows (1, 2, 4 simulated devices and 2 processes; CPU only)",
    )
    args = ap.parse_args(argv)
    if args.smoke:
        args.sizes = ["tutorial", "middle"]
        args.no_compile = True  # torch.compile's first call alone takes many seconds
    return args


def _torch_device(device: str) -> str:
    return "cuda" if device == "gpu" else "cpu"


def _meta(args) -> dict:
    import torch

    gpu = {
        "torch": bool(torch.cuda.is_available()),
        "jax": any(d.platform == "gpu" for d in jax.devices()),
    }
    if args.device == "gpu" and gpu["torch"]:
        device = f"GPU: {torch.cuda.get_device_name(0)}"
    else:
        device = f"CPU: {_cpu_name()}, {os.cpu_count()} cores"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device,
        "device_kind": args.device,
        "gpu": gpu,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {
            "jaxreg": jaxreg.__version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "mode": "smoke" if args.smoke else ("quick" if args.quick else "full"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _write(results: dict, args) -> None:
    """The requested output files, each written atomically."""
    if args.json:
        with cli.writing("--json", args.json):
            files.write_bytes(args.json, json.dumps(results, indent=1).encode())
        print(f"wrote {args.json}")
    if args.markdown:
        with cli.writing("--markdown", args.markdown):
            files.write_bytes(args.markdown, (markdown(results) + "\n").encode())
        print(f"wrote {args.markdown}")
    if args.plot and results["rows"]:
        with cli.writing("--plot", args.plot):
            plot.plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m benchmarks"))
