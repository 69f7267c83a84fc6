"""A picture of the quality metrics against rounds (``metrics.png`` in the run folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

METRICS_PLOT = "metrics.png"
PANELS = (
    ("Frechet distances (lower is better)", ("frd", "fid")),
    ("Fidelity / diversity (higher is better)", ("precision", "recall", "density", "coverage")),
    ("Utility: classifier accuracy on real held-out images", ("tstr_accuracy", "trtr_accuracy")),
)


def plot_metrics(records: list[dict[str, Any]], path: Path) -> Path:
    """One panel per metric family, epsilon on a second axis of the first panel."""
    evaluated = [r for r in records if "metrics" in r]
    figure, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
    for axis, (title, keys) in zip(axes, PANELS, strict=True):
        for key in keys:
            points = [(r["round"], r["metrics"][key]) for r in evaluated
                      if isinstance(r["metrics"].get(key), int | float)]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=key)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("round")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    eps_axis = axes[0].twinx()
    eps_axis.plot([r["round"] for r in records], [r["epsilon_max"] for r in records],
                  color="grey", linestyle="--", label="epsilon (max over sites)")
    eps_axis.set_ylabel("epsilon", color="grey")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
