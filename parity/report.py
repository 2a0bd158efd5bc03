"""One report of a parity run: a table on stdout, JSON rows, and a Markdown + PNG report.

matplotlib is imported only by `write_report` (Agg backend), never by `import parity`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxreg import files
from parity.compare import format_float
from parity.forms import FORMS, line_of
from parity.runner import Result
from parity.tolerances import describe_all, tolerance_for

COLUMNS = (
    "scenario",
    "source",
    "dtype",
    "steps",
    "max abs dev",
    "max rel dev",
    "tolerance",
    "result",
)


def row(result: Result) -> dict[str, Any]:
    """The JSON object of one scenario (also the source of the table's row)."""
    s, c = result.scenario, result.comparison
    w = c.worst
    return {
        "name": s.name,
        "source": s.source,
        "dtype": s.dtype,
        "steps": c.steps,
        "max_abs_dev": _json_float(c.max_abs),
        "max_rel_dev": _json_float(c.max_rel),
        "tolerance": c.tolerance.rtol,
        "tolerance_name": c.tolerance.name,
        "passed": c.passed,
        "worst_quantity": w.name,
        "worst_step": w.worst_step,
        "deviations": {
            k: {
                "max_abs": _json_float(d.max_abs),
                "max_rel": _json_float(d.max_rel),
                "worst_step": d.worst_step,
                "scale": d.scale,
            }
            for k, d in c.deviations.items()
        },
        "optimizer": s.optimizer if s.lesson is None else None,
        "description": s.describe(),
        "note": s.note,
        "torch_seconds": round(result.torch.seconds, 4),
        "jax_seconds": round(result.jax.seconds, 4),
    }


def error_row(scenario, error: BaseException) -> dict[str, Any]:
    """The JSON object of a scenario that raised instead of producing a trajectory."""

    return {
        "name": scenario.name,
        "source": scenario.source,
        "dtype": scenario.dtype,
        "steps": None,
        "max_abs_dev": None,
        "max_rel_dev": None,
        "tolerance": tolerance_for(scenario).rtol,
        "passed": False,
        "error": f"{type(error).__name__}: {error}",
        "description": scenario.describe(),
        "note": scenario.note,
    }


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)  # JSON has no inf/NaN


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width text table, one line per scenario; FAIL on every failing row."""
    lines = [
        (
            r["name"],
            r["source"],
            r["dtype"],
            "-" if r["steps"] is None else str(r["steps"]),
            _cell(r["max_abs_dev"]),
            _cell(r["max_rel_dev"]),
            f"{r['tolerance']:.0e}",
            ("PASS" if r["passed"] else "FAIL")
            + ("" if "error" not in r else f"  ({r['error'][:120]})"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(COLUMNS)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths[:-1])) + "  {}"
    out = [fmt.format(*COLUMNS), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def _cell(x) -> str:
    if x is None:
        return "-"
    return x if isinstance(x, str) else format_float(x)


def write_json(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> None:
    """The rows as a JSON list, written atomically (`jaxreg.files.atomic_write`: a
    symlink's target, a device or pipe in place; the directory must exist)."""
    data = (json.dumps(list(rows), indent=2) + "\n").encode()
    files.write_bytes(path, data, who="write_json")


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".png"


def write_report(
    directory: str | os.PathLike, results: Sequence[Result], rows: Sequence[dict]
) -> Path:
    """`summary.md` (the table, the tolerances, one section per scenario) and a PNG each.

    Each figure shows torch's and jax's loss and parameter trajectories overlaid (torch
    solid, jax dashed), the relative deviation of every quantity after every step against
    the tolerance, and, for the one-feature tutorials, the data and both fitted lines (or
    sigmoid curves) as the tutorials plot them. Each file is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    md = ["# jaxreg vs PyTorch: parity report", ""]
    n_pass = sum(r["passed"] for r in rows)
    md += [f"{n_pass} of {len(rows)} scenarios passed.", "", "```", table(rows), "```", ""]
    md += ["## Tolerances", "", describe_all(), ""]
    for res in results:
        fig = _figure(plt, res)
        fname = _file_name(res.scenario.name)
        with files.atomic_write(out / fname, who="write_report") as f:
            fig.savefig(f, format="png", dpi=80)
        plt.close(fig)
        c = res.comparison
        md += [f"## {res.scenario.name}", "", f"- {res.scenario.note or res.scenario.describe()}"]
        md += [f"- {res.scenario.describe()}", f"- {c.summary()}"]
        if "torch_pred_shape" in res.torch.meta:
            md.append(f"- torch's prediction shape: {res.torch.meta['torch_pred_shape']}")
        md += ["", f"![{res.scenario.name}]({fname})", ""]
    files.write_bytes(out / "summary.md", "\n".join(md).encode(), who="write_report")
    return out / "summary.md"


def _figure(plt, res: Result):
    s, t, j, c = res.scenario, res.torch, res.jax, res.comparison
    feature = res.problem.data.feature
    panels = 3 + (feature is not None and s.lesson is None)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    steps = np.arange(t.steps)  # 0-based, as every text parity writes
    ax = axes[0]
    ax.plot(steps, t.losses, "-", label="torch")
    ax.plot(steps, j.losses, "--", label="jax")
    if np.all(np.asarray(t.losses) > 0):
        ax.set_yscale("log")
    ax.set(title="loss", xlabel="step (from 0)")
    ax.legend()
    ax = axes[1]
    for k, v in t.params.items():
        tv, jv = v.reshape(t.steps, -1), j.params[k].reshape(t.steps, -1)
        for e in range(tv.shape[1]):
            label = k if tv.shape[1] == 1 else f"{k}[{e}]"
            (line,) = ax.plot(steps, tv[:, e], "-", label=f"{label} torch")
            ax.plot(steps, jv[:, e], "--", color=line.get_color(), label=f"{label} jax")
    ax.set(title="parameters after each step", xlabel="step (from 0)")
    ax.legend(fontsize=7)
    ax = axes[2]
    for k, d in c.deviations.items():
        rel = np.where(d.rel_by_step > 0, d.rel_by_step, np.nan)  # exact agreement: not drawn
        ax.semilogy(steps, rel, label=k)
    ax.axhline(c.tolerance.rtol, color="k", ls=":", label=f"tolerance {c.tolerance.rtol:.0e}")
    ax.set(title="relative deviation |jax - torch| / scale (0: not drawn)", xlabel="step (from 0)")
    ax.legend(fontsize=7)
    if panels == 4:
        _fitted(axes[3], res, feature)
    fig.suptitle(f"{s.name}: {'PASS' if c.passed else 'FAIL'}")
    fig.tight_layout()
    return fig


def _fitted(ax, res: Result, feature: np.ndarray) -> None:
    """The data and the final fitted line (or sigmoid), torch and jax, as the tutorials plot it."""
    s, data = res.scenario, res.problem.data
    form = FORMS[s.form]
    y = np.asarray(data.y, np.float64).reshape(-1)
    xs = np.linspace(float(feature.min()), float(feature.max()), 200)
    ax.plot(feature, y, ".", alpha=0.5, label="data")
    column = 1 if data.x.ndim == 2 and data.x.shape[1] == 2 else 0  # [1, x] design matrix
    for side, traj, style in (("torch", res.torch, "-"), ("jax", res.jax, "--")):
        final = {k: v[-1] for k, v in traj.params.items()}
        slope, intercept = line_of(form, final, column)
        z = slope * xs + intercept
        ax.plot(
            xs, 1 / (1 + np.exp(-z)) if s.model == "logistic" else z, style, label=f"{side} fit"
        )
    ax.set(title="fitted model", xlabel="x", ylabel="y")
    ax.legend(fontsize=7)
