"""Quantization-aware training through tfmot on real digits, checked in the exported int8 file."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt.errors import TransformError
from tfopt.transforms import Context
from tfopt.transforms.qat import Qat, QatConfig


def test_qat_int8_file_within_one_point_of_the_float_model(
    trained_small_cnn, digits, tmp_path, run_chain, export_file, accuracy_of
) -> None:
    float_acc = accuracy_of(trained_small_cnn, digits)
    steps, model = run_chain(trained_small_cnn, digits, [("qat", {})])
    layers, int8_acc = export_file(model, digits, tmp_path / "qat.tflite")
    assert int8_acc >= float_acc - 0.01, (int8_acc, float_acc)  # digits test split: 1 point is 3.6 of 359 images
    assert {s.layer for s in layers} == {"quant_conv1", "quant_conv2", "quant_dense1", "quant_classifier"}
    assert all(s.quantized and s.dtype == "INT8" for s in layers)
    assert steps[0].backend == "tf_keras: tfmot QAT (Default8BitQuantizeScheme)"


def test_quantize_only_some_layers(trained_small_cnn, digits, tmp_path, run_chain, export_file) -> None:
    steps, model = run_chain(trained_small_cnn, digits, [("qat", {"skip": ["classifier"]})], epochs=1)
    names = [layer.name for layer in model.layers]
    assert "classifier" in names and "quant_classifier" not in names and "quant_dense1" in names
    skipped = {d.layer: d.reason for d in steps[0].layers if not d.applied}
    assert skipped == {"classifier": "skipped by pattern 'classifier'"}
    _, acc = export_file(model, digits, tmp_path / "part.tflite", fmt="dynamic")
    assert acc >= 0.9


def _dense_bn_model(digits):
    from tfopt._keras import keras
    from tfopt.train import compile_model

    k = keras()
    k.utils.set_random_seed(0)
    inputs = k.layers.Input(digits.input_shape)
    x = k.layers.Flatten()(inputs)
    x = k.layers.Dense(32, activation="relu", name="hidden")(x)
    x = k.layers.BatchNormalization(name="bn")(x)
    model = k.Model(inputs, k.layers.Dense(digits.num_classes, activation="softmax", name="head")(x))
    compile_model(model, "adam", 3e-3)
    model.fit(digits.x_train, digits.y_train, epochs=3, batch_size=32, verbose=0)
    return model


def test_unsupported_layer_named_with_the_fix(digits) -> None:
    model = _dense_bn_model(digits)
    with pytest.raises(TransformError) as err:
        Qat(QatConfig(), Context(10, 1)).apply(model)
    msg = str(err.value)
    assert msg == (
        "QAT cannot quantize layer 'bn' (BatchNormalization): tfmot quantizes a BatchNormalization only right after a "
        "Conv2D or DepthwiseConv2D, where it is folded in. Fix: leave it in float with qat: {skip: [bn]}. "
        "Received: layer='bn'"
    )
    quantized = Qat(QatConfig(skip=["bn"]), Context(10, 1)).apply(model)  # the suggested fix works
    assert "bn" in [layer.name for layer in quantized.layers]


def test_qat_model_clones_saves_and_loads_as_h5(trained_small_cnn, digits, tmp_path, run_chain) -> None:
    from tfopt.backends import backend_for

    _, model = run_chain(trained_small_cnn, digits, [("qat", {})], epochs=1)
    backend = backend_for(model)
    assert backend.file_suffix(model) == ".h5" and backend.file_suffix(trained_small_cnn) == ".keras"
    assert backend.fake_quantized(model) and not backend.fake_quantized(trained_small_cnn)
    backend.clone(model).save(tmp_path / "copy.h5")  # a QAT model clones inside tfmot's scope
    backend.save(model, tmp_path / "qat.h5")  # what the pipeline saves as <variant>.h5
    x = digits.x_test[:64]
    for name in ("copy.h5", "qat.h5"):
        loaded = backend.load(tmp_path / name)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("fmt", ["float32", "float16", "lq_dynamic_int8"])
def test_float_and_post_training_formats_refused_for_a_qat_model(trained_small_cnn, digits, fmt) -> None:
    from tfopt.config import ExportSpec
    from tfopt.errors import ExportError
    from tfopt.export import convert

    model = Qat(QatConfig(), Context(10, 1)).apply(trained_small_cnn)
    with pytest.raises(ExportError, match=r"QAT model.*Fix: export QAT variants as int8"):
        convert(model, ExportSpec(format=fmt), digits.x_train)
