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
