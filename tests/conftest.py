"""Shared fixtures: a seeded RNG, real data slices (digits, Rotten Tomatoes tokenized with the real MiniLM
vocabulary) and a small trained tf_keras model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tfopt  # noqa: F401  (selects Keras 2 before TensorFlow is imported)


def _two_logical_cpus() -> None:
    """Split the CPU into two logical devices, for the MirroredStrategy tests (tests/train/).

    It must happen before TensorFlow initialises its devices, so here, when pytest loads this file.
    Nothing else changes: one_device runs use /cpu:0 as before. If TensorFlow was already started
    (a plugin), the split is skipped and the distribution tests fail saying so.
    """
    import tensorflow as tf

    try:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:
        pass


_two_logical_cpus()


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


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory):
    """float32 and int8 (float and int8 I/O) .tflite files of an untrained tiny small_cnn for 8x8x1 inputs.

    Untrained on purpose: for file handling and timing mechanics, not accuracy.
    """
    from tfopt._keras import keras
    from tfopt.config import ExportSpec
    from tfopt.export import convert
    from tfopt.models.small_cnn import small_cnn

    keras().utils.set_random_seed(0)
    model = small_cnn((8, 8, 1), 10, filters=4, dense=16)
    calib = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    folder = tmp_path_factory.mktemp("tiny_tflite")
    out = {}
    for name, spec in (
        ("float32", ExportSpec(format="float32")),
        ("int8", ExportSpec(format="int8", calibration_samples=16)),
        ("int8_io", ExportSpec(format="int8", integer_io=True, calibration_samples=16)),
    ):
        out[name] = folder / f"tiny_{name}.tflite"
        out[name].write_bytes(convert(model, spec, calib))
    return out


SEQ_LEN = 32


@pytest.fixture(scope="session")
def rt_text():
    """Real snippets: 192 train / 0 val / 64 test (stratified split of the full corpus, then cut)."""
    from tfopt.config import DataConfig
    from tfopt.data import load

    splits = load(DataConfig(name="rotten_tomatoes", subset=192, val_fraction=0.0), seed=0)
    return dataclasses.replace(splits, x_test=splits.x_test[:64], y_test=splits.y_test[:64])


@pytest.fixture(scope="session")
def rt_tokens(rt_text):
    """The slice tokenized as the pipeline does it (model.params: {preset: tiny, seq_len: 32})."""
    from tfopt.config import ModelConfig
    from tfopt.models import prepare_inputs

    return prepare_inputs(ModelConfig(name="bert", params={"preset": "tiny", "seq_len": SEQ_LEN}), rt_text)


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """pipelines/quickstart.yaml run once on real digits: (root folder, run record); shared by the quickstart
    acceptance tests and the report tests (report.md, report.html in a browser), so it trains once per session."""
    from pathlib import Path

    from tfopt import config, pipeline

    out = tmp_path_factory.mktemp("qs")
    cfg = config.load(Path(__file__).resolve().parents[1] / "pipelines" / "quickstart.yaml")
    return out, pipeline.run(cfg, root=out, log=lambda _: None)
