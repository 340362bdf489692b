"""Weight clustering through tfmot on real digits: cluster counts read back from the exported file."""

from __future__ import annotations

import pytest

from tfopt.errors import TransformError
from tfopt.transforms import Context
from tfopt.transforms.cluster import Cluster, ClusterConfig

ALL = {"conv1", "conv2", "dense1", "classifier"}


@pytest.mark.parametrize("init", ["kmeans_plus_plus", "linear", "density_based", "random"])
def test_at_most_n_values_per_kernel_in_the_float32_file(
    trained_small_cnn, digits, tmp_path, run_chain, export_file, init
) -> None:
    n = 8
    steps, model = run_chain(
        trained_small_cnn, digits, [("cluster", {"number_of_clusters": n, "init": init})], epochs=1
    )
    layers, acc = export_file(model, digits, tmp_path / f"c_{init}.tflite", fmt="float32")
    assert {s.layer for s in layers} == ALL
    for s in layers:
        assert s.unique_values <= n, s
    assert acc >= 0.85  # 8 shared values per kernel, digits test split, one fine-tune epoch
    assert all(d.applied for d in steps[0].layers)


def test_per_channel_clustering_counts_per_output_channel(
    trained_small_cnn, digits, tmp_path, run_chain, export_file
) -> None:
    n = 4
    steps, model = run_chain(
        trained_small_cnn, digits, [("cluster", {"number_of_clusters": n, "per_channel": True})], epochs=1
    )
    f32, acc = export_file(model, digits, tmp_path / "pc.tflite", fmt="float32")
    by_layer = {s.layer: s for s in f32}
    for conv in ("conv1", "conv2"):
        s = by_layer[conv]
        assert s.unique_per_channel <= n, s
        assert s.unique_values > n, s  # channels keep their own centroids: per channel, not per kernel
    for dense in ("dense1", "classifier"):  # per_channel applies to Conv2D only: n values per kernel
        assert by_layer[dense].unique_values <= n
    # int8 stores every channel with its own scale: each channel keeps at most n values
    int8, acc8 = export_file(model, digits, tmp_path / "pc8.tflite")
    for s in int8:
        assert s.quantized and s.unique_per_channel <= n, s
    assert acc >= 0.85 and acc8 >= 0.85
    notes = {d.layer: d.reason for d in steps[0].layers}
    assert notes["conv1"] == "4 clusters per output channel"
    assert notes["dense1"] == "4 clusters per kernel (per_channel applies to Conv2D only)"


def test_sparsity_preserving_clustering_after_prune(
    trained_small_cnn, digits, tmp_path, run_chain, export_file
) -> None:
    n, target = 8, 0.6
    steps, model = run_chain(
        trained_small_cnn,
        digits,
        [("prune", {"final_sparsity": target}), ("cluster", {"number_of_clusters": n, "skip": ["conv1"]})],
    )
    assert steps[1].backend == "tf_keras: tfmot sparsity-preserving clustering (after prune)"
    layers, acc = export_file(model, digits, tmp_path / "pc.tflite", fmt="float32")
    for s in layers:
        if s.layer != "conv1":
            assert abs(s.sparsity - target) <= 0.02, s
            assert s.unique_values <= n, s  # zero is one of the n clusters
    assert acc >= 0.85
    # a layer the clustering step skips trains without pruning masks: the report says so
    skipped = {d.layer: d.reason for d in steps[1].layers if not d.applied}
    assert skipped == {"conv1": "skipped by pattern 'conv1'; fine-tuned unmasked, so its zeros are not kept"}


def test_skip_and_decisions(trained_small_cnn, digits, run_chain) -> None:
    from tfopt.evaluate.weights import keras_weight_stats

    steps, model = run_chain(
        trained_small_cnn, digits, [("cluster", {"number_of_clusters": 8, "skip": ["classifier"]})], epochs=1
    )
    by_layer = {s.layer: s.unique_values for s in keras_weight_stats(model)}
    assert by_layer["classifier"] > 100 and by_layer["dense1"] <= 8
    assert {d.layer: d.reason for d in steps[0].layers if not d.applied} == {
        "classifier": "skipped by pattern 'classifier'"
    }


def test_too_few_weights_for_the_clusters_is_a_skip_with_a_reason(trained_small_cnn) -> None:
    # conv1 has 9 weights per output channel: per-channel clustering into 16 is impossible there
    t = Cluster(ClusterConfig(number_of_clusters=16, per_channel=True), Context(10, 1))
    t.apply(trained_small_cnn)
    reasons = {d.layer: d.reason for d in t.describe() if not d.applied}
    assert reasons == {"conv1": "too few weights per channel for 16 clusters"}


def test_preserving_sparsity_needs_three_clusters(trained_small_cnn) -> None:
    t = Cluster(ClusterConfig(number_of_clusters=2), Context(10, 1, previous=("prune",)))
    with pytest.raises(TransformError, match="number_of_clusters >= 3. .*Received: number_of_clusters=2"):
        t.apply(trained_small_cnn)


@pytest.fixture
def keras3_model():
    import keras  # Keras 3, whatever tf.keras is

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="tiny_k3")


@pytest.mark.parametrize("name", ["prune", "cluster", "qat"])
def test_tfmot_transforms_refuse_a_keras3_model(keras3_model, name) -> None:
    from tfopt.backends import backend_for
    from tfopt.transforms import TECHNIQUES, transform_class

    assert backend_for(keras3_model).kind == "keras3"
    try:
        chosen = transform_class(name, "keras3")
    except TransformError as e:  # no Keras 3 implementation registered: refused by name
        assert "cannot be applied to a Keras 3 model" in str(e)
    else:
        assert chosen is not TECHNIQUES.get(name).for_backend("tf_keras")  # a Keras 3 backend, never the tfmot class
    cls = TECHNIQUES.get(name).for_backend("tf_keras")
    params = {"prune": {"final_sparsity": 0.5}, "cluster": {"number_of_clusters": 8}, "qat": {}}[name]
    with pytest.raises(TransformError, match=r"needs a Keras 2 \(tf_keras\) model.*Received: model kind='keras3'"):
        cls(cls.Config(**params), Context(10, 1)).apply(keras3_model)


def test_why_the_refusal_matters_tfmot_returns_none_for_keras3(keras3_model) -> None:
    from tfopt._keras import tfmot

    assert tfmot().clustering.keras.cluster_weights(keras3_model, number_of_clusters=8) is None
