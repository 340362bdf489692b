"""The Keras 3 backend (``import keras``), and the helpers the Keras 3 transforms share.

keras-hub models are Keras 3 and nest their layers (an ``EinsumDense`` inside attention inside a
transformer block), so tfmot's clone-and-wrap approach cannot reach them: the Keras 3 transforms
walk ``sublayers`` and change the variables in place. Keras 3 code says ``import keras``, never
``tf.keras``: importing tfmot makes ``tf.keras`` mean tf_keras for the whole process.
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Any, Iterator, Optional

import numpy as np

from tfopt._keras import keras3, tf
from tfopt.backends import BACKENDS, Backend
from tfopt.backends.tensor_stats import tensor_stats
from tfopt.errors import ExportError, TransformError
from tfopt.results import LayerStats


def clone(model: Any) -> Any:
    """A new model of the same class and config with the same weight values (no optimizer)."""
    try:
        copy = type(model).from_config(model.get_config())
    except (ValueError, TypeError, NotImplementedError, KeyError) as e:
        raise TransformError(
            f"Cannot copy Keras 3 model {model.name!r} ({str(e).splitlines()[0][:200]}). "
            "Fix: use a functional or keras-hub model whose get_config/from_config round-trips."
        ) from None
    values = [np.asarray(v.numpy()) for v in model.weights]
    if not copy.weights and values and model.get_build_config():  # a subclassed model builds on first call
        copy.build_from_config(model.get_build_config())
    if len(copy.weights) != len(values) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(copy.weights, values)):
        raise TransformError(
            f"Cannot copy Keras 3 model {model.name!r}: its copy has different weights. "
            "Fix: strip the model's transforms first."
        )
    copy.set_weights(values)
    return copy


def saveable(model: Any) -> Any:
    """The model to write as ``.keras``: an uncompiled copy, or the model itself if Keras quantized it.

    A copy of a ``model.quantize``-d keras-hub model rebuilds its quantized layers from the
    dtype policy map but then fails to save (Keras 3.15: "Invalid dtype: object"), while the
    original saves and reloads; it holds no optimizer state (quantized variants are not fine-tuned).
    """
    if any(getattr(layer, "quantization_mode", None) for layer in sublayers(model)):
        return model
    return clone(model)


def sublayers(model: Any) -> Iterator[Any]:
    """Every layer inside ``model``, depth first (keras-hub nests them several levels deep)."""
    seen: set[int] = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if id(layer) not in seen:
            seen.add(id(layer))
            yield layer


def matrix_layers(model: Any) -> Iterator[Any]:
    """Layers that themselves hold a weight matrix (not containers such as a transformer block)."""
    for layer in sublayers(model):
        path = layer_path(layer)
        if any(len(v.shape) >= 2 and v.path.rsplit("/", 1)[0] == path for v in layer.weights):
            yield layer


def layer_path(layer: Any) -> str:
    """A layer's unique path, e.g. ``transformer_layer_0/self_attention_layer/query``."""
    return getattr(layer, "path", None) or layer.name


def matches(layer: Any, patterns: Optional[list[str]]) -> Optional[str]:
    """The first glob pattern matching the layer's name or path."""
    for p in patterns or []:
        if fnmatch.fnmatchcase(layer.name, p) or fnmatch.fnmatchcase(layer_path(layer), p):
            return p
    return None


def select(config: Any, layer: Any) -> tuple[bool, str]:
    """``LayerSelection`` semantics (layers, layer_types, skip) on name or path of a nested layer."""
    hit = matches(layer, config.skip)
    if hit:
        return False, f"skipped by pattern {hit!r}"
    if config.layers is not None and not matches(layer, config.layers):
        return False, "not matched by 'layers'"
    if getattr(config, "layer_types", None) is not None and type(layer).__name__ not in config.layer_types:
        return False, f"type {type(layer).__name__} not in 'layer_types'"
    return True, ""


def check_layer_types(step: str, config: Any, model: Any) -> None:
    """Refuse ``layer_types`` entries that name no layer of the model (usually a typo)."""
    wanted = getattr(config, "layer_types", None)
    if wanted is None:
        return
    present = sorted({type(layer).__name__ for layer in sublayers(model)})
    unknown = [t for t in wanted if t not in present]
    if unknown:
        raise TransformError(
            f"{step}.layer_types: no layer of model {model.name!r} has type {', '.join(unknown)} "
            f"(types present: {', '.join(present)}). Fix: use the class names as written there. "
            f"Received: layer_types={wanted!r}"
        )


def weight_attribute(layer: Any) -> Optional[str]:
    """The weight matrix a technique may change (one per layer), or None.

    First a weight the class exposes as a property over a stored ``_kernel`` / ``_embeddings``
    (Keras' Dense, EinsumDense, Conv1D/2D, Embedding, and subclasses such as keras-hub's
    ReversibleEmbedding); else a ``kernel`` / ``embeddings`` / ``pointwise_kernel`` the layer holds
    as a plain variable attribute (DepthwiseConv2D, Conv2DTranspose, a user's own layer;
    SeparableConv2D's pointwise kernel, the one tfmot clusters). Either way the layer's ``call``
    reads it through the attribute, which clustering relies on. Other matrices (keras-hub's
    PositionEmbedding) are reported as skipped, as tfmot skips layers it does not know.
    """
    if getattr(layer, "quantization_mode", None) is not None:
        return None
    for attr in ("kernel", "embeddings"):
        if (
            isinstance(inspect.getattr_static(type(layer), attr, None), property)
            and getattr(layer, "_" + attr, None) is not None
        ):
            return attr
    for attr in _PLAIN:
        if _is_matrix(layer.__dict__.get(attr)):
            return attr
    return None


