"""Post-training quantization through the LiteRT Quantizer (PyPI ``litert-quantizer``, formerly
``ai-edge-quantizer``), as export formats beside the converter's own.

Each format converts the model to a float32 ``.tflite`` with the converter, then applies one of
the quantizer's declarative recipes to that file; static recipes calibrate on real training
samples. The quantizer then validates its result tensor by tensor (float file vs quantized file
on held-out training samples), and that comparison goes into run.json (``Result.details``).

Example::

    export: [float32, dynamic, int8, lq_dynamic_int8, {lq_static_int8: {calibration_samples: 200}}]

Compared with the converter's modes: ``lq_dynamic_int8`` is the counterpart of ``dynamic`` and
``lq_static_int8`` of ``int8`` (both int8 weights per channel). The quantizer only quantizes ops
its recipes list, so e.g. an embedding's GATHER table stays float32 where the converter's
``dynamic`` mode stores it as int8; the per-layer table of the report shows each tensor's dtype.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from tfopt.backends import Backend
from tfopt.schema import ExportSpec
from tfopt.errors import ExportError
from tfopt.quiet import native_logs_hidden
from tfopt.export.tflite import EXPORTERS, Exported, convert

PACKAGE = "litert-quantizer"
PIN = "litert-quantizer==0.11.0"

# format -> (recipe function in the quantizer's ``recipe`` module, what it does)
RECIPES: dict[str, tuple[str, str]] = {
    "lq_dynamic_int8": ("dynamic_wi8_afp32", "int8 weights per channel, activations quantized on the fly"),
    "lq_weight_only_int8": ("weight_only_wi8_afp32", "int8 weights dequantized to float before each op"),
    "lq_weight_only_int4": ("weight_only_wi4_afp32", "int4 weights dequantized to float before each op"),
    "lq_static_int8": ("static_wi8_ai8", "int8 weights and int8 activations, calibrated"),
    "lq_static_int16x8": ("static_wi8_ai16", "int8 weights and int16 activations, calibrated"),
}
METRICS = ("mse", "snr")


def quantizer_modules() -> tuple[Any, Any, str]:
    """The quantizer's ``quantizer`` and ``recipe`` modules and its version, under either package name.

    Raises:
        ExportError: neither ``litert_quantizer`` nor ``ai_edge_quantizer`` imports.
    """
    from importlib import metadata

    problems = []
    for module, dist in (("litert_quantizer", "litert-quantizer"), ("ai_edge_quantizer", "ai-edge-quantizer")):
        try:
            quantizer = importlib.import_module(f"{module}.quantizer")
            recipe = importlib.import_module(f"{module}.recipe")
        except ImportError as e:
            problems.append(f"{module}: {str(e).splitlines()[0]}")
            continue
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "?"
        return quantizer, recipe, f"{dist} {version}"
    raise ExportError(
        f"The lq_* formats need the LiteRT Quantizer, which does not import ({'; '.join(problems)}). "
        f"Fix: pip install {PIN} (the package formerly named ai-edge-quantizer)."
    )


def _signature(model_bytes: bytes) -> tuple[str, dict[str, Any]]:
    """The file's one signature and its inputs' dtypes by name."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ExportError(
            f"The LiteRT Quantizer formats expect one model signature, found {len(signatures)}: {list(signatures)}."
        )
    ((key, io),) = signatures.items()
    details = interpreter.get_signature_runner(key).get_input_details()
    return key, {name: details[name]["dtype"] for name in io["inputs"]}


def _take(x: Any, start: int, stop: int) -> Any:
    return {k: v[start:stop] for k, v in x.items()} if isinstance(x, dict) else x[start:stop]


def _count(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _samples(signature: str, inputs: dict[str, Any], x: Any) -> dict[str, list[dict[str, np.ndarray]]]:
    """One dict per sample, keyed by the file's input names (a dict of arrays for several inputs)."""
    if not isinstance(x, dict):
        if len(inputs) != 1:
            raise ExportError(
                f"The model file has inputs {sorted(inputs)} but the samples are one array. "
                "Fix: give a dict of arrays by input name."
            )
        x = {next(iter(inputs)): x}
    missing = sorted(set(inputs) - set(x))
    if missing:
        raise ExportError(f"No samples for the model file's inputs {missing}. Received: sample keys={sorted(x)}")
    return {signature: [{k: np.asarray(x[k][i : i + 1]).astype(inputs[k]) for k in inputs} for i in range(_count(x))]}


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: float(f"{v:.6g}") for k, v in d.items()}


