"""`Comparison.plot(path)`: one PNG of a comparison (a `verify` result or a scenario's).

Panels: the loss of both runs (torch solid, jax dashed); the free run's relative deviation
of every quantity against its tolerance; with teacher forcing, every component's one-step
deviation against the one-step bound. The first step over tolerance is marked. Steps are
numbered from 0, as in every text parity writes. matplotlib (Agg) is imported here only.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from jaxreg import files


def _deviations(ax, deviations, tolerance, first, title) -> None:
    for k, d in deviations.items():
        steps = np.arange(d.abs_by_step.shape[0])
        rel = np.where(d.rel_by_step > 0, d.rel_by_step, np.nan)  # exact agreement: not drawn
        ax.semilogy(steps, rel, label=k)
    ax.axhline(tolerance.rtol, color="k", ls=":", label=f"tolerance {tolerance.rtol:.0e}")
    if first is not None:
        ax.axvline(first, color="r", ls="--", label=f"first over: step {first}")
    ax.set(title=title, xlabel="step (from 0)")
    ax.legend(fontsize=7)


def figure(cmp):
    """The matplotlib figure of a `parity.Comparison`."""
    panels = 2 + (cmp.teacher is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    ax = axes[0]
    if cmp.torch is not None and cmp.jax is not None:
        steps = np.arange(cmp.torch.steps)
        ax.plot(steps, cmp.torch.losses, "-", label="torch")
        ax.plot(steps, cmp.jax.losses, "--", label="jax")
        if np.all(np.asarray(cmp.torch.losses) > 0):
            ax.set_yscale("log")
        ax.legend()
    ax.set(title="loss before each step", xlabel="step (from 0)")
    _deviations(
        axes[1],
        cmp.deviations,
        cmp.tolerance,
        cmp.first_failing_step,
        "free run: |jax - torch| / scale",
    )
    if cmp.teacher is not None:
        t = cmp.teacher
        _deviations(
            axes[2], t.deviations, t.tolerance, t.first_failing_step, "teacher-forced, one step"
        )
    verdict = cmp.summary().split(": ")[1]
    fig.suptitle(f"{cmp.name}: {verdict}")
    fig.tight_layout()
    return fig


def write(cmp, path: str | os.PathLike) -> str | os.PathLike:
    """`figure(cmp)` as a PNG at `path`, written atomically; returns `path`."""
    fig = figure(cmp)
    try:
        with files.atomic_write(path, who="Comparison.plot") as f:
            fig.savefig(f, format="png", dpi=80)
    finally:
        plt.close(fig)
    return path
