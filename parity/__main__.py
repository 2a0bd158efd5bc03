"""`python -m parity`: train every scenario in torch and in jaxreg and compare them.

    python -m parity                       # everything; exit status 1 if any scenario fails
    python -m parity --list                # the scenarios, one per line
    python -m parity --only 't5*' --only adam --dtype float64
    python -m parity --json parity.json --report parity-report/
    python -m parity --perturb lr=1.001    # break the jax side on purpose: it must FAIL
    python -m parity -j 2                  # two worker processes

Exit status: 0 all passed, 1 a scenario failed (or raised), 2 bad usage or missing data.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from parity.problem import DATA_ENV, DataNotFoundError
from parity.registry import select
from parity.scenario import DTYPES, SOURCES, Perturbation

PERTURB_KEYS = {"lr": "lr_factor", "pred": "pred_offset", "loss": "loss_scale"}


def _perturbation(specs: list[str]) -> Perturbation:
    kw = {}
    for spec in specs:
        key, _, value = spec.partition("=")
        if key not in PERTURB_KEYS or not value:
            raise argparse.ArgumentTypeError(
                f"--perturb {spec!r}: expected lr=FACTOR, pred=OFFSET or loss=SCALE"
            )
        kw[PERTURB_KEYS[key]] = float(value)
    return Perturbation(**kw)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m parity",
        description="Train each scenario with PyTorch and with jaxreg from the same data and "
        "initial parameters; compare the losses and parameters after every step.",
    )
    p.add_argument("--list", action="store_true", help="list the selected scenarios and exit")
    p.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="scenarios whose name matches (a glob if it has *?[, else a substring); repeatable",
    )
    p.add_argument("--dtype", choices=DTYPES, help="only float32 or only float64 scenarios")
    p.add_argument("--source", choices=SOURCES, help="only the tutorials (seed) or the matrix")
    p.add_argument("--json", metavar="FILE", help="write one JSON object per scenario to FILE")
    p.add_argument("--report", metavar="DIR", help="write summary.md and PNG plots to DIR")
    p.add_argument(
        "--data",
        metavar="PATH",
        help=f"regression.csv for the real-data scenarios (or ${DATA_ENV})",
    )
    p.add_argument(
        "--perturb",
        action="append",
        default=[],
        metavar="KIND=VALUE",
        help="deliberately break the jax side (lr=1.001, pred=1e-4, loss=1.0001) to see it fail",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="run scenarios in N worker processes (default 1); each compares its own torch run",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    try:
        args.perturbation = _perturbation(args.perturb)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    return args


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the parity extra
        return None
    return tqdm(total=total, unit="scenario", file=sys.stderr, leave=False, dynamic_ncols=True)


def _run_all(scenarios, args, bar) -> list:
    """Each scenario's `Result` (or exception), in the scenarios' order."""
    from parity.runner import outcome, outcome_by_name

    if args.jobs == 1:
        outcomes = []
        for s in scenarios:
            if bar is not None:
                bar.set_description(s.name[:50])
            outcomes.append(outcome(s, args.data, args.perturbation))
            if bar is not None:
                bar.update()
        return outcomes
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # no fork of a process with XLA threads
    pool = ProcessPoolExecutor(args.jobs, mp_context=ctx)
    try:
        futures = {
            pool.submit(outcome_by_name, s.name, args.data, args.perturbation): i
            for i, s in enumerate(scenarios)
        }
        outcomes = [None] * len(scenarios)
        for f in as_completed(futures):
            i = futures[f]
            out = f.result()
            if not isinstance(out, BaseException):
                out = dataclasses.replace(out, scenario=scenarios[i])
            outcomes[i] = out
            if bar is not None:
                bar.update()
        return outcomes
    finally:
        pool.shutdown(cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = select(only=args.only, dtype=args.dtype, source=args.source)
    if not scenarios:
        print("no scenario matches the selection", file=sys.stderr)
        return 2
    if args.list:
        for s in scenarios:
            print(f"{s.name:70s} {s.source:6s} {s.dtype:7s} {s.describe()}")
        return 0

    from parity import report

    tty = sys.stdout.isatty() and sys.stderr.isatty()
    bar = _progress(len(scenarios), tty and not args.no_progress)
    start = time.perf_counter()
    try:
        outcomes = _run_all(scenarios, args, bar)
    except DataNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - start
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    rows = [
        report.error_row(s, o) if isinstance(o, BaseException) else report.row(o)
        for s, o in zip(scenarios, outcomes, strict=True)
    ]

    print(report.table(rows))
    failed = [r["name"] for r in rows if not r["passed"]]
    torch_s = sum(r.torch.seconds for r in results)
    jax_s = sum(r.jax.seconds for r in results)
    print(
        f"\n{len(rows) - len(failed)} of {len(rows)} scenarios passed in {elapsed:.1f} s "
        f"(torch {torch_s:.1f} s, jax incl. compilation {jax_s:.1f} s)"
        + (f"; jax side perturbed: {args.perturbation}" if args.perturbation.active else "")
    )
    if failed:
        print("FAILED: " + ", ".join(failed))
    if args.json:
        report.write_json(args.json, rows)
    if args.report:
        path = report.write_report(args.report, results, rows)
        print(f"report: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
