"""TFLite export formats.

An export format is a function ``(model, spec, calibration, backend) -> bytes`` registered in
``EXPORTERS``; registering one adds a format usable from YAML. The converter's own modes below
are small functions that configure a ``TFLiteConverter`` (``converter_format``). ``int8`` is
full-integer quantization calibrated on real training samples, with float input/output by
default (drop-in) or integer input/output with ``integer_io: true``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np

from tfopt.quiet import native_logs_hidden
from tfopt._keras import tf
from tfopt.backends import Backend, backend_for
from tfopt.export.saved_model import converter_for
from tfopt.schema import ExportSpec
from tfopt.errors import ExportError
from tfopt.registry import Registry

EXPORTERS: Registry = Registry("export format")


@dataclass(frozen=True)
class Exported:
    """An exported file's bytes plus what the exporter learned making it (recorded in run.json).

    An exporter may return plain ``bytes``; ``export_tflite`` wraps them.
    """

    data: bytes
    details: dict[str, Any] = field(default_factory=dict)


def converter_format(name: str) -> Callable:
    """Register a function that configures a ``TFLiteConverter`` as export format ``name``."""

    def deco(configure: Callable) -> Callable:
        def export(model: Any, spec: ExportSpec, calibration: np.ndarray, backend: Backend) -> bytes:
            if name in ("float32", "float16") and backend.fake_quantized(model):
                # Measured: the converter keeps QAT's fake quantization as QUANTIZE/DEQUANTIZE pairs,
                # so the file is neither float nor small, and differs from Keras by ~0.02 on softmax.
                raise ExportError(
                    f"{spec.label} of QAT model {model.name!r} would keep its fake quantization as float "
                    "QUANTIZE/DEQUANTIZE ops: not a float reference, and no smaller. "
                    "Fix: export QAT variants as int8 (or dynamic)."
                )
            with converter_for(model, calibration, backend) as conv:
                configure(conv, spec, calibration)
                if spec.sparse:  # pruned weights stored sparse, for XNNPACK's sparse kernels
                    conv.optimizations = list(conv.optimizations or []) + [tf().lite.Optimize.EXPERIMENTAL_SPARSITY]
                if spec.float_layers:
                    return selective_int8(conv, spec.float_layers, model)
                return run_converter(conv, f"{spec.label} for model {model.name!r}")

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
    if isinstance(calib, dict):  # several named inputs (token ids, masks): integers, fed by name
        named = {k: v[: spec.calibration_samples] for k, v in calib.items()}

        def representative() -> Any:
            for i in range(len(next(iter(named.values())))):
                yield {k: v[i : i + 1] for k, v in named.items()}
    else:
        samples = calib[: spec.calibration_samples].astype("float32")

        def representative() -> Any:
            for i in range(len(samples)):
                yield [samples[i : i + 1]]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if spec.integer_io:
        conv.inference_input_type = t.int8
        conv.inference_output_type = t.int8


def selective_int8(conv: Any, float_layers: list[str], model: Any) -> bytes:
    """int8 with the ops of ``float_layers`` left in float, through TensorFlow's quantization debugger.

    The debugger's first pass names each quantized op's output tensor; those of the named layers are
    denylisted and the converter run again (its selective quantization).
    """
    lite = tf().lite
    conv.target_spec.supported_ops = [
        lite.OpsSet.TFLITE_BUILTINS_INT8,
        lite.OpsSet.TFLITE_BUILTINS,
    ]  # float ops allowed
    data = conv.representative_dataset
    try:
        with native_logs_hidden(discard=True):
            first = lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=data)
            first.run()
            nodes = [
                first._get_operand_name_and_index(t)[0]
                for t in first.layer_statistics
                if any(f"/{name}/" in t for name in float_layers)
            ]
            if not nodes:
                raise ExportError(
                    f"float_layers {float_layers} name no quantized op of model {model.name!r}. "
                    f"Fix: use its layer names ({', '.join(layer.name for layer in model.layers)})."
                )
            options = lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes)
            debugger = lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=data, debug_options=options)
            return debugger.get_nondebug_quantized_model()
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - the debugger fails with several exception types
        raise ExportError(f"selective int8 of model {model.name!r} failed: {str(e).splitlines()[0][:300]}") from None


def run_converter(conv: Any, what: str) -> bytes:
    """Run a configured converter; its errors become one-line ``ExportError``s."""
    try:
        with native_logs_hidden(discard=True):
            return conv.convert()
    except Exception as e:  # converter errors come as several exception types
        text = str(e)
        reason = next(
            (line for line in text.splitlines() if "error" in line.lower()),
            text.splitlines()[0] if text else type(e).__name__,
        )
        reason = re.sub(r"^.*?error: loc\(.*\)\)\):\s*", "", reason)  # MLIR prefixes a long op location
        raise ExportError(f"TFLite conversion to {what} failed: {reason.strip()[:400]}") from None


def export_tflite(model: Any, spec: ExportSpec, calibration: np.ndarray, backend: Optional[Backend] = None) -> Exported:
    """Export a model in the requested format, with the exporter's findings (see ``convert``)."""
    out: Union[bytes, Exported] = EXPORTERS.get(spec.format)(model, spec, calibration, backend or backend_for(model))
    return out if isinstance(out, Exported) else Exported(bytes(out))


def convert(model: Any, spec: ExportSpec, calibration: np.ndarray, backend: Optional[Backend] = None) -> bytes:
    """Export a (stripped) Keras model to TFLite bytes in the requested format.

    Args:
        model: a plain Keras model (transforms already stripped).
        spec: the export format and its options.
        calibration: real training inputs, for formats that calibrate (int8 uses the first
            ``spec.calibration_samples``).

    Raises:
        ExportError: with the converter's own reason on the first line.
    """
    return export_tflite(model, spec, calibration, backend).data
