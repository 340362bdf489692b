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


def __getattr__(name: str):
    """``tfopt.optimize`` and ``tfopt.OptimizeRun`` import TensorFlow on first use, not on ``import tfopt``."""
    if name in ("optimize", "OptimizeRun"):
        import importlib

        # Not `from tfopt import api`: modules below it that `import tfopt` (for __version__) would then
        # depend on the top layer in the import contracts (pyproject.toml), the report on TensorFlow.
        return getattr(importlib.import_module("tfopt.api"), name)
    raise AttributeError(f"module 'tfopt' has no attribute {name!r}")
