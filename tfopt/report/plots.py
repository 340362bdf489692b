"""PNG plots for the report, drawn from run records only (never TensorFlow).

Figures are built with matplotlib's object API (``Figure``), not pyplot, so no global figure state
leaks between calls and nothing needs closing. The Agg backend is selected up front so rendering
works on headless machines; it is left alone if the caller already imported pyplot (e.g. a
notebook), since ``Figure.savefig`` renders PNG without any GUI backend anyway.
"""

from __future__ import annotations

import html
import io
import math
import re
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import matplotlib
import matplotlib.lines

if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from tfopt.report.recommend import OBJECTIVES, pareto_front  # noqa: E402
from tfopt.results import Result  # noqa: E402

DPI = 110
MAX_SPARSITY_LAYERS = 30

_FORMAT_MARKERS = {"keras": "s", "float32": "o", "dynamic": "^", "float16": "v", "int8": "D", "int16x8": "P"}
_FALLBACK_MARKERS = ("X", "*", "h", "p", "<", ">")
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

# Trailing name parts that are TF ops or variable roles, not layer names.
_OP_PARTS = {
    "kernel",
    "bias",
    "weights",
    "einsum",
    "convolution",
    "depthwise_kernel",
    "recurrent_kernel",
    "embeddings",
    "gamma",
    "beta",
}


def _png(fig: Figure, layout: bool = True) -> bytes:
    if layout:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _marker(fmt: str, seen: dict[str, str]) -> str:
    if fmt not in seen:
        seen[fmt] = _FORMAT_MARKERS.get(fmt, _FALLBACK_MARKERS[len(seen) % len(_FALLBACK_MARKERS)])
    return seen[fmt]


