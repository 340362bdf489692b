"""Mixed-precision training (Keras dtype policies) and the float32 copies that get exported.

Example::

    train: {precision: mixed_float16}    # GPUs with tensor cores; loss scaling is added for you
    train: {precision: mixed_bfloat16}   # TPUs and recent CPUs/GPUs; no loss scaling needed

Why a context manager instead of ``set_global_policy`` once: Keras' policy is process-global, and
a policy left behind by one run would silently change the next run in the same process (and the
dtype of every model it builds). Why rebuild models layer by layer: a user's saved model carries
``dtype: float32`` in every layer's config, so a global policy alone would not change it, and the
output layer must stay float32 so softmax and the loss are computed in full precision.
Exported TFLite files are made from a float32 copy, so they are float32/int8 as the export asks.
Which techniques train under which policy is each technique's ``precisions`` flag
(``tfopt.transforms``), checked before training by ``tfopt.pipeline.check_variants``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

from tfopt._keras import keras
from tfopt.backends import Backend, backend_for
from tfopt.errors import TfoptError

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Set Keras' global dtype policy for the block, and put the previous one back afterwards.

    Restored on any exit, including errors, so a run never leaks its policy into the next one.
    """
    mp = keras().mixed_precision
    previous = mp.global_policy()
    mp.set_global_policy(name)
    try:
        yield
    finally:
        mp.set_global_policy(previous)


def with_dtype(model: Any, dtype: str, output_dtype: Optional[str] = None) -> Any:
    """A copy of ``model`` whose layers compute in ``dtype``, with its outputs computed in ``output_dtype``.

    Every layer with weights takes ``dtype``, the output layers included; an output layer's
    activation (e.g. softmax) moves into its own ``<name>_float32`` Activation layer in
    ``output_dtype`` (the Keras mixed-precision recipe). Why not just make the output layer
    float32: tfmot's wrappers take the global policy, and a float32 layer inside a float16 pruning
    wrapper fails in tfmot's mask update. Weights are copied unchanged (variables stay float32
    under every mixed policy). Call it under the matching global policy, inside the strategy scope
    when the copy is to be trained.

    Raises:
        TfoptError: the model cannot be rebuilt (a custom layer without ``get_config``).
    """
    k = keras()
    output_dtype = output_dtype or dtype
    outputs = set(getattr(model, "output_names", None) or [model.layers[-1].name])
    moved: dict[str, Any] = {}  # output layer name -> the activation moved out of it

    def rebuild(layer: Any) -> Any:
        if isinstance(layer, k.Model):
            return with_dtype(layer, dtype, dtype)
        config = layer.get_config()
        if isinstance(layer, k.layers.InputLayer):
            return layer.__class__.from_config(config)
        config["dtype"] = dtype
        if layer.name in outputs and output_dtype != dtype:
            if not layer.weights:
                config["dtype"] = output_dtype  # Activation, Softmax, ...: nothing for tfmot to wrap
            else:
                moved[layer.name] = config.get("activation", "linear")
                if "activation" in config:
                    config["activation"] = "linear"
        return layer.__class__.from_config(config)

    try:
        copy = k.models.clone_model(model, clone_function=rebuild)
        copy.set_weights(model.get_weights())
        if moved:
            tails = []
            for name, tensor in zip(copy.output_names, copy.outputs):
                act = moved.get(name)
                tails.append(
                    tensor
                    if act is None
                    else k.layers.Activation(act, dtype=output_dtype, name=f"{name}_{output_dtype}")(tensor)
                )
            copy = k.Model(copy.inputs, tails if len(tails) > 1 else tails[0], name=model.name)
    except (ValueError, TypeError, NotImplementedError, AttributeError) as e:
        raise TfoptError(
            f"Cannot rebuild model {model.name!r} in {dtype} ({str(e).splitlines()[0][:200]}). "
            "Fix: set train.precision: float32 for this model."
        ) from None
    return copy


def apply_precision(model: Any, precision: str, backend: Optional[Backend] = None) -> Any:
    """The model to train under ``precision``: unchanged for float32, else rebuilt with float32 outputs."""
    if precision == "float32":
        return model
    backend = backend or backend_for(model)
    if not backend.supports_mixed_precision:
        raise TfoptError(
            f"train.precision: {precision} is implemented for Keras 2 (tf_keras) models; "
            f"{model.name!r} is a {backend.kind} model. "
            f"Fix: set train.precision: float32. Received: precision={precision!r}"
        )
    return with_dtype(model, precision, "float32")


def export_copy(model: Any, precision: str, strategy: Any, backend: Optional[Backend] = None) -> Any:
    """The model to export and evaluate: float32, and not tied to a multi-host or TPU strategy.

    A model trained under a mixed policy is rebuilt in float32 so the converter writes the formats
    asked for, not float16 casts. A model living on a multi-worker or TPU strategy is copied to
    this process, because predicting with it would wait for the other workers (or the TPU) that
    have already moved on.
    """
    from tfopt._keras import tf

    t = tf()
    if precision != "float32":
        with precision_policy("float32"):
            return with_dtype(model, "float32")
    if isinstance(strategy, (t.distribute.MultiWorkerMirroredStrategy, t.distribute.TPUStrategy)):
        return (backend or backend_for(model)).clone(model)
    return model
