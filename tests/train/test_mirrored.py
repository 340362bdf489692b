"""The whole pipeline under MirroredStrategy over two logical CPU devices (set up in tests/conftest.py).

Training, pruning, clustering and QAT run with 2 replicas on real digits; the numbers are read
back from the exported files: sparsity and distinct values per kernel, accuracy of the int8 file.
"""

from __future__ import annotations

import pytest

from tfopt import config, pipeline
from tfopt._keras import tf
from tfopt.evaluate.weights import tflite_weight_stats

PIPELINE = """
name: mirrored
seed: 0
data: {name: digits}
model: {name: small_cnn, params: {filters: 8, dense: 32}}
train: {epochs: 8, batch_size: 16, batch_size_per: replica, learning_rate: 3.0e-3, strategy: mirrored,
        devices: [/cpu:0, /cpu:1], verbose: 0}
finetune: {epochs: 2, learning_rate: 1.0e-3}
variants:
  pruned: [{prune: {final_sparsity: 0.6}}]
  clustered: [{cluster: {number_of_clusters: 8}}]
  qat: [qat]
export: [{float32: {tolerance: 0.01}}, int8]  # a QAT model's float32 file runs its fake \
quantization slightly differently
evaluate: {latency_runs: 0}
"""


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory):
    assert len(tf().config.list_logical_devices("CPU")) == 2, (
        "tests/conftest.py must split the CPU into two logical devices before TensorFlow starts"
    )
    out = tmp_path_factory.mktemp("mirrored")
    lines: list[str] = []
    run = pipeline.run(config.loads(PIPELINE, default_name="mirrored"), root=out, log=lines.append)
    return run, lines


def test_every_training_ran_on_two_replicas(mirrored_run) -> None:
    run, lines = mirrored_run
    assert any("MirroredStrategy over /cpu:0, /cpu:1 (2 replicas)" in line for line in lines), lines[:5]
    assert [t.variant for t in run.training] == ["baseline", "pruned/prune", "clustered/cluster", "qat/qat"]
    for t in run.training:
        assert (t.strategy, t.replicas, t.global_batch_size) == ("MirroredStrategy", 2, 32), t  # 16 per replica x 2
        assert t.examples_per_second > 0 and t.epochs_run == (8 if t.variant == "baseline" else 2)


def test_baseline_learned_under_mirrored(mirrored_run) -> None:
    run, _ = mirrored_run
    assert run.result("baseline", "keras").accuracy >= 0.90  # measured 0.95-0.97 on the 359 test digits


def test_pruned_file_reaches_target_sparsity(mirrored_run) -> None:
    run, _ = mirrored_run
    layers = tflite_weight_stats(run.result("pruned", "float32").path)
    assert len(layers) == 4
    for layer in layers:
        assert abs(layer.sparsity - 0.6) <= 0.02, layer


def test_clustered_file_has_at_most_8_values_per_kernel(mirrored_run) -> None:
    run, _ = mirrored_run
    layers = tflite_weight_stats(run.result("clustered", "float32").path)
    assert len(layers) == 4
    for layer in layers:
        assert 2 <= layer.unique_values <= 8, layer
    assert run.result("clustered", "keras").accuracy >= 0.85


def test_qat_int8_file_keeps_the_keras_accuracy(mirrored_run) -> None:
    run, _ = mirrored_run
    keras_acc, int8 = run.result("qat", "keras").accuracy, run.result("qat", "int8")
    assert keras_acc >= 0.85
    assert abs(int8.accuracy - keras_acc) <= 0.02
    assert all(layer.quantized for layer in tflite_weight_stats(int8.path))
