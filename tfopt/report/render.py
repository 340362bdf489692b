"""Render a run record into ``report.md``, a self-contained ``report.html`` and PNG plots.

The report is built once as a small list of neutral blocks (heading, table, image, ...) by a list of
section functions (``SECTIONS``) and then written out twice, so the Markdown and HTML versions can
never disagree. It opens with the file to deploy (``tfopt.report.recommend``, settings from the
pipeline's ``report:`` section). The HTML page is one offline file: inline CSS, a few lines of
inline JavaScript to sort the results table, the trade-off plots as inline SVG with a hover title
per point, no URL anywhere. Only ``run.json`` is read: this module must never import TensorFlow,
so reports re-render anywhere in seconds.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import pydantic

from tfopt.errors import TfoptError
from tfopt.io import atomic_write_bytes, atomic_write_text
from tfopt.options import describe_errors
from tfopt.report import plots
from tfopt.report.recommend import OBJECTIVES, Recommendation, candidates, closest, recommend, unavailable_reason
from tfopt.report.tune_section import tune_blocks
from tfopt.results import Result, Run, load_run
from tfopt.schema import ReportConfig

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
    sortable: bool = False  # HTML: click a header to sort by that column


@dataclass(frozen=True)
class _Image:
    filename: str
    alt: str
    png: bytes
    svg: Optional[str] = None  # HTML draws this instead (hover titles), Markdown links the PNG


@dataclass(frozen=True)
class _Callout:
    """The decision: one headline and its reasons, shown first and set apart."""

    headline: str
    items: list[tuple[str, str]]


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


def _title(run: Run) -> list[Any]:
    return [_Heading(1, f"tfopt report: {run.pipeline}")]


def _header(run: Run) -> list[Any]:
    d = run.dataset
    dataset = f"{d.name}: {d.num_test} test examples, {d.num_classes} classes, source {d.source}"
    return [
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


def report_settings(run: Run) -> ReportConfig:
    """The run's ``report:`` settings (``config.report`` in run.json), defaults for files written without them.

    Raises:
        TfoptError: a hand-edited ``config.report`` that breaks the schema, naming the key.
    """
    raw = run.config.get("report") if isinstance(run.config, dict) else None
    try:
        return ReportConfig.model_validate(raw or {})
    except pydantic.ValidationError as e:
        problem = describe_errors(e, ReportConfig, ("config", "report"))[0][1]
        raise TfoptError(f"run.json {problem}") from None


def _decide(run: Run) -> Optional[Recommendation]:
    s = report_settings(run)
    return recommend(run, s.max_accuracy_drop, s.objective, s.relative)


def _settings_text(s: ReportConfig) -> str:
    """The settings as YAML, each marked (default) where it is one."""
    defaults = ReportConfig()
    parts = []
    for key in ("max_accuracy_drop", "relative", "objective"):
        value = getattr(s, key)
        shown = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value
        parts.append(f"{key}: {shown}" + (" (default)" if value == getattr(defaults, key) else ""))
    return "report: {" + ", ".join(parts) + "}"


def _gains(r: Result, ref: Result, objective: str) -> str:
    """What the chosen file buys against the reference: size, speed, the objective, test accuracy."""
    out = []
    if _ok(r.gzip_bytes) and r.gzip_bytes > 0 and ref.gzip_bytes > 0:
        out.append(f"{ref.gzip_bytes / r.gzip_bytes:.1f}x smaller (gzip) than {ref.variant} {ref.format}")
    if objective == "size_bytes" and r.size_bytes > 0:
        out.append(f"{ref.size_bytes / r.size_bytes:.1f}x smaller file")
    if r.latency_ms and ref.latency_ms and r.latency_ms.p50 > 0 and ref.latency_ms.p50 > 0:
        speed = ref.latency_ms.p50 / r.latency_ms.p50
        out.append(f"{speed:.2f}x faster (p50)" if speed >= 1 else f"{1 / speed:.2f}x slower (p50)")
    if objective == "macs" and r.macs and ref.macs:
        out.append(f"{ref.macs / r.macs:.2f}x fewer MACs")
    if _ok(r.accuracy) and _ok(ref.accuracy):
        out.append(f"{(r.accuracy - ref.accuracy) * 100:+.2f} points on test")
    return ", ".join(out)


def _recommendation(run: Run) -> list[Any]:
    """The file to deploy and why, first thing in the report; chosen on validation, test figures only reported.

    A ``tfopt tune`` record carries its search's own choice among the trials' files (``_tune``).
    """
    if run.recommended is not None:
        return []
    settings = report_settings(run)
    rec = _decide(run)
    change = (
        "set e.g. report: {max_accuracy_drop: 0.02, objective: latency_p50} in the pipeline YAML (objectives: "
        f"{', '.join(OBJECTIVES)}; relative: true makes the drop a fraction of the reference's accuracy); "
        "for this run, edit config.report in run.json and run tfopt report run.json. See docs/reports.md."
    )
    blocks: list[Any] = [_Heading(2, "Recommendation")]
    if rec is None:
        head = f"Cannot choose a file to deploy: {unavailable_reason(run, settings.objective)}"
        return blocks + [_Callout(head, [("Settings", _settings_text(settings)), ("To change", change)])]
    r, ref = rec.result, rec.reference
    why = f"chosen on validation accuracy: {rec.reason()}."
    if rec.met and (r.variant, r.format) != (ref.variant, ref.format):
        head = f"Deploy {r.path}: {_gains(r, ref, settings.objective)}."
    elif rec.met:  # the reference itself: no file with a better objective is within the budget
        fn = OBJECTIVES[settings.objective]
        better = [o for o in candidates(run.results, settings.objective) if fn(o) < fn(ref)]
        why = (
            f"every file with a lower {settings.objective} loses more than {rec.budget.describe()} of validation "
            f"accuracy against {ref.variant}/{ref.format}, so the reference itself is the best within the budget."
        )
        head = (
            f"No file meets the budget ({rec.budget.describe()} of validation accuracy against {ref.variant} "
            f"{ref.format}) with a lower {settings.objective} than {ref.variant} {ref.format} itself: keep {ref.path}."
        )
        if better:
            r = closest(better, settings.objective)
            lost = (ref.val_accuracy - r.val_accuracy) * 100
            gains = _gains(r, ref, settings.objective)
            head += f" The closest is {r.path}: {gains}, {lost:.2f} points below on validation."
    else:
        head = (
            f"No file meets the budget ({rec.budget.describe()} of validation accuracy against {ref.variant} "
            f"{ref.format}). The closest is {r.path}: {_gains(r, ref, settings.objective)}."
        )
    test = (
        f"{_pct(r.accuracy)} for {r.variant}/{r.format} against {_pct(ref.accuracy)} for {ref.variant}/{ref.format}; "
        "reported for the chosen file, never used to choose it."
    )
    items = [
        ("Why", why),
        ("Validation", f"{_pct(r.val_accuracy)} against {_pct(ref.val_accuracy)} for {ref.variant}/{ref.format}."),
        ("Test", test),
        (
            "Pareto front",
            f"{', '.join(f'{x.variant}/{x.format}' for x in rec.front)} (no other file has a better validation "
            f"accuracy and {settings.objective} at once; highlighted in the plots).",
        ),
        ("Settings", _settings_text(settings)),
        ("To change", change),
    ]
    return blocks + [_Callout(head, items)]


def _describe_point(r: Result) -> str:
    """A plotted file's hover text: variant, format and its figures."""
    lat = r.latency_ms
    return (
        f"{r.variant} / {r.format}: validation {_pct(r.val_accuracy)}, test {_pct(r.accuracy)}, "
        f"gzip {_kib(r.gzip_bytes)} KiB, size {_kib(r.size_bytes)} KiB, "
        f"p50 {_fmt(lat.p50 if lat else None, '.3f')} ms, "
        f"MACs {_count(r.macs)}, sparsity {_pct(r.sparsity)}"
    )


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
                _pct(r.val_accuracy),
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
        "test accuracy",
        "val accuracy",
        "Δ test accuracy",
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
        notes.append(f"Δ test accuracy is in percentage points vs {ref_acc.variant}/{ref_acc.format}.")
    notes.append("val accuracy is the file's accuracy on the validation split, what the recommendation is chosen on.")
    if ref32:
        notes.append(f"Compression and speed-up are {base}/float32's gzip size and p50 latency divided by the row's.")
    else:
        notes.append(f"No {base}/float32 row, so compression and speed-up are not computed.")
    notes.append("In report.html, click a column header to sort the table by it.")
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
        _Table(headers, rows, "llrrrrrrrrrrrrrr", sortable=True),
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
    rec, base = _decide(run), _baseline_variant(run)
    chosen = rec.result if rec else None

    def tradeoff(objective: str) -> Callable[[], Optional[plots.Plot]]:
        return lambda: plots.plot_tradeoff(run.results, objective, base, chosen, _describe_point)

    def png(draw: Callable[[], Optional[bytes]]) -> Callable[[], Optional[plots.Plot]]:
        return lambda: (lambda b: plots.Plot(b) if b is not None else None)(draw())

    specs: list[tuple[str, str, Callable[[], Optional[plots.Plot]], str]] = [
        ("accuracy_vs_size", "Accuracy vs gzip size", tradeoff("gzip_bytes"), "No exported file to plot."),
        ("accuracy_vs_latency", "Accuracy vs latency", tradeoff("latency_p50"), "No latency was measured."),
        ("latency", "Latency p50 / p90", png(lambda: plots.plot_latency(run.results)), "No latency was measured."),
        (
            "sparsity",
            "Per-layer sparsity",
            png(lambda: plots.plot_sparsity(run.results)),
            "No per-layer statistics recorded.",
        ),
    ]
    for key, alt, draw, empty in specs:
        plot = draw()
        blocks.append(_Image(f"{key}.png", alt, plot.png, plot.svg) if plot is not None else _Para(f"{alt}: {empty}"))
    blocks.append(
        _Para(
            "The accuracy plots draw the exported files (not the Keras models) at their validation accuracy, the "
            "split the recommendation is chosen on: the dashed line joins the Pareto front on that plot's axis "
            "(no other file is both more accurate and smaller, or faster), the star marks the recommended file, "
            "bold labels the baseline. In report.html, hover over a point for its figures."
        )
    )
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


