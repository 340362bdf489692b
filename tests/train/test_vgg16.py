"""VGG16: shapes, parameters, freezing, preprocessing inside the model, weights files and their errors.

The default run builds VGG16 at 32x32 only (no training); ``-m slow`` also runs
pipelines/vgg16_fashion_mnist.yaml end to end on a small real slice of Fashion-MNIST.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfopt.backends import backend_for
from tfopt import config, pipeline
from tfopt._keras import keras
from tfopt.errors import ModelError
from tfopt.models.vgg16 import BASE_LAYERS, BASE_PARAMS, IMAGENET_MEAN_RGB, NOTOP_FILE, vgg16

ROOT = Path(__file__).resolve().parents[2]
HEAD_PARAMS = (512 * 256 + 256) + (256 * 10 + 10)  # fc1 + classifier for 10 classes


@pytest.fixture(scope="module")
def grey_vgg():
    keras().utils.set_random_seed(0)
    return vgg16((28, 28, 1), 10, image_size=32, fit="pad")


def test_grey_28x28_in_ten_classes_out(grey_vgg) -> None:
    assert grey_vgg.input_shape == (None, 28, 28, 1) and grey_vgg.output_shape == (None, 10)
    assert grey_vgg.count_params() == BASE_PARAMS + HEAD_PARAMS == 14_848_586
    assert [layer.name for layer in grey_vgg.layers[:6]] == [
        "image",
        "pad",
        "grey_to_rgb",
        "vgg16_preprocess",
        "vgg16_input",
        "block1_conv1",
    ]
    assert grey_vgg.get_layer("block5_pool").output_shape == (None, 1, 1, 512)


def test_preprocessing_inside_the_model_pads_repeats_and_centres(grey_vgg, rng) -> None:
    x = rng.random((2, 28, 28, 1), dtype=np.float32)
    inner = keras().Model(grey_vgg.input, grey_vgg.get_layer("vgg16_preprocess").output)(x).numpy()
    expected = np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1) * 255.0 - np.array(IMAGENET_MEAN_RGB)
    assert inner.shape == (2, 32, 32, 3)
    assert np.abs(inner - expected).max() <= 1e-3  # float32 rounding of values up to 255


def test_freeze_base_trains_only_the_head() -> None:
    model = vgg16((32, 32, 3), 5, freeze_base=True, dense=0, dropout=0)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 512 * 5 + 5 and model.count_params() == BASE_PARAMS + trainable
    assert not any(model.get_layer(name).trainable for name in BASE_LAYERS)

    assert not any(
        backend_for(model).clone(model).get_layer(name).trainable for name in BASE_LAYERS
    )  # variants keep it frozen


def test_resize_to_larger_images_and_rgb_input() -> None:
    model = vgg16((40, 40, 3), 3, image_size=[48, 64], dense=8)
    assert model.get_layer("resize").output_shape == (None, 48, 64, 3) and "grey_to_rgb" not in [
        layer.name for layer in model.layers
    ]
    assert model.get_layer("block5_pool").output_shape == (None, 1, 2, 512)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {},
            (
                "vgg16 needs images of at least 32x32 (five 2x2 poolings), and the dataset's images are 28x28. "
                "Fix: set model.params.image_size: 32"
            ),
        ),
        ({"image_size": 16}, "image_size is 16x16"),
        ({"image_size": 24, "fit": "pad"}, "image_size is 24x24"),
        ({"image_size": 32, "fit": "crop"}, "fit must be 'pad' or 'resize'"),
        ({"image_size": 32, "weights": "nowhere.h5"}, "vgg16 weights file not found: nowhere.h5"),
    ],
)
def test_bad_options_are_clear_errors(kwargs, message) -> None:
    with pytest.raises(ModelError) as e:
        vgg16((28, 28, 1), 10, **kwargs)
    assert message in str(e.value)


def test_imagenet_missing_says_which_file_to_place_where(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ModelError) as e:
        vgg16((32, 32, 3), 10, weights="imagenet")
    where = tmp_path / "models" / NOTOP_FILE
    assert f"needs Keras' file {NOTOP_FILE} at {where}, and tfopt does not download" in str(e.value)
    assert f"https://storage.googleapis.com/tensorflow/keras-applications/vgg16/{NOTOP_FILE}" in str(e.value)


def test_imagenet_file_gives_the_same_features_as_keras_vgg16_with_preprocess_input(tmp_path, monkeypatch, rng) -> None:
    """With a file in Keras' layout (random values: no download here), tfopt's model on RGB in [0, 1]
    equals Keras' VGG16 on ``vgg16.preprocess_input`` (BGR, caffe means): the kernel flip is exact."""
    k = keras()
    keras_vgg = k.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    (tmp_path / "models").mkdir()
    keras_vgg.save_weights(tmp_path / "models" / NOTOP_FILE)  # the layout Keras' notop file has
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    ours = vgg16((32, 32, 3), 10, weights="imagenet")
    features = k.Model(ours.input, ours.get_layer("block5_pool").output)

    x = rng.random((4, 32, 32, 3), dtype=np.float32)
    theirs = keras_vgg(k.applications.vgg16.preprocess_input(x * 255.0)).numpy()
    mine = features(x).numpy()
    assert np.abs(mine - theirs).max() <= 1e-4 * max(1.0, np.abs(theirs).max())


