"""One backend object per Keras kind: everything that differs between tf_keras (Keras 2) and Keras 3.

tfmot wraps only tf_keras models; keras-hub models are Keras 3 and nest their layers. Rather than
asking "which Keras is this?" wherever a model is cloned, saved, loaded, measured, compiled or
exported, a run asks once, when the model is built or loaded (``backend_for``), and passes the
answer on. Adding a backend means one file here that subclasses ``Backend`` and registers it.

Example::

    backend = backend_for(model)          # TfKerasBackend or Keras3Backend
    copy = backend.clone(model)
    backend.save(copy, folder / f"m{backend.file_suffix(copy)}")
"""

from __future__ import annotations

import abc
import contextlib
import functools
from pathlib import Path
from typing import Any, ClassVar, ContextManager

from tfopt.errors import TfoptError
from tfopt.registry import Registry
from tfopt.results import LayerStats

BACKENDS: Registry = Registry("Keras backend")


class Backend(abc.ABC):
    """What tfopt does to a model that depends on its Keras."""

    kind: ClassVar[str]  # "tf_keras" | "keras3": recorded in checkpoints and TransformReport.backend
    supports_mixed_precision: ClassVar[bool] = False  # rebuilds a model under a mixed dtype policy

    @classmethod
    @abc.abstractmethod
    def owns(cls, model: object) -> bool:
        """Whether ``model`` belongs to this Keras."""

    @abc.abstractmethod
    def keras(self) -> Any:
        """The Keras module of this kind: callbacks, losses and optimizers must come from it."""

    @abc.abstractmethod
    def clone(self, model: Any) -> Any:
        """A new model with its own layers and the same weight values (no optimizer state)."""

    def scope(self, model: Any) -> ContextManager:
        """Custom-object scope needed to clone or load ``model`` (none by default)."""
        return contextlib.nullcontext()

    def file_suffix(self, model: Any) -> str:
        """The file suffix under which ``model`` saves and loads back."""
        return ".keras"

    @abc.abstractmethod
    def save(self, model: Any, path: str | Path, optimizer: bool = False) -> None:
        """Write ``model`` so that ``load`` reads it back; without optimizer state unless asked."""

    @abc.abstractmethod
    def load(self, path: str | Path, safe_mode: bool = True) -> Any:
        """Read a model written by ``save`` (Keras safe mode on by default)."""

    @abc.abstractmethod
    def weight_stats(self, model: Any) -> list[LayerStats]:
        """Per-kernel statistics in TFLite's layout, comparable with ``tflite_weight_stats``."""

    @abc.abstractmethod
    def write_saved_model(self, model: Any, sample: Any, folder: str) -> None:
        """The SavedModel the TFLite converter starts from (``sample``: real inputs for open sizes)."""

    def direct_converter(self, model: Any) -> Any:
        """A ``TFLiteConverter`` built straight from the model, or None to go through a SavedModel."""
        return None

    def compile(self, model: Any, optimizer: str, learning_rate: float) -> None:
        """Compile for integer-label classification with this Keras' optimizer and loss.

        The loss reads logits unless the model ends in a softmax. Call inside the strategy scope.
        """
        loss = self.keras().losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model))
        model.compile(optimizer=self.optimizer(optimizer, learning_rate), loss=loss, metrics=["accuracy"])

    def optimizer(self, name: str, learning_rate: float) -> Any:
        """A fresh optimizer of this Keras: adam | adamw | sgd (momentum 0.9) | rmsprop."""
        k = self.keras()
        return {
            "adam": k.optimizers.Adam,
            "adamw": k.optimizers.AdamW,
            "sgd": lambda learning_rate: k.optimizers.SGD(learning_rate=learning_rate, momentum=0.9),
            "rmsprop": k.optimizers.RMSprop,
        }[name](learning_rate=learning_rate)

    def fake_quantized(self, model: Any) -> bool:
        """Whether ``model`` trains with simulated quantization (QAT): only its int8 file is a true int8 model."""
        return False


def outputs_probabilities(model: Any) -> bool:
    """Whether the model's last layer ends in a softmax (through tfmot's wrappers, which hold the real layer)."""
    layer = model.layers[-1]
    while hasattr(layer, "layer"):  # tfmot wrappers (pruning, clustering, QAT) hold the real layer
        layer = layer.layer
    act = getattr(layer, "activation", None)
    while hasattr(act, "activation"):  # QAT wraps the activation too (QuantizeAwareActivation)
        act = act.activation
    return getattr(act, "__name__", "") == "softmax"


def backend_for(model: object) -> Backend:
    """The backend of ``model``: the one place where tfopt asks which Keras a model belongs to.

    Raises:
        TfoptError: ``model`` is no Keras model of a registered kind.
    """
    for _, cls in BACKENDS.items():
        if cls.owns(model):
            return _instance(cls)
    raise TfoptError(
        f"Not a Keras model: {type(model).__name__}. Fix: pass a tf_keras or Keras 3 model. "
        f"Received: model={type(model)!r}"
    )


def backend_named(kind: str) -> Backend:
    """The backend registered as ``kind`` (e.g. from a checkpoint's record)."""
    return _instance(BACKENDS.get(kind))


@functools.cache
def _instance(cls: type) -> Backend:
    """One instance per backend class (backends hold no state)."""
    return cls()


def _register_builtins() -> None:
    from tfopt.backends import keras3, tf_keras  # noqa: F401


_register_builtins()
