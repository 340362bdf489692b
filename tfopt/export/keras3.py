"""TFLite converters: Keras 3 models via ``model.export`` to a SavedModel, then ``from_saved_model``.

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


# id(model) -> [model (kept so the id stays its own), SavedModel folder or None until the first conversion],
# while shared_saved_model is active.
_SHARED: dict[int, list] = {}


def _write_saved_model(model: Any, sample: Any, folder: str) -> None:
    """The SavedModel the converter starts from, written the way ``from_keras_model`` writes it."""
    if keras_kind(model) == "keras3":
        try:
            model.export(folder, format="tf_saved_model", input_signature=input_signature(model, sample), verbose=False)
        except Exception as e:  # tracing errors come as many types
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ExportError(f"Cannot export Keras 3 model {model.name!r} to a SavedModel: {msg}") from None
    else:  # what TFLiteConverter.from_keras_model does internally (tensorflow/lite/python/lite.py)
        t = tf()
        t.saved_model.save(model, folder, options=t.saved_model.SaveOptions(save_debug_info=True))


@contextlib.contextmanager
def shared_saved_model(model: Any) -> Iterator[None]:
    """Inside this block, every export of ``model`` converts from one SavedModel, written once.

    ``from_keras_model`` writes a SavedModel on every call, which was a third of the quickstart's
    CPU time with four formats per model; the bytes converted are the same.
    """
    _SHARED[id(model)] = [model, None]
    try:
        yield
    finally:
        _, folder = _SHARED.pop(id(model))
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def saved_model_converter(model: Any, sample: Any) -> Iterator[Any]:
    """Yield a ``TFLiteConverter`` reading ``model``'s SavedModel (shared, or one for this block).

    Args:
        model: a Keras model of either kind.
        sample: real inputs (an array, or a dict of arrays by input name) giving the sizes the
            model leaves open, e.g. the sequence length.

    Raises:
        ExportError: Keras could not trace the model to a SavedModel.
    """
    if id(model) not in _SHARED:  # a SavedModel for this conversion alone
        with shared_saved_model(model), saved_model_converter(model, sample) as conv:
            yield conv
        return
    entry = _SHARED[id(model)]
    if entry[1] is None:
        folder = tempfile.mkdtemp(prefix="tfopt_savedmodel_")
        try:
            _write_saved_model(model, sample, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        entry[1] = folder
    yield tf().lite.TFLiteConverter.from_saved_model(entry[1])


@contextlib.contextmanager
def converter_for(model: Any, sample: Any) -> Iterator[Any]:
    """A ``TFLiteConverter`` for either Keras: Keras 3 always through a SavedModel; tf_keras through
    the shared one inside ``shared_saved_model``, else ``from_keras_model``."""
    if keras_kind(model) == "keras3" or id(model) in _SHARED:
        with saved_model_converter(model, sample) as conv:
            yield conv
    else:
        yield tf().lite.TFLiteConverter.from_keras_model(model)
