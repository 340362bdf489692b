"""Render a run record into ``report.md``, a self-contained ``report.html`` and PNG plots.

The report is built once as a small list of neutral blocks (heading, table, image, ...) and then
written out twice, so the Markdown and HTML versions can never disagree. Only ``run.json`` is read:
this module must never import TensorFlow, so reports re-render anywhere in seconds.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from tfopt.errors import TfoptError
from tfopt.io import atomic_write_bytes, atomic_write_text
from tfopt.report import plots
from tfopt.report.tune_section import tune_blocks
from tfopt.results import Result, Run, load_run

MISSING = "–"
BASELINE_VARIANT = "baseline"


# --- neutral document blocks -------------------------------------------------------------------


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _KeyValues:
    items: list[tuple[str, str]]


@dataclass(frozen=True)
class _Table:
    headers: list[str]
    rows: list[list[str]]
    align: str  # one of "l"/"r" per column


@dataclass(frozen=True)
class _Image:
    filename: str
    alt: str
    png: bytes


@dataclass(frozen=True)
class _Details:
    summary: str
    blocks: list[Any] = field(default_factory=list)


# --- formatting ----------------------------------------------------------------------------------


def _ok(x: Optional[float]) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _fmt(x: Optional[float], spec: str, suffix: str = "") -> str:
    return f"{x:{spec}}{suffix}" if _ok(x) else MISSING


def _ratio(num: Optional[float], den: Optional[float], digits: int = 1) -> str:
    if not (_ok(num) and _ok(den)) or den <= 0 or num <= 0:
        return MISSING
    return f"{num / den:.{digits}f}x"


def _kib(n: Optional[int]) -> str:
    return _fmt(None if n is None else n / 1024, ",.1f")


def _pct(x: Optional[float]) -> str:
    return _fmt(None if x is None else x * 100, ".2f", "%")


def _diff(r: Result) -> str:
    if not _ok(r.max_abs_diff):
        return MISSING
    if not _ok(r.tolerance):
        return f"{r.max_abs_diff:.2g}"
    ok = r.max_abs_diff <= r.tolerance
    return f"{r.max_abs_diff:.2g} {'≤' if ok else '>'} {r.tolerance:.2g}" + ("" if ok else " ✗")


def _count(n: Optional[int]) -> str:
    """A count as people read it: 1,234 / 56.7k / 4.24M / 1.20G."""
    if n is None:
        return MISSING
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _mapping(d: dict[str, Any], sep: str) -> str:
    return ", ".join(f"{k}{sep}{v}" for k, v in d.items()) or MISSING


# --- report content ------------------------------------------------------------------------------


def _baseline_variant(run: Run) -> str:
    variants = [r.variant for r in run.results]
    if BASELINE_VARIANT in variants or not variants:
        return BASELINE_VARIANT
    return variants[0]


def _find(run: Run, variant: str, fmt: str) -> Optional[Result]:
    try:
        return run.result(variant, fmt)
    except KeyError:
        return None


def _model_source(run: Run) -> str:
    """The model as the pipeline names it: a registered name or the user's file."""
    model = run.config.get("model", {}) if isinstance(run.config, dict) else {}
    return str(model.get("name") or model.get("path") or "model")


def _header(run: Run) -> list[Any]:
    d = run.dataset
    dataset = f"{d.name}: {d.num_test} test examples, {d.num_classes} classes, source {d.source}"
    return [
        _Heading(1, f"tfopt report: {run.pipeline}"),
        _KeyValues(
            [
                ("Pipeline", run.pipeline),
                ("Dataset", dataset),
                *([("Model", f"{_model_source(run)} ({run.model_backend})")] if run.model_backend else []),
                ("Created", run.created),
                ("Versions", _mapping(run.versions, " ")),
                ("Machine", _mapping(run.machine, ": ")),
            ]
        ),
    ]


