"""A Keras 3 model of built-in layers, rebuilt as the same tf_keras (Keras 2) model with its weights copied.

Why: QAT needs tfmot's fake-quantization graph, which the TFLite converter turns into a true int8
file (per-channel weights, BatchNormalization folded into the conv before it, activation ranges
where TFLite's fused kernels read them). tfmot works on tf_keras only and has no plan for Keras 3,
and no maintained library offers QAT for Keras 3. Rather than re-implement tfmot's scheme (its
layer patterns, folding and collaborative PQAT/CQAT/PCQAT variants), a Keras 3 model goes to QAT
as its exact tf_keras twin: same graph, same layer configs, same weight values, outputs checked
equal on real inputs. Pruning and clustering stay native Keras 3 (``prune_keras3``,
``cluster_keras3``), so their variants come back in the user's Keras; a QAT variant is a tfmot
model, of which the int8 ``.tflite`` is the artifact to deploy.

Only built-in layers are translated: a user's own layer has no tf_keras twin, and is named with
what to do.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from tfopt._keras import keras, keras3
from tfopt.errors import TransformError

# Arguments every tf_keras layer takes through ``**kwargs`` (tf_keras base Layer).
_BASE_KWARGS = {"name", "trainable", "dtype", "dynamic", "activity_regularizer", "autocast", "input_shape"}
# Keras 3 arguments that tf_keras lacks and that change nothing when left at these values.
_INERT = {"lora_rank": None, "lora_alpha": None, "quantization_config": None, "rms_scaling": False, "optional": False}

TOLERANCE = 1e-5  # max abs difference allowed between the Keras 3 model and its twin on real inputs


def to_tf_keras(model: Any, sample: Any = None, purpose: str = "QAT") -> Any:
    """The tf_keras twin of a functional or Sequential Keras 3 ``model`` made of built-in layers.

    Args:
        model: a Keras 3 functional or Sequential model.
        sample: real inputs; when given, the twin must predict what ``model`` predicts (``TOLERANCE``).
        purpose: what the twin is for, named in errors.

    Raises:
        TransformError: a subclassed model, a custom layer or operation, or an argument tf_keras lacks
            (names the layer and the fix).
    """
    k3 = keras3()
    if isinstance(model, k3.Sequential):
        twin = _sequential(model, purpose)
    elif hasattr(model, "_run_through_graph") and hasattr(model, "_nodes_by_depth"):
        twin = _functional(model, purpose)
    else:
        raise TransformError(
            f"{purpose} of Keras 3 model {model.name!r} ({type(model).__name__}): a subclassed model has no graph "
            "that tfopt can rebuild for tfmot. Fix: build it with the functional API or keras.Sequential, or leave "
            f"{purpose.lower()} out of this variant (prune and cluster work on it). "
            f"Received: class={type(model).__name__}"
        )
    if sample is not None:
        _check_outputs(model, twin, sample, purpose)
    return twin


def _sequential(model: Any, purpose: str) -> Any:
    tk = keras()
    inputs = [tk.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=_name(t)) for t in model.inputs]
    x = inputs[0]
    pairs = []
    for layer in model.layers:
        twin = translate_layer(layer, purpose)
        x = twin(x)
        pairs.append((layer, twin))
    out = tk.Model(inputs, x, name=model.name)
    _copy_weights(pairs, purpose)
    return out


def _functional(model: Any, purpose: str) -> Any:
    tk = keras()
    twins: dict[int, Any] = {}
    pairs = []
    for op in model.operations:
        if type(op).__name__ == "InputLayer":
            continue
        twins[id(op)] = translate_layer(op, purpose)
        pairs.append((op, twins[id(op)]))
    inputs = [tk.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=_name(t)) for t in model.inputs]
    inputs = inputs if len(inputs) > 1 else inputs[0]
    # Keras 3's own graph walk, with each layer's call replaced by its twin's (a private method:
    # Keras keeps no public one, and re-walking nodes by depth would copy its logic).
    outputs = model._run_through_graph(inputs, operation_fn=lambda op: twins[id(op)])
    out = tk.Model(inputs, outputs, name=model.name)
    _copy_weights(pairs, purpose)
    return out


def _name(tensor: Any) -> str:
    """The name of the InputLayer that made ``tensor`` (Keras 3 names the tensors themselves "keras_tensor")."""
    history = getattr(tensor, "_keras_history", None)
    return history[0].name if history else tensor.name.split(":")[0]


def translate_layer(layer: Any, purpose: str = "QAT") -> Any:
    """A new tf_keras layer of the same built-in class and arguments as Keras 3 ``layer`` (no weights yet)."""
    k3, tk = keras3(), keras()
    cls_name = type(layer).__name__
    if getattr(k3.layers, cls_name, None) is not type(layer) or not hasattr(tk.layers, cls_name):
        what = "a model nested as a layer" if isinstance(layer, k3.Model) else "not a built-in Keras layer"
        raise TransformError(
            f"{purpose} of layer {layer.name!r} ({cls_name}): {what}, so it has no tf_keras twin for tfmot. "
            f"Fix: leave {purpose.lower()} out of this variant (prune and cluster work on this model), or rebuild the "
            f"model flat from built-in layers. Received: layer={layer.name!r}"
        )
    cls = getattr(tk.layers, cls_name)
    config = _tf_keras_config(layer, cls, purpose)
    try:
        return cls.from_config(config)
    except (ValueError, TypeError) as e:
        raise TransformError(
            f"{purpose} of layer {layer.name!r} ({cls_name}): tf_keras cannot build it from its Keras 3 config "
            f"({str(e).splitlines()[0][:200]}). Fix: leave {purpose.lower()} out of this variant. "
            f"Received: layer={layer.name!r}"
        ) from None


def _tf_keras_config(layer: Any, cls: type, purpose: str) -> dict:
    accepted = set(_BASE_KWARGS)
    for c in cls.__mro__:
        if c.__module__.startswith("tf_keras.src.engine"):
            break
        accepted |= {p for p in inspect.signature(c.__init__).parameters if p not in ("self", "args", "kwargs")}
    config = {}
    for key, value in layer.get_config().items():
        if key.endswith("_initializer"):
            continue  # the weights are copied: initial values are never used
        if key == "dtype":
            value = _dtype_name(value)
        if key not in accepted:
            if key in _INERT and value == _INERT[key]:
                continue
            raise TransformError(
                f"{purpose} of layer {layer.name!r} ({type(layer).__name__}): its argument {key}={value!r} has no "
                f"tf_keras equivalent, so tfmot cannot take the layer. Fix: build the layer without {key!r}, or leave "
                f"{purpose.lower()} out of this variant. Received: {key}={value!r}"
            )
        config[key] = _plain(value)
    return config


def _dtype_name(value: Any) -> Any:
    """A Keras 3 DTypePolicy config as the policy name tf_keras takes ("float32", "mixed_float16")."""
    if isinstance(value, dict):
        return value.get("config", {}).get("name", "float32")
    return value


def _plain(value: Any) -> Any:
    """Keras 3 serialized objects (``module``/``registered_name``) in the form tf_keras deserializes."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        return {"class_name": value["class_name"], "config": _plain(value["config"])}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def _copy_weights(pairs: list[tuple[Any, Any]], purpose: str) -> None:
    for layer, twin in pairs:
        values = [np.asarray(v) for v in layer.get_weights()]
        shapes = [tuple(w.shape) for w in twin.weights]
        if shapes != [v.shape for v in values]:
            raise TransformError(
                f"{purpose} of layer {layer.name!r} ({type(layer).__name__}): its tf_keras twin holds weights of "
                f"shapes {shapes}, the layer {[v.shape for v in values]}. Fix: leave {purpose.lower()} out of this "
                f"variant. Received: layer={layer.name!r}"
            )
        twin.set_weights(values)


def _check_outputs(model: Any, twin: Any, sample: Any, purpose: str) -> None:
    x = sample[:64] if not isinstance(sample, dict) else {k: v[:64] for k, v in sample.items()}
    n = len(next(iter(x.values())) if isinstance(x, dict) else x)
    diff = float(np.max(np.abs(np.asarray(model(x, training=False)) - np.asarray(twin(x, training=False)))))
    if not diff <= TOLERANCE:
        raise TransformError(
            f"{purpose} of Keras 3 model {model.name!r}: its tf_keras twin predicts differently (max abs difference "
            f"{diff:.2e} > {TOLERANCE:g} on {n} training inputs), so QAT would not start from your model. "
            "Fix: leave qat out of this variant and report the model's layers to tfopt. "
            f"Received: difference={diff:.2e}"
        )
