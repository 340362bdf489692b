"""Reading weights back from .tflite files, latency, sizes, and corrupt files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from tfopt.config import ExportSpec
from tfopt.errors import TfoptError
from tfopt.evaluate.latency import measure_latency
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.sizes import gzip_bytes, path_bytes
from tfopt.evaluate.weights import keras_weight_stats, tflite_weight_stats


@pytest.fixture(scope="module")
def exported(trained_small_cnn, digits, tmp_path_factory):
    from tfopt.export import convert

    out = {}
    d = tmp_path_factory.mktemp("exp")
    for fmt in ("float32", "float16", "int8"):
        out[fmt] = d / f"{fmt}.tflite"
        out[fmt].write_bytes(convert(trained_small_cnn, ExportSpec(format=fmt), digits.x_train))
    return out


def test_float32_file_weights_equal_keras_weights(trained_small_cnn, exported) -> None:
    keras_stats = keras_weight_stats(trained_small_cnn)
    file_stats = tflite_weight_stats(exported["float32"])
    assert [s.size for s in file_stats] == [s.size for s in keras_stats]
    assert [s.unique_values for s in file_stats] == [s.unique_values for s in keras_stats]
    assert all(s.dtype == "FLOAT32" for s in file_stats)


def test_float16_and_int8_dtypes_read_back(exported) -> None:
    assert all(s.dtype == "FLOAT16" for s in tflite_weight_stats(exported["float16"]))
    int8 = tflite_weight_stats(exported["int8"])
    assert all(s.dtype == "INT8" for s in int8)
    assert all(s.unique_values <= 256 for s in int8)


def test_sizes(exported) -> None:
    path = exported["float32"]
    assert path_bytes(path) == len(path.read_bytes())
    assert gzip_bytes(path) == len(gzip.compress(path.read_bytes(), 9, mtime=0))
    # int8 stores one byte per weight instead of four
    assert path_bytes(exported["int8"]) < 0.35 * path_bytes(path)


def test_latency_percentiles(exported, digits) -> None:
    lat = measure_latency(exported["int8"], digits.x_test, runs=30, warmup=3, threads=1)
    assert 0 < lat.p50 <= lat.p90 and lat.runs == 30 and lat.threads == 1


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_tflite_is_a_clear_error(exported, tmp_path, damage) -> None:
    good = exported["float32"].read_bytes()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(good[: len(good) // 3] if damage == "truncated" else b"not a model" * 50)
    with pytest.raises(TfoptError, match="valid .tflite"):
        TfliteRunner(bad)
    if damage == "garbage":
        with pytest.raises(TfoptError, match="valid .tflite"):
            tflite_weight_stats(bad)


def test_runner_matches_between_batch_sizes(exported, digits) -> None:
    runner = TfliteRunner(exported["float32"])
    a = runner.predict(digits.x_test[:50], batch_size=50)
    b = runner.predict(digits.x_test[:50], batch_size=7)
    np.testing.assert_allclose(a, b, atol=1e-6)
