"""TFLite export: registered formats (``EXPORTERS``), each file validated against Keras by the pipeline.

Adding a format means adding one file here that registers it, and importing it below.
"""

from tfopt.export.tflite import EXPORTERS, convert

__all__ = ["EXPORTERS", "convert"]
