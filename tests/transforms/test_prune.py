"""Pruning through tfmot on real digits: sparsity read back from the exported int8 file."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from tfopt.backends import backend_for
from tfopt.config import ExportSpec
from tfopt.errors import TransformError
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.weights import keras_weight_stats, overall_sparsity, tflite_weight_stats
from tfopt.export import convert
from tfopt.train import compile_model
from tfopt.transforms import Context
from tfopt.transforms.prune import Prune, PruneConfig


def _prune(model, digits, epochs: int = 3, **params):
    ctx = Context(steps_per_epoch=math.ceil(len(digits.x_train) / 32), finetune_epochs=epochs)
    t = Prune(PruneConfig(**params), ctx)
    wrapped = t.apply(backend_for(model).clone(model))
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
        t.apply(backend_for(trained_small_cnn).clone(trained_small_cnn))


def test_begin_step_past_end_is_refused(trained_small_cnn) -> None:
    t = Prune(PruneConfig(final_sparsity=0.5, begin_step=1000), Context(10, 2))
    with pytest.raises(TransformError, match="begin_step=1000 is past the end"):
        t.apply(backend_for(trained_small_cnn).clone(trained_small_cnn))


# --- structured sparsity, layer types, custom layers, summaries, chain order -------------------


def test_2_4_pattern_holds_in_every_pruned_kernel_of_the_int8_file(
    trained_small_cnn, digits, tmp_path, run_chain, export_file
) -> None:
    steps, model = run_chain(trained_small_cnn, digits, [("prune", {"sparsity_m_by_n": "2:4", "skip": ["conv1"]})])
    layers, acc = export_file(model, digits, tmp_path / "p24.tflite")
    by_layer = {s.layer: s for s in layers}
    assert set(by_layer) == {"conv1", "conv2", "dense1", "classifier"}
    for name in ("conv2", "dense1", "classifier"):  # input channels 16, 512, 64: whole groups of 4
        s = by_layer[name]
        assert s.pattern_2_4 is True, s
        assert abs(s.sparsity - 0.5) <= 0.02, s
    assert by_layer["conv1"].sparsity < 0.01  # skipped
    assert acc >= 0.90  # digits test split, 359 images, after 2 fine-tune epochs
    assert [d.reason for d in steps[0].layers if d.applied] == ["2:4 structured"] * 3


def test_m_by_n_check_agrees_with_tfmot(rng) -> None:
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

    from tfopt._keras import tf
    from tfopt.evaluate.weights import holds_m_by_n

    for _ in range(20):
        w = rng.normal(size=(6, 3, 3, 8)).astype("float32")  # TFLite layout, input channels last
        keep = rng.random(w.shape) < 0.55
        w = w * keep
        expected = pruning_utils.is_pruned_m_by_n(tf().constant(w), (2, 4), last_channel="C_IN")
        assert holds_m_by_n(w, 2, 4) == expected


def test_layer_types_select_layers(trained_small_cnn, digits, run_chain) -> None:
    from tfopt.evaluate.weights import keras_weight_stats

    steps, model = run_chain(
        trained_small_cnn, digits, [("prune", {"final_sparsity": 0.6, "layer_types": ["Dense"]})], epochs=1
    )
    by_layer = {s.layer: s.sparsity for s in keras_weight_stats(model)}
    assert by_layer["conv1"] < 0.01 and by_layer["conv2"] < 0.01
    assert abs(by_layer["dense1"] - 0.6) <= 0.02 and abs(by_layer["classifier"] - 0.6) <= 0.02
    assert {d.layer: d.reason for d in steps[0].layers if not d.applied} == {
        "conv1": "type Conv2D not in 'layer_types'",
        "conv2": "type Conv2D not in 'layer_types'",
    }


def test_unknown_layer_type_is_refused(trained_small_cnn) -> None:
    t = Prune(PruneConfig(final_sparsity=0.5, layer_types=["Conv2d"]), Context(10, 1))
    with pytest.raises(
        TransformError, match=r"no layer of model 'small_cnn' has type Conv2d \(types present: .*Conv2D"
    ):
        t.apply(trained_small_cnn)


def _prunable_dense_class():
    from tfopt._keras import keras, tfmot

    k = keras()

    class PrunableDense(k.layers.Layer, tfmot().sparsity.keras.PrunableLayer):
        """A user's own dense layer that tells tfmot which weight to prune."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.kernel = self.add_weight(
                name="kernel", shape=(int(input_shape[-1]), self.units), initializer="glorot_uniform"
            )
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

        def call(self, inputs):
            return k.activations.relu(k.backend.dot(inputs, self.kernel) + self.bias)

        def get_prunable_weights(self):
            return [self.kernel]

        def get_config(self):
            return dict(super().get_config(), units=self.units)

    return PrunableDense


