"""Keras 3 model files (the default Keras of TensorFlow >= 2.16): recognised by what the file says,
loaded in Keras 3 with safe mode on, and run through a pipeline to the end on real digits.

Both failures of issue 11 are here: a functional Keras 3 model (Conv2D, BatchNormalization, Dense)
saved as ``.keras`` used to fail with a bogus "custom class '__keras_tensor__'", and a Keras 3
Sequential saved as ``.h5`` or ``.keras`` with "Error when deserializing class 'InputLayer'".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfopt.backends import backend_for
from tfopt.errors import ModelError, TransformError
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.models.user_file import file_keras_version, load_model_file


def _functional(k, digits):
    """Conv2D + BatchNormalization + a residual Add + Dense: the layers a user's small CNN has."""
    inputs = k.Input(digits.input_shape)
    x = k.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = k.layers.BatchNormalization(name="bn1")(x)
    x = k.layers.ReLU()(x)
    y = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = k.layers.Add()([x, y])
    x = k.layers.GlobalAveragePooling2D()(x)
    x = k.layers.Dense(32, activation="relu", name="dense1")(x)
    return k.Model(inputs, k.layers.Dense(digits.num_classes, activation="softmax", name="classifier")(x))


def _sequential(k, digits):
    return k.Sequential(
        [
            k.Input(digits.input_shape),
            k.layers.Flatten(),
            k.layers.Dense(32, activation="relu"),
            k.layers.Dense(10, activation="softmax"),
        ]
    )


@pytest.fixture(scope="module")
def keras3_files(digits, tmp_path_factory):
    """Both models trained briefly on real digits, each saved by Keras 3 as .keras and as .h5."""
    from tfopt._keras import keras3

    k = keras3()
    folder = tmp_path_factory.mktemp("keras3_files")
    out = {}
    for name, build in (("functional", _functional), ("sequential", _sequential)):
        k.utils.set_random_seed(0)
        model = build(k, digits)
        model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
        model.fit(digits.x_train, digits.y_train, epochs=6, batch_size=32, verbose=0)
        expected = model.predict(digits.x_test, verbose=0)
        for suffix in (".keras", ".h5"):
            path = folder / f"{name}{suffix}"
            model.save(path)
            out[name, suffix] = (path, expected)
    return out


