"""TFLite export: registered formats (``EXPORTERS``), each file validated against Keras by the pipeline.

Adding a format means adding one file here that registers it, and importing it below.
"""

from tfopt.export.tflite import EXPORTERS, Exported, convert, export_tflite
from tfopt.export import litert_quantizer  # noqa: F401,E402  (registers the lq_* formats)

__all__ = ["EXPORTERS", "Exported", "convert", "export_tflite"]
