"""The whole pipeline on a tiny BERT and a slice of the real snippets (mechanics, not accuracy):
text data -> tokens -> Keras 3 training -> prune / Keras quantize -> export -> LiteRT -> report,
then `tfopt predict` on the exported file."""

from __future__ import annotations

import json

import pytest


from tfopt import cli, config, pipeline
from tfopt.results import NotExported, load_run

YAML = """
name: bert_tiny
data: {name: rotten_tomatoes, subset: 192, test_fraction: 0.01, val_fraction: 0.1}
model: {name: bert, params: {preset: tiny, seq_len: 32}}
train: {epochs: 1, batch_size: 32, optimizer: adamw, learning_rate: 1.0e-3, verbose: 0}
finetune: {epochs: 1}
variants:
  pruned: [{prune: {final_sparsity: 0.5, schedule: constant}}]
  keras_int8: {transforms: [{quantize: {mode: int8, skip: [logits]}}], finetune: {epochs: 0}}
export: [float32, dynamic]
evaluate: {latency_runs: 3, latency_warmup: 1}
"""


@pytest.mark.slow  # 41 s; the default run keeps BERT transforms and export (test_transforms_keras3, test_export_keras3)
def test_bert_pipeline_and_predict(tmp_path, capsys) -> None:
    cfg = config.loads(YAML, source="bert_tiny.yaml")
    run = pipeline.run(cfg, root=tmp_path, log=lambda line: None)
    assert run.dataset.input_shape == [32] and run.dataset.num_test == 128
    for variant in ("baseline", "pruned"):
        keras_row, f32 = run.result(variant, "keras"), run.result(variant, "float32")
        assert f32.max_abs_diff <= 1e-4
        assert abs(f32.accuracy - keras_row.accuracy) <= 1 / 128  # same predictions through LiteRT
        assert run.result(variant, "dynamic").size_bytes <= 0.30 * f32.size_bytes
    assert abs(run.result("pruned", "float32").sparsity - 0.5) <= 0.02
    assert run.result("keras_int8", "keras").accuracy is not None
    assert [(m.variant, m.format) for m in run.not_exported] == [("keras_int8", "float32"), ("keras_int8", "dynamic")]
    assert all("TFLite conversion" in m.reason for m in run.not_exported)
    backends = {t.transform: t.backend for t in run.transforms}
    assert backends["prune"].startswith("keras3") and backends["quantize"].startswith("keras3")

    report_dir = tmp_path / "reports" / "bert_tiny"
    assert isinstance(load_run(report_dir / "run.json").not_exported[0], NotExported)
    assert "Not exportable" in (report_dir / "report.md").read_text()

    models_dir = tmp_path / "models" / "bert_tiny"
    meta = json.loads((models_dir / "inputs.json").read_text())
    assert meta["seq_len"] == 32 and meta["class_names"] == ["fresh", "rotten"]
    capsys.readouterr()
    assert cli.main(["predict", str(models_dir / "baseline_dynamic.tflite"), "--text", "A gorgeous, witty film."]) == 0
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert [fields[0] for fields in lines] == ["fresh", "rotten"]
    assert abs(sum(float(fields[1]) for fields in lines) - 1.0) <= 1e-3
