"""The tf_keras (Keras 2) backend: the Keras that tensorflow-model-optimization (tfmot) wraps.

It also owns the quirks of tfmot's QAT models, because they are quirks of how tf_keras saves,
loads and converts them: they clone and load only inside ``quantize_scope()``, and they save as
``.h5`` (tfmot 0.8.1's QuantizeLayer tracks its range variables twice, so a QAT model saved as
``.keras`` cannot be loaded: "expected 5 variables, but received 3"; unfixed upstream, see
tensorflow/model-optimization PR #1123).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, ContextManager, Optional

import numpy as np

from tfopt._keras import keras, tf, tfmot
from tfopt.backends import BACKENDS, Backend
from tfopt.backends.tensor_stats import tensor_stats
from tfopt.errors import TransformError
from tfopt.results import LayerStats


def is_quantized(model: Any) -> bool:
    """Whether ``model`` holds tfmot QAT wrappers (checked by class name: tfmot is not imported for it)."""
    return any(
        cls.__name__ == "QuantizeWrapper" and cls.__module__.startswith("tensorflow_model_optimization")
        for layer in getattr(model, "layers", [])
        for cls in type(layer).__mro__
    )


def quantize_scope() -> ContextManager:
    """tfmot's custom-object scope, needed to clone or load a QAT model (its wrappers and quantizers)."""
    return tfmot().quantization.keras.quantize_scope()


@BACKENDS.register("tf_keras")
class TfKerasBackend(Backend):
    """tf_keras models, as built by tfopt's registered models and tfmot's transforms."""

    kind = "tf_keras"
    supports_mixed_precision = True

    @classmethod
    def owns(cls, model: object) -> bool:
        return any(c.__module__.startswith("tf_keras") for c in type(model).__mro__)

    def keras(self) -> Any:
        return keras()

    def scope(self, model: Any) -> ContextManager:
        return quantize_scope() if is_quantized(model) else contextlib.nullcontext()

    def clone(self, model: Any) -> Any:
        """A copy with its own layers: tfmot's wrappers take over the layers they wrap, and a model
        whose layers also live in another model fails to clone later (QAT's ``quantize_apply``)."""
        try:
            with self.scope(model):
                copy = keras().models.clone_model(model)
        except (ValueError, TypeError, NotImplementedError) as e:
            raise TransformError(
                f"Cannot copy model {model.name!r} ({str(e).splitlines()[0][:200]}); "
                "subclassed models are not supported. "
                "Fix: use a Sequential or functional model."
            ) from None
        copy.set_weights(model.get_weights())
        return copy

    def file_suffix(self, model: Any) -> str:
        return ".h5" if is_quantized(model) else ".keras"

    def save(self, model: Any, path: str | Path, optimizer: bool = False) -> None:
        """Save; a QAT model as it is, to ``.h5`` without optimizer state.

        A QAT model is saved as is rather than as a fresh copy because a cluster-preserving model
        (CQAT, PCQAT, before ``Qat.strip``) builds its variables from the weights' current values,
        so a copy built from the config has other shapes. tf_keras ignores ``include_optimizer``
        for ``.keras`` files, so an uncompiled copy is what saves without optimizer state.
        """
        if is_quantized(model):
            with warnings.catch_warnings():  # "HDF5 ... is considered legacy": the one format tfmot reloads
                warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save", category=UserWarning)
                model.save(str(path), include_optimizer=False, save_format="h5")
        elif optimizer:
            model.save(path)
        else:
            self.clone(model).save(path)

    def load(self, path: str | Path, safe_mode: bool = True) -> Any:
        with quantize_scope():  # a QAT step's model keeps tfmot's wrappers (saved as .h5)
            return keras().models.load_model(path, compile=False, safe_mode=safe_mode)

    def weight_stats(self, model: Any) -> list[LayerStats]:
        out = []
        for layer in model.layers:
            for w in layer.weights:
                short = w.name.split("/")[-1].split(":")[0]
                if short in ("kernel", "depthwise_kernel", "embeddings") and len(w.shape) >= 2:
                    values = np.asarray(w.numpy())
                    axis: Optional[int] = None
                    if short == "kernel" and values.ndim in (2, 4):
                        values = np.moveaxis(values, -1, 0)  # (in, out) -> (out, in); HWIO -> OHWI
                        axis = 0
                    out.append(
                        tensor_stats(
                            f"{layer.name}/{short}",
                            values,
                            str(w.dtype.name),
                            channel_axis=axis,
                            m_by_n=axis is not None,
                            quantized=False,
                            quantization="none",
                            layer=layer.name,
                        )
                    )
        return out

    def write_saved_model(self, model: Any, sample: Any, folder: str) -> None:
        """What ``TFLiteConverter.from_keras_model`` does internally (tensorflow/lite/python/lite.py)."""
        t = tf()
        t.saved_model.save(model, folder, options=t.saved_model.SaveOptions(save_debug_info=True))

    def direct_converter(self, model: Any) -> Any:
        return tf().lite.TFLiteConverter.from_keras_model(model)

    def optimizer(self, name: str, learning_rate: float) -> Any:
        """Under ``mixed_float16`` wrapped in a ``LossScaleOptimizer``, so small float16 gradients do not underflow."""
        opt = super().optimizer(name, learning_rate)
        k = keras()
        if k.mixed_precision.global_policy().name == "mixed_float16":
            opt = k.mixed_precision.LossScaleOptimizer(opt)
        return opt

    def fake_quantized(self, model: Any) -> bool:
        return is_quantized(model)