def test_custom_layer_pruned_through_prunable_layer(digits, tmp_path, run_chain, export_file) -> None:
    from tfopt._keras import keras

    k = keras()
    k.utils.set_random_seed(0)
    inputs = k.layers.Input(digits.input_shape)
    x = k.layers.Flatten()(inputs)
    x = _prunable_dense_class()(48, name="custom")(x)
    model = k.Model(inputs, k.layers.Dense(digits.num_classes, activation="softmax", name="head")(x))
    compile_model(model, "adam", 3e-3)
    model.fit(digits.x_train, digits.y_train, epochs=10, batch_size=32, verbose=0)
    steps, pruned = run_chain(model, digits, [("prune", {"final_sparsity": 0.6, "layers": ["custom"]})], epochs=3)
    layers, acc = export_file(pruned, digits, tmp_path / "custom.tflite", fmt="float32")
    custom = [s for s in layers if s.size == 64 * 48]
    assert len(custom) == 1 and abs(custom[0].sparsity - 0.6) <= 0.02, layers
    assert acc >= 0.85  # a 1-hidden-layer MLP on 8x8 digits
    assert [d.layer for d in steps[0].layers if d.applied] == ["custom"]


def test_pruning_summaries_written_to_the_log_dir(trained_small_cnn, digits, tmp_path, run_chain) -> None:
    run_chain(trained_small_cnn, digits, [("prune", {"final_sparsity": 0.5})], epochs=1, log_dir=tmp_path)
    assert list((tmp_path / "1_prune").rglob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    "params,problem",
    [
        ({"final_sparsity": 0.5, "sparsity_m_by_n": "2:4"}, "not both"),
        ({"sparsity_m_by_n": "4:2"}, '"M:N" with 0 < M < N'),
        ({"sparsity_m_by_n": "2:4", "schedule": "polynomial"}, "use schedule: constant"),
        ({}, "give final_sparsity"),
    ],
)
def test_prune_config_errors(params, problem) -> None:
    from tfopt.config import loads
    from tfopt.errors import ConfigError

    import yaml

    text = yaml.safe_dump(
        {"data": {"name": "digits"}, "model": {"name": "small_cnn"}, "variants": {"v": [{"prune": params}]}}
    )
    with pytest.raises(ConfigError, match=re.escape(problem)):
        loads(text)


@pytest.mark.parametrize(
    "chain,problem",
    [
        (["qat", {"prune": {"final_sparsity": 0.5}}], "prune cannot follow qat"),
        ([{"cluster": {"number_of_clusters": 8}}, {"prune": {"final_sparsity": 0.5}}], "put prune before cluster"),
        (["qat", {"cluster": {"number_of_clusters": 8}}], "cluster cannot follow qat"),
        (["qat", "qat"], "qat appears twice"),
    ],
)
def test_chains_that_undo_earlier_steps_are_refused_at_load(chain, problem) -> None:
    import yaml

    from tfopt.config import loads
    from tfopt.errors import ConfigError

    text = yaml.safe_dump({"data": {"name": "digits"}, "model": {"name": "small_cnn"}, "variants": {"v": chain}})
    with pytest.raises(ConfigError, match=re.escape(problem)):
        loads(text)


def test_per_layer_sparsities_override_final_sparsity(trained_small_cnn, digits) -> None:
    """``sparsities`` (what tfopt tune allocates from each layer's sensitivity): each named layer its own."""
    own = {"dense1": 0.9, "conv*": 0.3}
    _, model = _prune(trained_small_cnn, digits, epochs=1, final_sparsity=0.6, sparsities=own)
    by_layer = {s.name.split("/")[0]: s.sparsity for s in keras_weight_stats(model)}
    assert abs(by_layer["dense1"] - 0.9) <= 0.02
    assert abs(by_layer["conv1"] - 0.3) <= 0.03 and abs(by_layer["conv2"] - 0.3) <= 0.02
    assert abs(by_layer["classifier"] - 0.6) <= 0.02  # not named: final_sparsity
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        PruneConfig(final_sparsity=0.5, sparsities={"dense1": 1.0})
    with pytest.raises(ValueError, match="not sparsity_m_by_n"):
        PruneConfig(sparsity_m_by_n="2:4", sparsities={"dense1": 0.5})
