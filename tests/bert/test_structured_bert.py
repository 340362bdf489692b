"""Structured pruning of BERT encoders (tfopt/transforms/prune_heads.py, tfopt/backends/bert_surgery.py) on a
tiny random BERT and real Rotten Tomatoes snippets: surgery that removes only dead heads and units keeps the
outputs, the widths and MACs read from the exported file are the configured ones, and bad options are refused."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt.backends import backend_named, bert_surgery
from tfopt.errors import TransformError
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.macs import tflite_macs, tflite_op_macs
from tfopt.transforms import TECHNIQUES, Context, DataSpec
from tfopt.transforms.prune_channels import PruneChannelsConfig

from tests.bert.conftest import SEQ_LEN, export, hand_macs

HIDDEN, HEADS, FFN = 32, 4, 64  # head size 8


@pytest.fixture
def bert4(rt_tokens):
    """A tiny BERT with 4 heads of 8 (hidden 32), feed-forward 64, 2 layers, no dropout (exact comparisons)."""
    from tfopt._keras import keras3
    from tfopt.models.bert import tiny_bert

    keras3().utils.set_random_seed(0)
    return tiny_bert(
        rt_tokens.num_classes, SEQ_LEN, num_heads=HEADS, hidden_dim=HIDDEN, intermediate_dim=FFN, dropout=0
    )


def _x(splits, n: int = 16) -> dict:
    return {k: v[:n] for k, v in splits.x_test.items()}


def _step(params: dict, splits):
    context = Context(
        steps_per_epoch=1,
        finetune_epochs=1,
        data=DataSpec((SEQ_LEN,), splits.num_classes, sample={k: v[:64] for k, v in splits.x_train.items()}),
        backend=backend_named("keras3"),
    )
    return TECHNIQUES.get("prune_channels").for_backend("keras3")(PruneChannelsConfig.model_validate(params), context)


def _zeroed(value: np.ndarray, index, axis: int = 0) -> np.ndarray:
    value = np.moveaxis(value.copy(), axis, 0)
    value[index] = 0
    return np.moveaxis(value, 0, axis)


def _zero_outputs(dense, index) -> None:
    """Zero a Dense's outputs ``index``: the kernel's second axis and the bias' first."""
    dense.kernel.assign(_zeroed(dense.kernel.numpy(), index, axis=1))
    dense.bias.assign(_zeroed(dense.bias.numpy(), index))


def _kill(model, heads: list[int], units: list[int]) -> None:
    """Zero every weight that only the given heads and units use, in every encoder layer."""
    for layer in bert_surgery.encoder_layers(model):
        att = layer._self_attention_layer
        for dense in (att._query_dense, att._key_dense, att._value_dense):
            _zero_outputs(dense, heads)
        att._output_dense.kernel.assign(_zeroed(att._output_dense.kernel.numpy(), heads))
        _zero_outputs(layer._feedforward_intermediate_dense, units)
        layer._feedforward_output_dense.kernel.assign(_zeroed(layer._feedforward_output_dense.kernel.numpy(), units))


def test_rebuilding_with_nothing_removed_is_the_same_model_and_reloads_in_safe_mode(bert4, rt_tokens, tmp_path):
    x = _x(rt_tokens)
    same = bert_surgery.rebuild(bert4)
    assert np.array_equal(same.predict(x, verbose=0), bert4.predict(x, verbose=0))
    slim = bert_surgery.rebuild(bert4, heads={0: [0, 3], 1: [1]}, units={0: list(range(8)), 1: list(range(16))})
    assert bert_surgery.sizes(slim) == [(2, 8), (1, 16)]
    slim.save(tmp_path / "slim.keras")
    again = backend_named("keras3").load(tmp_path / "slim.keras", safe_mode=True)
    assert type(again.backbone).__name__ == "SlimBertBackbone"
    assert np.array_equal(again.predict(x, verbose=0), slim.predict(x, verbose=0))