_PLAIN = ("pointwise_kernel", "kernel", "embeddings")  # in this order: a separable conv's pointwise kernel


def _is_matrix(value: Any) -> bool:
    return isinstance(value, keras3().Variable) and len(value.shape) >= 2


def stored_variable(layer: Any, attr: str) -> Any:
    """The variable behind ``layer.kernel`` / ``layer.embeddings``: Keras' ``_kernel``..., or the plain attribute."""
    stored = layer.__dict__.get("_" + attr)
    return stored if stored is not None else layer.__dict__[attr]


def kernel_variables(layer: Any) -> list[Any]:
    """Every weight matrix of ``layer`` that pruning may mask in place: its ``weight_attribute``, and the
    other plain kernels of a depthwise or separable conv."""
    attr = weight_attribute(layer)
    found = [stored_variable(layer, attr)] if attr else []
    for name in ("depthwise_kernel", "kernel", "pointwise_kernel"):
        value = layer.__dict__.get(name)
        if _is_matrix(value) and all(value is not f for f in found):
            found.append(value)
    return found


def weight_stats(model: Any) -> list[LayerStats]:
    """Per-matrix stats of a Keras 3 model: kernels and embedding tables, named by variable path.

    Dense and convolution kernels are laid out as TFLite stores them (output channels first: (in, out)
    -> (out, in), HWIO -> OHWI), as the tf_keras backend does, so per-channel counts and the 2:4
    pattern read the same from the model and from its file.
    """
    out = []
    for v in model.weights:
        short = v.path.split("/")[-1]
        if short not in ("kernel", "embeddings", "depthwise_kernel", "pointwise_kernel") or len(v.shape) < 2:
            continue
        values, axis = np.asarray(v.numpy()), None
        if short in ("kernel", "pointwise_kernel") and values.ndim in (2, 4):
            values, axis = np.moveaxis(values, -1, 0), 0
        layer = v.path.rsplit("/", 1)[0]
        quantized = not np.issubdtype(values.dtype, np.floating)
        out.append(
            tensor_stats(
                v.path,
                values,
                str(values.dtype).upper(),
                channel_axis=axis,
                m_by_n=axis is not None,
                quantized=quantized,
                quantization=str(values.dtype) if quantized else "none",
                layer=layer,
            )
        )
    return out


def input_signature(model: Any, sample: Any) -> list:
    """TensorSpecs for ``model.export``: batch left open, other unknown sizes taken from ``sample``.

    A fixed sequence length gives the converter static shapes (XNNPACK runs them faster, and
    int8 calibration needs them).
    """
    t = tf()
    specs = {}
    for inp in model.inputs:
        name = inp.name.split(":")[0]
        shape = list(inp.shape)
        if isinstance(sample, dict) and name in sample:
            known = np.asarray(sample[name]).shape
        elif not isinstance(sample, dict) and sample is not None:
            known = np.asarray(sample).shape
        else:
            known = [None] * len(shape)
        shape = [None] + [
            s if s is not None else (known[i] if i < len(known) else None) for i, s in enumerate(shape) if i > 0
        ]
        specs[name] = t.TensorSpec(shape, t.as_dtype(inp.dtype), name=name)
    if len(specs) == 1 and not isinstance(sample, dict):
        return [next(iter(specs.values()))]
    return [specs]


@BACKENDS.register("keras3")
class Keras3Backend(Backend):
    """Keras 3 models: keras-hub (BERT) and users' ``import keras`` models."""

    kind = "keras3"

    @classmethod
    def owns(cls, model: object) -> bool:
        modules = [c.__module__ for c in type(model).__mro__]
        return not any(m.startswith("tf_keras") for m in modules) and any(m.startswith("keras") for m in modules)

    def keras(self) -> Any:
        return keras3()

    def clone(self, model: Any) -> Any:
        return clone(model)

    def save(self, model: Any, path: Any, optimizer: bool = False) -> None:
        (model if optimizer else saveable(model)).save(path)

    def load(self, path: Any, safe_mode: bool = True) -> Any:
        from tfopt.backends.bert_surgery import register_for

        register_for(path)
        return keras3().models.load_model(path, compile=False, safe_mode=safe_mode)

    def weight_stats(self, model: Any) -> list[LayerStats]:
        return weight_stats(model)

    def write_saved_model(self, model: Any, sample: Any, folder: str) -> None:
        """Keras 3's own SavedModel export with a fixed input signature (``from_keras_model`` reads tf_keras only)."""
        try:
            model.export(folder, format="tf_saved_model", input_signature=input_signature(model, sample), verbose=False)
        except Exception as e:  # tracing errors come as many types
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ExportError(f"Cannot export Keras 3 model {model.name!r} to a SavedModel: {msg}") from None
