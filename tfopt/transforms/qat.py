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

import dataclasses
import re
from typing import Any

from tfopt._keras import tfmot
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.backends import backend_named
from tfopt.backends.tf_keras import quantize_scope
from tfopt.backends.translate import TOLERANCE, to_tf_keras
from tfopt.transforms import Transform, sample_of, technique
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
            return "PCQAT (Default8BitClusterPreserveQuantizeScheme, preserve_sparsity=True)", _strict(
                cls(preserve_sparsity=True)
            )
        return "CQAT (Default8BitClusterPreserveQuantizeScheme, preserve_sparsity=False)", _strict(
            cls(preserve_sparsity=False)
        )
    if pruned:
        return "PQAT (Default8BitPrunePreserveQuantizeScheme)", _strict(
            q.collab_opts.Default8BitPrunePreserveQuantizeScheme()
        )
    return "QAT (Default8BitQuantizeScheme)", q.default_8bit.Default8BitQuantizeScheme()


def _strict(scheme: Any) -> Any:
    """A collaborative scheme whose registry supports only what the plain 8-bit one does.

    tfmot's prune- and cluster-preserving registries call every layer without trainable weights
    supported, then fail (``get_quantize_config() called on an unsupported layer``) on one the 8-bit
    scheme has no config for, e.g. a Rescaling before the first conv; plain QAT leaves it in float.
    """
    plain = tfmot().quantization.keras.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()
    make = scheme.get_quantize_registry

    def registry() -> Any:
        reg = make()
        own = reg.supports
        reg.supports = lambda layer: own(layer) and _quantizable(plain, layer)
        return reg

    scheme.get_quantize_registry = registry
    return scheme


# Layers tfmot's 8-bit registry leaves out but its graph transforms quantize (default_8bit_transforms.py).
_BY_PATTERN = {"BatchNormalization", "SyncBatchNormalization", "SeparableConv1D", "SeparableConv2D"}


def _quantizable(registry: Any, layer: Any) -> bool:
    """Whether tfmot quantizes ``layer``: its registry has a config for it, or a graph pattern rewrites it (a
    BatchNormalization is folded into the conv before it, or refused by quantize_apply with the skip fix)."""
    return registry.supports(layer) or type(layer).__name__ in _BY_PATTERN


_UNSUPPORTED = re.compile(r"Layer (\S+?):<class '([^']+)'> is not supported")


def _order(previous: tuple[str, ...]) -> None:
    if "qat" in previous:
        raise ValueError("qat appears twice. Fix: keep one qat step, the last one")


# float32 only: tfmot's fake-quantization ops have no float16/bfloat16 kernels
# (tensorflow/model-optimization#367, #824; measured in tests/train/test_precision.py).
QAT = technique(
    "qat",
    QatConfig,
    summary="Fine-tune with simulated 8-bit quantization; the converter then writes a true int8 file.",
    order=_order,
)


