"""tfopt: shrink and speed up Keras models, export TFLite, and report measured results.

Importing tfopt selects Keras 2 (``tf_keras``) for ``tf.keras`` before TensorFlow is first
imported, because tensorflow-model-optimization only works with Keras 2. See ``tfopt._keras``.
"""

import os as _os
import sys as _sys

if "tensorflow" not in _sys.modules:
    # Must happen before TensorFlow's first import; afterwards it has no effect.
    _os.environ["TF_USE_LEGACY_KERAS"] = "1"
from tfopt import quiet  # noqa: E402, F401  (reads the user's TF_CPP_MIN_LOG_LEVEL before the default below)

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
