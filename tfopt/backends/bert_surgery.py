"""Surgery on keras-hub BERT classifiers: fewer encoder layers, fewer attention heads, a narrower feed-forward block.

Two techniques need a smaller BERT holding a subset of a trained one's weights: ``distill`` with
``student: {layers: k}`` (every k-th encoder layer of the teacher, DistilBERT's initialisation) and
``prune_channels`` (heads and feed-forward units of every ``TransformerEncoder`` removed by importance).
``rebuild`` does both: it builds a new ``BertTextClassifier`` of the chosen sizes and copies the kept
slices of every weight by its path.

keras-hub's ``TransformerEncoder`` derives its head size from ``hidden_dim // num_heads``, so 8 of
MiniLM's 12 heads would become 48 wide instead of 32; ``SlimTransformerEncoder`` takes the head size
(``key_dim``) as an option. ``BertBackbone`` gives every layer the same sizes; ``SlimBertBackbone`` is a
``BertBackbone`` whose layers are ``SlimTransformerEncoder`` with per-layer heads and widths. Both are
registered Keras serializables (package ``tfopt``), so the models save and load in safe mode once this
module is imported (``Keras3Backend.load`` imports it).
"""

from __future__ import annotations

import contextlib
import zipfile
from typing import Any, Optional, Sequence

import numpy as np

from tfopt._keras import keras3
from tfopt.errors import TransformError

_CLASSES: dict[str, Any] = {}


def _keras_hub() -> Any:
    keras3()
    import keras_hub

    return keras_hub


def classes() -> tuple[Any, Any]:
    """(SlimTransformerEncoder, SlimBertBackbone), defined and registered on first use (keras-hub is imported late)."""
    if not _CLASSES:
        _define()
    return _CLASSES["encoder"], _CLASSES["backbone"]


