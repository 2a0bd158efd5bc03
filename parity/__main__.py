"""`python -m parity`: train every scenario in torch and in jaxreg and compare them.

    python -m parity                       # everything; exit status 1 if any scenario fails
    python -m parity --list                # the scenarios, one per line
    python -m parity --only 't5*' --only adam --dtype float64
    python -m parity --json parity.json --report parity-report/
    python -m parity --perturb lr=1.001    # break the jax side on purpose: it must FAIL
    python -m parity -j 2                  # two worker processes
    python -m parity --distributed         # torch DDP vs jaxreg, 2 processes each (gloo)

Exit status: 0 all passed, 1 a scenario failed (or raised), 2 bad usage or missing data
(every option is checked before any work, output paths included), 74 an output could not
be written, 141 standard output closed early (`| head`), 130 Ctrl-C, 143 SIGTERM; the
last four end the worker processes too (see `jaxreg.cli`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from jaxreg import cli
from parity import distributed, report
from parity.problem import DATA_ENV, DataNotFoundError
from parity.registry import select
from parity.runner import outcome, outcome_by_name
from parity.scenario import DTYPES, SOURCES, Perturbation

PROG = "python -m parity"
PERTURB_KEYS = {"lr": "lr_factor", "pred": "pred_offset", "loss": "loss_scale"}


def _perturb_spec(spec: str) -> tuple[str, float]:
    """argparse `type=` for one `--perturb KIND=VALUE`: (KIND, VALUE)."""
    key, sep, text = spec.partition("=")
    if key not in PERTURB_KEYS or not sep:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected lr=FACTOR, pred=OFFSET or loss=SCALE")
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: {text!r} is not a number") from None
    if not math.isfinite(value) or (key == "lr" and value <= 0):
        need = "a positive, finite factor" if key == "lr" else "a finite number"
        raise argparse.ArgumentTypeError(f"{spec!r}: {key} needs {need}")
    return key, value


def _perturbation(specs: list[tuple[str, float]]) -> Perturbation:
    kw = {}
    for key, value in specs:
        if PERTURB_KEYS[key] in kw:
            raise argparse.ArgumentTypeError(f"{key}= given twice")
        kw[PERTURB_KEYS[key]] = value
    return Perturbation(**kw)


def _jobs(text: str) -> int:
    """argparse `type=` for `--jobs`: an integer, at least 1."""
    try:
        jobs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"{jobs}: must be at least 1")
    return jobs


def _data_file(path: str) -> str:
    """argparse `type=` for `--data`: an existing file (checked now, not mid-run)."""
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "does not exist"
        raise argparse.ArgumentTypeError(
            f"{path} {what}; the real-data scenarios need regression.csv (columns x,y)"
        )
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG,
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
    p.add_argument(
        "--json",
        metavar="FILE",
        type=cli.output_file,
        help="write one JSON object per scenario to FILE (its directory must exist)",
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        type=cli.output_dir,
        help="write summary.md and PNG plots to DIR (created if missing; its parent must exist)",
    )
    p.add_argument(
        "--data",
        metavar="PATH",
        type=_data_file,
        help=f"regression.csv for the real-data scenarios (or ${DATA_ENV})",
    )
    p.add_argument(
        "--perturb",
        action="append",
        default=[],
        type=_perturb_spec,
        metavar="KIND=VALUE",
        help="deliberately break the jax side (lr=1.001, pred=1e-4, loss=1.0001) to see it fail",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=_jobs,
        default=1,
        metavar="N",
        help="run scenarios in N worker processes (default 1), each comparing its own torch "
        f"run; capped at the usable CPUs ({cli.usable_cpus()} here) and the number of "
        "selected scenarios, since each worker holds about 0.5 GB.",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="the data-parallel scenarios instead: torch DistributedDataParallel against "
        "jaxreg's multi-process fit, 2 processes each over gloo (parity.distributed); "
        "--only, --dtype, --list, --json and --perturb lr= apply",
    )
    args = p.parse_args(argv)
    try:
        args.perturbation = _perturbation(args.perturb)
    except argparse.ArgumentTypeError as e:
        p.error(f"argument --perturb: {e}")
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
    jobs = cli.worker_count(args.jobs, len(scenarios))
    if jobs > 1:
        return _run_in_workers(scenarios, args, bar, jobs)
    outcomes = []
    for s in scenarios:
        if bar is not None:
            bar.set_description(s.name[:50])
        outcomes.append(outcome(s, args.data, args.perturbation))
        if bar is not None:
            bar.update()
    return outcomes


def _run_in_workers(scenarios, args, bar, jobs: int) -> list:
    """`_run_all` in `jobs` worker processes. Anything that ends the run early (an
    exception, Ctrl-C, SIGTERM via `cli.run`) terminates the workers."""
    pool = ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("spawn"),  # no fork of a process with XLA threads
        initializer=cli.worker_init,
        initargs=(os.getpid(),),
    )
    try:
        with cli.ctrl_c_deferred():  # submit starts the workers
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
    except BaseException:
        cli.stop_workers(pool)
        raise
    finally:
        pool.shutdown(cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.distributed:
        return distributed.main_rows(args)
    scenarios = select(only=args.only, dtype=args.dtype, source=args.source)
    if not scenarios:
        chosen = [("--only", o) for o in args.only or []]
        chosen += [(k, v) for k, v in (("--dtype", args.dtype), ("--source", args.source)) if v]
        given = " ".join(f"{k} {v}" for k, v in chosen)
        print(f"{PROG}: error: no scenario matches {given}", file=sys.stderr)
        return 2
    if args.list:
        for s in scenarios:
            print(f"{s.name:70s} {s.source:6s} {s.dtype:7s} {s.describe()}")
        return 0

    tty = sys.stdout.isatty() and sys.stderr.isatty()
    bar = _progress(len(scenarios), tty and not args.no_progress)
    start = time.perf_counter()
    try:
        outcomes = _run_all(scenarios, args, bar)
    except DataNotFoundError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
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
        with cli.writing("--json", args.json):
            report.write_json(args.json, rows)
    if args.report:
        with cli.writing("--report", args.report):
            path = report.write_report(args.report, results, rows)
        print(f"report: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))