def test_weights_path_loads_the_base_by_layer_name(tmp_path) -> None:
    src = vgg16((32, 32, 3), 7, dense=16)
    src.save_weights(tmp_path / "w.h5")
    loaded = vgg16((32, 32, 3), 4, weights=str(tmp_path / "w.h5"))  # another head: only the base is loaded
    for name in BASE_LAYERS:
        assert all(
            np.array_equal(a, b)
            for a, b in zip(src.get_layer(name).get_weights(), loaded.get_layer(name).get_weights())
        )

    from tfopt.models.small_cnn import small_cnn

    small_cnn((8, 8, 1), 10).save_weights(tmp_path / "small.h5")
    with pytest.raises(
        ModelError, match="has no weights for block1_conv1, block1_conv2, block2_conv1 ...: not a VGG16 base"
    ):
        vgg16((32, 32, 3), 4, weights=str(tmp_path / "small.h5"))


def test_saved_file_loads_in_safe_mode(grey_vgg, tmp_path, rng) -> None:
    path = tmp_path / "vgg.keras"
    grey_vgg.save(path)
    back = keras().models.load_model(path, safe_mode=True, compile=False)
    x = rng.random((2, 28, 28, 1), dtype=np.float32)
    assert np.abs(back(x).numpy() - grey_vgg(x).numpy()).max() <= 1e-6


def _fashion_slice(tmp_path: Path) -> str:
    """320 training and 200 test images of the real Fashion-MNIST, as an npz the pipeline reads."""
    from tfopt.config import DataConfig
    from tfopt.data import load

    full = load(DataConfig(name="fashion_mnist", val_fraction=0), seed=0)
    path = tmp_path / "fmnist_slice.npz"
    np.savez(
        path, x_train=full.x_train[:320], y_train=full.y_train[:320], x_test=full.x_test[:200], y_test=full.y_test[:200]
    )
    return str(path)


def _vgg_pipeline(tmp_path: Path, variants: list[str]):
    """pipelines/vgg16_fashion_mnist.yaml as written, on a real slice, one epoch per stage."""
    from tfopt.config import DataConfig

    cfg = config.load(ROOT / "pipelines" / "vgg16_fashion_mnist.yaml")
    assert set(variants) <= set(cfg.variants)
    return cfg.model_copy(
        update={
            "data": DataConfig(name="npz", path=_fashion_slice(tmp_path), val_fraction=0.1),
            "train": cfg.train.model_copy(update={"epochs": 1, "batch_size": 32}),
            "variants": {v: cfg.variants[v] for v in variants},
            "evaluate": cfg.evaluate.model_copy(update={"latency_runs": 5}),
        }
    )


@pytest.mark.slow
def test_vgg16_fashion_mnist_pipeline_smoke(tmp_path) -> None:
    """Baseline, pruned, clustered and QAT variants of the VGG16 pipeline train, export to int8 and
    are evaluated (~8 min on 2 CPU cores). It checks the mechanics, not accuracy: one epoch on 288 images."""
    from tfopt.evaluate.weights import tflite_weight_stats

    run = pipeline.run(_vgg_pipeline(tmp_path, ["pruned_50", "clustered_16", "qat"]), root=tmp_path, log=print)
    assert [t.variant for t in run.training] == ["baseline", "pruned_50/prune", "clustered_16/cluster", "qat/qat"]
    assert all(t.examples_per_second > 0 for t in run.training)
    assert run.validation_failures == []
    pruned = tflite_weight_stats(run.result("pruned_50", "int8").path)
    assert len(pruned) == 15 and all(abs(layer.sparsity - 0.5) <= 0.02 for layer in pruned)  # 13 conv, fc1, classifier
    clustered = tflite_weight_stats(run.result("clustered_16", "int8").path)
    assert len(clustered) == 15 and all(
        layer.unique_per_channel <= 16 for layer in clustered
    )  # 16 centroids survive int8
    assert all(layer.quantized for layer in tflite_weight_stats(run.result("qat", "int8").path))


def _total_ram_gb() -> float:
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


@pytest.mark.slow
@pytest.mark.skipif(
    _total_ram_gb() < 12,
    reason=(
        "PCQAT on VGG16 needs about 8 GB: its QAT fine-tune peaks at 7.3-7.6 GB (tfmot's cluster-preserving "
        "quantizers keep three extra tensors per kernel); the int8 conversion adds nothing since Qat.strip "
        "hands on a plain-QAT twin (it needed 18.7 GB before)"
    ),
)
def test_vgg16_pcqat_smoke(tmp_path) -> None:
    """The PCQAT variant (prune -> cluster -> QAT, each preserving the previous) of the VGG16 pipeline."""
    from tfopt.evaluate.weights import tflite_weight_stats

    run = pipeline.run(_vgg_pipeline(tmp_path, ["pcqat"]), root=tmp_path, log=print)
    assert [t.variant for t in run.training] == ["baseline", "pcqat/prune", "pcqat/cluster", "pcqat/qat"]
    layers = tflite_weight_stats(run.result("pcqat", "int8").path)
    assert all(layer.quantized for layer in layers) and all(abs(layer.sparsity - 0.5) <= 0.05 for layer in layers)
