"""Steps per second against problem size, one line per backend, one panel per model."""

from __future__ import annotations

import os
from pathlib import Path

from jaxreg import files


def image_format(path: str | os.PathLike) -> str:
    """The format `plot` writes `path` in: its suffix (png without one), if matplotlib
    can write it. Raises ValueError naming the formats it can write."""
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = Path(path).suffix.lower().removeprefix(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    fmt = suffix or "png"
    if fmt not in formats:
        raise ValueError(
            f"{os.fspath(path)}: matplotlib cannot write .{fmt} files; use one of "
            + ", ".join(f".{f}" for f in sorted(formats))
        )
    return fmt


def plot(results: dict, path: str | Path) -> None:
    """The figure, written atomically to `path` in the format its suffix names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # one output (the size axis is n x d; the several-output rows are in the table)
    rows = [r for r in results["rows"] if r.get("timing") and r.get("out", 1) == 1]
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(6 * max(1, len(models)), 4.5))
    axes = [axes] if len(models) <= 1 else list(axes)
    for ax, model in zip(axes, models, strict=False):
        for backend in dict.fromkeys(r["backend"] for r in rows if r["model"] == model):
            pts = sorted(
                (r["n"] * r["d"], r["timing"]["per_second"], r["timing"]["q1"], r["timing"]["q3"])
                for r in rows
                if r["model"] == model and r["backend"] == backend
            )
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            lo = [max(0.0, y - 1 / p[3]) for y, p in zip(ys, pts, strict=True)]  # IQR of steps/s
            hi = [max(0.0, 1 / p[2] - y) for y, p in zip(ys, pts, strict=True)]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=backend)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("problem size n x d (elements of X)")
        ax.set_ylabel("training steps per second (median, IQR)")
        ax.set_title(f"{model} ({'MSE' if model == 'linear' else 'BCE'}), full batch, float32")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    meta = results["meta"]
    fig.suptitle(f"{meta['device']} - {meta['date']}", fontsize=9)
    fig.tight_layout()
    with files.atomic_write(path, who="plot") as f:
        fig.savefig(f, format=image_format(path), dpi=110)
    plt.close(fig)
