"""PNG plots for the report, drawn from run records only (never TensorFlow).

Figures are built with matplotlib's object API (``Figure``), not pyplot, so no global figure state
leaks between calls and nothing needs closing. The Agg backend is selected up front so rendering
works on headless machines; it is left alone if the caller already imported pyplot (e.g. a
notebook), since ``Figure.savefig`` renders PNG without any GUI backend anyway.
"""

from __future__ import annotations

import io
import re
import sys
from typing import Optional, Sequence

import matplotlib

if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

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


def _png(fig: Figure) -> bytes:
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


def plot_accuracy_vs_size(results: Sequence[Result], baseline: str) -> Optional[bytes]:
    """Scatter accuracy against gzip size, the trade-off the whole pipeline is about.

    Args:
        results: all results of a run; one point each.
        baseline: variant name drawn highlighted as the reference.

    Returns:
        PNG bytes, or None if there are no results.
    """
    if not results:
        return None
    fig = Figure(figsize=(7.5, 5))
    ax = fig.add_subplot()
    markers: dict[str, str] = {}
    formats = _ordered([r.format for r in results])
    colors = {f: _COLORS[i % len(_COLORS)] for i, f in enumerate(formats)}
    for fmt in formats:
        rows = [r for r in results if r.format == fmt]
        ax.scatter(
            [r.gzip_bytes / 1024 for r in rows],
            [r.accuracy for r in rows],
            marker=_marker(fmt, markers),
            color=colors[fmt],
            s=55,
            label=fmt,
            zorder=3,
        )
    base = [r for r in results if r.variant == baseline]
    if base:
        ax.scatter(
            [r.gzip_bytes / 1024 for r in base],
            [r.accuracy for r in base],
            s=220,
            facecolors="none",
            edgecolors="black",
            linewidths=1.6,
            label=f"{baseline} (reference)",
            zorder=4,
        )
    for r in results:
        ax.annotate(
            r.variant,
            (r.gzip_bytes / 1024, r.accuracy),
            textcoords="offset points",
            xytext=(6, 5),
            fontsize=8,
            fontweight="bold" if r.variant == baseline else "normal",
        )
    sizes = [r.gzip_bytes / 1024 for r in results if r.gzip_bytes > 0]
    if sizes and max(sizes) / min(sizes) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("gzip size (KiB)")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy vs compressed size")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


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