def _results_table(run: Run) -> list[Any]:
    base = _baseline_variant(run)
    ref32 = _find(run, base, "float32")
    ref_acc = ref32 or _find(run, base, "keras")
    ref_p50 = ref32.latency_ms.p50 if ref32 and ref32.latency_ms else None
    rows = []
    for r in run.results:
        lat = r.latency_ms
        rows.append(
            [
                r.variant,
                r.format,
                _pct(r.accuracy),
                _fmt((r.accuracy - ref_acc.accuracy) * 100 if ref_acc and _ok(r.accuracy) else None, "+.2f", " pp"),
                _kib(r.size_bytes),
                _kib(r.gzip_bytes),
                _ratio(ref32.gzip_bytes if ref32 else None, r.gzip_bytes),
                _pct(r.sparsity),
                _diff(r),
                _fmt(lat.p50 if lat else None, ".3f"),
                _fmt(lat.p90 if lat else None, ".3f"),
                _ratio(ref_p50, lat.p50 if lat else None, digits=2),  # speed-ups near 1x need the 2nd digit
                _count(r.weights),
                _count(r.macs),
                _ratio(r.macs, ref32.macs if ref32 else None, digits=2),
            ]
        )
    headers = [
        "variant",
        "format",
        "accuracy",
        "Δ accuracy",
        "size (KiB)",
        "gzip (KiB)",
        "compression",
        "sparsity",
        "max |Δ| vs Keras (tol)",
        "p50 (ms)",
        "p90 (ms)",
        "speed-up",
        "weights",
        "MACs",
        "MACs ratio",
    ]
    notes = []
    if ref_acc:
        notes.append(f"Δ accuracy is in percentage points vs {ref_acc.variant}/{ref_acc.format}.")
    if ref32:
        notes.append(f"Compression and speed-up are {base}/float32's gzip size and p50 latency divided by the row's.")
    else:
        notes.append(f"No {base}/float32 row, so compression and speed-up are not computed.")
    notes.append(
        "max |Δ| compares each exported file's outputs with its Keras model's on test inputs; ✗ marks a tolerance miss."
    )
    notes.append(
        "weights counts the values in the weight tensors; MACs are the multiply-accumulates of one inference, "
        "read from each exported file's conv, depthwise, fully-connected and batch-matmul operators (zeros "
        f"included: only removed channels lower them); MACs ratio is the row's over {base}/float32's."
    )
    return [
        _Heading(2, "Results"),
        _Table(headers, rows, "llrrrrrrrrrrrrr"),
        _Para(" ".join(notes)),
        *_files_to_keep(run),
    ]


def _files_to_keep(run: Run) -> list[Any]:
    """For a Keras 3 input, the variants whose Keras file is not in the user's Keras (QAT), and what to keep."""
    if run.model_backend != "keras3":
        return []
    other = [r.variant for r in run.results if r.format == "keras" and r.details.get("keras") == "tf_keras"]
    if not other:
        return []
    return [
        _Para(
            f"{', '.join(other)}: QAT ran with tfmot on an exact tf_keras twin of the Keras 3 model (Keras 3 has no "
            "QAT layers), so their Keras files are tfmot QAT models in tf_keras (.h5, loaded with tfmot's "
            "quantize_scope). Keep their int8 .tflite files; the other variants' .keras files load with plain Keras 3."
        )
    ]


def _distilled(run: Run) -> list[tuple[str, str]]:
    """(distilled variant, its scratch control) pairs: the variants with a distill step and their controls."""
    steps = [(t.variant, t.params.get("scratch")) for t in run.transforms if t.transform == "distill"]
    variants = {r.variant for r in run.results}
    distilled = dict.fromkeys(v for v, scratch in steps if not scratch)
    return [(v, f"{v}_scratch") for v in distilled if v in variants and f"{v}_scratch" in variants]


