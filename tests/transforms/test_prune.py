"""Pruning through tfmot on real digits: sparsity read back from the exported int8 file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfopt.config import ExportSpec
from tfopt.errors import TransformError
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.weights import keras_weight_stats, overall_sparsity, tflite_weight_stats
from tfopt.export import convert
from tfopt.pipeline import _clone
from tfopt.train import compile_model
from tfopt.transforms import Context
from tfopt.transforms.prune import Prune, PruneConfig


def _prune(model, digits, epochs: int = 3, **params):
    ctx = Context(steps_per_epoch=math.ceil(len(digits.x_train) / 32), finetune_epochs=epochs)
    t = Prune(PruneConfig(**params), ctx)
    wrapped = t.apply(_clone(model))
    compile_model(wrapped, "adam", 5e-4)
    wrapped.fit(digits.x_train, digits.y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=t.callbacks())
    return t, t.strip(wrapped)


@pytest.mark.parametrize("schedule", ["polynomial", "constant"])
def test_prune_reaches_target_in_exported_int8(trained_small_cnn, digits, tmp_path, schedule) -> None:
    target = 0.7
    t, model = _prune(trained_small_cnn, digits, final_sparsity=target, schedule=schedule)
    path = tmp_path / "p.tflite"
    path.write_bytes(convert(model, ExportSpec(format="int8"), digits.x_train))
    layers = tflite_weight_stats(path)
    assert len(layers) == 4  # conv1, conv2, dense1, classifier
    assert abs(overall_sparsity(layers) - target) <= 0.02
    for layer in layers:
        assert abs(layer.sparsity - target) <= 0.02, layer
    acc = float(np.mean(TfliteRunner(path).predict(digits.x_test).argmax(-1) == digits.y_test))
    assert acc >= 0.90  # 70% sparse small CNN on digits after 3 fine-tune epochs
    assert all(d.applied for d in t.describe())


def test_skip_patterns_leave_layers_dense(trained_small_cnn, digits) -> None:
    t, model = _prune(trained_small_cnn, digits, epochs=2, final_sparsity=0.5, skip=["conv1", "classifier"])
    by_layer = {s.name.split("/")[0]: s.sparsity for s in keras_weight_stats(model)}
    assert by_layer["conv1"] < 0.01 and by_layer["classifier"] < 0.01
    assert abs(by_layer["dense1"] - 0.5) <= 0.02 and abs(by_layer["conv2"] - 0.5) <= 0.02
    skipped = {d.layer: d.reason for d in t.describe() if not d.applied}
    assert skipped == {"conv1": "skipped by pattern 'conv1'", "classifier": "skipped by pattern 'classifier'"}


def test_matching_no_layer_is_a_clear_error(trained_small_cnn) -> None:
    t = Prune(PruneConfig(final_sparsity=0.5, layers=["nothing*"]), Context(10, 1))
    with pytest.raises(TransformError, match="matched no layer"):
        t.apply(_clone(trained_small_cnn))


def test_begin_step_past_end_is_refused(trained_small_cnn) -> None:
    t = Prune(PruneConfig(final_sparsity=0.5, begin_step=1000), Context(10, 2))
    with pytest.raises(TransformError, match="begin_step=1000 is past the end"):
        t.apply(_clone(trained_small_cnn))
