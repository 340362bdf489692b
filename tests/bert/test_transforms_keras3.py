"""tfopt's Keras 3 pruning, clustering and native quantization on a tiny BERT, checked like the tfmot
versions: sparsity and unique values read back from the exported .tflite."""

from __future__ import annotations

import numpy as np
import pytest

from tests.bert.conftest import export, fine_tune, steps
from tfopt.config import TransformSpec, transform_config
from tfopt.errors import ExportError, TransformError
from tfopt.evaluate.weights import overall_sparsity, tflite_weight_stats
from tfopt.transforms import Context, transform_class
from tfopt.transforms.prune_keras3 import m_by_n_mask, magnitude_mask


def _step(name: str, splits, previous=(), epochs: int = 1, **params):
    ctx = Context(steps_per_epoch=steps(splits), finetune_epochs=epochs, previous=tuple(previous))
    return transform_class(name, "keras3")(transform_config(TransformSpec(name=name, params=params)), ctx)


def test_masks() -> None:
    w = np.arange(1, 17, dtype=np.float32).reshape(4, 4) * np.array([1, -1, 1, -1], np.float32)
    assert magnitude_mask(w, 0.5).sum() == 8 and magnitude_mask(w, 0.5)[0, 0] == 0 and magnitude_mask(w, 0.5)[3, 3] == 1
    m = m_by_n_mask(w, 2, 4, axes=(0,))  # groups of 4 along the input axis (rows of a Dense kernel)
    assert (m.sum(axis=0) == 2).all() and m[2:, :].all()


@pytest.mark.parametrize("schedule", ["polynomial", pytest.param("constant", marks=pytest.mark.slow)])
def test_prune_sparsity_in_exported_file(tiny_bert_model, rt_tokens, tmp_path, schedule) -> None:
    t = _step("prune", rt_tokens, final_sparsity=0.5, schedule=schedule)
    assert t.backend.startswith("keras3")
    model = fine_tune(tiny_bert_model, t, rt_tokens)
    applied = [d.layer for d in t.describe() if d.applied]
    assert "token_embedding" in applied and "transformer_layer_0/self_attention_layer/query" in applied
    assert any(
        not d.applied and d.layer == "position_embedding" for d in t.describe()
    )  # custom layer: skipped, said why
    stats = tflite_weight_stats(export(model, "float32", rt_tokens, tmp_path))
    assert abs(overall_sparsity(stats) - 0.5) <= 0.02
    for s in stats:
        if s.size >= 1024:
            assert abs(s.sparsity - 0.5) <= 0.02, s.name
    assert not hasattr(model, "_tfopt_clusters") and type(model).__name__ == "BertTextClassifier"


@pytest.mark.slow  # default-suite budget: test_masks checks the 2:4 mask, the tf_keras 2:4 file tests stay default
def test_prune_2_4_pattern_in_exported_file(tiny_bert_model, rt_tokens, tmp_path) -> None:
    t = _step("prune", rt_tokens, sparsity_m_by_n="2:4", skip=["token_embedding", "segment_embedding"])
    model = fine_tune(tiny_bert_model, t, rt_tokens)
    fc = [s for s in tflite_weight_stats(export(model, "float32", rt_tokens, tmp_path)) if s.pattern_2_4 is not None]
    assert len(fc) == 2 * 6 + 2  # q, k, v, attention output, 2 feed-forward per layer, pooler, classifier
    assert all(s.pattern_2_4 for s in fc)
    assert all(abs(s.sparsity - 0.5) <= 0.02 for s in fc)


def test_cluster_unique_values_in_exported_file(tiny_bert_model, rt_tokens, tmp_path) -> None:
    t = _step("cluster", rt_tokens, number_of_clusters=8)
    model = fine_tune(tiny_bert_model, t, rt_tokens)
    assert all(type(layer).__name__ == type(layer).__mro__[0].__name__ for layer in model._flatten_layers())
    assert not any(hasattr(layer, "_tfopt_clusters") for layer in model._flatten_layers())  # strip: a plain model
    assert len(model.weights) == len(tiny_bert_model.weights) - sum(d.applied for d in t.describe())
    keras_probs = model.predict(rt_tokens.x_test, verbose=0)
    stats = tflite_weight_stats(export(model, "float32", rt_tokens, tmp_path))
    clustered = [s for s in stats if "position" not in s.name]
    assert len(clustered) >= 15 and all(s.unique_values <= 8 for s in clustered)
    assert keras_probs.shape == (64, 2)


@pytest.mark.slow  # default-suite budget: prune and cluster each keep a default-run test
def test_cluster_after_prune_keeps_sparsity(tiny_bert_model, rt_tokens, tmp_path) -> None:
    pruned = fine_tune(tiny_bert_model, _step("prune", rt_tokens, final_sparsity=0.5, schedule="constant"), rt_tokens)
    t = _step("cluster", rt_tokens, previous=["prune"], number_of_clusters=8)
    assert t.preserve_sparsity
    model = fine_tune(pruned, t, rt_tokens)
    stats = tflite_weight_stats(export(model, "float32", rt_tokens, tmp_path))
    assert overall_sparsity(stats) >= 0.5 - 0.02
    assert all(s.unique_values <= 8 for s in stats if s.size >= 1024)


def test_keras_quantize_evaluates_but_is_not_exportable(tiny_bert_model, rt_tokens, tmp_path) -> None:
    before = tiny_bert_model.predict(rt_tokens.x_test, verbose=0)
    t = _step("quantize", rt_tokens, mode="int8", skip=["logits"])
    model = t.apply(tiny_bert_model)
    assert any(d.applied for d in t.describe()) and any(d.layer == "logits" and not d.applied for d in t.describe())
    after = model.predict(rt_tokens.x_test, verbose=0)
    assert np.max(np.abs(after - before)) <= 0.05  # int8 weights move softmax outputs a little, not a lot
    with pytest.raises(ExportError, match="TFLite conversion to float32"):
        export(model, "float32", rt_tokens, tmp_path)


def test_backends_follow_the_model_kind() -> None:
    assert transform_class("prune", "keras3").__name__ == "PruneKeras3"
    assert transform_class("prune", "tf_keras").__name__ == "Prune"
    with pytest.raises(TransformError, match="applies to Keras 3 models only"):
        transform_class("quantize", "tf_keras")
