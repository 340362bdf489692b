"""Export one model in every requested format and evaluate each file on the test split.

Every file is what a user deploys, so its figures are read from the file itself: accuracy through
LiteRT (on the test split, and on the validation split recommendations are chosen on), sizes on
disk and gzip -9, weights statistics from the flatbuffer, latency, and the largest difference
from the Keras model's outputs (checked against the format's tolerance).

Latency is timed last, for all files together (``time_latencies``): timed one after the other,
right after each export, load from other work moved files that do the same work apart (a
50%-pruned float32 file at 8.99 ms against its baseline's 5.31 ms); timed in turn, in rounds,
every file of a run is measured under the same load and their ratios hold.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tfopt.backends import Backend, backend_for
from tfopt.data import num_examples
from tfopt.errors import ExportError
from tfopt.evaluate.latency import measure_interleaved
from tfopt.evaluate.macs import tflite_macs
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.sizes import gzip_bytes, path_bytes
from tfopt.evaluate.weights import overall_sparsity, tflite_weight_stats
from tfopt.export import export_tflite
from tfopt.export.saved_model import shared_saved_model
from tfopt.io import atomic_path, atomic_write_bytes
from tfopt.results import NotExported, Result
from tfopt.schema import EvaluateConfig, ExportSpec


@dataclass
class Evaluation:
    """What exporting one model gave: a Result per file (the Keras file first), and what failed."""

    results: list[Result] = field(default_factory=list)
    not_exported: list[NotExported] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # files that differ from Keras past their tolerance
    files: dict[tuple[str, str], Path] = field(default_factory=dict)  # (variant, format) -> .tflite written

    def merge(self, other: Evaluation) -> None:
        """Add another model's figures to these (one run's evaluations, in order)."""
        self.results += other.results
        self.not_exported += other.not_exported
        self.failures += other.failures
        self.files.update(other.files)


def export_and_evaluate(
    model: Any,
    variant: str,
    formats: list[ExportSpec],
    splits: Any,
    folder: Path,
    *,
    backend: Optional[Backend] = None,
    evaluate: Optional[EvaluateConfig] = None,
    published: Callable[[Path], Path] = lambda p: p,
    log: Callable[[str], None] = print,
    time_latency: bool = True,
) -> Evaluation:
    """Save ``model`` as Keras and as each format under ``folder``, and measure every file.

    Args:
        formats: the export formats; one that cannot be produced is reported in ``not_exported``.
        splits: real data: calibration from ``x_train``, figures on ``x_test``/``y_test``.
        published: maps a path under ``folder`` to where it lives once the run is published (Result.path).
        time_latency: time this model's files (in turn) before returning; False leaves ``latency_ms``
            None for the caller to time a whole run's files together with ``time_latencies``.
    """
    backend, evaluate, out = backend or backend_for(model), evaluate or EvaluateConfig(), Evaluation()
    keras_path = folder / f"{variant}{backend.file_suffix(model)}"  # .h5 for QAT models (see backends/tf_keras.py)
    with atomic_path(keras_path) as tmp:
        backend.save(model, tmp)  # without optimizer state
    probs = model.predict(splits.x_test, batch_size=256, verbose=0)
    # gzip -9 sizes are computed on a second thread (zlib releases the GIL) while the next format
    # converts: about a second of the quickstart's wall time otherwise.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tfopt-gzip") as pool:
        # (a Result's fields but its gzip size, that size to come, max |Keras - TFLite| unrounded for the log line)
        pending: list[tuple[dict, Future, Optional[float]]] = [
            (
                _keras_fields(model, variant, probs, splits, keras_path, backend, published),
                pool.submit(gzip_bytes, keras_path),
                None,
            )
        ]
        with shared_saved_model(model):  # every format converts from one SavedModel
            for spec in formats:
                done = _export_one(model, variant, spec, splits, folder, backend, evaluate, probs, published, out, log)
                if done is not None:
                    fields, diff = done
                    pending.append((fields, pool.submit(gzip_bytes, folder / f"{variant}_{spec.label}.tflite"), diff))
        for fields, size, diff in pending:
            out.results.append(_result(fields, size.result()))
            if diff is not None:
                log(format_line(out.results[-1], diff))
    if time_latency:
        time_latencies(out, splits.x_test, evaluate, log)
    return out


def time_latencies(
    evaluation: Evaluation, x: Any, evaluate: EvaluateConfig, log: Callable[[str], None] = print
) -> None:
    """Time every .tflite of ``evaluation`` in turn (``measure_interleaved``) and set their ``latency_ms``.

    The log gives each file's p50 and its ratio to the first file's (the baseline's float32 in a
    run), both measured under the same load.
    """
    keys = [(r.variant, r.format) for r in evaluation.results if (r.variant, r.format) in evaluation.files]
    if not evaluate.latency_runs or not keys:
        return
    lats = measure_interleaved(
        [evaluation.files[k] for k in keys], x, evaluate.latency_runs, evaluate.latency_warmup, evaluate.threads,
        rounds=evaluate.latency_rounds,
    )  # fmt: skip
    timed = dict(zip(keys, lats))
    evaluation.results = [
        dataclasses.replace(r, latency_ms=timed.get((r.variant, r.format), r.latency_ms)) for r in evaluation.results
    ]
    ref = lats[0].p50
    log(
        f"[tfopt]   {len(keys)} file{'s' if len(keys) > 1 else ''} timed in turn in {lats[0].rounds} rounds: "
        f"{evaluate.latency_runs} runs each after {evaluate.latency_warmup} warm-up runs"
    )
    for (variant, fmt), lat in timed.items():
        ratio = f"  x{lat.p50 / ref:.2f} of {keys[0][0]} {keys[0][1]}" if ref else ""
        log(f"[tfopt]   {variant:>12} {fmt:>8}: p50 {lat.p50:.3f} ms  p90 {lat.p90:.3f} ms{ratio}")


def _keras_fields(
    model: Any, variant: str, probs: np.ndarray, splits: Any, path: Path, backend: Backend, published: Callable
) -> dict:
    """The Keras file's Result fields but its gzip size: the reference row of the variant."""
    has_val = num_examples(splits.x_val) > 0  # val_fraction 0: no validation split, nothing to choose on
    layers = backend.weight_stats(model)
    return dict(
        variant=variant,
        format="keras",
        path=str(published(path)),
        accuracy=accuracy(probs, splits.y_test),
        val_accuracy=accuracy(model.predict(splits.x_val, batch_size=256, verbose=0), splits.y_val)
        if has_val
        else None,
        size_bytes=path_bytes(path),
        sparsity=overall_sparsity(layers),
        max_abs_diff=None,
        tolerance=None,
        latency_ms=None,
        layers=layers,
        details={"keras": backend.kind},  # the Keras that loads the file
    )


