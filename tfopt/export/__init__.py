"""TFLite export: one registered converter mode per format, each validated against Keras."""

from tfopt.export.tflite import EXPORTERS, convert

__all__ = ["EXPORTERS", "convert"]
