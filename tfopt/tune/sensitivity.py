"""Per-layer sensitivity: what each layer alone costs on validation, measured before the search.

Cheap on purpose (no fine-tune): each prunable layer's kernel is magnitude-pruned alone to a few
sparsities and the model's validation accuracy read; for int8, each layer's output error in the
quantized file is read from TensorFlow's quantization debugger, and the int8 file's validation accuracy
with that layer alone left in float from the debugger's selective quantization (Intel Neural
Compressor's fallback measures the same thing). ``allocate`` then turns a target
overall sparsity into per-layer sparsities that cost each layer about the same accuracy (AIMET's
greedy compression-ratio selection is the anchor): robust layers are pruned harder than fragile ones.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tfopt._keras import tf
from tfopt.quiet import native_logs_hidden
from tfopt.pipeline import accuracy
from tfopt.results import LayerSensitivity
from tfopt.transforms.prune_keras3 import magnitude_mask

_MIN_WEIGHTS = 64  # kernels smaller than this are left alone: nothing to gain


def prunable_layers(model: Any) -> list[Any]:
    """Layers whose first weight is a kernel (a matrix or a convolution filter) worth pruning."""
    out = []
    for layer in model.layers:
        weights = layer.get_weights()
        if weights and weights[0].ndim >= 2 and weights[0].size >= _MIN_WEIGHTS:
            out.append(layer)
    return out


def measure(
    model: Any, splits: Any, sparsities: Sequence[float], quantization: bool = True, log: Callable = print
) -> list[LayerSensitivity]:
    """Each prunable layer's validation accuracy when it alone is pruned to each of ``sparsities``.

    ``model`` is left as it was (each kernel restored after its measurements).
    """
    errors = quant_errors(model, splits, log) if quantization else {}
    out = []
    for layer in prunable_layers(model):
        weights = layer.get_weights()
        kernel = weights[0]
        accs = []
        try:
            for s in sparsities:
                layer.set_weights([kernel * magnitude_mask(kernel, s), *weights[1:]])
                accs.append(accuracy(model.predict(splits.x_val, batch_size=256, verbose=0), splits.y_val))
        finally:
            layer.set_weights(weights)
        rmse, kept = errors.get(layer.name, (None, None))
        out.append(LayerSensitivity(layer.name, int(kernel.size), accs, rmse, kept))
        log(
            f"[tfopt]   sensitivity {layer.name:>16}: "
            + "  ".join(f"{s:.2f}->{a:.3f}" for s, a in zip(sparsities, accs))
            + (f"  int8 rmse {rmse:.2e}" if rmse is not None else "")
            + (f"  int8 with it float {kept:.3f}" if kept is not None else "")
        )
    return out


def quant_errors(
    model: Any, splits: Any, log: Callable = print, samples: int = 100, kept_float: bool = True
) -> dict[str, tuple[float, Optional[float]]]:
    """Each layer's (output RMSE in the int8 file against float, the int8 file's validation accuracy with
    that layer alone left in float), from TensorFlow's quantization debugger and its selective quantization.

    Empty (with a log line) when the debugger cannot take the model (e.g. a Keras 3 model).
    """
    x = np.asarray(splits.x_val if len(splits.x_val) else splits.x_train)[:samples].astype("float32")

    def dataset():
        for i in range(len(x)):
            yield [x[i : i + 1]]

    def debugger(denylist: Optional[list[str]] = None) -> Any:
        lite = tf().lite
        converter = lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        options = lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylist)
        return lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset, debug_options=options)

    try:
        with native_logs_hidden(discard=True):  # the calibrator prints a line per conversion to fd 2
            full = debugger()
            full.run()
    except Exception as e:  # noqa: BLE001 - the table is informative; the search does not depend on it
        why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        log(f"[tfopt]   int8 per-layer error not measured: {why}")
        return {}
    out: dict[str, tuple[float, Optional[float]]] = {}
    for tensor, stats in full.layer_statistics.items():
        layer = next((k.name for k in model.layers if f"/{k.name}/" in tensor), None)
        if layer is None or layer in out:
            continue
        rmse = round(math.sqrt(max(float(stats["mean_squared_error"]), 0.0)), 8)
        node = full._get_operand_name_and_index(tensor)[0]  # the float op's output tensor: what the denylist names
        out[layer] = (
            rmse,
            _val_accuracy(_quietly(lambda make, n: make([n]).get_nondebug_quantized_model(), debugger, node), splits)
            if kept_float
            else None,
        )
    return out


def _quietly(fn: Callable[..., bytes], *args: Any) -> bytes:
    """``fn(*args)`` (a debugger built and its model converted) without the calibrator's line on fd 2."""
    with native_logs_hidden(discard=True):
        return fn(*args)


def _val_accuracy(tflite: bytes, splits: Any) -> float:
    from tfopt.evaluate.litert import TfliteRunner

    return accuracy(TfliteRunner(tflite).predict(splits.x_val), splits.y_val)


def allocate(
    sensitivity: Sequence[LayerSensitivity], sparsities: Sequence[float], target: float, reference: float
) -> dict[str, float]:
    """Per-layer sparsities whose weighted mean is ``target``, each layer losing about the same accuracy.

    Each layer's validation drop is interpolated between the measured sparsities (0 at 0, never
    decreasing); a bisection finds the common drop at which every layer, pruned as far as that drop
    allows, reaches ``target`` over all their weights. ``reference`` is the unpruned validation accuracy.
    """
    if not sensitivity:
        return {}
    grid = np.array([0.0, *sparsities, 0.99])
    curves = []
    for row in sensitivity:
        drops = np.maximum.accumulate(np.array([0.0, *[reference - a for a in row.pruned_val_accuracy]]))
        drops = np.append(drops, drops[-1] + 1.0)  # past the last measurement: assumed costly
        curves.append(np.maximum(drops, 0.0) + grid * 1e-6)  # strictly increasing: ties go to sparser
    weights = np.array([row.weights for row in sensitivity], dtype=float)

    def at(drop: float) -> np.ndarray:
        return np.array([np.interp(drop, c, grid) for c in curves])

    lo, hi = 0.0, max(float(c[-1]) for c in curves)
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(np.dot(at(mid), weights) / weights.sum()) < target:
            lo = mid
        else:
            hi = mid
    return {row.layer: round(float(min(s, 0.98)), 4) for row, s in zip(sensitivity, at(hi))}


def weighted_sparsity(allocation: dict[str, float], sensitivity: Sequence[LayerSensitivity]) -> Optional[float]:
    """The overall sparsity an allocation gives over the layers it covers."""
    n = {r.layer: r.weights for r in sensitivity}
    total = sum(n[k] for k in allocation)
    return sum(s * n[k] for k, s in allocation.items()) / total if total else None
