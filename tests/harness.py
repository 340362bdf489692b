"""The shared battery every registered component gets for free (keras-hub's ``TestCase`` is the model).

``tests/test_harness.py`` runs these checks over the registries: every technique on every backend
it implements, every model (its ``tiny`` options), every dataset and every export format. A new
component registered in tfopt is picked up without a new test; the only per-component knowledge
here is where real data for a model or a path-based dataset comes from (``MODEL_DATA``,
``dataset_fixture``), and a missing entry fails naming the table to extend.

Each check asserts numbers from real data (scikit-learn digits, Rotten Tomatoes) read back from
the written files, with the tolerance of the format (``ExportSpec.max_abs_diff``).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from tfopt.backends import backend_for
from tfopt.data import num_examples
from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.pipeline import Recipe, apply_steps, export_and_evaluate
from tfopt.schema import EvaluateConfig, ExportSpec

# Real data each registered model is exercised on: (dataset fixture name in conftest, sample count).
MODEL_DATA = {"small_cnn": "digits", "vgg16": "digits", "mobilenet_v2": "digits", "bert": "rt_tokens"}
# Models whose battery is heavy (VGG16: a 14.7M-weight base to convert and read back, ~30 s): marked slow.
SLOW_MODELS = {"vgg16", "mobilenet_v2"}

NO_LATENCY = EvaluateConfig(latency_runs=0)


def check_config_round_trip(Config: type[BaseModel], params: dict) -> BaseModel:
    """The options validate, dump to JSON and validate back to the same object (what run.json keeps)."""
    config = Config.model_validate(params)
    again = Config.model_validate(config.model_dump(mode="json"))
    assert again == config, (config, again)
    return config


def check_files_hold_the_model(model: Any, evaluation: Any, formats: list[ExportSpec]) -> None:
    """Every format is written or reported with its reason; each file matches Keras within its tolerance,
    and holds the model's weight tensors: same count and sizes, and for float32 files the same zeros
    and distinct values per tensor (what a technique left in the model is what the user deploys)."""
    keras_stats = backend_for(model).weight_stats(model)
    # The converter folds a BatchNormalization into the conv before it: those kernels hold other values in the file.
    folded = any(type(layer).__name__ == "BatchNormalization" for layer in getattr(model, "layers", []))
    written = {r.format: r for r in evaluation.results if r.format != "keras"}
    skipped = {n.format: n.reason for n in evaluation.not_exported}
    assert set(written) | set(skipped) == {s.label for s in formats}, (written, skipped)
    assert all(reason.strip() for reason in skipped.values()), skipped
    assert not evaluation.failures, evaluation.failures
    for spec in formats:
        if spec.label not in written:
            continue
        r = written[spec.label]
        assert r.max_abs_diff is not None and r.max_abs_diff <= spec.max_abs_diff, (spec.label, r.max_abs_diff)
        assert r.size_bytes > 0 and 0 < r.gzip_bytes <= r.size_bytes + 64, r
        file_stats, unmatched = tflite_weight_stats(r.path), list(keras_stats)
        for f in file_stats:  # each weight operand of the file is one of the model's tensors...
            twin = _take_twin(f, unmatched, exact=spec.format == "float32" and not folded)
            assert twin is not None, (spec.label, f, unmatched)
            if spec.format != "float32":  # quantized: a zero weight stays an exact zero
                assert f.sparsity >= twin.sparsity - 0.01, (spec.label, f, twin)
        # ...and the file holds nearly all of them (a Keras 3 position embedding may fold into an ADD constant).
        assert sum(f.size for f in file_stats) >= 0.99 * sum(k.size for k in keras_stats), spec.label


def _take_twin(f: Any, keras_stats: list, exact: bool) -> Any:
    """Remove and return the Keras tensor matching file tensor ``f``: same size, and for float32 files
    the same fraction of zeros and number of distinct values."""
    for i, k in enumerate(keras_stats):
        if k.size == f.size and (not exact or (k.sparsity, k.unique_values) == (f.sparsity, f.unique_values)):
            return keras_stats.pop(i)
    return None


def technique_example(name: str, technique: Any, backend: str, splits: Any, folder: Path) -> dict:
    """The technique's example params for a model of ``backend``: its registered ``example``, except where
    that names a model of the other Keras (distill's registered student is a tf_keras CNN: a Keras 3
    teacher gets a Keras 3 student file, written here)."""
    if name == "distill" and backend == "keras3":
        from tfopt._keras import keras3

        k = keras3()
        inputs = k.Input(splits.input_shape)
        x = k.layers.Dense(16, activation="relu", name="dense1")(k.layers.Flatten()(inputs))
        student = k.Model(inputs, k.layers.Dense(splits.num_classes, activation="softmax", name="classifier")(x))
        student.save(folder / "student_k3.keras")
        return {**technique.example, "student": {"path": str(folder / "student_k3.keras")}}
    return dict(technique.example)


def check_technique(
    name: str, technique: Any, backend: str, model: Any, splits: Any, folder: Path, params: Any = None
) -> Any:
    """Apply the technique's example step (or ``params``) with the pipeline's step loop, export, read the files back."""
    params = technique.example if params is None else params
    config = check_config_round_trip(technique.Config, params)
    before = [np.array(w.numpy()) for w in model.weights]
    epochs = 1 if technique.needs_finetune else 0
    applied = apply_steps(
        model,
        [{name: params}],
        splits,
        Recipe(epochs=epochs, batch_size=32, learning_rate=5e-4),
        log=lambda _: None,
    )
    (report,) = applied.reports
    assert report.transform == name and report.backend.startswith(backend), report.backend
    assert report.params == config.model_dump(mode="json")
    assert any(d.applied for d in report.layers) and all(d.applied or d.reason for d in report.layers), report.layers
    # The result stays in the input's Keras, but for QAT of a Keras 3 model: tfmot trains its exact tf_keras twin.
    assert applied.backend.kind == backend_for(applied.model).kind
    assert applied.backend.kind == backend or report.backend.startswith("keras3 -> tf_keras twin"), report.backend
    assert all(np.array_equal(b, np.asarray(w.numpy())) for b, w in zip(before, model.weights)), (
        "apply_steps changed its input"
    )
    formats = [ExportSpec(format="float32"), ExportSpec(format="int8")]
    evaluation = export_and_evaluate(
        applied.model, name, formats, splits, folder, evaluate=NO_LATENCY, log=lambda _: None
    )
    check_files_hold_the_model(applied.model, evaluation, formats)
    return applied


def check_model(model: Any, splits: Any, folder: Path) -> None:
    """A built model trains a step, saves and loads back with the same outputs, and exports to float32."""
    backend = backend_for(model)
    backend.compile(model, "adam", 1e-3)
    history = model.fit(splits.x_train, splits.y_train, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    path = folder / f"m{backend.file_suffix(model)}"
    backend.save(model, path)
    back = backend.load(path)
    x = _head(splits.x_test, 16)
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    formats = [ExportSpec(format="float32")]
    evaluation = export_and_evaluate(
        model, "m", formats, splits, folder, backend=backend, evaluate=NO_LATENCY, log=lambda _: None
    )
    check_files_hold_the_model(model, evaluation, formats)


def check_splits(splits: Any, again: Any) -> None:
    """Real, consistent splits: shapes and labels agree, classes named, and the same seed gives the same split."""
    n_train, n_val, n_test = (num_examples(x) for x in (splits.x_train, splits.x_val, splits.x_test))
    assert n_train > 0 and n_test > 0
    assert (n_train, n_val, n_test) == (len(splits.y_train), len(splits.y_val), len(splits.y_test))
    for y in (splits.y_train, splits.y_val, splits.y_test):
        assert y.dtype == np.int64 and (y >= 0).all() and (y < splits.num_classes).all()
    assert len(set(splits.y_train.tolist())) == splits.num_classes >= 2
    if not splits.is_text:
        assert splits.x_train.dtype == np.float32 and 0.0 <= splits.x_train.min() and splits.x_train.max() <= 1.0
    assert np.array_equal(np.asarray(splits.y_test), np.asarray(again.y_test))
    assert np.array_equal(np.asarray(splits.x_test), np.asarray(again.x_test))


def dataset_fixture(name: str, folder: Path, digits: Any, rt_text: Any) -> dict:
    """The options that make dataset ``name`` load from real data here (files written from digits/Rotten Tomatoes)."""
    if name in ("digits", "mnist_5k", "fashion_mnist", "rotten_tomatoes"):
        return {}
    if name == "npz":
        path = folder / "digits.npz"
        np.savez(path, x=(digits.x_train * 255).astype("uint8")[..., 0], y=digits.y_train)
        return {"path": str(path)}
    if name == "image_folder":
        from PIL import Image

        for i, (x, y) in enumerate(zip(digits.x_train[:120], digits.y_train[:120])):
            (folder / "images" / str(y)).mkdir(parents=True, exist_ok=True)
            Image.fromarray((x[..., 0] * 255).astype("uint8")).save(folder / "images" / str(y) / f"{i}.png")
        return {"path": str(folder / "images")}
    if name == "text_csv":
        path = folder / "reviews.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for text, y in zip(rt_text.x_train[:120], rt_text.y_train[:120]):
                writer.writerow([text, rt_text.class_names[y]])
        return {"path": str(path)}
    raise AssertionError(
        f"dataset {name!r} has no fixture: add how to load it from real data to tests/harness.py:dataset_fixture"
    )


def _head(x: Any, n: int) -> Any:
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]


def smaller(splits: Any, n_train: int, n_test: int) -> Any:
    """The first examples of each split (real data, fewer of them: mechanics, not accuracy)."""
    return dataclasses.replace(
        splits,
        x_train=_head(splits.x_train, n_train),
        y_train=splits.y_train[:n_train],
        x_test=_head(splits.x_test, n_test),
        y_test=splits.y_test[:n_test],
    )
