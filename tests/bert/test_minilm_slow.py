"""The real all-MiniLM-L6-v2 checkpoint (90 MB): loaded exactly, and exported to float32 TFLite that
matches Keras on real snippets. Heavy, so kept out of the default run (pytest -m slow)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_minilm_weights_match_the_safetensors_file() -> None:
    from safetensors.numpy import load_file

    from tfopt.models.bert import bert, minilm_dir

    tensors = load_file(str(minilm_dir() / "model.safetensors"))
    model = bert((64,), 2, preset="minilm_l6")
    backbone = model.backbone
    # every checkpoint value is in the backbone (position_ids is an index buffer, not a weight)
    assert (
        backbone.count_params()
        == sum(v.size for k, v in tensors.items() if k != "embeddings.position_ids")
        == 22_713_216
    )
    assert np.array_equal(
        backbone.get_layer("token_embedding").embeddings.numpy(), tensors["embeddings.word_embeddings.weight"]
    )
    assert np.array_equal(backbone.get_layer("pooled_dense").kernel.numpy(), tensors["pooler.dense.weight"].T)


def test_minilm_float32_export_matches_keras(tmp_path) -> None:
    from tfopt.config import DataConfig, ExportSpec, ModelConfig
    from tfopt.data import load, take
    from tfopt.evaluate.litert import TfliteRunner
    from tfopt.export import convert
    from tfopt.models import build, prepare_inputs

    cfg = ModelConfig(name="bert", params={"preset": "minilm_l6", "seq_len": 64})
    splits = prepare_inputs(cfg, load(DataConfig(name="rotten_tomatoes", subset=64), seed=0))
    model = build(cfg, splits.input_shape, splits.num_classes)
    x = take(splits.x_test, slice(0, 32))
    path = tmp_path / "minilm.tflite"
    path.write_bytes(convert(model, ExportSpec(format="float32"), splits.x_train))
    assert np.max(np.abs(TfliteRunner(path).predict(x) - model.predict(x, verbose=0))) <= 1e-4


def _pipeline_on_a_slice(name: str, tmp_path):
    """pipelines/<name>.yaml as written (MiniLM, 64 tokens) on 400 real training snippets (the test split is the
    full one), one epoch per stage."""
    from pathlib import Path

    from tfopt import config, pipeline
    from tfopt.schema import DataConfig

    cfg = config.load(Path(__file__).resolve().parents[2] / "pipelines" / f"{name}.yaml")
    variants = {
        v: spec.model_copy(update={"finetune": None}) if spec.finetune is not None else spec
        for v, spec in cfg.variants.items()
    }
    cfg = cfg.model_copy(
        update={
            "data": DataConfig(name="rotten_tomatoes", subset=400, test_fraction=0.1, val_fraction=0.1),
            "finetune": cfg.finetune.model_copy(update={"epochs": 1}),
            "variants": variants,
            "evaluate": cfg.evaluate.model_copy(update={"latency_runs": 3, "latency_warmup": 1}),
        }
    )
    return pipeline.run(cfg, root=tmp_path, log=print)


def test_structured_bert_pipeline_on_a_slice(tmp_path) -> None:
    """Every encoder layer 12 -> 8 heads and 1,536 -> 768 units: the files do exactly those MACs."""
    from tests.bert.conftest import hand_macs

    run = _pipeline_on_a_slice("structured_bert_rotten_tomatoes", tmp_path)
    assert run.validation_failures == []
    for fmt in ("float32", "dynamic"):
        base, thin = run.result("baseline", fmt), run.result("thin", fmt)
        assert base.macs == hand_macs([(12, 1536)] * 6, 2, 384, 32, seq_len=64)
        assert thin.macs == hand_macs([(8, 768)] * 6, 2, 384, 32, seq_len=64)
        assert thin.size_bytes < 0.9 * base.size_bytes


def test_distill_bert_pipeline_on_a_slice(tmp_path) -> None:
    """A 2-layer student (teacher layers 2 and 5) and its scratch control, each exported with 2 layers' MACs."""
    from tests.bert.conftest import hand_macs

    run = _pipeline_on_a_slice("distill_bert_rotten_tomatoes", tmp_path)
    assert run.validation_failures == []
    for fmt in ("float32", "dynamic"):
        assert run.result("baseline", fmt).macs == hand_macs([(12, 1536)] * 6, 2, 384, 32, seq_len=64)
        for variant in ("student", "student_scratch"):
            assert run.result(variant, fmt).macs == hand_macs([(12, 1536)] * 2, 2, 384, 32, seq_len=64)