@QAT.implementation("tf_keras")
class Qat(Transform):
    """Fine-tune with simulated 8-bit quantization; the converter then writes a true int8 file."""

    def apply(self, model: Any) -> Any:
        require_tf_keras(model, self.name)
        q = tfmot().quantization.keras
        self.config.check_types(self.name, model)
        model = fresh_copy(model)
        label, scheme = quantize_scheme(self.context.previous)
        self.backend = f"tf_keras: tfmot {label}"
        self.decisions = []

        registry, kind = scheme.get_quantize_registry(), label.split(" ")[0]
        collaborative = bool({"prune", "cluster"} & set(self.context.previous))

        def annotate(layer: Any) -> Any:
            selected, reason = self.config.select(layer)
            if selected and not _quantizable(registry, layer):  # e.g. LayerNormalization (tfmot#942), Rescaling
                selected, reason = (
                    False,
                    f"kept in float: tfmot's {kind} scheme has no int8 pattern for {type(layer).__name__}",
                )
            if not selected and layer.weights and "prune" in self.context.previous:
                reason += "; fine-tuned unmasked, so its zeros are not kept"
            if selected:
                reason = kind
                if type(layer).__name__ == "DepthwiseConv2D" and collaborative:
                    # tfmot's prune/cluster-preserve registries leave DepthwiseConv2D out
                    reason += ": plain QAT for a DepthwiseConv2D (tfmot preserves no zeros or clusters in it)"
            self.decisions.append(LayerDecision(layer.name, selected, reason))
            return q.quantize_annotate_layer(layer) if selected else layer

        annotated = clone_wrapping(model, self.name, annotate, weighted_only=False)
        require_some_applied("qat", model, self.decisions, "check qat.layers / qat.layer_types / qat.skip.")
        # Kept to rebuild the fine-tuned model under the plain scheme in strip() (CQAT, PCQAT).
        self._annotated_config = (annotated.get_config(), type(annotated))
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
            why = (
                "tfmot quantizes a BatchNormalization only right after a Conv2D or DepthwiseConv2D, "
                "where it is folded in"
            )
        return (
            f"QAT cannot quantize layer {layer!r} ({cls}): {why}. "
            f"Fix: leave it in float with qat: {{skip: [{layer}]}}. Received: layer={layer!r}"
        )

    def strip(self, model: Any) -> Any:
        """The fine-tuned model as plain QAT (CQAT, PCQAT), else as it is.

        The converter needs the fake-quantization ranges, so nothing is removed. A cluster-preserving
        model keeps, next to each kernel, its float original, its centroids and an index per weight,
        which at inference are unused (the kernel already holds the clustered values) but which the
        converter still processes: measured on a VGG16-shaped model at half width (3.7M weights),
        int8 conversion took 85 s and 5.1 GB more memory, against 5 s and 0.3 GB for plain QAT; a
        full VGG16 needed about 19 GB. The same layers under tfmot's default 8-bit scheme, given
        the trained kernels and ranges, compute the same thing in inference mode, convert to the
        same int8 file, and save and load as ``.h5`` (tfmot cannot load CQAT/PCQAT files back).
        """
        if "cluster" not in self.context.previous or not getattr(self, "_annotated_config", None):
            return model
        q = tfmot().quantization.keras
        config, cls = self._annotated_config
        with quantize_scope():
            annotated = cls.from_config(config)
            twin = q.quantize_apply(annotated, q.default_8bit.Default8BitQuantizeScheme())
        values = _matching_weights(twin, model)
        if values is None:  # a tfmot change of layout: converting the cluster-preserving model still works
            return model
        twin.set_weights(values)
        return twin


@QAT.implementation("keras3")
class QatKeras3(Qat):
    """QAT of a Keras 3 model, by tfmot on its exact tf_keras twin (see ``tfopt.backends.translate``).

    The twin has the same graph, configs and weights, and must predict what the Keras 3 model
    predicts on real training inputs; from there the step is the tf_keras one (PQAT, CQAT, PCQAT
    included), and the variant is a tfmot QAT model whose int8 ``.tflite`` is the file to deploy.
    """

    @classmethod
    def check_model(cls, config: Any, model: Any) -> None:
        """A model without a tf_keras twin (subclassed, a custom layer) is refused before any training."""
        to_tf_keras(model)

    def apply(self, model: Any) -> Any:
        sample = sample_of(self.context)
        twin = to_tf_keras(model, sample=sample)
        # From here on the model is tf_keras: the fine-tune, snapshots and exports use its backend.
        self.context = dataclasses.replace(self.context, backend=backend_named("tf_keras"))
        quantized = super().apply(twin)
        checked = f", outputs equal within {TOLERANCE:g} on training inputs" if sample is not None else ""
        self.backend = f"keras3 -> tf_keras twin (weights copied{checked}); " + self.backend
        return quantized


def _matching_weights(twin: Any, model: Any) -> Any:
    """``model``'s values for each of ``twin``'s weights, layer by layer (both built from one config).

    Inside a wrapper the weights are matched by their own name (``kernel``, ``kernel_min``...), which
    skips the cluster-preserving extras; Keras numbers the input QuantizeLayer's variables afresh
    in each model, so a layer with as many weights as its twin is matched in order.
    """
    values = []
    for lt, lm in zip(twin.layers, model.layers):
        if len(lt.weights) == len(lm.weights):
            pairs = list(zip(lt.weights, lm.weights))
        else:
            own = {w.name.rsplit("/", 1)[-1]: w for w in lm.weights}
            pairs = [(w, own.get(w.name.rsplit("/", 1)[-1])) for w in lt.weights]
        for wt, wm in pairs:
            if wm is None or tuple(wt.shape) != tuple(wm.shape):
                return None
            values.append(wm.numpy())
    return values if len(twin.layers) == len(model.layers) else None
