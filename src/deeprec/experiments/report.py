"""Writing a recipe's outputs: CSV of raw numbers, a Markdown table, PNG curves.

Every file goes through `deeprec.atomic`, so an interrupted recipe leaves no half-written
output. Plots use matplotlib's Agg backend (no display needed) at a size that stays small.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deeprec.atomic import atomic_file


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    with atomic_file(path, "w") as handle:
        handle.write(buffer.getvalue())
    return path


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and abs(value) < 10 ** -(digits - 1):
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1000:
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """`columns` is a list of (key, header)."""
    lines = [
        "| " + " | ".join(h for _, h in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k)) for k, _ in columns) + " |")
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> Path:
    with atomic_file(path, "w") as handle:
        handle.write(text)
    return path


def plot_series(
    path: Path,
    series: Sequence[tuple[str, Sequence[float], Sequence[float], dict[str, Any]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """One PNG with a line per (label, xs, ys, matplotlib kwargs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, xs, ys, style in series:
        if len(xs):
            ax.plot(xs, ys, label=label, linewidth=1.2, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if any(len(s[1]) for s in series):
        ax.legend(fontsize=7, ncol=2 if len(series) > 5 else 1)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=80)
    plt.close(fig)
    return path


def robust_ylim(values: Iterable[float], *, quantile: float = 0.97) -> tuple[float, float] | None:
    """A y-range that keeps diverging or first-batch spikes from flattening every curve."""
    finite = sorted(v for v in values if v is not None and math.isfinite(v))
    if not finite:
        return None
    low = finite[0]
    high = finite[min(len(finite) - 1, int(quantile * (len(finite) - 1)))]
    pad = 0.05 * max(high - low, 1e-3)
    return low - pad, high + pad
