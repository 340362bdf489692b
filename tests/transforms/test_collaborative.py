"""Collaborative optimization: each later step keeps what the earlier ones achieved, read from int8 files.

The scheme is chosen from the steps before (``Context.previous``): prune -> qat is PQAT,
cluster -> qat is CQAT, prune -> cluster -> qat is PCQAT.
"""

from __future__ import annotations

import pytest

import numpy as np

from tfopt.evaluate.litert import TfliteRunner
from tfopt.train import compile_model
from tfopt.transforms import TECHNIQUES, Context

SPARSITY, CLUSTERS = 0.6, 8


def test_pqat_keeps_the_sparsity_in_the_int8_file(trained_small_cnn, digits, tmp_path, run_chain, export_file) -> None:
    steps, model = run_chain(trained_small_cnn, digits, [("prune", {"final_sparsity": SPARSITY}), ("qat", {})])
    assert steps[1].backend == "tf_keras: tfmot PQAT (Default8BitPrunePreserveQuantizeScheme)"
    layers, acc = export_file(model, digits, tmp_path / "pqat.tflite")
    assert len(layers) == 4
    for s in layers:
        assert s.quantized and abs(s.sparsity - SPARSITY) <= 0.02, s
    assert acc >= 0.93  # digits test split


def test_plain_qat_after_prune_would_lose_the_sparsity(
    trained_small_cnn, digits, tmp_path, run_chain, export_file
) -> None:
    """The control for the test above: without the preserving scheme the zeros come back."""
    from tfopt._keras import tfmot
    from tfopt.train import compile_model

    _, pruned = run_chain(trained_small_cnn, digits, [("prune", {"final_sparsity": SPARSITY})])
    qat = tfmot().quantization.keras.quantize_model(pruned)
    compile_model(qat, "adam", 5e-4)
    qat.fit(digits.x_train, digits.y_train, epochs=2, batch_size=32, verbose=0)
    layers, _ = export_file(qat, digits, tmp_path / "qat.tflite")
    assert max(s.sparsity for s in layers) < SPARSITY - 0.2


def test_cqat_keeps_the_clusters_in_the_int8_file(trained_small_cnn, digits, tmp_path, run_chain, export_file) -> None:
    steps, model = run_chain(trained_small_cnn, digits, [("cluster", {"number_of_clusters": CLUSTERS}), ("qat", {})])
    assert (
        steps[1].backend == "tf_keras: tfmot CQAT (Default8BitClusterPreserveQuantizeScheme, preserve_sparsity=False)"
    )
    layers, acc = export_file(model, digits, tmp_path / "cqat.tflite")
    assert len(layers) == 4
    for s in layers:  # int8 scales are per output channel for convolutions: count per channel
        assert s.quantized and s.unique_per_channel <= CLUSTERS, s
    assert acc >= 0.90


def test_pcqat_keeps_sparsity_and_clusters_in_the_int8_file(
    trained_small_cnn, digits, tmp_path, run_chain, export_file
) -> None:
    steps, model = run_chain(
        trained_small_cnn,
        digits,
        [("prune", {"final_sparsity": SPARSITY}), ("cluster", {"number_of_clusters": CLUSTERS}), ("qat", {})],
    )
    assert steps[1].backend == "tf_keras: tfmot sparsity-preserving clustering (after prune)"
    assert (
        steps[2].backend == "tf_keras: tfmot PCQAT (Default8BitClusterPreserveQuantizeScheme, preserve_sparsity=True)"
    )
    layers, acc = export_file(model, digits, tmp_path / "pcqat.tflite")
    assert len(layers) == 4
    for s in layers:
        assert s.quantized and abs(s.sparsity - SPARSITY) <= 0.02, s
        assert s.unique_per_channel <= CLUSTERS, s
    assert acc >= 0.90


@pytest.mark.slow  # 15-20 s (suite budget); PCQAT stays in test_pcqat_keeps_sparsity_and_clusters_in_the_int8_file
def test_cluster_preserving_qat_strips_to_an_equivalent_plain_qat_model(
    trained_small_cnn, digits, tmp_path, run_chain, export_file
) -> None:
    """strip() hands on the CQAT/PCQAT model rebuilt under the default 8-bit scheme: same Keras outputs,
    same int8 file contents, none of the per-weight cluster variables (which made a full VGG16's int8
    conversion need ~19 GB), and an .h5 that loads back (tfmot cannot load a CQAT/PCQAT file)."""
    from tfopt.backends import backend_for

    steps, clustered = run_chain(
        trained_small_cnn,
        digits,
        [("prune", {"final_sparsity": SPARSITY}), ("cluster", {"number_of_clusters": CLUSTERS})],
        epochs=1,
    )
    cls = TECHNIQUES.get("qat").for_backend("tf_keras")
    qat = cls(cls.Config(), Context(steps_per_epoch=4, finetune_epochs=1, previous=("prune", "cluster")))
    raw = qat.apply(clustered)
    compile_model(raw, "adam", 5e-4)
    raw.fit(digits.x_train[:128], digits.y_train[:128], epochs=1, batch_size=32, verbose=0)
    twin = qat.strip(raw)
    assert twin is not raw
    assert not [
        w.name
        for w in twin.weights
        if "cluster_centroids" in w.name or "pulling_indices" in w.name or "ori_weights" in w.name
    ]
    assert [w.name for w in raw.weights if "pulling_indices" in w.name]  # the raw model had them
    assert np.array_equal(twin.predict(digits.x_test, verbose=0), raw.predict(digits.x_test, verbose=0))

    raw_layers, raw_acc = export_file(raw, digits, tmp_path / "raw.tflite")
    twin_layers, twin_acc = export_file(twin, digits, tmp_path / "twin.tflite")
    assert twin_acc == raw_acc
    assert np.array_equal(
        TfliteRunner(tmp_path / "raw.tflite").predict(digits.x_test),
        TfliteRunner(tmp_path / "twin.tflite").predict(digits.x_test),
    )
    assert [(s.name, s.sparsity, s.unique_per_channel) for s in twin_layers] == [
        (s.name, s.sparsity, s.unique_per_channel) for s in raw_layers
    ]

    backend = backend_for(twin)
    backend.save(twin, tmp_path / "pcqat.h5")
    back = backend.load(tmp_path / "pcqat.h5")
    assert np.array_equal(back.predict(digits.x_test, verbose=0), raw.predict(digits.x_test, verbose=0))
