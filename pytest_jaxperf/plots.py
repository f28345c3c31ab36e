"""The report's plots, drawn with matplotlib (the ``report`` extra) into PNG bytes.

Readable on paper and to a colour-blind reader: every axis says its unit, log scales where the values span
more than a decade, and series differ by marker, line style or hatch as well as by colour. Only the object
API (``matplotlib.figure.Figure``) is used: no pyplot, no global state, no display needed.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
LINE_STYLES = ("-", "--", "-.", ":")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")
#: Wide enough for a log axis: the values span more than this factor.
LOG_RANGE = 10.0


class MatplotlibMissing(ImportError):
    """matplotlib is not installed: the HTML report has its tables and no plots."""


def available() -> bool:
    """Whether matplotlib can be imported (the ``report`` extra)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float) -> Figure:
    if not available():
        raise MatplotlibMissing("plots need matplotlib: pip install 'pytest-jaxperf[report]'")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return len(positive) >= 2 and max(positive) / min(positive) > LOG_RANGE


#: More series than this and the legend goes below the plot, in two columns, and the figure grows to hold it.
_LEGEND_BESIDE = 10


def _legend(axes: Axes, count: int) -> None:
    # Outside the axes: a legend inside hides points once there are more than a few series.
    if count <= 1:
        return
    if count <= _LEGEND_BESIDE:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        axes.figure.legend(fontsize="small", loc="outside lower center", ncols=2)


def _height(base: float, series: int) -> float:
    """A figure's height, with room below for a long legend (see _legend)."""
    return base if series <= _LEGEND_BESIDE else base + 0.2 * math.ceil(series / 2) + 0.3


def throughput_against_batch(series: Mapping[str, Sequence[tuple[int, float]]]) -> bytes:
    """One line per series (model and variant): items/s against batch size."""
    figure = _figure(11.0, _height(4.6, len(series)))
    axes = figure.subplots()
    batches: list[float] = []
    rates: list[float] = []
    for index, (label, points) in enumerate(sorted(series.items())):
        ordered = sorted(points)
        xs, ys = [p[0] for p in ordered], [p[1] for p in ordered]
        batches += xs
        rates += ys
        axes.plot(
            xs,
            ys,
            marker=MARKERS[index % len(MARKERS)],
            linestyle=LINE_STYLES[(index // len(MARKERS)) % len(LINE_STYLES)] if len(xs) > 1 else "none",
            label=label,
        )
    if _spans_decades(batches):
        axes.set_xscale("log", base=2)
    if _spans_decades(rates):
        axes.set_yscale("log")
    axes.set_xlabel("batch size (items per call)")
    axes.set_ylabel("throughput (items/s)")
    axes.set_title("Throughput against batch size")
    axes.grid(True, which="both", alpha=0.3)
    _legend(axes, len(series))
    return _png(figure)


def speedup_matrix(
    rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float | None]]
) -> bytes:
    """A heat map of throughput relative to each row's reference, every cell labelled with its number."""
    import numpy as np
    from matplotlib.colors import LogNorm

    figure = _figure(max(5.0, 1.1 * len(columns) + 3.5), max(2.8, 0.45 * len(rows) + 2.2))
    axes = figure.subplots()
    grid = np.array([[math.nan if v is None else v for v in row] for row in values], dtype=float)
    finite = grid[np.isfinite(grid) & (grid > 0)]
    # A log scale centred on 1×, symmetric, so that 2× faster and 2× slower are equally far from white.
    octaves = float(np.max(np.abs(np.log2(finite)))) if finite.size else 1.0
    spread = 2.0 ** max(1, math.ceil(octaves))
    image = axes.imshow(
        np.ma.masked_invalid(grid), cmap="RdBu", norm=LogNorm(vmin=1 / spread, vmax=spread), aspect="auto"
    )
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            text = "—" if not math.isfinite(value) else f"{value:.2f}×"
            axes.text(j, i, text, ha="center", va="center", fontsize="small")
    axes.set_xticks(range(len(columns)), labels=list(columns), rotation=30, ha="right")
    axes.set_yticks(range(len(rows)), labels=list(rows))
    axes.set_xlabel("optimization (variant)")
    axes.set_title("Speed-up: throughput relative to the row's fp32 reference")
    # Below the matrix, across it: beside it, a matrix of one or two rows leaves the bar shorter than its
    # own label, which the figure then cuts.
    colorbar = figure.colorbar(image, ax=axes, location="bottom", shrink=0.6, aspect=40)
    ticks = [2.0**k for k in range(-round(math.log2(spread)), round(math.log2(spread)) + 1)]
    colorbar.set_ticks(ticks, labels=[f"{t:g}×" for t in ticks])
    colorbar.minorticks_off()
    colorbar.set_label("× throughput against the reference (log scale)")
    return _png(figure)


