"""Mixed precision: float16/bfloat16 compute with float32 outputs, float32 exports, no policy leaks."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt import config, pipeline
from tfopt._keras import keras
from tfopt.errors import ConfigError, TransformError
from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.models.small_cnn import small_cnn
from tfopt.train import compile_model
from tfopt.train.precision import apply_precision, precision_policy


def _policy() -> str:
    return keras().mixed_precision.global_policy().name


def test_policy_is_restored_even_after_an_error() -> None:
    assert _policy() == "float32"
    with pytest.raises(RuntimeError):
        with precision_policy("mixed_bfloat16"):
            assert _policy() == "mixed_bfloat16"
            raise RuntimeError("boom")
    assert _policy() == "float32"


@pytest.mark.parametrize("precision,compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_layers_compute_in_low_precision_with_float32_outputs(digits, precision, compute) -> None:
    base = small_cnn(
        digits.input_shape, digits.num_classes, filters=4, dense=16
    )  # built in float32, like a user's file
    with precision_policy(precision):
        model = apply_precision(base, precision)
        compile_model(model, "adam", 1e-3)
    assert [layer.compute_dtype for layer in model.layers if layer.weights] == [
        compute
    ] * 4  # conv1, conv2, dense1, classifier
    last = model.layers[-1]  # the softmax, moved out of the classifier to compute in float32
    assert (last.name, last.compute_dtype, last.activation.__name__) == ("classifier_float32", "float32", "softmax")
    assert model.output.dtype == "float32"
    x = digits.x_test[:64]
    assert (
        np.abs(model.predict(x, verbose=0) - base.predict(x, verbose=0)).max() <= 0.02
    )  # same function, lower precision
    assert all(w.dtype == "float32" for w in model.weights)  # variables stay float32
    assert all(np.array_equal(a, b) for a, b in zip(base.get_weights(), model.get_weights()))
    is_scaled = type(model.optimizer).__name__.startswith("LossScaleOptimizer")
    assert is_scaled == (precision == "mixed_float16")  # loss scaling only where float16 can underflow


MIXED = """
name: mixed
seed: 0
data: {name: digits}
model: {name: small_cnn, params: {filters: 8, dense: 32}}
train: {epochs: 8, batch_size: 32, learning_rate: 3.0e-3, precision: PRECISION, verbose: 0}
finetune: {epochs: 2}
variants:
  pruned: [{prune: {final_sparsity: 0.5}}]
export: [float32, int8]
evaluate: {latency_runs: 0}
"""


def test_mixed_float16_run_trains_and_exports_float32_and_int8(tmp_path) -> None:
    cfg = config.loads(MIXED.replace("PRECISION", "mixed_float16"), default_name="mixed")
    run = pipeline.run(cfg, root=tmp_path, log=lambda _: None)
    assert _policy() == "float32", "the run's policy leaked into the process"
    assert [(t.variant, t.precision) for t in run.training] == [
        ("baseline", "mixed_float16"),
        ("pruned/prune", "mixed_float16"),
    ]
    assert run.result("baseline", "keras").accuracy >= 0.90  # measured 0.96 on the 359 test digits
    f32, i8 = (
        tflite_weight_stats(run.result("pruned", "float32").path),
        tflite_weight_stats(run.result("pruned", "int8").path),
    )
    assert {layer.dtype for layer in f32} == {"FLOAT32"} and len(f32) == 4
    assert {layer.dtype for layer in i8} == {"INT8"}
    from ai_edge_litert.interpreter import Interpreter

    tensor_types = {
        np.dtype(t["dtype"]).name for t in Interpreter(run.result("pruned", "float32").path).get_tensor_details()
    }
    assert "float16" not in tensor_types and "float32" in tensor_types  # no float16 tensor or cast anywhere in the file
    assert all(abs(layer.sparsity - 0.5) <= 0.02 for layer in f32)
    assert run.validation_failures == []  # each file matches its (float32) Keras model within tolerance
    saved = keras().models.load_model(run.result("pruned", "keras").path, compile=False)
    assert {layer.compute_dtype for layer in saved.layers} == {"float32"}


@pytest.mark.parametrize("variant", ["[{cluster: {number_of_clusters: 8}}]", "[qat]"])
def test_transforms_tfmot_cannot_train_in_mixed_precision_are_refused_before_training(tmp_path, variant) -> None:
    text = MIXED.replace("PRECISION", "mixed_bfloat16").replace("[{prune: {final_sparsity: 0.5}}]", variant)
    with pytest.raises(
        ConfigError, match=r"does not train under train.precision: mixed_bfloat16.*Fix: set train.precision: float32"
    ):
        pipeline.run(config.loads(text, default_name="mixed"), root=tmp_path, log=lambda _: None)
    assert not (tmp_path / "reports").exists()  # refused before anything was written or trained


def test_a_failing_mixed_run_does_not_leak_its_policy(tmp_path) -> None:
    text = (
        MIXED.replace("PRECISION", "mixed_bfloat16")
        .replace("epochs: 8,", "epochs: 1,")
        .replace("final_sparsity: 0.5", "final_sparsity: 0.5, layers: [nothing]")
    )
    with pytest.raises(TransformError, match="matched no layer"):
        pipeline.run(config.loads(text, default_name="mixed"), root=tmp_path, log=lambda _: None)
    assert _policy() == "float32"