def _result(fields: dict, gzip_size: int) -> Result:
    """A file's Result once its gzip size is known; ``weights`` counts the values of its weight tensors."""
    return Result(gzip_bytes=gzip_size, weights=sum(s.size for s in fields["layers"]), **fields)


def _export_one(
    model: Any,
    variant: str,
    spec: ExportSpec,
    splits: Any,
    folder: Path,
    backend: Backend,
    evaluate: EvaluateConfig,
    probs: np.ndarray,
    published: Callable[[Path], Path],
    out: Evaluation,
    log: Callable[[str], None],
) -> Optional[tuple[dict, float]]:
    """One format's file written and measured: (the Result's fields but gzip, max |Keras - TFLite|), or None."""
    path = folder / f"{variant}_{spec.label}.tflite"
    try:
        exported = export_tflite(model, spec, splits.x_train, backend)
    except ExportError as e:  # e.g. a Keras 3 natively quantized model: reported, the run goes on
        out.not_exported.append(NotExported(variant, spec.label, str(e)))
        log(f"[tfopt]   {variant:>12} {spec.label:>8}: not exportable: {e}")
        return None
    atomic_write_bytes(path, exported.data)
    runner = TfliteRunner(path, threads=evaluate.threads)
    lite_probs = runner.predict(splits.x_test)
    diff = float(np.max(np.abs(lite_probs - probs)))
    layers = tflite_weight_stats(path)
    out.files[(variant, spec.label)] = path
    if diff > spec.max_abs_diff:
        out.failures.append(
            f"{variant}/{spec.label}: max |Keras - TFLite| = {diff:.4g} exceeds the tolerance {spec.max_abs_diff:g}. "
            f"Fix: inspect {path}, or raise the tolerance with export: [{{{spec.format}: {{tolerance: ...}}}}]."
        )
    return dict(
        variant=variant,
        format=spec.label,
        path=str(published(path)),
        accuracy=accuracy(lite_probs, splits.y_test),
        val_accuracy=accuracy(runner.predict(splits.x_val), splits.y_val) if num_examples(splits.x_val) else None,
        size_bytes=path_bytes(path),
        sparsity=overall_sparsity(layers),
        max_abs_diff=round(diff, 6),
        tolerance=spec.max_abs_diff,
        latency_ms=None,  # timed with the run's other files: time_latencies
        layers=layers,
        details=exported.details,
        macs=tflite_macs(path),
    ), diff


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of class scores against integer labels, rounded as run.json keeps it."""
    return round(float(np.mean(np.argmax(probs, axis=-1) == labels)), 6)


def format_line(r: Result, diff: float) -> str:
    """One exported file's progress line (``diff`` unrounded: run.json keeps 6 decimals)."""
    return (
        f"[tfopt]   {r.variant:>12} {r.format:>8}: acc {r.accuracy:.4f}  "
        f"{r.size_bytes / 1024:8.1f} KiB  gzip {r.gzip_bytes / 1024:8.1f} KiB  "
        f"sparsity {r.sparsity:.3f}  max|diff| {diff:.2e}"
    )
