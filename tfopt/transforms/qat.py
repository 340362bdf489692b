"""Quantization-aware training through tfmot (``quantize_annotate_layer`` / ``quantize_apply``).

The model trains with simulated int8 weights and activations, so the int8 file keeps the float
model's accuracy. The QAT model is not stripped: the converter reads its quantization ranges.

Example::

    variants:
      qat: [qat]
      qat_head_float: [{qat: {skip: [classifier]}}]            # quantize only some layers
      pqat: [{prune: {final_sparsity: 0.5}}, qat]               # prune-preserving QAT
      pcqat: [{prune: {final_sparsity: 0.5}}, {cluster: {number_of_clusters: 16}}, qat]

The scheme follows from the variant's earlier steps (``Context.previous``), never from the user,
so QAT keeps what they achieved: after ``prune`` the zeros stay zero (PQAT), after ``cluster``
the centroids stay shared (CQAT), after both, both (PCQAT).
"""

from __future__ import annotations

import re
from typing import Any

from tfopt._keras import tfmot
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.transforms import TRANSFORMS, Transform
from tfopt.transforms.common import LayerSelection, clone_wrapping, fresh_copy, require_some_applied, require_tf_keras

_CLUSTER_PRESERVE = (
    "tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve."
    "default_8bit_cluster_preserve_quantize_scheme"
)


class QatConfig(LayerSelection):
    """QAT's only options are which layers to quantize; the 8-bit scheme is tfmot's default."""


def quantize_scheme(previous: tuple[str, ...]) -> tuple[str, Any]:
    """The collaborative scheme for a QAT step after ``previous`` steps: (label, scheme object)."""
    import importlib

    q = tfmot().quantization.keras
    pruned, clustered = "prune" in previous, "cluster" in previous
    if clustered:
        cls = importlib.import_module(_CLUSTER_PRESERVE).Default8BitClusterPreserveQuantizeScheme
        if pruned:
            return "PCQAT (Default8BitClusterPreserveQuantizeScheme, preserve_sparsity=True)", cls(preserve_sparsity=True)
        return "CQAT (Default8BitClusterPreserveQuantizeScheme, preserve_sparsity=False)", cls(preserve_sparsity=False)
    if pruned:
        return "PQAT (Default8BitPrunePreserveQuantizeScheme)", q.collab_opts.Default8BitPrunePreserveQuantizeScheme()
    return "QAT (Default8BitQuantizeScheme)", q.default_8bit.Default8BitQuantizeScheme()


def quantize_scope() -> Any:
    """Custom-object scope needed to clone or load a QAT model (its wrappers and quantizers)."""
    return tfmot().quantization.keras.quantize_scope()


def is_quantized(model: Any) -> bool:
    """Whether ``model`` holds tfmot QAT wrappers (checked by name: no tfmot import for Keras 3 models)."""
    return any(
        cls.__name__ == "QuantizeWrapper" and cls.__module__.startswith("tensorflow_model_optimization")
        for layer in getattr(model, "layers", [])
        for cls in type(layer).__mro__
    )


def model_file_suffix(model: Any) -> str:
    """How to save ``model`` so it loads back: ``.h5`` for a QAT model, else ``.keras``.

    tfmot 0.8.1's QuantizeLayer tracks its range variables twice, so a QAT model saved as
    ``.keras`` cannot be loaded ("expected 5 variables, but received 3"; unfixed upstream, see
    tensorflow/model-optimization PR #1123). HDF5 round-trips it, inside ``quantize_scope()``.
    """
    return ".h5" if is_quantized(model) else ".keras"


def save_qat_model(model: Any, path: Any) -> None:
    """Save a QAT model as it is, without optimizer state (the pipeline's ``<variant>.h5``).

    It is saved as is rather than as a fresh copy because the cluster-preserving schemes (CQAT,
    PCQAT) build their variables from the weights' current values, so a copy built from the
    config has other shapes and cannot take the weights. For the same reason tfmot 0.8.1 cannot
    load a CQAT/PCQAT file back ("Weight count mismatch"); plain QAT and PQAT files load inside
    ``quantize_scope()``. The deployable artifact of every QAT variant is its int8 ``.tflite``.
    """
    model.save(str(path), include_optimizer=False, save_format="h5")


def clone_scope(model: Any) -> Any:
    """The scope in which ``model`` can be cloned or loaded: tfmot's for a QAT model, else none."""
    import contextlib

    return quantize_scope() if is_quantized(model) else contextlib.nullcontext()


_UNSUPPORTED = re.compile(r"Layer (\S+?):<class '([^']+)'> is not supported")


@TRANSFORMS.register("qat")
class Qat(Transform):
    """Fine-tune with simulated 8-bit quantization; the converter then writes a true int8 file."""

    name = "qat"
    Config = QatConfig

    @classmethod
    def check_previous(cls, previous: tuple[str, ...]) -> None:
        if "qat" in previous:
            raise ValueError("qat appears twice. Fix: keep one qat step, the last one")

    def apply(self, model: Any) -> Any:
        require_tf_keras(model, self.name)
        q = tfmot().quantization.keras
        self.config.check_types(self.name, model)
        model = fresh_copy(model)
        label, scheme = quantize_scheme(self.context.previous)
        self.backend = f"tf_keras: tfmot {label}"
        self.decisions = []

        def annotate(layer: Any) -> Any:
            selected, reason = self.config.select(layer)
            if not selected and layer.weights and "prune" in self.context.previous:
                reason += "; fine-tuned unmasked, so its zeros are not kept"
            self.decisions.append(LayerDecision(layer.name, selected, label.split(" ")[0] if selected else reason))
            return q.quantize_annotate_layer(layer) if selected else layer

        annotated = clone_wrapping(model, self.name, annotate, weighted_only=False)
        require_some_applied("qat", model, self.decisions, "check qat.layers / qat.layer_types / qat.skip.")
        try:
            with quantize_scope():
                return q.quantize_apply(annotated, scheme)
        except RuntimeError as e:
            raise TransformError(self._unsupported_message(model, str(e))) from None
        except (ValueError, TypeError) as e:
            raise TransformError(f"QAT cannot quantize model {model.name!r}: {str(e).splitlines()[0][:300]}") from None

    def _unsupported_message(self, model: Any, text: str) -> str:
        m = _UNSUPPORTED.search(text)
        if not m:
            return f"QAT cannot quantize model {model.name!r}: {text.splitlines()[0][:300]}"
        layer, cls = m.group(1), m.group(2).rsplit(".", 1)[-1]
        why = "tfmot's default 8-bit scheme has no quantization for it"
        if cls == "BatchNormalization":
            why = "tfmot quantizes a BatchNormalization only right after a Conv2D or DepthwiseConv2D, where it is folded in"
        return (
            f"QAT cannot quantize layer {layer!r} ({cls}): {why}. "
            f"Fix: leave it in float with qat: {{skip: [{layer}]}}. Received: layer={layer!r}"
        )

    def strip(self, model: Any) -> Any:
        return model  # the converter needs the fake-quantization ranges; nothing to remove