def sqnr_against_floor(labels: Sequence[str], sqnr: Sequence[float], floors: Sequence[float]) -> bytes:
    """Horizontal bars of each variant's worst SQNR; its floor as a black tick; failing bars hatched."""
    figure = _figure(11.0, max(2.4, 0.34 * len(labels) + 1.4))
    axes = figure.subplots()
    positions = list(range(len(labels)))
    shown = [min(v, 150.0) for v in sqnr]  # an exact variant (infinite SQNR) is drawn at 150 dB
    bars = axes.barh(positions, shown, color="tab:blue", alpha=0.75, label="worst SQNR over the examples")
    for bar, value, floor in zip(bars, sqnr, floors, strict=True):
        if value < floor:
            bar.set_hatch("//")
            bar.set_color("tab:red")
        label = "exact" if math.isinf(value) else f"{value:.1f} dB"
        axes.text(
            bar.get_width() + 0.5, bar.get_y() + bar.get_height() / 2, label, va="center", fontsize="small"
        )
    axes.scatter(
        floors, positions, marker="|", s=300, color="black", zorder=3, label="floor (must stay above)"
    )
    axes.set_yticks(positions, labels=list(labels))
    axes.invert_yaxis()
    # Room right of the longest bar for its label, which would otherwise run under the legend.
    values = [v for v in (*shown, *floors) if math.isfinite(v)]
    low, high = min([0.0, *values]), max([1.0, *values])
    axes.set_xlim(low, high + 0.15 * (high - low))
    axes.set_xlabel("SQNR against float32 (dB, higher is more faithful)")
    axes.set_title("Numerical fidelity per variant")
    _legend(axes, 2)
    axes.grid(True, axis="x", alpha=0.3)
    return _png(figure)


def memory_per_variant(labels: Sequence[str], parts: Mapping[str, Sequence[float]]) -> bytes:
    """Stacked horizontal bars of the compiled program's memory, one hatch per part (arguments …).

    A linear axis whatever the range: on a log axis the stacked parts' lengths would not add up.
    """
    figure = _figure(11.0, max(2.4, 0.34 * len(labels) + 1.4))
    axes = figure.subplots()
    positions = list(range(len(labels)))
    left = [0.0] * len(labels)
    for index, (name, sizes) in enumerate(parts.items()):
        mib = [s / 2**20 for s in sizes]
        axes.barh(positions, mib, left=left, hatch=HATCHES[index % len(HATCHES)], edgecolor="black",
                  linewidth=0.5, label=name)  # fmt: skip
        left = [a + b for a, b in zip(left, mib, strict=True)]
    axes.set_yticks(positions, labels=list(labels))
    axes.invert_yaxis()
    axes.set_xlabel("device memory of the compiled program (MiB)")
    axes.set_title("Memory per variant")
    _legend(axes, len(parts))
    axes.grid(True, axis="x", which="both", alpha=0.3)
    return _png(figure)


def history(title: str, series: Mapping[str, Sequence[tuple[str, float]]]) -> bytes:
    """Each benchmark's throughput across its recorded baselines, relative to its first recording.

    ``series`` maps a benchmark to ``(recording, items/s)`` pairs, the recording labelled ``date commit``;
    the x axis is the module's recordings in order (several can share a day).
    """
    figure = _figure(11.0, _height(4.6, len(series)))
    axes = figure.subplots()
    recordings = sorted({label for points in series.values() for label, _ in points})
    position = {label: index for index, label in enumerate(recordings)}
    for index, (name, points) in enumerate(sorted(series.items())):
        first = points[0][1]
        xs = [position[label] for label, _ in points]
        changes = [100 * (value / first - 1) for _, value in points]
        axes.plot(xs, changes, marker=MARKERS[index % len(MARKERS)],
                  linestyle=LINE_STYLES[(index // len(MARKERS)) % len(LINE_STYLES)], label=name)  # fmt: skip
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xticks(
        range(len(recordings)), labels=[r.replace(" ", "\n") for r in recordings], fontsize="small"
    )
    axes.set_xlabel("baseline recording (date, commit)")
    axes.set_ylabel("throughput vs first baseline (%)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    _legend(axes, len(series))
    return _png(figure)
