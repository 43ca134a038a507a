"""Figure 4 plots (matplotlib, Agg backend), written atomically as PNG.

Each figure is drawn from the same rows that are written to its CSV (the DVC ``plots:`` data),
so the picture and the numbers cannot disagree.
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from asn.io import write_bytes_atomic  # noqa: E402


def bar_chart_png(
    path: str | os.PathLike,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str,
    vline: float | None = None,
) -> None:
    """Grouped bar chart of one or more series over the same labels, saved as PNG."""
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    n_series = max(len(series), 1)
    width = 0.8 / n_series
    positions = range(len(labels))
    for k, (name, values) in enumerate(series.items()):
        ax.bar([p + (k - (n_series - 1) / 2) * width for p in positions], list(values), width=width, label=name)
    ax.set_xticks(list(positions))
    ax.set_xticklabels(labels, rotation=45 if len(labels) > 8 else 0, ha="right" if len(labels) > 8 else "center")
    if vline is not None:
        ax.axvline(vline, color="k", linestyle="--", linewidth=1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def paired_panels_png(
    path: str | os.PathLike,
    labels: Sequence[str],
    panels: dict[str, dict[str, Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    footnote: str = "",
) -> None:
    """One grouped bar chart per panel (e.g. ours beside the paper's, as fractions), side by side."""
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.2 * max(len(panels), 1), 3.9), dpi=100, squeeze=False)
    for ax, (panel, series) in zip(axes[0], panels.items()):
        n_series = max(len(series), 1)
        width = 0.8 / n_series
        positions = range(len(labels))
        for k, (name, values) in enumerate(series.items()):
            ax.bar([p + (k - (n_series - 1) / 2) * width for p in positions], list(values), width=width, label=name)
        ax.set_xticks(list(positions))
        ax.set_xticklabels(labels)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    if footnote:
        fig.text(0.01, 0.01, footnote, fontsize=6.5, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.09 if footnote else 0, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
