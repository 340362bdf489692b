"""Shared fixtures for the BERT / Keras 3 tests: tiny randomly initialised BERTs (mechanics only: no
accuracy is claimed for them); the Rotten Tomatoes slice (``rt_text``, ``rt_tokens``) is in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SEQ_LEN = 32


@pytest.fixture
def tiny_bert_model(rt_tokens):
    """A fresh tiny BERT (2 layers, hidden 32, the MiniLM vocabulary) with seeded weights."""
    from tfopt._keras import keras3
    from tfopt.models.bert import tiny_bert

    keras3().utils.set_random_seed(0)
    return tiny_bert(rt_tokens.num_classes, SEQ_LEN)


def fine_tune(model, transform, splits, epochs: int = 1, batch_size: int = 32):
    """apply -> compile -> fit with the transform's callbacks -> strip, as the pipeline does."""
    from tfopt.train import compile_model

    model = transform.apply(model)
    compile_model(model, "adamw", 1e-3)
    model.fit(
        splits.x_train, splits.y_train, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=transform.callbacks()
    )
    return transform.strip(model)


def export(model, fmt: str, splits, tmp_path) -> Path:
    from tfopt.config import ExportSpec
    from tfopt.export import convert

    path = tmp_path / f"{fmt}.tflite"
    path.write_bytes(convert(model, ExportSpec(format=fmt), splits.x_train))
    return path


def steps(splits, batch_size: int = 32) -> int:
    return int(np.ceil(len(splits.y_train) / batch_size))