def _ordered(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Plot:
    """A drawn figure: PNG for report.md and the files beside it, SVG (a hover title per point) for report.html."""

    png: bytes
    svg: Optional[str] = None


@dataclass(frozen=True)
class Tradeoff:
    """An accuracy-vs-objective figure before it is saved: tests read its label boxes."""

    fig: Figure
    labels: list[Text]
    titles: list[str]  # one hover text per point, in the order of the points' SVG groups


# objective -> (axis label, scale of the raw value)
_AXES: dict[str, tuple[str, float]] = {
    "gzip_bytes": ("gzip size (KiB)", 1 / 1024),
    "size_bytes": ("file size (KiB)", 1 / 1024),
    "latency_p50": ("p50 latency per sample (ms)", 1.0),
    "macs": ("multiply-accumulates per inference", 1.0),
}
_POINT_GID = "tfopt-point-"


def _same(a: Result, b: Optional[Result]) -> bool:
    return b is not None and (a.variant, a.format) == (b.variant, b.format)


def tradeoff_figure(
    results: Sequence[Result],
    objective: str,
    baseline: str,
    recommended: Optional[Result] = None,
    describe: Callable[[Result], str] = lambda r: f"{r.variant} / {r.format}",
) -> Optional[Tradeoff]:
    """Accuracy against an objective for every exported file, the Pareto front drawn and the chosen file starred.

    Accuracy is the validation accuracy when every file has one (what the choice and the front are
    made on), else the test accuracy without a front (a run.json older than schema 4). Keras rows
    are left out: they are references, not deployed files. Labels are placed so that none overlaps
    another or a point (see ``_place_labels``).

    Args:
        results: all results of a run.
        objective: the x axis, one of ``recommend.OBJECTIVES``; smaller is better.
        baseline: the reference variant, labelled in bold.
        recommended: the file the report recommends, drawn with a star.
        describe: a point's hover text (variant, format and figures).

    Returns:
        The figure with its labels and hover texts, or None when no file has a value for ``objective``.
    """
    fn = OBJECTIVES[objective]
    axis_label, scale = _AXES[objective]
    rows = [r for r in results if r.format != "keras" and (fn(r) or 0) > 0 and r.accuracy is not None]
    if not rows:
        return None
    on_val = all(r.val_accuracy is not None for r in rows)
    xs = [fn(r) * scale for r in rows]
    ys = [r.val_accuracy if on_val else r.accuracy for r in rows]
    fig = Figure(figsize=(9.0, max(5.0, 0.2 * len(rows) + 2.5)), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.09, right=0.68, top=0.92, bottom=0.11)
    markers: dict[str, str] = {}
    formats = _ordered([r.format for r in rows])
    colors = {f: _COLORS[i % len(_COLORS)] for i, f in enumerate(formats)}
    for i, r in enumerate(rows):
        first = rows.index(next(o for o in rows if o.format == r.format)) == i
        point = ax.scatter(
            [xs[i]], [ys[i]], marker=_marker(r.format, markers), color=colors[r.format], s=55, zorder=3,
            label=r.format if first else "_nolegend_",
        )  # fmt: skip
        point.set_gid(f"{_POINT_GID}{i}")
    front = pareto_front(rows, objective) if on_val else []
    if front:
        fx, fy = [fn(r) * scale for r in front], [r.val_accuracy for r in front]
        ax.plot(fx, fy, "--", color="#555555", lw=1.1, zorder=2, label="Pareto front (validation)")
        ax.scatter(fx, fy, s=170, facecolors="none", edgecolors="#555555", linewidths=1.1, zorder=2)
    chosen = [i for i, r in enumerate(rows) if _same(r, recommended)]
    for i in chosen:
        ax.scatter([xs[i]], [ys[i]], marker="*", s=420, color="#ffd400", edgecolors="black", lw=0.8, zorder=2.5,
                   label="recommended")  # fmt: skip
    if max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(axis_label)
    ax.set_ylabel("validation accuracy" if on_val else "test accuracy (no validation accuracy recorded)")
    ax.set_title(f"{'Validation' if on_val else 'Test'} accuracy vs {axis_label.split(' (')[0]}")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    front_keys = {(r.variant, r.format) for r in front}
    titles = [
        describe(r)
        + (" (recommended)" if i in chosen else "")
        + (" (on the Pareto front)" if (r.variant, r.format) in front_keys else "")
        for i, r in enumerate(rows)
    ]
    texts = [f"{r.variant} {r.format}" for r in rows]
    # Half-widths (pixels) of what is drawn at each point: the star, a front ring, or the plain marker.
    radius = [15 if i in chosen else 10 if (r.variant, r.format) in front_keys else 7 for i, r in enumerate(rows)]
    first = [0 if i in chosen else 1 if (r.variant, r.format) in front_keys else 2 for i, r in enumerate(rows)]
    labels = _place_labels(fig, ax, xs, ys, texts, [r.variant == baseline for r in rows], radius, first)
    return Tradeoff(fig, labels, titles)


def _place_labels(
    fig: Figure,
    ax,
    xs: Sequence[float],
    ys: Sequence[float],
    texts: Sequence[str],
    bold: Sequence[bool],
    radius: Sequence[float],
    priority: Sequence[int],
) -> list[Text]:
    """Put each label next to its point where it overlaps no other label and no point, else in a side column.

    Candidate spots around the point (right, left, above, below, at growing distances) are tried
    in turn and the first whose box lies inside the axes and clear of every placed label and
    marker wins. A label with no free spot goes to a column right of the axes, below the legend,
    in slots one line apart (so they cannot overlap either), joined to its point by a thin line.
    """
    fig.canvas.draw()  # fixes the layout (subplots_adjust, no tight_layout): nothing below moves the axes
    renderer = fig.canvas.get_renderer()
    area = ax.get_window_extent(renderer)
    pix = ax.transData.transform(list(zip(xs, ys)))
    taken = [Bbox.from_bounds(px - r, py - r, 2 * r, 2 * r) for (px, py), r in zip(pix, radius)]
    to_pt = 72 / fig.dpi
    legend = ax.get_legend()
    slot_top = (legend.get_window_extent(renderer).y0 if legend else area.y1) - 12
    slot_x, slot_y, column_w = area.x1 + 10, slot_top, 0.0
    width, height = fig.bbox.width, fig.bbox.height
    labels: list[Text] = [None] * len(texts)  # type: ignore[list-item]
    for i in sorted(range(len(texts)), key=lambda k: (priority[k], -pix[k][1], pix[k][0])):
        px, py = pix[i]
        t = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(0, 0), textcoords="offset points", ha="left", va="bottom",
                        fontsize=8, fontweight="bold" if bold[i] else "normal", zorder=6)  # fmt: skip
        box = t.get_window_extent(renderer)
        w, h = box.width, box.height
        for gap in (radius[i] + 1, radius[i] + 6, radius[i] + 13, radius[i] + 21):
            fit = next(
                (
                    s
                    for s in _spots(w, h, gap)
                    if _free(Bbox.from_bounds(px + s[0], py + s[1], w, h), area, taken, pix, i)
                ),
                None,
            )
            if fit:
                t.set_position((fit[0] * to_pt, fit[1] * to_pt))
                taken.append(t.get_window_extent(renderer))
                break
        else:
            t.remove()
            if slot_y - h < 4:  # column full: start the next one to its right
                slot_x, slot_y, column_w = slot_x + column_w + 10, slot_top, 0.0
            slot_y -= h + 3
            t = fig.text(slot_x / width, slot_y / height, texts[i], ha="left", va="bottom", fontsize=8,
                         fontweight="bold" if bold[i] else "normal")  # fmt: skip
            column_w = max(column_w, w)
            line = ((px / width, (slot_x - 2) / width), (py / height, (slot_y + h / 2) / height))
            fig.add_artist(matplotlib.lines.Line2D(*line, transform=fig.transFigure, color="#999999", lw=0.6))
            taken.append(t.get_window_extent(renderer))
        labels[i] = t
    return labels


