"""Keras 3 (keras-hub BERT) export through model.export + TFLiteConverter.from_saved_model, checked
against Keras on real tokenized snippets; multi-input LiteRT runs matched by input name."""

from __future__ import annotations

import numpy as np
import pytest

from tests.bert.conftest import export
from tfopt.evaluate.latency import measure_latency
from tfopt.evaluate.litert import TfliteRunner, input_names
from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.errors import TfoptError


def test_float32_matches_keras_and_dynamic_is_small(tiny_bert_model, rt_tokens, tmp_path) -> None:
    keras_probs = tiny_bert_model.predict(rt_tokens.x_test, verbose=0)
    f32 = export(tiny_bert_model, "float32", rt_tokens, tmp_path)
    runner = TfliteRunner(f32)
    assert set(input_names(runner.interpreter).values()) == {"token_ids", "padding_mask", "segment_ids"}
    lite = runner.predict(rt_tokens.x_test, batch_size=16)
    assert lite.shape == (64, 2)
    assert np.max(np.abs(lite - keras_probs)) <= 1e-4  # the float32 tolerance of the pipeline
    reordered = {k: rt_tokens.x_test[k] for k in ("segment_ids", "token_ids", "padding_mask")}
    assert np.array_equal(runner.predict(reordered, batch_size=64), lite)  # inputs matched by name, not order

    stats = tflite_weight_stats(f32)  # FULLY_CONNECTED kernels and GATHER tables: all but biases, norms, positions
    assert sum(s.size for s in stats) >= 0.97 * tiny_bert_model.count_params()
    assert any("token_embedding" in s.name for s in stats)

    dyn = export(tiny_bert_model, "dynamic", rt_tokens, tmp_path)
    assert dyn.stat().st_size <= 0.30 * f32.stat().st_size  # int8 weights, the embedding table included
    assert np.max(np.abs(TfliteRunner(dyn).predict(rt_tokens.x_test) - keras_probs)) <= 0.25

    lat = measure_latency(f32, rt_tokens.x_test, runs=5, warmup=1)
    assert lat.runs == 5 and lat.p50 > 0


def test_int8_calibrates_on_all_named_inputs(tiny_bert_model, rt_tokens, tmp_path) -> None:
    keras_probs = tiny_bert_model.predict(rt_tokens.x_test, verbose=0)
    path = export(tiny_bert_model, "int8", rt_tokens, tmp_path)
    assert np.max(np.abs(TfliteRunner(path).predict(rt_tokens.x_test) - keras_probs)) <= 0.5  # the int8 tolerance


def test_runner_refuses_missing_inputs(tiny_bert_model, rt_tokens, tmp_path) -> None:
    path = export(tiny_bert_model, "float32", rt_tokens, tmp_path)
    with pytest.raises(TfoptError, match="No data for model input"):
        TfliteRunner(path).predict({"token_ids": rt_tokens.x_test["token_ids"]})
    with pytest.raises(TfoptError, match="pass a dict of arrays"):
        TfliteRunner(path).predict(rt_tokens.x_test["token_ids"])
