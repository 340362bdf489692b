"""TFLite conversion modes of the TF 2.21 converter.

Each format is a small function that configures a ``TFLiteConverter``; registering a new one
adds a format. ``int8`` is full-integer quantization calibrated on real training samples, with
float input/output by default (drop-in) or integer input/output with ``integer_io: true``.
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


@EXPORTERS.register("float32")
def _float32(conv: Any, spec: ExportSpec, calib: np.ndarray) -> None:
    pass


@EXPORTERS.register("dynamic")
def _dynamic(conv: Any, spec: ExportSpec, calib: np.ndarray) -> None:
    conv.optimizations = [tf().lite.Optimize.DEFAULT]


@EXPORTERS.register("float16")
def _float16(conv: Any, spec: ExportSpec, calib: np.ndarray) -> None:
    t = tf()
    conv.optimizations = [t.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [t.float16]


@EXPORTERS.register("int8")
def _int8(conv: Any, spec: ExportSpec, calib: np.ndarray) -> None:
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


def convert(model: Any, spec: ExportSpec, calibration: np.ndarray) -> bytes:
    """Convert a (stripped) tf_keras model to TFLite bytes in the requested format.

    Args:
        model: a plain Keras model (transforms already stripped).
        spec: the export format and its options.
        calibration: real training inputs; int8 calibrates on the first ``calibration_samples``.

    Raises:
        ExportError: with the converter's own reason on the first line.
    """
    configure: Callable = EXPORTERS.get(spec.format)
    conv = tf().lite.TFLiteConverter.from_keras_model(model)
    configure(conv, spec, calibration)
    try:
        with _quiet_stderr():
            return conv.convert()
    except Exception as e:  # converter errors come as several exception types
        reason = next((line for line in str(e).splitlines() if "error" in line.lower()), str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise ExportError(f"TFLite conversion to {spec.format} failed for model {model.name!r}: {reason.strip()[:400]}") from None