def _distillation(run: Run) -> list[Any]:
    """Teacher, scratch student and distilled student side by side, format by format."""
    pairs = _distilled(run)
    if not pairs:
        return []
    base, rows = _baseline_variant(run), []
    for variant, scratch in pairs:
        for fmt in dict.fromkeys(r.format for r in run.results if r.variant == variant):
            for role, v in (("teacher", base), ("scratch student", scratch), ("distilled student", variant)):
                r, keras = _find(run, v, fmt), _find(run, v, "keras")
                if r is None:
                    continue
                weights = sum(s.size for s in keras.layers) if keras and keras.layers else None
                rows.append(
                    [
                        variant,
                        fmt,
                        f"{role} ({v})",
                        f"{weights:,}" if weights else MISSING,
                        _pct(r.accuracy),
                        _kib(r.size_bytes),
                        _kib(r.gzip_bytes),
                        _fmt(r.latency_ms.p50 if r.latency_ms else None, ".3f"),
                    ]
                )
    headers = ["variant", "format", "model", "kernel weights", "accuracy", "size (KiB)", "gzip (KiB)", "p50 (ms)"]
    note = (
        "The scratch student is the same student, from the same initial weights, trained with the same recipe and "
        "later steps on the labels only: distillation helped where the distilled row beats it."
    )
    return [_Heading(2, "Distillation"), _Table(headers, rows, "lllrrrrr"), _Para(note)]


def _not_exported(run: Run) -> list[Any]:
    """Formats the converter could not produce for a variant, with its reason (the run went on)."""
    missing = getattr(run, "not_exported", None) or []
    if not missing:
        return []
    rows = [[m.variant, m.format, m.reason] for m in missing]
    return [
        _Heading(3, "Not exportable"),
        _Table(["variant", "format", "converter's reason"], rows, "lll"),
        _Para("These variants were evaluated in Keras only (the 'keras' rows above); no .tflite file exists for them."),
    ]


def _plots(run: Run) -> list[Any]:
    blocks: list[Any] = [_Heading(2, "Plots")]
    specs: list[tuple[str, str, Callable[[], Optional[bytes]], str]] = [
        (
            "accuracy_vs_size",
            "Accuracy vs gzip size",
            lambda: plots.plot_accuracy_vs_size(run.results, _baseline_variant(run)),
            "No results to plot.",
        ),
        ("latency", "Latency p50 / p90", lambda: plots.plot_latency(run.results), "No latency was measured."),
        (
            "sparsity",
            "Per-layer sparsity",
            lambda: plots.plot_sparsity(run.results),
            "No per-layer statistics recorded.",
        ),
    ]
    for key, alt, draw, empty in specs:
        png = draw()
        blocks.append(_Image(f"{key}.png", alt, png) if png is not None else _Para(f"{alt}: {empty}"))
    return blocks


def _layers(run: Run) -> list[Any]:
    blocks: list[Any] = [_Heading(2, "Per-layer weights")]
    shown = [r for r in run.results if r.format != "keras" and r.layers]
    if not shown:
        return blocks + [_Para("No per-layer statistics recorded.")]
    for r in shown:
        rows = [
            [
                s.layer or MISSING,
                s.name.split(";")[0],
                f"{s.size:,}",
                _pct(s.sparsity),
                f"{s.unique_values:,}",
                f"{s.unique_per_channel:,} ({s.channels} ch)" if s.unique_per_channel is not None else MISSING,
                MISSING if s.pattern_2_4 is None else ("yes" if s.pattern_2_4 else "no"),
                s.quantization if s.quantization not in (None, "none") else s.dtype.lower(),
                _decisions(run, r.variant, s.layer),
            ]
            for s in r.layers
        ]
        table = _Table(
            [
                "layer",
                "tensor",
                "size",
                "sparsity",
                "unique values",
                "max unique per channel",
                "2:4",
                "stored as",
                "transforms",
            ],
            rows,
            "llrrrrlll",
        )
        quantized = sum(1 for s in r.layers if s.quantized)
        blocks.append(_Details(f"{r.variant} / {r.format}: {len(r.layers)} tensors, {quantized} quantized", [table]))
    blocks.append(
        _Para(
            "Read from each exported file: sparsity and unique values over the stored weight tensor, "
            "per output channel where the file stores channels, '2:4' whether every 4 consecutive "
            "input-channel weights hold at least 2 zeros, 'stored as' the tensor's dtype and "
            "quantization parameters. 'transforms' says what each step did to the layer, and why it skipped it."
        )
    )
    return blocks