def _tune(run: Run) -> list[Any]:
    """A ``tfopt tune`` search: its recommendation, trials and sensitivity (tfopt/report/tune_section.py)."""
    kinds = {"heading": _Heading, "para": _Para, "keyvalues": _KeyValues, "table": _Table, "image": _Image}
    return tune_blocks(run, kinds)


SECTIONS: list[Callable[[Run], list[Any]]] = [
    _title,
    _recommendation,
    _tune,
    _header,
    _results_table,
    _distillation,
    _not_exported,
    _quantizer,
    _plots,
    _layers,
    _transforms,
    _training,
]
"""The report's sections in order; each maps a run to its blocks (an empty list leaves it out)."""


def build_blocks(run: Run, sections: Optional[Sequence[Callable[[Run], list[Any]]]] = None) -> list[Any]:
    """Lay out the whole report as neutral blocks, shared by the Markdown and HTML writers.

    Args:
        run: the run record.
        sections: default ``SECTIONS`` (read at call time, so a section added to it is rendered).
    """
    return [block for section in (SECTIONS if sections is None else sections) for block in section(run)]


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
        elif isinstance(b, _Callout):
            lines = [f"> **{_md(b.headline)}**", ">"] + [f"> - **{_md(k)}:** {_md(v)}" for k, v in b.items]
            out.append("\n".join(lines))
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
section.rec { border: 2px solid #2ca02c; background: #f3fbf3; border-radius: 6px; padding: .6rem 1rem; }
section.rec.none { border-color: #d62728; background: #fdf3f3; }
section.rec p.headline { font-size: 1.1rem; font-weight: 600; margin: .2rem 0 .5rem; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
figure.plot { margin: .8rem 0; border: 1px solid #eee; }
figure.plot svg { width: 100%; max-width: 960px; height: auto; display: block; }
figure.plot g.tfopt-point { cursor: help; }
"""

# Click a header of a sortable table: sort its rows by that column (numbers as numbers, "–" last), again to reverse.
_JS = """
(function () {
  function key(cell) {
    var t = cell.textContent.trim().replace(/,/g, "");
    if (t === "" || t === "\u2013") return null;
    var m = t.match(/^[+-]?(\\d+\\.?\\d*|\\.\\d+)(e[+-]?\\d+)?/i);
    if (!m) return t.toLowerCase();
    var scale = {k: 1e3, M: 1e6, G: 1e9}[t.charAt(m[0].length)] || 1;
    return parseFloat(m[0]) * scale;
  }
  function compare(a, b) {
    if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
    return typeof a === "number" ? -1 : 1;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.title = "Sort by " + th.textContent;
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
          return {row: row, key: key(row.cells[col]), i: i};
        });
        rows.sort(function (a, b) {
          if (a.key === null || b.key === null) return (a.key === null) - (b.key === null) || a.i - b.i;
          return (asc ? 1 : -1) * compare(a.key, b.key) || a.i - b.i;
        });
        rows.forEach(function (r) { body.appendChild(r.row); });
      });
    });
  });
})();
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
            cls = ' class="sortable"' if b.sortable else ""
            out.append(f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, _Image) and b.svg is not None:
            out.append(
                f'<figure class="plot" id="plot-{_e(Path(b.filename).stem)}" role="img" aria-label="{_e(b.alt)}">'
                f"{_scoped_svg(b.svg, Path(b.filename).stem)}</figure>"
            )
        elif isinstance(b, _Image):
            data = base64.b64encode(b.png).decode("ascii")
            out.append(f'<img alt="{_e(b.alt)}" src="data:image/png;base64,{data}">')
        elif isinstance(b, _Callout):
            items = "".join(f"<li><strong>{_e(k)}:</strong> {_e(v)}</li>" for k, v in b.items)
            cls = "rec" if b.headline.startswith("Deploy ") else "rec none"  # a red frame: nothing to deploy
            out.append(
                f'<section class="{cls}" id="recommendation"><p class="headline">{_e(b.headline)}</p>'
                f'<ul class="kv">{items}</ul></section>'
            )
        elif isinstance(b, _Details):
            inner = "\n".join(_html_blocks(b.blocks))
            out.append(f"<details><summary>{_e(b.summary)}</summary>\n{inner}\n</details>")
    return out


