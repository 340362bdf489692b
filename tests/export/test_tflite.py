"""TFLite export formats on a model trained on real digits, checked through LiteRT."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt.config import ExportSpec
from tfopt.evaluate.litert import TfliteRunner


@pytest.fixture(scope="module")
def keras_out(trained_small_cnn, digits):
    return trained_small_cnn.predict(digits.x_test, verbose=0)


def _acc(probs, y) -> float:
    return float(np.mean(probs.argmax(-1) == y))


@pytest.mark.parametrize("fmt,tol", [("float32", 1e-4), ("float16", 1e-2), ("dynamic", 0.25), ("int8", 0.5)])
def test_export_matches_keras(trained_small_cnn, digits, keras_out, tmp_path, fmt, tol) -> None:
    from tfopt.export import convert

    path = tmp_path / f"m_{fmt}.tflite"
    path.write_bytes(convert(trained_small_cnn, ExportSpec(format=fmt), digits.x_train))
    lite = TfliteRunner(path).predict(digits.x_test)
    assert lite.shape == keras_out.shape
    assert np.max(np.abs(lite - keras_out)) <= tol
    assert abs(_acc(lite, digits.y_test) - _acc(keras_out, digits.y_test)) <= 0.02


def test_int8_integer_io(trained_small_cnn, digits, keras_out, tmp_path) -> None:
    from tfopt.export import convert

    path = tmp_path / "io.tflite"
    path.write_bytes(convert(trained_small_cnn, ExportSpec(format="int8", integer_io=True), digits.x_train))
    runner = TfliteRunner(path)
    assert runner.interpreter.get_input_details()[0]["dtype"] == np.int8
    assert runner.interpreter.get_output_details()[0]["dtype"] == np.int8
    lite = runner.predict(digits.x_test)
    assert abs(_acc(lite, digits.y_test) - _acc(keras_out, digits.y_test)) <= 0.02


def test_shared_saved_model_converts_the_same_model_once(trained_small_cnn, digits, tmp_path, monkeypatch) -> None:
    """Inside shared_saved_model every format converts from one SavedModel, and each file computes
    exactly what from_keras_model's does (only the conversion metadata's source type differs)."""
    from tfopt.backends.tf_keras import TfKerasBackend
    from tfopt.export import convert
    from tfopt.export import saved_model as conv

    writes = []
    real = TfKerasBackend.write_saved_model
    monkeypatch.setattr(TfKerasBackend, "write_saved_model", lambda self, *a: (writes.append(a[2]), real(self, *a)))
    specs = [ExportSpec(format=f) for f in ("float32", "float16", "int8")]
    alone = [convert(trained_small_cnn, s, digits.x_train) for s in specs]
    assert writes == []  # outside the block: from_keras_model, as before
    with conv.shared_saved_model(trained_small_cnn):
        shared = [convert(trained_small_cnn, s, digits.x_train) for s in specs]
    assert len(writes) == 1
    import os

    assert not os.path.exists(writes[0])  # removed at the end of the block
    for spec, a, b in zip(specs, alone, shared):
        pa, pb = tmp_path / f"a_{spec.label}.tflite", tmp_path / f"b_{spec.label}.tflite"
        pa.write_bytes(a)
        pb.write_bytes(b)
        assert len(a) == len(b), spec.label
        assert sum(x != y for x, y in zip(a, b)) <= 4, spec.label
        assert np.array_equal(
            TfliteRunner(pa).predict(digits.x_test[:64]), TfliteRunner(pb).predict(digits.x_test[:64])
        ), spec.label