@pytest.mark.parametrize("importance", ["l1", "l2", "taylor"])
def test_dead_heads_and_units_are_the_ones_removed_and_the_outputs_stay(bert4, rt_tokens, importance) -> None:
    """Heads 1 and 2 and the first 32 units carry no signal: every importance removes exactly them, and the
    surgery (heads' query/key/value columns, output rows; units' columns and rows) keeps the outputs."""
    _kill(bert4, heads=[1, 2], units=list(range(32)))
    x = _x(rt_tokens)
    step = _step({"fraction": 0.5, "head_fraction": 0.5, "importance": importance, "round_to": 8}, rt_tokens)
    thin = step.apply(bert4)
    assert bert_surgery.sizes(thin) == [(2, 32), (2, 32)]
    kept = thin.backbone.transformer_layers[0]._self_attention_layer._query_dense.kernel.numpy()
    np.testing.assert_array_equal(
        kept, bert4.backbone.transformer_layers[0]._self_attention_layer._query_dense.kernel.numpy()[:, [0, 3]]
    )
    np.testing.assert_allclose(thin.predict(x, verbose=0), bert4.predict(x, verbose=0), atol=1e-5)
    assert all(d.applied and "heads 4 -> 2, feed-forward 64 -> 32" in d.reason for d in step.describe())


def test_widths_and_macs_read_from_the_exported_file_are_the_configured_ones(bert4, rt_tokens, tmp_path) -> None:
    (tmp_path / "base").mkdir(), (tmp_path / "thin").mkdir()
    before = export(bert4, "float32", rt_tokens, tmp_path / "base")
    step = _step({"fraction": 0.5, "head_fraction": 0.25, "fractions": {"transformer_layer_1": 0.75}}, rt_tokens)
    thin = step.apply(bert4)
    assert bert_surgery.sizes(thin) == [(3, 32), (1, 16)]  # layer 1: its fraction for heads and units
    after = export(thin, "float32", rt_tokens, tmp_path / "thin")
    assert tflite_macs(before) == hand_macs([(HEADS, FFN)] * 2, rt_tokens.num_classes, HIDDEN, HIDDEN // HEADS)
    assert tflite_macs(after) == hand_macs([(3, 32), (1, 16)], rt_tokens.num_classes, HIDDEN, HIDDEN // HEADS)
    ffn = sorted(o.weight_shape for o in tflite_op_macs(after) if "feedforward_intermediate" in o.output)
    assert ffn == [(16, HIDDEN), (32, HIDDEN)]  # (units, features) of each layer's intermediate matmul, in the file
    x = _x(rt_tokens)
    assert np.max(np.abs(TfliteRunner(after).predict(x) - thin.predict(x, verbose=0))) <= 1e-4


def test_dynamic_range_file_of_a_thin_bert_is_smaller(bert4, rt_tokens, tmp_path) -> None:
    thin = _step({"fraction": 0.5}, rt_tokens).apply(bert4)
    base, small = tmp_path / "b", tmp_path / "s"
    base.mkdir(), small.mkdir()
    assert tflite_macs(export(thin, "dynamic", rt_tokens, small)) < 0.55 * tflite_macs(
        export(bert4, "dynamic", rt_tokens, base)
    )


@pytest.mark.parametrize(
    "params,match",
    [
        (
            {"fraction": 0.5, "fractions": {"conv2": 0.5}},
            r"fractions: 'conv2' names no prunable layer.*transformer_layer_0",
        ),
        (
            {"fraction": 0.5, "layer_types": ["Dense"]},
            r"layer_types does not apply to BERT.*Fix: select layers by name",
        ),
    ],
)
def test_options_that_do_not_fit_a_bert_are_refused_before_training(bert4, rt_tokens, params, match) -> None:
    with pytest.raises(TransformError, match=match):
        TECHNIQUES.get("prune_channels").for_backend("keras3").check_model(
            PruneChannelsConfig.model_validate(params), bert4
        )
