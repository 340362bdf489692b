"""BERT distillation with ``student: {layers: k}`` (tfopt/transforms/distill_keras3.py) on a tiny random BERT
and real Rotten Tomatoes snippets (mechanics, not accuracy): the student starts as every k-th teacher layer,
the teacher never trains, the exported student has the student's MACs, and bad students are refused."""

from __future__ import annotations

import numpy as np
import pytest

from tests.bert.conftest import SEQ_LEN, export, hand_macs
from tfopt import config, pipeline
from tfopt.backends import backend_named, bert_surgery
from tfopt.errors import ConfigError, TransformError
from tfopt.evaluate.macs import tflite_macs
from tfopt.schema import VariantConfig
from tfopt.transforms import TECHNIQUES, Context, DataSpec
from tfopt.transforms.distill import DistillConfig


@pytest.fixture
def teacher4(rt_tokens):
    """A tiny BERT with 4 encoder layers (hidden 32, 2 heads, feed-forward 64)."""
    from tfopt._keras import keras3
    from tfopt.models.bert import tiny_bert

    keras3().utils.set_random_seed(0)
    return tiny_bert(rt_tokens.num_classes, SEQ_LEN, num_layers=4, dropout=0)


def _layer_weights(model, i: int) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for v in bert_surgery.encoder_layers(model)[i].weights]


def test_the_student_starts_as_every_kth_teacher_layer(teacher4, rt_tokens) -> None:
    context = Context(
        steps_per_epoch=1,
        finetune_epochs=1,
        data=DataSpec((SEQ_LEN,), rt_tokens.num_classes, sample={k: v[:8] for k, v in rt_tokens.x_train.items()}),
        backend=backend_named("keras3"),
    )
    step = TECHNIQUES.get("distill").for_backend("keras3")(DistillConfig(student={"layers": 2}), context)
    step.apply(teacher4)
    student = step._student
    assert len(bert_surgery.encoder_layers(student)) == 2
    for mine, theirs in ((0, 1), (1, 3)):  # layers k-1, 2k-1: the last one, feeding the pooler, stays
        for a, b in zip(_layer_weights(student, mine), _layer_weights(teacher4, theirs)):
            np.testing.assert_array_equal(a, b)
    for name in ("token_embedding", "pooled_dense"):
        np.testing.assert_array_equal(
            student.backbone.get_layer(name).weights[0].numpy(), teacher4.backbone.get_layer(name).weights[0].numpy()
        )
    assert "initialised from teacher encoder layers 1, 3 of 0-3" in step.describe()[0].reason


def test_a_distilled_bert_student_trains_with_a_frozen_teacher_and_exports_its_size(teacher4, rt_tokens, tmp_path):
    before = [np.asarray(v.numpy()) for v in teacher4.weights]
    variants = pipeline.add_controls(
        {"student": VariantConfig.model_validate([{"distill": {"student": {"layers": 2}}}])}
    )
    recipe = pipeline.Recipe(epochs=1, batch_size=32, learning_rate=1e-3, optimizer="adamw")
    for name, variant in variants.items():  # the distilled student, then its scratch control (same start)
        applied = pipeline.apply_steps(teacher4, variant, rt_tokens, recipe, variant=name, log=lambda _: None)
        student = applied.model
        assert bert_surgery.sizes(student) == [(2, 64)] * 2
        assert student.layers[-1].get_config()["activation"] == "softmax"  # as the teacher had it
        path = export(student, "float32", rt_tokens, tmp_path)
        assert tflite_macs(path) == hand_macs([(2, 64)] * 2, rt_tokens.num_classes, 32, 16)
        assert any(not np.array_equal(a, b) for a, b in zip(_layer_weights(student, 0), _layer_weights(teacher4, 1))), (
            name
        )  # it trained
    assert list(variants) == ["student", "student_scratch"]
    for b, v in zip(before, teacher4.weights):
        np.testing.assert_array_equal(b, v.numpy())  # the teacher, bit for bit


def test_a_layers_student_needs_a_bert_teacher_with_enough_layers(trained_small_cnn, digits, rt_tokens) -> None:
    from tfopt.models.bert import tiny_bert

    cnn = TECHNIQUES.get("distill").for_backend("tf_keras")(
        DistillConfig(student={"layers": 2}), Context(steps_per_epoch=1, finetune_epochs=1)
    )
    with pytest.raises(TransformError, match=r"keeps encoder layers of a BERT teacher.*Fix: give a student model"):
        cnn.apply(trained_small_cnn)
    two = tiny_bert(rt_tokens.num_classes, SEQ_LEN)  # 2 encoder layers
    step = TECHNIQUES.get("distill").for_backend("keras3")(
        DistillConfig(student={"layers": 3}), Context(steps_per_epoch=1, finetune_epochs=1)
    )
    with pytest.raises(TransformError, match=r"would keep none of teacher .*2 encoder layers.*between 2 and 2"):
        step.apply(two)


def test_a_layers_student_below_2_refused_at_load_with_the_line() -> None:
    text = """
name: bad
data: {name: rotten_tomatoes}
model: {name: bert, params: {preset: tiny, seq_len: 32}}
variants:
  s:
    - {distill: {student: {layers: 1}}}
"""
    with pytest.raises(ConfigError, match=r"<string>:7: .*layers.*greater than or equal to 2"):
        config.loads(text)