@pytest.mark.parametrize("name", ["functional", "sequential"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras3_files_load_as_keras3_models(keras3_files, digits, name, suffix) -> None:
    path, expected = keras3_files[name, suffix]
    assert file_keras_version(path, ".keras" if suffix == ".keras" else "HDF5").startswith("3.")
    model = load_model_file(path)
    assert backend_for(model).kind == "keras3"
    np.testing.assert_allclose(model.predict(digits.x_test, verbose=0), expected, atol=1e-6)


PIPELINE = """
name: {name}
data: {{name: digits}}
model: {{path: {path}}}
train: {{epochs: 2, batch_size: 32, verbose: 0}}
finetune: {{epochs: 2, learning_rate: 5.0e-4}}
variants:
  pruned: [{{prune: {{final_sparsity: 0.5, schedule: constant}}}}]
  clustered: [{{cluster: {{number_of_clusters: 8}}}}]
  pruned_2_4: [{{prune: {{sparsity_m_by_n: "2:4"}}}}]
export: [float32, int8]
evaluate: {{latency_runs: 0}}
"""


@pytest.mark.slow  # 19 s (default-run budget); a functional Keras 3 .keras file runs in test_keras3_techniques.py
@pytest.mark.parametrize("name,suffix", [("sequential", ".h5")])
def test_a_keras3_file_runs_a_pipeline_to_the_end(keras3_files, digits, tmp_path, name, suffix) -> None:
    """Trained, pruned and clustered by tfopt's Keras 3 backend; properties read back from the files;
    the variant comes back as a Keras 3 file that plain Keras loads and that predicts what its float32 file does."""
    from tfopt import config, pipeline

    path, _ = keras3_files[name, suffix]
    run = pipeline.run(config.loads(PIPELINE.format(name=f"k3_{name}", path=path)), root=tmp_path, log=lambda _: None)
    assert {t.backend.split(":")[0] for t in run.transforms} == {"keras3"} and len(run.transforms) == 3
    assert run.model_backend == "keras3"
    assert f"{path} (keras3)" in (tmp_path / "reports" / f"k3_{name}" / "report.md").read_text()
    pruned = run.result("pruned", "float32").layers
    assert len(pruned) >= 2 and all(abs(s.sparsity - 0.5) <= 0.02 for s in pruned), pruned
    assert all(s.sparsity >= 0.48 for s in tflite_weight_stats(run.result("pruned", "int8").path))
    clustered = run.result("clustered", "float32").layers
    # A BatchNormalization folded into its conv scales each output channel: 8 values per channel stay 8.
    assert all(s.unique_per_channel <= 8 for s in clustered), clustered
    assert sum(s.unique_values <= 8 for s in clustered) >= 2, clustered  # the Dense kernels: 8 values in all
    two_four = run.result("pruned_2_4", "float32").layers  # Conv2D and Dense: 2 zeros in every 4 input channels
    assert all(s.pattern_2_4 is not False for s in two_four) and sum(bool(s.pattern_2_4) for s in two_four) >= 2, (
        two_four
    )
    assert run.result("pruned", "int8").accuracy >= 0.5  # real digits, 2 + 2 epochs: far above the 10% of chance

    keras_file = Path(run.result("pruned", "keras").path)
    assert keras_file.suffix == ".keras"
    saved = tmp_path / "plain_keras.npy"
    script = (  # a fresh process that never imports tfopt: plain Keras 3 reads the file
        "import sys, numpy as np, keras; "
        "m = keras.saving.load_model(sys.argv[1]); "
        "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0)); "
        "assert 'tfopt' not in sys.modules"
    )
    np.save(tmp_path / "x.npy", digits.x_test)
    proc = subprocess.run([sys.executable, "-c", script, str(keras_file), str(tmp_path / "x.npy"), str(saved)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lite = TfliteRunner(run.result("pruned", "float32").path).predict(digits.x_test)
    assert np.max(np.abs(np.load(saved) - lite)) <= 1e-5


def test_qat_of_a_keras3_model_with_a_custom_layer_or_subclass_names_it(digits) -> None:
    """QAT runs on a tf_keras twin of the model; a layer or model of the user's own class has none."""
    from tfopt._keras import keras3
    from tfopt.pipeline import Recipe, apply_steps
    from tfopt.pipeline.steps import check_variants
    from tfopt.schema import VariantConfig

    k = keras3()

    @k.saving.register_keras_serializable(package="tfopt_tests")  # as a model file's custom class must be
    class Scale(k.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = k.Input(digits.input_shape)
    x = Scale(name="my_scale")(k.layers.Flatten()(inputs))
    custom = k.Model(inputs, k.layers.Dense(digits.num_classes, activation="softmax")(x))
    recipe = Recipe(epochs=1, batch_size=32, learning_rate=5e-4)
    named = r"QAT of layer 'my_scale' \(Scale\): not a built-in Keras layer.*Fix:"
    with pytest.raises(TransformError, match=named):
        apply_steps(custom, ["qat"], digits, recipe, log=lambda _: None)
    variants = {"pqat": VariantConfig.model_validate([{"prune": {"final_sparsity": 0.5}}, "qat"])}
    with pytest.raises(TransformError, match="variant 'pqat': " + named):  # what the pipeline asks before training
        check_variants(variants, "float32", "keras3", custom)

    @k.saving.register_keras_serializable(package="tfopt_tests")
    class Subclassed(k.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flat, self.out = k.layers.Flatten(), k.layers.Dense(digits.num_classes)

        def call(self, x):
            return self.out(self.flat(x))

    model = Subclassed()
    model(digits.x_train[:2])
    with pytest.raises(TransformError, match=r"subclassed model has no graph.*Fix: build it with the functional API"):
        apply_steps(model, ["qat"], digits, recipe, log=lambda _: None)


def test_an_inference_only_savedmodel_is_refused_with_the_fix(keras3_files, tmp_path) -> None:
    from tfopt._keras import keras3

    model = keras3().saving.load_model(keras3_files["functional", ".keras"][0])
    model.export(str(tmp_path / "exported"), format="tf_saved_model", verbose=False)
    with pytest.raises(ModelError, match=r"inference-only SavedModel.*Fix: save the trainable model with model.save"):
        load_model_file(tmp_path / "exported")


def test_an_unregistered_keras3_subclassed_model_is_named_with_the_version_and_the_fix(digits, tmp_path) -> None:
    from tfopt._keras import keras3

    k = keras3()

    class TinyNet(k.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flat, self.out = k.layers.Flatten(), k.layers.Dense(10)

        def call(self, x):
            return self.out(self.flat(x))

    TinyNet.__module__ = "a_module_this_process_cannot_import"
    model = TinyNet()
    model(digits.x_test[:2])
    model.save(tmp_path / "sub.keras")
    with pytest.raises(ModelError) as e:
        load_model_file(tmp_path / "sub.keras")
    message = str(e.value)
    assert "custom class 'TinyNet'" in message and f"a Keras {k.__version__} file" in message
    assert "@keras.saving.register_keras_serializable()" in message and len(message.splitlines()) == 1


def test_a_file_of_an_unknown_keras_version_is_named(keras3_files, tmp_path) -> None:
    import shutil

    import h5py

    path = tmp_path / "old.h5"
    shutil.copy(keras3_files["sequential", ".h5"][0], path)
    with h5py.File(path, "r+") as f:
        f.attrs["keras_version"] = "1.2.2"
    with pytest.raises(
        ModelError, match=r"written by Keras 1\.2\.2; tfopt reads files of Keras 2 \(tf_keras\) and Keras 3"
    ):
        load_model_file(path)


def test_depthwise_separable_transposed_and_custom_kernels_of_a_keras3_model_are_pruned_and_clustered(
    digits, tmp_path
) -> None:
    """Kernels Keras 3 keeps as plain variables (DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, a user's
    own layer): pruned through masks assigned in place, clustered through a property that shadows the
    attribute; sparsity and unique values read back from the exported file."""
    from tfopt._keras import keras3
    from tfopt.pipeline import Recipe, apply_steps, export_and_evaluate
    from tfopt.schema import EvaluateConfig, ExportSpec

    k = keras3()

    @k.saving.register_keras_serializable(package="tfopt_tests")
    class MyDense(k.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, shape):
            self.kernel = self.add_weight(shape=(shape[-1], self.units), name="kernel")

        def call(self, x):
            return k.ops.matmul(x, self.kernel)

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    k.utils.set_random_seed(0)
    inputs = k.Input(digits.input_shape)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = k.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = k.layers.SeparableConv2D(16, 3, padding="same", activation="relu", name="sep")(x)
    x = k.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", name="deconv")(x)
    x = MyDense(16, name="mine")(k.layers.GlobalAveragePooling2D()(x))
    model = k.Model(inputs, k.layers.Dense(digits.num_classes, activation="softmax", name="classifier")(x))
    model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(digits.x_train, digits.y_train, epochs=3, batch_size=32, verbose=0)

    steps = [{"prune": {"final_sparsity": 0.5, "schedule": "constant"}}, {"cluster": {"number_of_clusters": 8}}]
    applied = apply_steps(model, steps, digits, Recipe(epochs=1, batch_size=32, learning_rate=5e-4), log=lambda _: None)
    names = ("conv1", "dw", "sep", "deconv", "mine", "classifier")
    for report in applied.reports:
        assert {d.layer: d.applied for d in report.layers} == dict.fromkeys(names, True), report.layers
    formats = [ExportSpec(format="float32")]
    quiet = EvaluateConfig(latency_runs=0)
    evaluation = export_and_evaluate(applied.model, "dw", formats, digits, tmp_path, evaluate=quiet, log=lambda _: None)
    (f32,) = [r for r in evaluation.results if r.format == "float32"]
    # conv1, the depthwise, the separable's depthwise and pointwise, the transposed conv, mine, classifier
    assert len(f32.layers) == 7, f32.layers
    # A separable conv's depthwise kernel is pruned but not clustered (tfmot clusters the pointwise one): the
    # cluster step fine-tunes it unmasked, as it does every layer it does not cluster.
    kept = [s for s in f32.layers if not s.name.endswith("separable_conv2d/depthwise")]
    assert len(kept) == 6 and all(abs(s.sparsity - 0.5) <= 0.02 for s in kept), f32.layers
    assert all(s.unique_values <= 8 for s in kept), f32.layers  # 8 clusters, zero one of them
    assert f32.max_abs_diff <= 1e-4
