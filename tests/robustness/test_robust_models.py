"""Bad model files and models that do not fit the data: a one-line ModelError/DataError, nothing written."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfopt import models
from tfopt._keras import keras
from tfopt.config import ModelConfig
from tfopt.errors import DataError, ModelError, TransformError

from robust_helpers import assert_one_line_error, files_under, run_cli

k = keras()


@k.utils.register_keras_serializable(package="tfopt_robustness")
class ScaledDense(k.layers.Layer):
    """A user's own Dense-like layer: has a kernel, but tfmot knows nothing about it."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, shape):
        self.kernel = self.add_weight(name="kernel", shape=(shape[-1], self.units))

    def call(self, x):
        return 0.5 * (x @ self.kernel)

    def get_config(self):
        return dict(super().get_config(), units=self.units)


def _model(shape=(8, 8, 1), classes=10, lam=False, custom=False):
    inp = k.layers.Input(shape, name="image")
    x = k.layers.Flatten(name="flatten")(inp)
    if lam:
        x = k.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = (ScaledDense(16, name="scaled") if custom else k.layers.Dense(16, name="hidden"))(x)
    return k.Model(inp, k.layers.Dense(classes, activation="softmax", name="classifier")(x))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("model_files")
    out = {
        name: d / name
        for name in ("good.keras", "lambda.keras", "lambda.h5", "shape28.keras", "five.keras", "custom.keras")
    }
    _model().save(out["good.keras"])
    _model(lam=True).save(out["lambda.keras"])
    _model(lam=True).save(out["lambda.h5"])
    _model(shape=(28, 28, 1)).save(out["shape28.keras"])
    _model(classes=5).save(out["five.keras"])
    _model(custom=True).save(out["custom.keras"])
    good = out["good.keras"].read_bytes()
    for name, data in (
        ("truncated.keras", good[: len(good) // 2]),
        ("text.keras", b"hello"),
        ("empty.keras", b""),
        ("garbage.h5", b"\x00" * 100),
        ("model.tflite", b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64),
    ):
        out[name] = d / name
        out[name].write_bytes(data)
    out["weights_corrupt.keras"] = d / "weights_corrupt.keras"  # a valid zip whose weights file is garbage
    with zipfile.ZipFile(out["good.keras"]) as src, zipfile.ZipFile(out["weights_corrupt.keras"], "w") as dst:
        for item in src.infolist():
            dst.writestr(item, b"garbage" if item.filename.endswith(".h5") else src.read(item))
    out["zip_not_model.keras"] = d / "zip_not_model.keras"
    with zipfile.ZipFile(out["zip_not_model.keras"], "w") as z:
        z.writestr("notes.txt", "not a model")
    return out


@pytest.mark.parametrize(
    "name,needles",
    [
        ("missing.keras", ["Model file not found", "Fix: check model.path"]),
        ("truncated.keras", ["not a valid .keras file", "truncated or corrupt", "Fix:"]),
        ("text.keras", ["not a valid .keras file", "Fix:"]),
        ("empty.keras", ["not a valid .keras file"]),
        ("garbage.h5", ["Cannot read HDF5 model", "Fix:"]),
        ("weights_corrupt.keras", ["Cannot load .keras model", "Fix:"]),
        ("zip_not_model.keras", ["Cannot load .keras model", "config.json", "Fix:"]),
        ("model.tflite", ["Unsupported model file 'model.tflite'", "Fix:"]),
        (
            "lambda.keras",
            ["Lambda layer", "refused in safe mode", "Fix: if you trust the file, set model.safe_mode: false"],
        ),
        ("lambda.h5", ["Lambda layer", "model.safe_mode: false"]),
        ("shape28.keras", ["expects inputs of shape (28, 28, 1)", "images are (8, 8, 1)", "Fix:"]),
        ("five.keras", ["outputs 5 classes but the dataset has 10", "Fix:"]),
    ],
)
def test_bad_model_files(files, tmp_path, name: str, needles: list[str]) -> None:
    path = files.get(name, tmp_path / name)
    with pytest.raises(ModelError) as e:
        models.build(ModelConfig(path=str(path)), (8, 8, 1), 10)
    assert "\n" not in str(e.value)
    for needle in needles:
        assert needle in str(e.value)


def test_opting_out_of_safe_mode_loads_the_lambda_model(files) -> None:
    model = models.build(ModelConfig(path=str(files["lambda.keras"]), safe_mode=False), (8, 8, 1), 10)
    assert "double" in [layer.name for layer in model.layers]


def test_unregistered_custom_class_is_named(files, tmp_path) -> None:
    """A file saved where the user's layer module was importable, loaded where it is not."""
    with zipfile.ZipFile(files["good.keras"]) as src, zipfile.ZipFile(tmp_path / "theirs.keras", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                cfg = json.loads(data)
                hidden = next(layer for layer in cfg["config"]["layers"] if layer["config"]["name"] == "hidden")
                hidden.update(class_name="TheirDense", module="their_package.layers", registered_name="TheirDense")
                data = json.dumps(cfg).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelError, match=r"custom class 'TheirDense', which is not registered here\. Fix:"):
        models.build(ModelConfig(path=str(tmp_path / "theirs.keras")), (8, 8, 1), 10)


def _prune_step(**params):
    from tfopt.transforms import Context, transform_class

    cls = transform_class("prune", "tf_keras")
    return cls(
        cls.Config.model_validate({"final_sparsity": 0.5, **params}), Context(steps_per_epoch=4, finetune_epochs=1)
    )


def test_prune_layers_matching_nothing_names_the_layers() -> None:
    with pytest.raises(TransformError) as e:
        _prune_step(layers=["conv*"]).apply(_model())
    msg = str(e.value)
    assert (
        "prune matched no layer" in msg and "hidden" in msg and "classifier" in msg and "Fix: check prune.layers" in msg
    )


def test_prune_of_a_custom_layer_names_it_and_suggests_skip() -> None:
    with pytest.raises(
        TransformError,
        match=(
            r"prune cannot handle layer 'scaled' \(ScaledDense\).*"
            r"Fix: leave it as it is with prune: \{skip: \[scaled\]\}"
        ),
    ):
        _prune_step().apply(_model(custom=True))


def test_cluster_of_a_custom_layer_names_it_and_suggests_skip() -> None:
    from tfopt.transforms import Context, transform_class

    cls = transform_class("cluster", "tf_keras")
    step = cls(cls.Config.model_validate({"number_of_clusters": 4}), Context(steps_per_epoch=4, finetune_epochs=1))
    with pytest.raises(
        TransformError, match=r"cluster cannot handle layer 'scaled' \(ScaledDense\).*cluster: \{skip: \[scaled\]\}"
    ):
        step.apply(_model(custom=True))


def test_prune_skips_an_unsupported_custom_layer_when_told(tmp_path) -> None:
    step = _prune_step(skip=["scaled"])
    step.apply(_model(custom=True))
    decisions = {d.layer: d for d in step.describe()}
    assert decisions["classifier"].applied and not decisions["scaled"].applied


# --- through the CLI: exit status 2, one line, no files left behind -----------------------------


def test_cli_lambda_model_refused(files, tmp_path) -> None:
    (tmp_path / "p.yaml").write_text(
        f"data: {{name: digits}}\nmodel: {{path: {files['lambda.keras']}}}\ntrain: {{epochs: 0}}\n"
    )
    assert_one_line_error(
        run_cli("run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out")),
        "Lambda layer",
        "model.safe_mode: false",
    )
    assert files_under(tmp_path / "out") == []


def test_cli_classes_do_not_match_labels(files, tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "three.npz", x=rng.random((60, 8, 8), dtype=np.float32), y=np.arange(60) % 3)
    (tmp_path / "p.yaml").write_text(
        f"data: {{name: npz, path: {tmp_path / 'three.npz'}}}\nmodel: {{path: {files['good.keras']}}}\n"
    )
    assert_one_line_error(
        run_cli("run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out")),
        "outputs 10 classes but the dataset has 3",
        "Fix:",
    )
    assert files_under(tmp_path / "out") == []


def test_cli_input_shape_does_not_match_data(files, tmp_path) -> None:
    np.savez(tmp_path / "big.npz", x=np.zeros((40, 28, 28), np.uint8), y=np.arange(40) % 10)
    (tmp_path / "p.yaml").write_text(
        f"data: {{name: npz, path: {tmp_path / 'big.npz'}}}\nmodel: {{path: {files['good.keras']}}}\n"
    )
    assert_one_line_error(
        run_cli("run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out")),
        "expects inputs of shape (8, 8, 1)",
        "(28, 28, 1)",
    )
    assert files_under(tmp_path / "out") == []


def test_labels_beyond_class_names_are_a_data_error(tmp_path) -> None:
    from tfopt.config import DataConfig
    from tfopt.data import load

    np.savez(
        tmp_path / "d.npz",
        x=np.zeros((30, 8, 8), np.float32),
        y=np.arange(30) % 5,
        class_names=np.array(["a", "b", "c"]),
    )
    with pytest.raises(DataError, match="labels go up to 4 but only 3 class names"):
        load(DataConfig(name="npz", path=str(tmp_path / "d.npz")))
