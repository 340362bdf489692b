"""What the tfmot transforms share: choosing layers, and refusing models tfmot cannot handle.

Every technique picks its layers the same way, so a variant reads the same whatever the step::

    prune:   {final_sparsity: 0.5, layer_types: [Conv2D, Dense], skip: [conv1, classifier]}
    cluster: {number_of_clusters: 16, layers: ["dense*"]}
    qat:     {skip: [classifier]}
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from pydantic import Field

from tfopt.backends import backend_for
from tfopt.schema import Strict
from tfopt.errors import TransformError
from tfopt.transforms import layer_selected


class LayerSelection(Strict):
    """Which layers a technique touches: name patterns, layer types, and names to leave alone."""

    layers: Optional[list[str]] = Field(
        None, description="glob patterns of layer names to include (default: all supported)"
    )
    layer_types: Optional[list[str]] = Field(None, description="layer class names to include, e.g. [Conv2D, Dense]")
    skip: list[str] = Field(default_factory=list, description="glob patterns of layer names to leave as they are")

    def select(self, layer: Any) -> tuple[bool, str]:
        """Whether ``layer`` is selected, and why not when it is not."""
        selected, reason = layer_selected(layer.name, self.layers, self.skip)
        if selected and self.layer_types is not None and type(layer).__name__ not in self.layer_types:
            return False, f"type {type(layer).__name__} not in 'layer_types'"
        return selected, reason

    def check_types(self, step: str, model: Any) -> None:
        """Refuse ``layer_types`` entries that name no layer of the model (usually a typo)."""
        if self.layer_types is None:
            return
        present = sorted({type(layer).__name__ for layer in model.layers})
        unknown = [t for t in self.layer_types if t not in present]
        if unknown:
            raise TransformError(
                f"{step}.layer_types: no layer of model {model.name!r} has type {', '.join(unknown)} "
                f"(types present: {', '.join(present)}). Fix: use the class names as written there. "
                f"Received: layer_types={self.layer_types!r}"
            )


def require_tf_keras(model: Any, step: str) -> None:
    """Refuse a Keras 3 model before tfmot sees it (tfmot's clustering returns None on one)."""
    kind = backend_for(model).kind
    if kind != "tf_keras":
        raise TransformError(
            f"Transform {step!r} needs a Keras 2 (tf_keras) model: tensorflow-model-optimization cannot wrap "
            f"Keras 3 models. Fix: build or load the model with tfopt._keras.keras(). Received: model kind={kind!r}"
        )


def fresh_copy(model: Any) -> Any:
    """A copy with its own layers: tfmot's wrappers take over the layers they wrap, and a model
    whose layers also live in another model fails to clone later (QAT's ``quantize_apply``)."""
    return backend_for(model).clone(model)


def has_weights_to_change(layer: Any, custom_base: Optional[type] = None) -> bool:
    """True for layers with a kernel (or a user's custom layer implementing tfmot's interface)."""
    if custom_base is not None and isinstance(layer, custom_base):
        return True
    return any(_short(w.name) in ("kernel", "depthwise_kernel", "embeddings") for w in layer.weights)


def refuse_after_qat(step: str, previous: tuple[str, ...]) -> None:
    """The ordering rule of a step that needs a plain model: it cannot follow ``qat`` (raises ValueError)."""
    if "qat" in previous:
        raise ValueError(
            f"{step} cannot follow qat: a QAT model keeps its fake-quantization wrappers until export. "
            "Fix: put qat last"
        )


def tfmot_leaves(layer: Any) -> Optional[str]:
    """Why tfmot leaves a layer that has a kernel unchanged, or None.

    Its prune and clustering registries list no weight for DepthwiseConv2D: wrapped, it would be
    reported as pruned with none of its weights zeroed. (The Keras 3 backend prunes it.)
    """
    if type(layer).__name__ == "DepthwiseConv2D":
        return "tfmot neither prunes nor clusters DepthwiseConv2D kernels (its registries list no weight)"
    return None


def _short(weight_name: str) -> str:
    return weight_name.split("/")[-1].split(":")[0]


def require_some_applied(step: str, model: Any, decisions: Iterable[Any], hint: str) -> None:
    """A step that changed no layer is a configuration mistake, not a silent no-op."""
    decisions = list(decisions)
    if not any(d.applied for d in decisions):
        why = "; ".join(f"{d.layer}: {d.reason}" for d in decisions) or "no layer with weights"
        raise TransformError(f"{step} matched no layer of model {model.name!r} ({why}). Fix: {hint}")


def unsupported_layer(step: str, layer: Any, why: str, interface: str) -> TransformError:
    """The error for a selected layer the technique cannot handle: its name, and how to go on."""
    cls = type(layer).__name__
    return TransformError(
        f"{step} cannot handle layer {layer.name!r} ({cls}): {why}. "
        f"Fix: leave it as it is with {step}: {{skip: [{layer.name}]}}, "
        f"or implement tfmot's {interface} on {cls}. Received: layer={layer.name!r}"
    )


def clone_wrapping(model: Any, step: str, wrap: Callable[[Any], Any], weighted_only: bool = True) -> Any:
    """Clone ``model`` with ``wrap(layer)`` in place of each layer (each one with weights, by default).

    Every tfmot technique rebuilds the model this way (tfmot's own ``*_apply`` helpers accept only
    whole Sequential/functional models and offer no per-layer reasons), so the decisions made in
    ``wrap`` are what the report shows per layer. QAT passes ``weighted_only=False``: it quantizes
    the activations of weightless layers (Add, pooling) too.
    """
    from tfopt._keras import keras

    k = keras()

    def clone_function(layer: Any) -> Any:
        if isinstance(layer, k.layers.InputLayer) or (weighted_only and not layer.weights):
            return layer
        return wrap(layer)

    try:
        return k.models.clone_model(model, clone_function=clone_function)
    except ValueError as e:
        raise TransformError(f"{step} cannot rebuild model {model.name!r}: {str(e).splitlines()[0][:300]}") from None
