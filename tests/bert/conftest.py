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


def hand_macs(sizes: list[tuple[int, int]], classes: int, hidden: int, head_size: int, seq_len: int = SEQ_LEN) -> int:
    """MACs of one snippet of ``seq_len`` tokens through a BERT classifier whose encoder layers have the given
    (heads, feed-forward units): per layer the Q, K, V and output projections, the two attention matmuls and
    the two feed-forward matmuls; then the pooler and the classifier on [CLS]."""
    n, d = seq_len, hidden
    total = 0
    for heads, units in sizes:
        width = heads * head_size
        total += 3 * n * d * width + 2 * n * n * width + n * width * d + 2 * n * d * units
    return total + d * d + d * classes