def _scoped_svg(svg: str, scope: str) -> str:
    """Prefix the ids of one inline SVG (and the references to them) so that several SVGs share a page safely."""
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{scope}-{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{scope}-{m.group(1)}"', svg)
    return re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{scope}-{m.group(1)})", svg)


def to_html(blocks: Sequence[Any], title: str) -> str:
    """Write blocks as one self-contained, offline HTML page: inline CSS, JS and SVG, PNGs as data URIs, no URL."""
    body = "\n".join(_html_blocks(blocks))
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n<script>{_JS}</script>\n</body>\n</html>\n"
    )


# --- entry point ---------------------------------------------------------------------------------


def render(
    run: Union[Run, str, Path], out_dir: Optional[Path] = None, report: Optional[ReportConfig] = None
) -> dict[str, Path]:
    """Render a run into Markdown, self-contained HTML and PNG plots.

    Args:
        run: a ``Run``, or the path of its ``run.json`` (or of the folder holding it).
        out_dir: where to write; defaults to the folder holding ``run.json``. Required for a ``Run``.
        report: recommendation settings to use instead of the run's ``config.report``
            (e.g. ``ReportConfig(objective="latency_p50")``); they are shown in the report.

    Returns:
        Paths written: ``markdown``, ``html`` and one per plot drawn (``accuracy_vs_size``,
        ``accuracy_vs_latency``, ``latency``, ``sparsity``; a plot with nothing to draw is left out).

    Raises:
        TfoptError: if the run file is missing or invalid (``config.report`` included), or a ``Run``
            is given without ``out_dir``.

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
    if report is not None:
        run = dataclasses.replace(run, config={**run.config, "report": report.model_dump(mode="json")})
    blocks = build_blocks(run)
    written: dict[str, Path] = {}
    for b in blocks:
        if isinstance(b, _Image):
            written[Path(b.filename).stem] = atomic_write_bytes(out_dir / b.filename, b.png)
    written["markdown"] = atomic_write_text(out_dir / "report.md", to_markdown(blocks))
    written["html"] = atomic_write_text(out_dir / "report.html", to_html(blocks, f"tfopt report: {run.pipeline}"))
    return written