def _spots(w: float, h: float, gap: float) -> list[tuple[float, float]]:
    """Offsets (pixels) of a w x h label's lower-left corner around a point: right, left, above, below, corners."""
    side = [(gap, -h / 2), (-w - gap, -h / 2), (-w / 2, gap), (-w / 2, -h - gap)]
    return side + [(dx, dy) for dx in (gap, -w - gap) for dy in (gap * 0.4, -h - gap * 0.4)]


def _free(box: Bbox, area: Bbox, taken: Sequence[Bbox], pix: Sequence, own: int) -> bool:
    """Inside the axes, clear of every taken box, and nearer its own point than any other (so it reads as its label)."""
    inside = box.x0 >= area.x0 + 2 and box.x1 <= area.x1 - 2 and box.y0 >= area.y0 + 2 and box.y1 <= area.y1 - 2
    if not inside or any(box.overlaps(o) for o in taken):
        return False

    def gap(p) -> float:
        return math.hypot(max(box.x0 - p[0], 0, p[0] - box.x1), max(box.y0 - p[1], 0, p[1] - box.y1))

    mine = gap(pix[own])
    others = [gap(p) for p in pix if math.hypot(p[0] - pix[own][0], p[1] - pix[own][1]) > 4]  # 4 px: the same spot
    return all(mine <= d for d in others)


def _svg(fig: Figure, titles: Sequence[str]) -> str:
    """The figure as inline SVG for the HTML page: a <title> (hover text) in each point's group, no external URL.

    The XML prolog and its DTD link are dropped and the namespace attributes removed (HTML's parser
    puts inline <svg> in the SVG namespace itself), so the page names no URL at all.
    """
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "tfopt", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg, count=3)
    for i, title in enumerate(titles):
        svg = svg.replace(
            f'<g id="{_POINT_GID}{i}">',
            f'<g id="{_POINT_GID}{i}" class="tfopt-point"><title>{html.escape(title)}</title>',
            1,
        )
    return svg


def plot_tradeoff(
    results: Sequence[Result],
    objective: str,
    baseline: str,
    recommended: Optional[Result] = None,
    describe: Callable[[Result], str] = lambda r: f"{r.variant} / {r.format}",
) -> Optional[Plot]:
    """``tradeoff_figure`` saved as PNG and as SVG with hover titles; None when there is nothing to draw."""
    drawn = tradeoff_figure(results, objective, baseline, recommended, describe)
    if drawn is None:
        return None
    return Plot(_png(drawn.fig, layout=False), _svg(drawn.fig, drawn.titles))