def _define() -> None:
    k, hub = keras3(), _keras_hub()
    from keras_hub.src.layers.modeling import transformer_encoder as te
    from keras_hub.src.models.bert import bert_backbone as bb

    @k.saving.register_keras_serializable(package="tfopt")
    class SlimTransformerEncoder(hub.layers.TransformerEncoder):
        """keras-hub's ``TransformerEncoder`` with the attention head size given (``key_dim``), not
        ``hidden_dim // num_heads``: a pruned layer keeps its heads' width when it loses heads."""

        def __init__(self, key_dim: Optional[int] = None, **kwargs: Any):
            super().__init__(**kwargs)
            self.key_dim = key_dim

        def build(self, inputs_shape: Any) -> None:
            # keras-hub's build, with the head size from key_dim; the other sublayers are built as there.
            key_dim = self.key_dim or int(inputs_shape[-1] // self.num_heads)
            original = te.keras.layers.MultiHeadAttention

            def attention(**kw: Any) -> Any:
                return original(**{**kw, "key_dim": key_dim})

            with _patched(te.keras.layers, "MultiHeadAttention", attention):
                super().build(inputs_shape)

        def get_config(self) -> dict:
            return {**super().get_config(), "key_dim": self.key_dim}

    @k.saving.register_keras_serializable(package="tfopt")
    class SlimBertBackbone(hub.models.BertBackbone):
        """A ``BertBackbone`` whose encoder layers have their own head counts and feed-forward widths.

        Built by BertBackbone itself, its ``TransformerEncoder`` swapped for ``SlimTransformerEncoder``
        with the per-layer sizes while it builds, so embeddings, pooling and outputs stay keras-hub's.
        """

        def __init__(
            self,
            layer_heads: Sequence[int],
            layer_intermediate_dims: Sequence[int],
            key_dim: int,
            num_layers: Optional[int] = None,
            num_heads: Optional[int] = None,
            intermediate_dim: Optional[int] = None,
            **kwargs: Any,
        ):
            heads, widths = [int(h) for h in layer_heads], [int(d) for d in layer_intermediate_dims]
            sizes = iter(zip(heads, widths))

            def encoder(**kw: Any) -> Any:
                h, d = next(sizes)
                return SlimTransformerEncoder(**{**kw, "num_heads": h, "intermediate_dim": d, "key_dim": key_dim})

            with _patched(bb, "TransformerEncoder", encoder):
                super().__init__(num_layers=len(heads), num_heads=max(heads), intermediate_dim=max(widths), **kwargs)
            self.layer_heads, self.layer_intermediate_dims, self.key_dim = heads, widths, int(key_dim)

        def get_config(self) -> dict:
            config = super().get_config()
            return {
                **config,
                "layer_heads": self.layer_heads,
                "layer_intermediate_dims": self.layer_intermediate_dims,
                "key_dim": self.key_dim,
            }

    _CLASSES.update(encoder=SlimTransformerEncoder, backbone=SlimBertBackbone)


def register_for(path: Any) -> None:
    """Define the slim classes before Keras loads a ``.keras`` file that uses them (safe mode needs them registered)."""
    try:
        with zipfile.ZipFile(path) as archive:
            uses = b"tfopt>Slim" in archive.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return  # not a .keras archive: Keras reports the problem
    if uses:
        classes()


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Any:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def is_bert(model: Any) -> bool:
    """A keras-hub BERT classifier (``BertTextClassifier`` on a ``BertBackbone``, slim ones included)."""
    if not hasattr(model, "backbone") or not hasattr(model, "output_dense"):
        return False
    return isinstance(model.backbone, _keras_hub().models.BertBackbone)


def require_bert(model: Any, what: str) -> None:
    if not is_bert(model):
        raise TransformError(
            f"{what} works on keras-hub BERT classifiers (a BertTextClassifier); model {model.name!r} is a "
            f"{type(model).__name__}. Fix: use model: {{name: bert}} or a saved BertTextClassifier. "
            f"Received: model={type(model).__name__}"
        )


def encoder_layers(model: Any) -> list[Any]:
    """The classifier's transformer layers, in order."""
    return list(model.backbone.transformer_layers)


def head_size(layer: Any) -> int:
    return int(layer._self_attention_layer._key_dim)


def sizes(model: Any) -> list[tuple[int, int]]:
    """(heads, feed-forward width) of every encoder layer."""
    return [(int(layer.num_heads), int(layer.intermediate_dim)) for layer in encoder_layers(model)]


def rebuild(
    model: Any,
    layers: Optional[Sequence[int]] = None,
    heads: Optional[dict[int, Sequence[int]]] = None,
    units: Optional[dict[int, Sequence[int]]] = None,
    activation: Any = "same",
) -> Any:
    """A new BERT classifier holding ``model``'s weights for the kept encoder layers, heads and units.

    Args:
        layers: indices of the encoder layers kept, in order (default all).
        heads: per original layer index, the attention heads kept (default all).
        units: per original layer index, the feed-forward units kept (default all).
        activation: the classifier's output activation; "same" keeps the model's (None gives logits).

    Every other weight (embeddings, layer norms, pooler, classifier head) is copied as it is, so with
    nothing removed the new model computes what the old one does.
    """
    require_bert(model, "BERT surgery")
    hub = _keras_hub()
    old_layers = encoder_layers(model)
    layers = list(range(len(old_layers))) if layers is None else [int(i) for i in layers]
    heads = {i: list(range(old_layers[i].num_heads)) for i in layers} | dict(heads or {})
    units = {i: list(range(old_layers[i].intermediate_dim)) for i in layers} | dict(units or {})
    for i in layers:
        if not heads[i] or not units[i]:
            raise TransformError(f"BERT surgery: transformer_layer_{i} would keep no heads or no units.")
    backbone = model.backbone
    key_dim = head_size(old_layers[0])
    config = backbone.get_config()
    for key in ("num_layers", "num_heads", "intermediate_dim", "layer_heads", "layer_intermediate_dims", "key_dim"):
        config.pop(key, None)
    _, slim = classes()
    new_backbone = slim(
        layer_heads=[len(heads[i]) for i in layers],
        layer_intermediate_dims=[len(units[i]) for i in layers],
        key_dim=key_dim,
        **config,
    )
    act = model.activation if activation == "same" else activation
    new = hub.models.BertTextClassifier(
        new_backbone, num_classes=model.num_classes, preprocessor=None, activation=act, dropout=model.dropout
    )
    old = {v.path: v for v in model.weights}
    for v in new.weights:
        v.assign(_slice(v.path, old, layers, heads, units))
    return new


def _slice(path: str, old: dict[str, Any], layers: list[int], heads: dict, units: dict) -> np.ndarray:
    parts = path.split("/")
    if not parts[0].startswith("transformer_layer_"):
        return np.asarray(old[path].numpy())
    src = layers[int(parts[0].rsplit("_", 1)[1])]
    value = np.asarray(old["/".join([f"transformer_layer_{src}", *parts[1:]])].numpy())
    sub, name = parts[-2], parts[-1]
    h, u = np.asarray(heads[src]), np.asarray(units[src])
    if sub in ("query", "key", "value"):
        return value[:, h] if name == "kernel" else value[h]
    if sub == "attention_output" and name == "kernel":
        return value[h]
    if sub == "feedforward_intermediate_dense":
        return value[:, u] if name == "kernel" else value[u]
    if sub == "feedforward_output_dense" and name == "kernel":
        return value[u]
    return value
