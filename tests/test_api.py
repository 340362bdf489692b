"""tfopt.optimize: the same run as the YAML route, on real digits, for a tf_keras and a Keras 3 model.

Each backend gets one module-scoped pair of runs (the Keras 3 pair under ``-m slow``): the YAML route
with ``model: {path: ...}`` and the ``digits`` dataset, and ``optimize`` on the exact arrays
``tfopt.data.load`` gives for that config, both pruning with one fine-tune epoch and exporting
float32 + int8, latency off. The figures must agree to 1e-6, sizes exactly. The other tests read
those runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tfopt
from tfopt import config, pipeline
from tfopt._keras import keras, keras3, tf
from tfopt.errors import TfoptError

VARIANTS = {"pruned": [{"prune": {"final_sparsity": 0.5}}]}
EXPORT = ["float32", "int8"]
YAML = """
data: {name: digits}
model: {path: MODEL}
train: {epochs: 0, batch_size: 64}
finetune: {epochs: 1}
variants:
  pruned: [{prune: {final_sparsity: 0.5}}]
export: [float32, int8]
evaluate: {latency_runs: 0}
"""


def _trained(k, digits):
    """A small dense classifier trained briefly on the digits train split (an 'already trained' model)."""
    k.utils.set_random_seed(1)
    model = k.Sequential(
        [
            k.Input(digits.input_shape),
            k.layers.Flatten(),
            k.layers.Dense(32, activation="relu"),
            k.layers.Dense(digits.num_classes, activation="softmax"),
        ],
        name="digits_mlp",
    )
    model.compile(optimizer=k.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=8, batch_size=64, verbose=0)
    return model


# The Keras 3 pair is slow (default-run budget): the example notebook runs a Keras 3 model on arrays in
# the default run, and test_tf_data_gives_the_same_splits reads tf.data there.
@pytest.fixture(scope="module", params=["tf_keras-arrays", pytest.param("keras3-tf.data", marks=pytest.mark.slow)])
def routes(request, digits, tmp_path_factory):
    """(model, YAML-route run, optimize run) for one Keras kind; the tf.data form holds the same arrays
    (train in batches, test as single pairs), which must change nothing."""
    kind, form = request.param.split("-")
    k = keras() if kind == "tf_keras" else keras3()
    model = _trained(k, digits)
    root = tmp_path_factory.mktemp(f"api_{kind}")
    model.save(root / "model.keras")
    yaml_run = pipeline.run(
        config.loads(YAML.replace("MODEL", str(root / "model.keras")), default_name="yaml_route"),
        root=root / "yaml",
        log=lambda _: None,
    )
    train, test = (digits.x_train, digits.y_train), (digits.x_test, digits.y_test)
    if form == "tf.data":
        train = tf().data.Dataset.from_tensor_slices(train).batch(50)
        test = tf().data.Dataset.from_tensor_slices(test)
    api_run = tfopt.optimize(
        model,
        train=train,
        val=(digits.x_val, digits.y_val),
        test=test,
        variants=VARIANTS,
        export=EXPORT,
        finetune={"epochs": 1},
        train_baseline={"epochs": 0, "batch_size": 64},
        evaluate={"latency_runs": 0},
        report={"max_accuracy_drop": 0.02, "objective": "size_bytes"},
        out=root / "api",
        log=None,
    )
    return model, yaml_run, api_run


def test_optimize_gives_the_yaml_routes_figures(routes):
    model, yaml_run, api_run = routes
    assert api_run.record.config["report"] == {"max_accuracy_drop": 0.02, "relative": False, "objective": "size_bytes"}
    assert api_run.record.model_backend == yaml_run.model_backend
    pairs = {(r.variant, r.format): r for r in yaml_run.results}
    assert {(r.variant, r.format) for r in api_run.record.results} == set(pairs)
    assert {"baseline", "pruned"} <= {v for v, _ in pairs} and {"float32", "int8", "keras"} <= {f for _, f in pairs}
    for r in api_run.record.results:
        y = pairs[(r.variant, r.format)]
        for field in ("accuracy", "val_accuracy", "sparsity"):
            assert getattr(r, field) == pytest.approx(getattr(y, field), abs=1e-6), (r.variant, r.format, field)
        assert r.size_bytes == y.size_bytes, (r.variant, r.format)
        if r.format != "keras":  # a .keras archive holds its save date: its gzip size moves by a few bytes
            assert r.gzip_bytes == y.gzip_bytes, (r.variant, r.format)
    # Not a trivially equal pair: pruning reached its target and the baseline classifies digits.
    pruned = api_run.record.result("pruned", "float32")
    assert pruned.sparsity == pytest.approx(0.5, abs=0.02)
    assert api_run.record.result("baseline", "float32").accuracy > 0.8
    assert api_run.record.dataset.num_val == yaml_run.dataset.num_val > 0
    assert api_run.record.dataset.num_train == yaml_run.dataset.num_train


def test_an_already_trained_model_is_not_retrained(routes):
    model, _, api_run = routes
    saved = [p for p in api_run.models_dir.glob("baseline*") if p.suffix in (".keras", ".h5")]
    assert len(saved) == 1, sorted(p.name for p in api_run.models_dir.iterdir())
    k = keras() if api_run.record.model_backend == "tf_keras" else keras3()
    again = k.models.load_model(saved[0], compile=False)
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(t.epochs_run == 0 for t in api_run.record.training if t.variant == "baseline")


def test_best_honours_the_budget(routes):
    _, _, api_run = routes
    record = api_run.record
    ref = record.result("baseline", "float32")
    best = api_run.best(max_accuracy_drop=0.05)
    assert best is not None and best.format != "keras"
    assert best.val_accuracy >= ref.val_accuracy - 0.05 - 1e-12
    within = [r for r in record.results if r.format != "keras" and r.val_accuracy >= ref.val_accuracy - 0.05 - 1e-12]
    assert best.gzip_bytes == min(r.gzip_bytes for r in within)
    assert api_run.best(max_accuracy_drop=-1) is None  # 100 points better than the baseline: nothing meets it
    by_size = api_run.best(max_accuracy_drop=1.0, by="size_bytes")  # anything goes: the smallest file
    assert by_size.size_bytes == min(r.size_bytes for r in record.results if r.format != "keras")


def test_table_and_html(routes):
    _, _, api_run = routes
    table = api_run.table()
    rows = table.to_dict("records") if hasattr(table, "to_dict") else table
    assert len(rows) == len(api_run.record.results)
    assert {"variant", "format", "accuracy", "val_accuracy", "gzip_bytes", "path"} <= set(rows[0])
    page = api_run._repr_html_()
    assert "<iframe srcdoc=" in page and "tfopt report" in page
    assert api_run.report_path.is_file()


@pytest.mark.parametrize(
    "variants, words",
    [
        ({"pruned": [{"prun": {}}]}, "Unknown transform 'prun'"),
        ({"pruned": [{"prune": {"final_sparsity": 1.5}}]}, "final_sparsity"),
        ({"baseline": ["qat"]}, "'baseline' is reserved"),
    ],
)
def test_bad_variants_give_the_yaml_routes_one_line_error(variants, words, digits, tmp_path):
    model = keras3().Sequential(
        [keras3().Input(digits.input_shape), keras3().layers.Flatten(), keras3().layers.Dense(10)]
    )
    with pytest.raises(TfoptError) as err:
        tfopt.optimize(model, train=(digits.x_train, digits.y_train), test=(digits.x_test, digits.y_test),
                       variants=variants, out=tmp_path)  # fmt: skip
    message = str(err.value)
    assert words in message and "\n" not in message and message.startswith("tfopt.optimize")
    assert not (tmp_path / "reports").exists()  # refused before anything is written


def test_bad_data_is_refused_in_one_line(digits, tmp_path):
    model = keras3().Sequential(
        [keras3().Input(digits.input_shape), keras3().layers.Flatten(), keras3().layers.Dense(10)]
    )
    one_hot = np.eye(10)[digits.y_train]
    with pytest.raises(TfoptError, match="not one-hot") as err:
        tfopt.optimize(model, train=(digits.x_train, one_hot), test=(digits.x_test, digits.y_test), out=tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(TfoptError, match="test= is missing"):
        tfopt.optimize(model, train=(digits.x_train, digits.y_train), out=tmp_path)
    with pytest.raises(TfoptError, match="Not a Keras model"):
        tfopt.optimize(object(), train=(digits.x_train, digits.y_train), test=(digits.x_test, digits.y_test))


def test_a_finished_run_is_refused_again_unless_forced(routes, digits):
    model, _, api_run = routes
    with pytest.raises(TfoptError, match="force") as err:
        tfopt.optimize(model, train=(digits.x_train, digits.y_train), test=(digits.x_test, digits.y_test),
                       variants=VARIANTS, out=api_run.report_path.parents[2], log=None)  # fmt: skip
    assert "\n" not in str(err.value)


def test_tf_data_gives_the_same_splits_and_validation_is_carved_as_the_datasets_do(digits):
    from tfopt.api import in_memory_splits
    from tfopt.data import stratified_split

    model = keras3().Sequential(
        [keras3().Input(digits.input_shape), keras3().layers.Flatten(), keras3().layers.Dense(10)]
    )
    arrays = in_memory_splits(model, (digits.x_train, digits.y_train), (digits.x_test, digits.y_test), seed=3)
    batched = tf().data.Dataset.from_tensor_slices((digits.x_train, digits.y_train)).batch(64)
    pairs = tf().data.Dataset.from_tensor_slices((digits.x_test, digits.y_test))
    from_data = in_memory_splits(model, batched, pairs, seed=3)
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(from_data, part), getattr(arrays, part))
    x_rest, y_rest, x_val, y_val = stratified_split(digits.x_train, digits.y_train, 0.1, 3 + 1)
    np.testing.assert_array_equal(arrays.x_val, x_val)
    np.testing.assert_array_equal(arrays.y_train, y_rest)
    # stratified: every class keeps its share of the validation split, to one example
    share = np.bincount(arrays.y_val, minlength=10) / np.bincount(digits.y_train, minlength=10)
    assert np.all(np.abs(share - 0.1) <= 1 / np.bincount(digits.y_train).min())
    assert arrays.num_classes == 10 and arrays.input_shape == digits.input_shape


def test_checkpoints_of_other_weights_or_data_are_not_resumed(digits):
    """A killed optimize resumes only with the same model and data: the checkpoint fingerprint digests both."""
    k = keras3()
    model = k.Sequential([k.Input(digits.input_shape), k.layers.Flatten(), k.layers.Dense(10)])
    same = pipeline.Given(model=model, splits=digits).fingerprint_parts()
    assert pipeline.Given(model=k.models.clone_model(model), splits=digits).fingerprint_parts() != same
    copy = k.models.clone_model(model)
    copy.set_weights(model.get_weights())
    assert pipeline.Given(model=copy, splits=digits).fingerprint_parts() == same
    fewer = dataclasses.replace(digits, x_test=digits.x_test[:-1], y_test=digits.y_test[:-1])
    assert pipeline.Given(model=model, splits=fewer).fingerprint_parts() != same


@pytest.mark.slow
def test_a_registered_dataset_by_name_gives_the_yaml_routes_figures(routes, tmp_path):
    model, yaml_run, _ = routes
    run = tfopt.optimize(model, train="digits", variants=VARIANTS, export=EXPORT, finetune={"epochs": 1},
                         train_baseline={"epochs": 0, "batch_size": 64}, evaluate={"latency_runs": 0},
                         out=tmp_path, log=None)  # fmt: skip
    assert run.record.dataset.name == "digits"
    for r in run.record.results:
        y = yaml_run.result(r.variant, r.format)
        assert (r.accuracy, r.val_accuracy, r.size_bytes) == pytest.approx(
            (y.accuracy, y.val_accuracy, y.size_bytes), abs=1e-6
        )


@pytest.mark.slow
def test_a_stopped_optimize_resumes_from_its_checkpoints(digits, tmp_path):
    """Stopped after its first variant (an exception from ``log``), it resumes as ``tfopt run`` does."""

    class Stopped(Exception):
        pass

    def stop_after_pruned(line: str) -> None:
        if "done variant pruned" in line:
            raise Stopped

    k = keras3()
    k.utils.set_random_seed(0)
    model = k.Sequential([k.Input(digits.input_shape), k.layers.Flatten(), k.layers.Dense(10, activation="softmax")])
    variants = {"pruned": [{"prune": {"final_sparsity": 0.5}}], "clustered": [{"cluster": {"number_of_clusters": 8}}]}
    kw = dict(
        train=(digits.x_train, digits.y_train), test=(digits.x_test, digits.y_test), export=["float32"],
        variants=variants,
        finetune={"epochs": 1}, train_baseline=1, evaluate={"latency_runs": 0}, out=tmp_path, name="resumed",
    )  # fmt: skip
    with pytest.raises(Stopped):
        tfopt.optimize(model, log=stop_after_pruned, **kw)
    lines: list[str] = []
    run = tfopt.optimize(model, log=lines.append, **kw)
    assert any("resuming from the checkpoints" in line for line in lines)
    restored = {t.variant.split("/")[0]: t.restored for t in run.record.training}
    assert restored == {"baseline": True, "pruned": True, "clustered": False}
