"""A Keras 3 model of built-in layers and its tf_keras twin (the model tfmot's QAT trains): same outputs.

No training here: random weights (BatchNormalization statistics included) make any layer whose
arguments or weights were copied wrong show up as a difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfopt.backends import backend_for
from tfopt.backends.translate import to_tf_keras
from tfopt.errors import TransformError


def _every_layer(k):
    """The built-in layers issue 11 names, in one graph with branches joined by Multiply and Concatenate."""
    L = k.layers
    inputs = k.Input((8, 8, 1), name="image")
    x = L.Rescaling(0.5, offset=0.1, name="rescaling")(inputs)
    x = L.Normalization(mean=0.3, variance=0.04, name="normalization")(x)
    a = L.Conv2D(4, 3, padding="same", name="conv")(x)
    a = L.BatchNormalization(name="bn")(a)
    a = L.Activation("relu")(a)
    b = L.SeparableConv2D(4, 3, padding="same", name="sep")(x)
    c = L.DepthwiseConv2D(3, padding="same", name="dw")(a)
    m = L.Multiply(name="multiply")([a, L.ReLU(max_value=6.0)(b)])
    cat = L.Concatenate()([m, c])
    t = L.Conv2DTranspose(4, 3, strides=2, padding="same", name="deconv")(cat)
    t = L.AveragePooling2D(2)(t)
    t = L.Add()([t, L.MaxPooling2D(1)(a)])
    r = L.Reshape((64, 4))(t)
    r = L.Conv1D(6, 3, name="conv1d")(r)
    r = L.LayerNormalization(name="ln")(r)
    r = L.GlobalMaxPooling1D()(r)
    g = L.GlobalAveragePooling2D()(t)
    h = L.Concatenate()([r, g])
    h = L.Dropout(0.5)(L.Dense(16, activation="gelu", name="hidden")(h))
    return k.Model(inputs, L.Softmax()(L.Dense(10, name="logits")(h)), name="every_layer")


def _randomize(model) -> None:
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) * rng.choice([-1, 1], w.shape)
                       if "variance" not in w.path else rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                       for w in model.weights])  # fmt: skip


def test_every_built_in_layer_has_an_exact_tf_keras_twin(rng) -> None:
    from tfopt._keras import keras3

    k = keras3()
    model = _every_layer(k)
    _randomize(model)
    x = rng.uniform(0, 1, (32, 8, 8, 1)).astype(np.float32)
    twin = to_tf_keras(model, sample=x)  # checks the outputs itself (1e-5)...
    assert backend_for(twin).kind == "tf_keras"
    assert [type(layer).__name__ for layer in twin.layers] == [type(layer).__name__ for layer in model.layers]
    assert [layer.name for layer in twin.layers][1:] == [layer.name for layer in model.layers][1:]
    diff = np.max(np.abs(np.asarray(model(x)) - twin(x).numpy()))  # ...and here, independently
    assert diff <= 1e-5, diff
    for a, b in zip(model.weights, twin.weights):
        np.testing.assert_array_equal(np.asarray(a.numpy()), b.numpy())

    ids = k.Input((12,), dtype="int32")
    e = k.layers.Embedding(50, 8, name="emb")(ids)
    text = k.Model(ids, k.layers.Dense(2)(k.layers.GlobalAveragePooling1D()(e)))
    tokens = rng.integers(0, 50, (16, 12)).astype(np.int32)
    t2 = to_tf_keras(text, sample=tokens)
    assert np.max(np.abs(np.asarray(text(tokens)) - t2(tokens).numpy())) <= 1e-6


def test_qat_of_the_keras3_model_keeps_layers_without_an_int8_pattern_in_float(rng) -> None:
    from tfopt._keras import keras3
    from tfopt.transforms import Context, DataSpec, transform_class

    k = keras3()
    model = _every_layer(k)
    x = rng.uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    cls = transform_class("qat", "keras3")
    step = cls(cls.Config(), Context(10, 1, data=DataSpec((8, 8, 1), 10, x)))
    quantized = step.apply(model)
    assert backend_for(quantized).kind == "tf_keras" and step.context.backend.kind == "tf_keras"
    decisions = {d.layer: d for d in step.describe()}
    for name in ("ln", "normalization", "rescaling", "multiply", "conv1d"):
        assert not decisions[name].applied and "no int8 pattern" in decisions[name].reason, decisions[name]
    assert all(decisions[n].applied for n in ("conv", "sep", "dw", "deconv", "hidden", "logits")), decisions
    assert step.backend.startswith("keras3 -> tf_keras twin (weights copied, outputs equal within 1e-05")


def test_a_keras3_argument_tf_keras_lacks_is_named(rng) -> None:
    from tfopt._keras import keras3

    k = keras3()
    inputs = k.Input((6,))
    model = k.Model(inputs, k.layers.LayerNormalization(rms_scaling=True, name="rms")(inputs))
    with pytest.raises(TransformError, match=r"layer 'rms' \(LayerNormalization\): its argument rms_scaling=True"):
        to_tf_keras(model)


def test_pqat_of_a_keras3_model_starting_with_preprocessing_layers_runs(digits) -> None:
    """tfmot's prune-preserving registry calls Rescaling supported and then fails on it; tfopt keeps it in float."""
    from tfopt._keras import keras3
    from tfopt.pipeline import Recipe, apply_steps

    k = keras3()
    k.utils.set_random_seed(0)
    model = _every_layer(k)
    steps = [{"prune": {"final_sparsity": 0.5, "schedule": "constant"}}, "qat"]
    applied = apply_steps(model, steps, digits, Recipe(epochs=1, batch_size=64, learning_rate=1e-3), log=lambda _: None)
    qat = {d.layer: d for d in applied.reports[-1].layers}
    assert "PQAT" in applied.reports[-1].backend and qat["conv"].applied and not qat["rescaling"].applied
    assert backend_for(applied.model).kind == "tf_keras" and applied.backend.kind == "tf_keras"