def quantize_tflite(float_model: bytes, fmt: str, calibration: Any, spec: ExportSpec) -> Exported:
    """Quantize a float32 ``.tflite`` with recipe ``fmt`` and validate it on held-out samples.

    Args:
        float_model: the float32 file's bytes (from the converter).
        fmt: one of ``RECIPES``.
        calibration: real training inputs (an array, or a dict of arrays by input name); the first
            ``spec.calibration_samples`` calibrate static recipes, the next
            ``spec.validation_samples`` feed the per-tensor validation.
        spec: the export options.

    Returns:
        The quantized bytes and ``details``: recipe, package version, sample counts, and the
        validation's per-tensor errors (outputs, weights, activations).

    Raises:
        ExportError: the quantizer is missing or fails on this model.
    """
    quantizer, recipes, version = quantizer_modules()
    recipe_name, what = RECIPES[fmt]
    signature, inputs = _signature(float_model)
    threads = max(1, os.cpu_count() or 1)
    cal = _take(calibration, 0, spec.calibration_samples)
    held_out = _take(calibration, spec.calibration_samples, spec.calibration_samples + spec.validation_samples)
    reused = _count(held_out) == 0 and spec.validation_samples > 0
    if reused:  # too few samples to hold some out: validate on calibration samples, and say so
        held_out = _take(calibration, 0, spec.validation_samples)
    try:
        with native_logs_hidden(discard=True):
            q = quantizer.Quantizer(float_model)
            q.load_quantization_recipe(getattr(recipes, recipe_name)())
            calibrated = q.need_calibration
            result = q.calibrate(_samples(signature, inputs, cal), num_threads=threads) if calibrated else None
            quantized = bytes(q.quantize(result, enable_progress_report=False).quantized_model)
            comparison = None
            if _count(held_out):
                metric = quantizer.ValidationErrorMetric
                comparison = q.validate(
                    _samples(signature, inputs, held_out),
                    error_metrics=[metric(m) for m in METRICS],
                    num_threads=threads,
                ).get_signature_comparison_result(signature)
    except ExportError:
        raise
    except Exception as e:  # the quantizer raises many types; keep its first line
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ExportError(f"LiteRT Quantizer recipe {recipe_name} ({fmt}) failed: {first[:300]}") from None
    details: dict[str, Any] = {
        "tool": version,
        "recipe": recipe_name,
        "description": what,
        "calibration_samples": _count(cal) if calibrated else 0,
    }
    if comparison is not None:
        details["validation"] = {
            "samples": _count(held_out),
            "samples_source": "calibration samples (too few training samples to hold some out)"
            if reused
            else "held-out training samples",
            "metrics": list(METRICS),
            "outputs": {k: _round(v) for k, v in comparison.output_tensors.items()},
            "constants": {k: _round(v) for k, v in comparison.constant_tensors.items()},
            "activations": {k: _round(v) for k, v in comparison.intermediate_tensors.items()},
        }
    return Exported(quantized, details)


def _register(fmt: str) -> None:
    recipe_name, what = RECIPES[fmt]

    def export(model: Any, spec: ExportSpec, calibration: np.ndarray, backend: Backend) -> Exported:
        if backend.fake_quantized(model):
            # Its float32 file holds fake-quantization ops whose ranges the quantizer cannot
            # reuse (measured: a CONV_2D with non-zero weight zero points that fails to prepare).
            raise ExportError(
                f"{fmt} quantizes a float model after training; {model.name!r} is a QAT model, whose int8 file is "
                "the converter's 'int8' (or 'dynamic') format. Fix: export QAT variants as int8."
            )
        quantizer_modules()  # fail before converting when the package is missing
        float_model = convert(model, ExportSpec(format="float32"), calibration, backend)
        return quantize_tflite(float_model, fmt, calibration, spec)

    export.__doc__ = f"LiteRT Quantizer {recipe_name}: {what}."
    EXPORTERS.register(fmt)(export)


for _fmt in RECIPES:
    _register(_fmt)