def plot_latency(results: Sequence[Result]) -> Optional[bytes]:
    """Bar chart of p50 latency with a whisker up to p90, so tail latency is visible too.

    Args:
        results: all results of a run; rows without latency are skipped.

    Returns:
        PNG bytes, or None if no result has a latency measurement.
    """
    rows = [r for r in results if r.latency_ms is not None]
    if not rows:
        return None
    formats = _ordered([r.format for r in rows])
    colors = {f: _COLORS[i % len(_COLORS)] for i, f in enumerate(formats)}
    fig = Figure(figsize=(7.5, max(2.5, 0.42 * len(rows) + 1.2)))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))
    p50 = [r.latency_ms.p50 for r in rows]
    upper = [max(0.0, r.latency_ms.p90 - r.latency_ms.p50) for r in rows]
    ax.barh(
        ys,
        p50,
        xerr=[[0.0] * len(rows), upper],
        color=[colors[r.format] for r in rows],
        capsize=3,
        error_kw={"elinewidth": 1, "ecolor": "#333333"},
    )
    ax.set_yticks(ys, [f"{r.variant} / {r.format}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("latency per sample (ms): bar = p50, whisker = p90")
    threads = _ordered([str(r.latency_ms.threads) for r in rows])
    ax.set_title(f"Latency (threads: {', '.join(threads)})")
    ax.grid(True, axis="x", alpha=0.3)
    handles = [Patch(color=colors[f], label=f) for f in formats]
    ax.legend(handles=handles, fontsize=8, loc="best")
    return _png(fig)


def _name_parts(name: str) -> list[str]:
    name = name.split(";")[0]
    name = re.sub(r":\d+$", "", name)
    parts = [p for p in name.split("/") if p]
    # Drop trailing op / variable parts: TF op names are CamelCase (Conv2D, MatMul, BiasAdd, ReadVariableOp).
    while len(parts) > 1 and (parts[-1][:1].isupper() or parts[-1].lower() in _OP_PARTS):
        parts.pop()
    if len(parts) > 1:
        parts = parts[1:]  # the model's own name ("sequential", "functional") says nothing per layer
    return parts or [name]


def shorten_layer_names(names: Sequence[str], max_len: int = 32) -> list[str]:
    """Shorten weight tensor names to their layer part, keeping them unique.

    ``sequential/conv2d/Conv2D`` becomes ``conv2d``; more path parts are kept only where the
    shortest form would collide (``block_1/query`` vs ``block_2/query``), eliding repeated middle
    parts (``layer_0/…/query``).

    Args:
        names: full tensor or variable names.
        max_len: longer results are cut from the left and prefixed with an ellipsis.

    Returns:
        Short names, in the same order.
    """
    parts = [_name_parts(n) for n in names]
    depth = [1] * len(names)
    while True:
        short = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        counts: dict[str, int] = {}
        for s in short:
            counts[s] = counts.get(s, 0) + 1
        grew = False
        for i, s in enumerate(short):
            if counts[s] > 1 and depth[i] < len(parts[i]):
                depth[i] += 1
                grew = True
        if not grew:
            break
    # Deep suffixes repeat the same middle parts (".../self_attention/query"): keep only the part that
    # tells them apart and the leaf, if that stays unique.
    elided = [f"{p[-d]}/…/{p[-1]}" if d >= 3 else s for p, d, s in zip(parts, depth, short)]
    if len(set(elided)) == len(set(short)):
        short = elided
        counts = {s: short.count(s) for s in short}
    out = []
    for i, s in enumerate(short):
        if counts[s] > 1:  # still ambiguous: fall back to the full name
            s = names[i]
        out.append(s if len(s) <= max_len else "…" + s[-(max_len - 1) :])
    return out


def sparsity_source_format(results: Sequence[Result]) -> Optional[str]:
    """Pick the format whose per-layer stats are charted: int8, else float32, else keras."""
    for fmt in ("int8", "float32", "keras"):
        if any(r.format == fmt and r.layers for r in results):
            return fmt
    return None


def plot_sparsity(results: Sequence[Result]) -> Optional[bytes]:
    """Grouped bars of per-layer sparsity per variant, to show where pruning actually landed.

    Uses the int8 results if any carry layer stats, else float32, else keras. With many layers only
    the largest ``MAX_SPARSITY_LAYERS`` (by weight count) are drawn, in model order.

    Args:
        results: all results of a run.

    Returns:
        PNG bytes, or None if no result carries per-layer stats.
    """
    fmt = sparsity_source_format(results)
    if fmt is None:
        return None
    rows = [r for r in results if r.format == fmt and r.layers]
    names = _ordered([layer.name for r in rows for layer in r.layers])
    sizes = {n: max(layer.size for r in rows for layer in r.layers if layer.name == n) for n in names}
    total = len(names)
    if total > MAX_SPARSITY_LAYERS:
        keep = set(sorted(names, key=lambda n: -sizes[n])[:MAX_SPARSITY_LAYERS])
        names = [n for n in names if n in keep]
    labels = shorten_layer_names(names)
    n_var = len(rows)
    width = 0.8 / n_var
    fig = Figure(figsize=(min(18.0, max(6.5, 0.35 * len(names) * max(2, n_var) + 2)), 4.8))
    ax = fig.add_subplot()
    for j, r in enumerate(rows):
        by_name = {layer.name: layer.sparsity for layer in r.layers}  # absent layer: no bar, not a fake 0
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(names))]
        ax.bar(
            xs,
            [by_name.get(n, float("nan")) for n in names],
            width=width,
            label=r.variant,
            color=_COLORS[j % len(_COLORS)],
        )
    ax.set_xticks(range(len(names)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of zero weights")
    shown = f", {len(names)} largest of {total} tensors" if total > len(names) else ""
    ax.set_title(f"Per-layer sparsity ({fmt}{shown})")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)
