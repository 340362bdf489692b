"""Shared fixtures: a seeded RNG, a real data slice (digits) and a small trained tf_keras model."""

from __future__ import annotations

import numpy as np
import pytest

import tfopt  # noqa: F401  (selects Keras 2 before TensorFlow is imported)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's real 8x8 digits, split as the pipelines split them."""
    from tfopt.config import DataConfig
    from tfopt.data import load

    return load(DataConfig(name="digits"), seed=0)


@pytest.fixture(scope="session")
def trained_small_cnn(digits):
    """small_cnn (reduced width) trained on real digits for a few epochs: ~0.95 test accuracy."""
    from tfopt._keras import keras
    from tfopt.models.small_cnn import small_cnn
    from tfopt.train import compile_model

    keras().utils.set_random_seed(0)
    model = small_cnn(digits.input_shape, digits.num_classes, filters=16, dense=64)
    compile_model(model, "adam", 2e-3)
    model.fit(digits.x_train, digits.y_train, epochs=12, batch_size=32, verbose=0)
    return model
