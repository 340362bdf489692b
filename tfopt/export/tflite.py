"""TFLite export formats.

An export format is a function ``(model, spec, calibration) -> bytes`` registered in
``EXPORTERS``; registering one adds a format usable from YAML. The converter's own modes below
are small functions that configure a ``TFLiteConverter`` (``converter_format``). ``int8`` is
full-integer quantization calibrated on real training samples, with float input/output by
default (drop-in) or integer input/output with ``integer_io: true``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable

import numpy as np

from tfopt._keras import tf
from tfopt.config import ExportSpec
from tfopt.errors import ExportError
from tfopt.registry import Registry

EXPORTERS: Registry = Registry("export format")


def converter_format(name: str) -> Callable:
    """Register a function that configures a ``TFLiteConverter`` as export format ``name``."""

    def deco(configure: Callable) -> Callable:
        def export(model: Any, spec: ExportSpec, calibration: np.ndarray) -> bytes:
            conv = tf().lite.TFLiteConverter.from_keras_model(model)
            configure(conv, spec, calibration)
            return run_converter(conv, f"{spec.format} for model {model.name!r}")

        export.__doc__ = configure.__doc__
        EXPORTERS.register(name)(export)
        return configure

    return deco


@converter_format("float32")
def _float32(conv: Any, spec: ExportSpec, calib: np.ndarray) -> None:
    """Float32 weights and activations: the reference file."""


@converter_format("dynamic")
def _dynamic(conv: Any, spec: ExportSpec, calib: np.ndarray) -> None:
    """Dynamic-range: int8 weights, float activations quantized on the fly (converter)."""
    conv.optimizations = [tf().lite.Optimize.DEFAULT]


@converter_format("float16")
def _float16(conv: Any, spec: ExportSpec, calib: np.ndarray) -> None:
    """Float16 weights (half the size), computed in float32 on CPU (converter)."""
    t = tf()
    conv.optimizations = [t.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [t.float16]


@converter_format("int8")
def _int8(conv: Any, spec: ExportSpec, calib: np.ndarray) -> None:
    """Full-integer int8 weights and activations, calibrated on training samples (converter)."""
    t = tf()
    conv.optimizations = [t.lite.Optimize.DEFAULT]
    samples = calib[: spec.calibration_samples].astype("float32")

    def representative() -> Any:
        for i in range(len(samples)):
            yield [samples[i : i + 1]]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if spec.integer_io:
        conv.inference_input_type = t.int8
        conv.inference_output_type = t.int8


@contextlib.contextmanager
def _quiet_stderr() -> Any:
    """The MLIR converter logs dozens of lines to fd 2 per model; keep them out of the progress."""
    if os.environ.get("TFOPT_VERBOSE_CONVERTER"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_converter(conv: Any, what: str) -> bytes:
    """Run a configured converter; its errors become one-line ``ExportError``s."""
    try:
        with _quiet_stderr():
            return conv.convert()
    except Exception as e:  # converter errors come as several exception types
        text = str(e)
        reason = next((line for line in text.splitlines() if "error" in line.lower()), text.splitlines()[0] if text else type(e).__name__)
        raise ExportError(f"TFLite conversion to {what} failed: {reason.strip()[:400]}") from None


def convert(model: Any, spec: ExportSpec, calibration: np.ndarray) -> bytes:
    """Export a (stripped) Keras model to TFLite bytes in the requested format.

    Args:
        model: a plain Keras model (transforms already stripped).
        spec: the export format and its options.
        calibration: real training inputs, for formats that calibrate (int8 uses the first
            ``spec.calibration_samples``).

    Raises:
        ExportError: with the converter's own reason on the first line.
    """
    return EXPORTERS.get(spec.format)(model, spec, calibration)
