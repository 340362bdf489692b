"""TFLite converters for Keras 3 models: ``model.export`` to a SavedModel, then ``from_saved_model``.

``TFLiteConverter.from_keras_model`` only understands tf_keras models, so a Keras 3 model (a
keras-hub BERT) goes through Keras 3's own SavedModel export with a fixed input signature. The
converter then gets the same configuration (``float32``, ``dynamic``, ``float16``, ``int8``...) as
a tf_keras model's, so every export format registered in ``EXPORTERS`` works for both kinds and
the float32 bytes the LiteRT Quantizer formats start from come out of the same entry point.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from typing import Any, Iterator

from tfopt._keras import keras_kind, tf
from tfopt.backend_keras3 import input_signature
from tfopt.errors import ExportError


@contextlib.contextmanager
def saved_model_converter(model: Any, sample: Any) -> Iterator[Any]:
    """Yield a ``TFLiteConverter`` for a Keras 3 model; its SavedModel lives until the block ends.

    Args:
        model: a Keras 3 model.
        sample: real inputs (an array, or a dict of arrays by input name) giving the sizes the
            model leaves open, e.g. the sequence length.

    Raises:
        ExportError: Keras could not trace the model to a SavedModel.
    """
    folder = tempfile.mkdtemp(prefix="tfopt_savedmodel_")
    try:
        try:
            model.export(folder, format="tf_saved_model", input_signature=input_signature(model, sample), verbose=False)
        except Exception as e:  # tracing errors come as many types
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ExportError(f"Cannot export Keras 3 model {model.name!r} to a SavedModel: {msg}") from None
        yield tf().lite.TFLiteConverter.from_saved_model(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def converter_for(model: Any, sample: Any) -> Iterator[Any]:
    """A ``TFLiteConverter`` for either Keras: ``from_keras_model`` (tf_keras) or via a SavedModel (Keras 3)."""
    if keras_kind(model) == "keras3":
        with saved_model_converter(model, sample) as conv:
            yield conv
    else:
        yield tf().lite.TFLiteConverter.from_keras_model(model)
