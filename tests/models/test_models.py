"""tfopt.models.build: registered builders, user model files (.keras / .h5 / SavedModel), and the
errors a user can cause (missing, corrupt, unsafe, or not fitting the data)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfopt._keras import keras
from tfopt.backends import backend_for
from tfopt.config import ModelConfig
from tfopt.errors import ModelError, TfoptError
from tfopt.models import MODELS, build
from tfopt.models.small_cnn import small_cnn

TINY = {"filters": 4, "dense": 16}


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert isinstance(err.value, TfoptError)
    assert "\n" not in msg, msg
    return msg


@pytest.fixture(scope="module")
def tiny_trained(digits):
    """A tiny small_cnn trained briefly on real digits (enough for weights to move off init)."""
    keras().utils.set_random_seed(0)
    model = small_cnn(digits.input_shape, digits.num_classes, **TINY)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=2, batch_size=64, verbose=0)
    return model


def _save(model, path: Path) -> Path:
    if path.suffix in (".keras", ".h5"):
        model.save(path)
    else:
        model.save(path, save_format="tf")
    return path


def _lambda_model():
    k = keras()
    inp = k.Input((8, 8, 1))
    x = k.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    x = k.layers.Flatten()(x)
    out = k.layers.Dense(10, activation="softmax")(x)
    return k.Model(inp, out)


# ---------------------------------------------------------------- registered builder


@pytest.mark.parametrize("shape,classes", [((8, 8, 1), 10), ((28, 28, 1), 10), ((8, 8, 1), 3)])
def test_small_cnn_builds(shape, classes):
    model = build(ModelConfig(name="small_cnn", params=TINY), shape, classes)
    assert backend_for(model).kind == "tf_keras"
    assert model.input_shape == (None, *shape)
    assert model.output_shape == (None, classes)
    probs = model.predict(np.zeros((2, *shape), "float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_small_cnn_unknown_param_names_known_ones():
    with pytest.raises(ModelError) as err:
        build(ModelConfig(name="small_cnn", params={"filterz": 3}), (8, 8, 1), 10)
    msg = _one_line(err)
    assert "filterz" in msg
    for known in ("filters", "dense", "dropout"):
        assert known in msg


def test_unknown_model_name_suggests():
    with pytest.raises(ModelError) as err:
        build(ModelConfig(name="small_cn"), (8, 8, 1), 10)
    msg = _one_line(err)
    assert "Did you mean 'small_cnn'" in msg
    assert all(name in msg for name in MODELS)


# ---------------------------------------------------------------- user files: round trip


@pytest.mark.parametrize("fname", ["m.keras", "m.h5", "saved_model"], ids=["keras", "h5", "savedmodel"])
def test_user_file_round_trip(tmp_path, tiny_trained, digits, fname):
    try:
        path = _save(tiny_trained, tmp_path / fname)
    except Exception as e:  # a format this Keras cannot write is not tfopt's failure
        pytest.skip(f"tf_keras cannot save {fname} in this stack: {type(e).__name__}: {e}")
    loaded = build(ModelConfig(path=str(path)), digits.input_shape, digits.num_classes)
    assert backend_for(loaded).kind == "tf_keras"
    want = tiny_trained.predict(digits.x_test, verbose=0)
    got = loaded.predict(digits.x_test, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-6)


# ---------------------------------------------------------------- user files: Lambda and safe mode


@pytest.mark.parametrize("fname", ["l.keras", "l.h5", "l_saved_model"], ids=["keras", "h5", "savedmodel"])
def test_lambda_refused_in_safe_mode_and_loads_when_opted_out(tmp_path, fname):
    model = _lambda_model()
    try:
        path = _save(model, tmp_path / fname)
    except Exception as e:
        pytest.skip(f"tf_keras cannot save a Lambda model as {fname}: {type(e).__name__}: {e}")
    with pytest.raises(ModelError) as err:
        build(ModelConfig(path=str(path)), (8, 8, 1), 10)
    msg = _one_line(err)
    assert "Lambda" in msg and "safe mode" in msg
    assert "model.safe_mode: false" in msg
    assert str(path) in msg

    loaded = build(ModelConfig(path=str(path), safe_mode=False), (8, 8, 1), 10)
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# ---------------------------------------------------------------- user files: broken inputs


def _bad_path(tmp_path: Path, tiny_trained, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "nope.keras"
    if kind == "truncated_keras":
        real = _save(tiny_trained, tmp_path / "real.keras")
        bad = tmp_path / "cut.keras"
        bad.write_bytes(real.read_bytes()[:100])
        return bad
    if kind == "text_as_keras":
        bad = tmp_path / "notes.keras"
        bad.write_text("this is a text file, not a model\n")
        return bad
    if kind == "zip_not_model":
        bad = tmp_path / "other.keras"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("readme.txt", "a zip, but not a Keras archive")
        return bad
    if kind == "truncated_h5":
        real = _save(tiny_trained, tmp_path / "real.h5")
        bad = tmp_path / "cut.h5"
        bad.write_bytes(real.read_bytes()[:100])
        return bad
    if kind == "text_as_h5":
        bad = tmp_path / "notes.h5"
        bad.write_text("not hdf5")
        return bad
    if kind == "onnx":
        bad = tmp_path / "model.onnx"
        bad.write_bytes(b"\x08\x07")
        return bad
    if kind == "folder_without_pb":
        bad = tmp_path / "not_a_savedmodel"
        (bad / "variables").mkdir(parents=True)
        return bad
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "truncated_keras",
        "text_as_keras",
        "zip_not_model",
        "truncated_h5",
        "text_as_h5",
        "onnx",
        "folder_without_pb",
    ],
)
def test_unloadable_model_file_is_one_line_model_error(tmp_path, tiny_trained, kind):
    path = _bad_path(tmp_path, tiny_trained, kind)
    with pytest.raises(ModelError) as err:
        build(ModelConfig(path=str(path)), (8, 8, 1), 10)
    msg = _one_line(err)
    assert (path.name if kind == "onnx" else str(path)) in msg
    assert "Fix:" in msg


# ---------------------------------------------------------------- model vs data


def test_input_shape_mismatch_names_both_shapes(tmp_path, tiny_trained):
    path = _save(tiny_trained, tmp_path / "m8.keras")
    with pytest.raises(ModelError) as err:
        build(ModelConfig(path=str(path)), (28, 28, 1), 10)
    msg = _one_line(err)
    assert "(8, 8, 1)" in msg and "(28, 28, 1)" in msg


def test_class_count_mismatch_names_both_numbers(tmp_path, tiny_trained):
    path = _save(tiny_trained, tmp_path / "m10.keras")
    with pytest.raises(ModelError) as err:
        build(ModelConfig(path=str(path)), (8, 8, 1), 3)
    msg = _one_line(err)
    assert "10" in msg and "3" in msg


# ---------------------------------------------------------------- each model's own options


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_registers_typed_options_and_a_valid_tiny(name):
    import inspect

    from pydantic import BaseModel

    entry = MODELS.entry(name)
    assert isinstance(entry.options, type) and issubclass(entry.options, BaseModel), (
        f"{name}: register it with options=..."
    )
    assert entry.tiny, f"{name}: register a tiny set of options for tests"
    entry.options.model_validate(dict(entry.tiny))
    # build() calls the builder with every validated option: its keyword defaults must be the options' defaults.
    keywords = {p.name: p.default for p in inspect.signature(entry.obj).parameters.values() if p.kind is p.KEYWORD_ONLY}
    assert keywords == {k: f.default for k, f in entry.options.model_fields.items()}


def test_tiny_small_cnn_is_tiny():
    model = build(ModelConfig(name="small_cnn", params=dict(MODELS.entry("small_cnn").tiny)), (8, 8, 1), 10)
    assert model.count_params() < 10_000  # 4 and 8 filters, 16 dense units


@pytest.mark.parametrize(
    "name,params,needle",
    [
        ("small_cnn", {"filters": "x"}, "model.params.filters: Input should be a valid integer"),
        ("small_cnn", {"dropout": 1.5}, "model.params.dropout: Input should be less than 1"),
        ("vgg16", {"image_size": 16}, "image_size is 16x16"),
        ("bert", {"dropout": -0.1}, "model.params.dropout: Input should be greater than or equal to 0"),
        ("mobilenet_v2", {"blocks": 18}, "model.params.blocks: Input should be less than or equal to 17"),
    ],
)
def test_bad_param_fails_before_keras(name, params, needle):
    with pytest.raises(ModelError) as err:
        build(ModelConfig(name=name, params=params), (8, 8, 1), 10)
    assert needle in _one_line(err)