def _decisions(run: Run, variant: str, layer: Optional[str]) -> str:
    """What each transform of ``variant`` did to ``layer`` (QAT names its layers quant_<name>)."""
    if layer is None:
        return MISSING
    out = []
    for t in run.transforms:
        if t.variant != variant:
            continue
        for d in t.layers:
            if layer in (d.layer, f"quant_{d.layer}"):
                out.append(f"{t.transform}: " + ("applied" if d.applied else f"skipped ({d.reason})"))
    return "; ".join(out) or MISSING


# Converter mode -> the LiteRT Quantizer recipe that does the same job.
_QUANTIZER_TWINS = (("dynamic", "lq_dynamic_int8"), ("int8", "lq_static_int8"))


def _quantizer(run: Run) -> list[Any]:
    """Converter vs LiteRT Quantizer, like for like, and the quantizer's own per-tensor validation."""
    lq = [r for r in run.results if r.details.get("recipe")]
    if not lq:
        return []
    blocks: list[Any] = [_Heading(2, "Converter vs LiteRT Quantizer")]
    rows = []
    for variant in dict.fromkeys(r.variant for r in run.results):
        for conv_fmt, lq_fmt in _QUANTIZER_TWINS:
            a, b = _find(run, variant, conv_fmt), _find(run, variant, lq_fmt)
            if a is None or b is None:
                continue
            rows.append(
                [
                    variant,
                    f"{conv_fmt} vs {lq_fmt}",
                    _pct(a.accuracy),
                    _pct(b.accuracy),
                    _kib(a.gzip_bytes),
                    _kib(b.gzip_bytes),
                    _float_left(a),
                    _float_left(b),
                    _fmt(a.latency_ms.p50 if a.latency_ms else None, ".3f"),
                    _fmt(b.latency_ms.p50 if b.latency_ms else None, ".3f"),
                ]
            )
    if rows:
        blocks.append(
            _Table(
                [
                    "variant",
                    "pair",
                    "acc converter",
                    "acc quantizer",
                    "gzip KiB converter",
                    "gzip KiB quantizer",
                    "float weights converter",
                    "float weights quantizer",
                    "p50 ms converter",
                    "p50 ms quantizer",
                ],
                rows,
                "llrrrrrrrr",
            )
        )
        blocks.append(
            _Para(
                "Float weights counts the weight tensors each file leaves unquantized (e.g. an embedding's "
                "GATHER table, which the LiteRT Quantizer's recipes leave in float32)."
            )
        )
    rows = []
    for r in lq:
        v = r.details.get("validation") or {}
        outs = list((v.get("outputs") or {}).values())
        acts = v.get("activations") or {}
        worst = max(acts.items(), key=lambda kv: kv[1].get("mse", 0.0), default=None)
        rows.append(
            [
                r.variant,
                r.format,
                r.details.get("recipe", MISSING),
                str(v.get("samples", MISSING)),
                _fmt(outs[0].get("mse") if outs else None, ".3g"),
                _fmt(outs[0].get("snr") if outs else None, ".3g"),
                f"{worst[0].split(';')[0]}: {worst[1].get('mse', 0.0):.3g}" if worst else MISSING,
            ]
        )
    blocks.append(_Heading(3, "LiteRT Quantizer validation"))
    blocks.append(
        _Table(
            ["variant", "format", "recipe", "samples", "output MSE", "output SNR", "worst activation (MSE)"],
            rows,
            "lllrrrl",
        )
    )
    blocks.append(
        _Para(
            "The quantizer compares its quantized file with the float32 file it started from, tensor by tensor, "
            "on training samples not used for calibration; every tensor's errors are in run.json (details.validation)."
        )
    )
    return blocks


