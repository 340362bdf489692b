"""Keras 3 native weight quantization (``model.quantize``) as a transform, for Keras 3 models only.

Example::

    variants:
      keras_int8: {transforms: [{quantize: {mode: int8, skip: [logits]}}], finetune: {epochs: 0}}

Keras quantizes the kernels of Dense / EinsumDense / Embedding layers in place (int8: per-channel
absmax scales; int4: packed 4-bit), and the quantized model is evaluated in Keras. The TFLite
converter cannot lower its integer matmuls (TF 2.21: ``'tfl.fully_connected' op operand #0 must
be ... float ... but got i8``), so such a variant's exports are reported as not exportable, with
the converter's reason, and the run goes on. For a quantized ``.tflite`` use the export formats
(``dynamic``, ``int8``, the ``lq_*`` LiteRT Quantizer recipes) on an unquantized variant.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tfopt.backends.keras3 import check_layer_types, layer_path, matrix_layers, select
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.transforms import Transform, technique
from tfopt.transforms.common import LayerSelection, require_some_applied


class QuantizeConfig(LayerSelection):
    mode: Literal["int8", "int4"] = Field("int8", description="Keras quantization mode: int8 or int4 weights")


def _order(previous: tuple[str, ...]) -> None:
    if "quantize" in previous:
        raise ValueError("quantize twice: the weights are already integers. Fix: keep one quantize step")


QUANTIZE = technique(
    "quantize",
    QuantizeConfig,
    order=_order,
    needs_finetune=False,
    example={"mode": "int8"},
    summary="Quantize a Keras 3 model's weights with Keras' own model.quantize (evaluated in Keras).",
)


@QUANTIZE.implementation("keras3")
class QuantizeKeras3(Transform):
    """Quantize a Keras 3 model's weights with Keras' own ``model.quantize`` (evaluated in Keras)."""

    backend = "keras3: Keras native quantization (model.quantize)"

    def apply(self, model: Any) -> Any:
        c = self.config
        check_layer_types(self.name, c, model)
        chosen = {id(layer) for layer in matrix_layers(model) if select(c, layer)[0]}
        try:
            model.quantize(c.mode, filters=lambda layer: id(layer) in chosen)
        except (ValueError, NotImplementedError, TypeError) as e:
            raise TransformError(
                f"Keras could not quantize model {model.name!r} to {c.mode}: {str(e).splitlines()[0][:200]}"
            ) from None
        self.decisions = []
        for layer in matrix_layers(model):
            selected, reason = select(c, layer)
            if selected and getattr(layer, "quantization_mode", None) == c.mode:
                self.decisions.append(LayerDecision(layer_path(layer), True, f"{c.mode} weights"))
            else:
                why = reason or f"Keras has no {c.mode} quantization for {type(layer).__name__}"
                self.decisions.append(LayerDecision(layer_path(layer), False, why))
        require_some_applied(
            "quantize", model, self.decisions, "check quantize.layers / quantize.layer_types / quantize.skip."
        )
        return model
