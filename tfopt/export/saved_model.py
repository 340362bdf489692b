"""TFLite converters for either Keras, from one SavedModel shared by every format of a model.

``TFLiteConverter.from_keras_model`` only understands tf_keras models, so a Keras 3 model (a
keras-hub BERT) goes through Keras 3's own SavedModel export with a fixed input signature (its
backend's ``write_saved_model``). The converter then gets the same configuration (``float32``,
``dynamic``, ``float16``, ``int8``...) for both kinds, so every export format registered in
``EXPORTERS`` works for both and the float32 bytes the LiteRT Quantizer formats start from come
out of the same entry point.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from typing import Any, Iterator, Optional

from tfopt._keras import tf
from tfopt.backends import Backend, backend_for


# id(model) -> [model (kept so the id stays its own), SavedModel folder or None until the first conversion],
# while shared_saved_model is active.
_SHARED: dict[int, list] = {}


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
def saved_model_converter(model: Any, sample: Any, backend: Optional[Backend] = None) -> Iterator[Any]:
    """Yield a ``TFLiteConverter`` reading ``model``'s SavedModel (shared, or one for this block).

    Args:
        model: a Keras model of either kind.
        sample: real inputs (an array, or a dict of arrays by input name) giving the sizes the
            model leaves open, e.g. the sequence length.

    Raises:
        ExportError: Keras could not trace the model to a SavedModel.
    """
    if id(model) not in _SHARED:  # a SavedModel for this conversion alone
        with shared_saved_model(model), saved_model_converter(model, sample, backend) as conv:
            yield conv
        return
    entry = _SHARED[id(model)]
    if entry[1] is None:
        folder = tempfile.mkdtemp(prefix="tfopt_savedmodel_")
        try:
            (backend or backend_for(model)).write_saved_model(model, sample, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        entry[1] = folder
    yield tf().lite.TFLiteConverter.from_saved_model(entry[1])


@contextlib.contextmanager
def converter_for(model: Any, sample: Any, backend: Optional[Backend] = None) -> Iterator[Any]:
    """A ``TFLiteConverter`` for either Keras: through the shared SavedModel inside
    ``shared_saved_model``, else straight from the model where its backend can (tf_keras)."""
    backend = backend or backend_for(model)
    direct = None if id(model) in _SHARED else backend.direct_converter(model)
    if direct is None:
        with saved_model_converter(model, sample, backend) as conv:
            yield conv
    else:
        yield direct
