"""The one place that decides which Keras tfopt imports.

TensorFlow 2.21 ships Keras 3 as ``tf.keras`` unless ``TF_USE_LEGACY_KERAS=1`` is set before
TensorFlow is first imported; tensorflow-model-optimization (tfmot) only works with Keras 2, the
``tf_keras`` package. ``tfopt/__init__`` sets the variable, and every tfopt module gets TensorFlow
and Keras 2 from here. Keras 3 code (keras-hub models) must say ``import keras``, never
``tf.keras``, because importing tfmot flips ``tf.keras`` to ``tf_keras`` for the whole process.
Which Keras a given model belongs to is decided in one place, ``tfopt.backends.backend_for``.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

from tfopt.quiet import filter_known_warnings, native_logs_hidden, quiet_tensorflow_logger
from tfopt.errors import TfoptError


@functools.cache
def tf() -> ModuleType:
    """TensorFlow, imported lazily so config, CLI help and reports stay fast; its start-up noise hidden.

    The device query is made here, inside the same window, because the first one prints CUDA's
    "failed call to cuInit" on a machine without a GPU (see ``tfopt.quiet``).
    """
    filter_known_warnings()
    with native_logs_hidden():
        import tensorflow

        tensorflow.config.list_physical_devices("GPU")
    quiet_tensorflow_logger()
    return tensorflow


@functools.cache
def keras() -> ModuleType:
    """Keras 2 (``tf_keras``), the Keras that tfmot can wrap."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise TfoptError(
            "TensorFlow was imported before tfopt with Keras 3 as tf.keras; tfmot needs Keras 2. "
            "Fix: import tfopt before tensorflow, or set TF_USE_LEGACY_KERAS=1."
        )
    tf()
    import tf_keras

    return tf_keras


@functools.cache
def keras3() -> ModuleType:
    """Keras 3 (``import keras``), the Keras of keras-hub models; never reached through ``tf.keras``."""
    tf()  # Keras 3's TensorFlow backend imports it: quietly, first
    import keras as keras_3

    return keras_3


@functools.cache
def tfmot() -> ModuleType:
    """tensorflow-model-optimization (Keras 2 only)."""
    keras()
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def versions() -> dict[str, str]:
    """Versions of the stack, recorded in run.json."""
    from importlib import metadata

    out = {}
    for pkg in (
        "tensorflow",
        "tf-keras",
        "tensorflow-model-optimization",
        "keras",
        "keras-hub",
        "ai-edge-litert",
        "numpy",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    import tfopt

    out["tfopt"] = tfopt.__version__
    return out
