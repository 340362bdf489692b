"""LiteRT Quantizer formats on a model trained on real digits: accuracy, stored dtypes, validation."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt.config import ExportSpec
from tfopt.errors import ExportError
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.export import export_tflite

pytest.importorskip("litert_quantizer")  # pinned in requirements.txt; the error path is tested below either way

FORMATS = {  # format -> (stored weight dtype, calibrated?)
    "lq_dynamic_int8": ("INT8", False),
    "lq_weight_only_int8": ("INT8", False),
    "lq_weight_only_int4": ("INT4", False),
    "lq_static_int8": ("INT8", True),
    "lq_static_int16x8": ("INT8", True),
}


@pytest.fixture(scope="module")
def float_acc(trained_small_cnn, digits) -> float:
    return float(np.mean(trained_small_cnn.predict(digits.x_test, verbose=0).argmax(-1) == digits.y_test))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_recipe_quantizes_every_kernel_and_keeps_accuracy(trained_small_cnn, digits, float_acc, tmp_path, fmt) -> None:
    dtype, calibrated = FORMATS[fmt]
    exported = export_tflite(
        trained_small_cnn, ExportSpec(format=fmt, calibration_samples=100, validation_samples=20), digits.x_train
    )
    path = tmp_path / f"{fmt}.tflite"
    path.write_bytes(exported.data)
    acc = float(np.mean(TfliteRunner(path).predict(digits.x_test).argmax(-1) == digits.y_test))
    assert acc >= float_acc - (0.03 if dtype == "INT4" else 0.015), (acc, float_acc)  # digits test split, 359 images
    layers = tflite_weight_stats(path)
    assert len(layers) == 4
    for s in layers:
        assert s.dtype == dtype and s.quantized and "per-channel" in s.quantization, s
        if dtype == "INT4":
            assert s.unique_per_channel <= 16
    d = exported.details
    assert d["recipe"] and d["tool"].startswith(("litert-quantizer", "ai-edge-quantizer"))
    assert d["calibration_samples"] == (100 if calibrated else 0)
    v = d["validation"]
    assert v["samples"] == 20 and v["samples_source"] == "held-out training samples"
    (out,) = v["outputs"].values()
    assert 0 <= out["mse"] < 1e-3  # softmax outputs of the float and quantized files on 20 unseen samples
    assert v["activations"]


def test_missing_package_is_a_clear_export_error(trained_small_cnn, digits, monkeypatch) -> None:
    import tfopt.export.litert_quantizer as lq

    def no_such_module(name, *a, **k):
        raise ImportError(f"No module named '{name.split('.')[0]}'")

    monkeypatch.setattr(lq.importlib, "import_module", no_such_module)
    with pytest.raises(ExportError, match=r"need the LiteRT Quantizer.*Fix: pip install litert-quantizer==0\.11\.0"):
        export_tflite(trained_small_cnn, ExportSpec(format="lq_dynamic_int8"), digits.x_train)


def test_converter_and_quantizer_differ_on_an_embedding_table(digits, tmp_path) -> None:
    """The converter's dynamic mode stores a large GATHER table as int8; the quantizer leaves it float32."""
    from tfopt._keras import keras
    from tfopt.train import compile_model

    k = keras()
    k.utils.set_random_seed(0)
    tokens = np.rint(digits.x_train.reshape(len(digits.x_train), -1) * 16).astype("int32")  # pixel levels as tokens
    inputs = k.layers.Input((64,), dtype="int32")
    x = k.layers.Embedding(17, 64, name="embed")(inputs)  # 1088 values: above the converter's 1024 threshold
    x = k.layers.GlobalAveragePooling1D()(x)
    model = k.Model(inputs, k.layers.Dense(digits.num_classes, activation="softmax", name="head")(x))
    compile_model(model, "adam", 1e-2)
    model.fit(tokens, digits.y_train, epochs=2, batch_size=64, verbose=0)
    found = {}
    for fmt in ("dynamic", "lq_dynamic_int8"):
        path = tmp_path / f"{fmt}.tflite"
        path.write_bytes(export_tflite(model, ExportSpec(format=fmt, validation_samples=0), tokens).data)
        found[fmt] = {s.size: s for s in tflite_weight_stats(path)}
    assert found["dynamic"][17 * 64].dtype == "INT8"
    assert found["lq_dynamic_int8"][17 * 64].dtype == "FLOAT32" and found["lq_dynamic_int8"][17 * 64].quantized is False
    assert found["lq_dynamic_int8"][64 * 10].dtype == "INT8"  # the dense head is quantized by both