def _float_left(r: Result) -> str:
    return f"{sum(1 for s in r.layers if s.quantized is False)} of {len(r.layers)}" if r.layers else MISSING


def _transforms(run: Run) -> list[Any]:
    blocks: list[Any] = [_Heading(2, "Transforms")]
    if not run.transforms:
        return blocks + [_Para("No transforms were applied.")]
    for t in run.transforms:
        applied = sum(1 for d in t.layers if d.applied)
        blocks += [
            _Heading(3, f"{t.variant}: {t.transform}"),
            _KeyValues([("Backend", t.backend), ("Params", _mapping(t.params, "="))]),
        ]
        if t.layers:
            rows = [[d.layer, "applied" if d.applied else "skipped", d.reason or MISSING] for d in t.layers]
            summary = f"Layer decisions: {applied} applied, {len(t.layers) - applied} skipped"
            blocks.append(_Details(summary, [_Table(["layer", "decision", "reason"], rows, "lll")]))
    return blocks


def _training(run: Run) -> list[Any]:
    blocks: list[Any] = [_Heading(2, "Training")]
    if run.training:
        # Throughput means little without what it ran on: strategy, replicas, global batch, precision.
        rows = [
            [
                t.variant,
                str(t.epochs_run),
                _fmt(t.seconds, ".1f"),
                _fmt(t.examples_per_second, ",.0f"),
                t.strategy or MISSING,
                str(t.replicas),
                str(t.global_batch_size) if t.global_batch_size else MISSING,
                t.precision,
                ", ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in t.final.items())
                or MISSING,
            ]
            for t in run.training
        ]
        blocks.append(
            _Table(
                [
                    "variant",
                    "epochs",
                    "seconds",
                    "examples/s",
                    "strategy",
                    "replicas",
                    "global batch",
                    "precision",
                    "final metrics",
                ],
                rows,
                "lrrrlrrll",
            )
        )
    else:
        blocks.append(_Para("No training recorded."))
    blocks.append(_Heading(2, "Stage timings"))
    if run.stages:
        rows = [[s.name, _fmt(s.seconds, ".1f")] for s in run.stages]
        rows.append(["total", _fmt(sum(s.seconds for s in run.stages), ".1f")])
        blocks.append(_Table(["stage", "seconds"], rows, "lr"))
    else:
        blocks.append(_Para("No stage timings recorded."))
    return blocks


def build_blocks(run: Run) -> list[Any]:
    """Lay out the whole report as neutral blocks, shared by the Markdown and HTML writers."""
    return (
        _header(run)
        + tune_blocks(
            run, {"heading": _Heading, "para": _Para, "keyvalues": _KeyValues, "table": _Table, "image": _Image}
        )
        + _results_table(run)
        + _distillation(run)
        + _not_exported(run)
        + _quantizer(run)
        + _plots(run)
        + _layers(run)
        + _transforms(run)
        + _training(run)
    )


# --- Markdown ------------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\r", " ").replace("\n", " ")


def _md_blocks(blocks: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            out.append(f"{'#' * b.level} {_md(b.text)}")
        elif isinstance(b, _Para):
            out.append(_md(b.text))
        elif isinstance(b, _KeyValues):
            out.append("\n".join(f"- **{_md(k)}:** {_md(v)}" for k, v in b.items))
        elif isinstance(b, _Table):
            lines = [
                "| " + " | ".join(_md(h) for h in b.headers) + " |",
                "|" + "|".join("---:" if a == "r" else ":---" for a in b.align) + "|",
            ]
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, _Image):
            out.append(f"![{_md(b.alt)}]({b.filename})")
        elif isinstance(b, _Details):
            out.append(f"**{_md(b.summary)}**")
            out += _md_blocks(b.blocks)
    return out


