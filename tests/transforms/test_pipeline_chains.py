"""A prune -> cluster -> qat variant through the whole pipeline: YAML in, run.json and report out."""

from __future__ import annotations

import pytest

PIPELINE = """
name: chain
data: {name: digits}
model: {name: small_cnn, params: {filters: 8, dense: 32}}
train: {epochs: 6, batch_size: 32, learning_rate: 2.0e-3, verbose: 0}
finetune: {epochs: 1, learning_rate: 5.0e-4}
variants:
  pcqat: [{prune: {final_sparsity: 0.5, skip: [conv1]}}, {cluster: {number_of_clusters: 8, skip: [conv1]}}, {qat: {}}]
  pc: [{prune: {final_sparsity: 0.5, skip: [conv1]}}, {cluster: {number_of_clusters: 8, skip: [conv1]}}]
export: [int8, lq_static_int8]
evaluate: {latency_runs: 0}
"""


@pytest.mark.slow  # 28 s; PCQAT's file read-back is in the default run (test_collaborative, test_keras3_techniques)
def test_pcqat_variant_end_to_end(tmp_path) -> None:
    pytest.importorskip("litert_quantizer")
    from tfopt import config, pipeline
    from tfopt.results import load_run

    run = pipeline.run(config.loads(PIPELINE), root=tmp_path, log=lambda _: None)
    saved = load_run(tmp_path / "reports" / "chain" / "run.json")
    backends = [(t.transform, t.backend) for t in saved.transforms if t.variant == "pcqat"]
    assert backends == [
        ("prune", "tf_keras: tfmot magnitude pruning"),
        ("cluster", "tf_keras: tfmot sparsity-preserving clustering (after prune)"),
        ("qat", "tf_keras: tfmot PCQAT (Default8BitClusterPreserveQuantizeScheme, preserve_sparsity=True)"),
    ]
    int8 = saved.result("pcqat", "int8")
    chained = [s for s in int8.layers if s.layer != "quant_conv1"]
    assert len(chained) == 3
    for s in chained:  # read from the exported int8 file
        assert s.quantized and abs(s.sparsity - 0.5) <= 0.02 and s.unique_per_channel <= 8, s
    assert saved.result("pcqat", "keras").path.endswith("pcqat.h5")  # QAT models are saved as HDF5
    refused = {(n.variant, n.format): n.reason for n in saved.not_exported}
    assert list(refused) == [("pcqat", "lq_static_int8")] and "is a QAT model" in refused[("pcqat", "lq_static_int8")]
    lq, conv = saved.result("pc", "lq_static_int8"), saved.result("pc", "int8")
    assert lq.details["recipe"] == "static_wi8_ai8" and lq.details["validation"]["outputs"]
    assert abs(lq.accuracy - conv.accuracy) <= 0.03  # the two int8 paths agree on digits' 359 test images
    for s in lq.layers:
        if s.layer != "conv1":
            assert abs(s.sparsity - 0.5) <= 0.02 and s.unique_per_channel <= 8, s  # kept through the quantizer too
    report = (tmp_path / "reports" / "chain" / "report.md").read_text()
    assert "## Converter vs LiteRT Quantizer" in report and "qat: applied" in report
    assert "conv1 | small_cnn/quant_conv1/" in report or "quant_conv1 |" in report
    assert run.result("baseline", "int8").accuracy >= 0.9
