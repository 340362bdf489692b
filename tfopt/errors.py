"""The tool's own error types.

Every failure a user can cause (bad config, missing file, impossible value) is raised as a
``TfoptError`` whose message names the problem and the fix on one line. The CLI prints it
without a traceback; anything else reaching the CLI is a bug in tfopt.
"""

from __future__ import annotations


class TfoptError(Exception):
    """Base class: a problem the user can fix. The message is shown as-is."""


class ConfigError(TfoptError):
    """The pipeline YAML is malformed, has unknown keys, or has values out of range."""


class DataError(TfoptError):
    """A dataset cannot be found, read, or does not match the model."""


class ModelError(TfoptError):
    """A model cannot be built or loaded (missing, corrupt, unsafe)."""


class TransformError(TfoptError):
    """A transform cannot be applied to this model."""


class ExportError(TfoptError):
    """TFLite conversion failed or the exported file does not match the Keras model."""


class ValidationError(ExportError):
    """An exported file's outputs differ from the Keras model's by more than the tolerance."""