def to_markdown(blocks: Sequence[Any]) -> str:
    """Write blocks as GitHub-flavoured Markdown; images are referenced as sibling PNG files."""
    return "\n\n".join(_md_blocks(blocks)) + "\n"


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #eee; }
h3 { font-size: 1.05rem; margin-bottom: .3rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .88rem; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; }
th { background: #f4f4f4; text-align: left; }
td.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
ul.kv { list-style: none; padding-left: 0; }
ul.kv li { margin: .15rem 0; }
img { max-width: 100%; display: block; margin: .8rem 0; border: 1px solid #eee; }
details { margin: .4rem 0; }
summary { cursor: pointer; font-weight: 600; }
p.note { color: #555; font-size: .88rem; }
"""


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html_blocks(blocks: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            out.append(f"<h{b.level}>{_e(b.text)}</h{b.level}>")
        elif isinstance(b, _Para):
            out.append(f'<p class="note">{_e(b.text)}</p>')
        elif isinstance(b, _KeyValues):
            items = "".join(f"<li><strong>{_e(k)}:</strong> {_e(v)}</li>" for k, v in b.items)
            out.append(f'<ul class="kv">{items}</ul>')
        elif isinstance(b, _Table):
            head = "".join(f"<th>{_e(h)}</th>" for h in b.headers)
            body = "".join(
                "<tr>" + "".join(f'<td class="{a}">{_e(c)}</td>' for a, c in zip(b.align, row)) + "</tr>"
                for row in b.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, _Image):
            data = base64.b64encode(b.png).decode("ascii")
            out.append(f'<img alt="{_e(b.alt)}" src="data:image/png;base64,{data}">')
        elif isinstance(b, _Details):
            inner = "\n".join(_html_blocks(b.blocks))
            out.append(f"<details><summary>{_e(b.summary)}</summary>\n{inner}\n</details>")
    return out


def to_html(blocks: Sequence[Any], title: str) -> str:
    """Write blocks as one self-contained HTML page: inline CSS, images as data URIs, no links."""
    body = "\n".join(_html_blocks(blocks))
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


# --- entry point ---------------------------------------------------------------------------------


def render(run: Union[Run, str, Path], out_dir: Optional[Path] = None) -> dict[str, Path]:
    """Render a run into Markdown, self-contained HTML and PNG plots.

    Args:
        run: a ``Run``, or the path of its ``run.json`` (or of the folder holding it).
        out_dir: where to write; defaults to the folder holding ``run.json``. Required for a ``Run``.

    Returns:
        Paths written: ``markdown``, ``html`` and one per plot drawn (``accuracy_vs_size``,
        ``latency``, ``sparsity``; a plot with nothing to draw is left out).

    Raises:
        TfoptError: if the run file is missing or invalid, or a ``Run`` is given without ``out_dir``.

    Example:
        >>> render("reports/mnist_prune/run.json")["html"]
        PosixPath('reports/mnist_prune/report.html')
    """
    if isinstance(run, Run):
        if out_dir is None:
            raise TfoptError(
                "render() got a Run object but no out_dir. Fix: pass out_dir=..., or the path of run.json."
            )
    else:
        path = Path(run)
        if path.is_dir():
            path = path / "run.json"
        run = load_run(path)
        out_dir = path.parent if out_dir is None else out_dir
    out_dir = Path(out_dir)
    blocks = build_blocks(run)
    written: dict[str, Path] = {}
    for b in blocks:
        if isinstance(b, _Image):
            written[Path(b.filename).stem] = atomic_write_bytes(out_dir / b.filename, b.png)
    written["markdown"] = atomic_write_text(out_dir / "report.md", to_markdown(blocks))
    written["html"] = atomic_write_text(out_dir / "report.html", to_html(blocks, f"tfopt report: {run.pipeline}"))
    return written
