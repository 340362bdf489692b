"""Every technique on a user's model file, for both Keras kinds: the same properties read back from the files.

One small model with the layers users' CNNs have (Conv2D + BatchNormalization + ReLU, a depthwise
conv, a residual Add, pooling, Flatten, Dense), trained on real digits and saved by Keras 3
(``.keras``, and ``.h5`` in the slow run) or by tf_keras, then pruned (magnitude and 2:4),
clustered, and quantization-aware trained alone and after prune (PQAT) and prune + cluster (PCQAT),
exported to float32 and int8. Keras 3 models are pruned and clustered by tfopt's Keras 3 backend and
QAT-trained by tfmot on their exact tf_keras twin (tfopt.backends.translate).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfopt.evaluate.litert import TfliteRunner

PIPELINE = """
name: {name}
data: {{name: digits}}
model: {{path: {path}}}
train: {{epochs: 0, verbose: 0}}
finetune: {{epochs: 1, learning_rate: 5.0e-4, batch_size: 32}}
variants:
  pruned: [{{prune: {{final_sparsity: 0.5, schedule: constant}}}}]
  pruned_2_4: [{{prune: {{sparsity_m_by_n: "2:4"}}}}]
  clustered: [{{cluster: {{number_of_clusters: 8}}}}]
  qat: [qat]
  pqat: [{{prune: {{final_sparsity: 0.5, schedule: constant}}}}, qat]
  pcqat: [{{prune: {{final_sparsity: 0.5, schedule: constant}}}}, {{cluster: {{number_of_clusters: 8}}}}, qat]
export: [float32, int8]
evaluate: {{latency_runs: 0}}
"""

KINDS = [
    pytest.param("keras3", ".keras", id="keras3-keras"),
    # slow: the default run covers tf_keras files of every technique in tests/transforms (test_collaborative.py)
    pytest.param("tf_keras", ".keras", id="tf_keras-keras", marks=pytest.mark.slow),
    pytest.param("keras3", ".h5", id="keras3-h5", marks=pytest.mark.slow),
]


def _residual_cnn(k, digits):
    inputs = k.Input(digits.input_shape)
    h = k.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
    h = k.layers.BatchNormalization(name="bn1")(h)
    h = k.layers.ReLU(name="relu1")(h)
    b = k.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(h)
    b = k.layers.Conv2D(16, 1, name="pw")(b)
    h = k.layers.Add(name="residual")([h, b])
    h = k.layers.MaxPooling2D(name="pool")(h)
    h = k.layers.Flatten(name="flatten")(h)
    h = k.layers.Dense(64, activation="relu", name="dense1")(h)
    return k.Model(inputs, k.layers.Dense(digits.num_classes, activation="softmax", name="classifier")(h))


@pytest.fixture(scope="module")
def model_files(digits, tmp_path_factory):
    """``(kind, suffix) -> path``: the model trained on real digits and saved by that Keras, made on first use."""
    from tfopt._keras import keras, keras3

    folder, files = tmp_path_factory.mktemp("kinds"), {}

    def get(kind: str, suffix: str) -> Path:
        if (kind, suffix) not in files:
            k = keras3() if kind == "keras3" else keras()
            k.utils.set_random_seed(0)
            model = _residual_cnn(k, digits)
            model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
            model.fit(digits.x_train, digits.y_train, epochs=8, batch_size=32, verbose=0)
            files[kind, suffix] = folder / f"{kind}{suffix}"
            model.save(files[kind, suffix])
        return files[kind, suffix]

    return get


def _kernels(result, depthwise: bool = True):
    return [s for s in result.layers if depthwise or "dw" not in (s.layer or s.name)]


@pytest.mark.parametrize("kind,suffix", KINDS)
def test_every_technique_on_a_model_file_of_either_keras(model_files, digits, tmp_path, kind, suffix) -> None:
    from tfopt import config, pipeline

    path = model_files(kind, suffix)
    text = PIPELINE.format(name=f"kinds_{kind}", path=path)
    run = pipeline.run(config.loads(text), root=tmp_path, log=lambda _: None)
    assert run.model_backend == kind
    steps = {(t.variant, t.transform): t.backend for t in run.transforms}
    if kind == "keras3":  # native Keras 3 prune/cluster; QAT by tfmot on the tf_keras twin
        assert steps["pcqat", "prune"].startswith("keras3:") and steps["pcqat", "cluster"].startswith("keras3:")
        assert steps["pcqat", "qat"].startswith("keras3 -> tf_keras twin") and "PCQAT" in steps["pcqat", "qat"]
    base = run.result("baseline", "float32")

    for fmt in ("float32", "int8"):
        # tfmot leaves a DepthwiseConv2D alone (its registry lists no weight); tfopt's Keras 3 backend prunes it.
        pruned = _kernels(run.result("pruned", fmt), depthwise=kind == "keras3")
        assert len(pruned) == 4 + (kind == "keras3") and all(abs(s.sparsity - 0.5) <= 0.02 for s in pruned), (
            fmt,
            pruned,
        )
        # pw, dense1, classifier: 2 zeros in every 4 input channels (conv1 has 1 input channel, dw none to group)
        two_four = run.result("pruned_2_4", fmt).layers
        assert sum(bool(s.pattern_2_4) for s in two_four) == 3 and not any(s.pattern_2_4 is False for s in two_four)
    # A BatchNormalization folded into conv1 scales each output channel: 8 values per channel stay 8.
    # tfopt's Keras 3 backend clusters the DepthwiseConv2D kernel too; tfmot does not.
    clustered = _kernels(run.result("clustered", "float32"), depthwise=kind == "keras3")
    assert len(clustered) == 4 + (kind == "keras3") and all(s.unique_per_channel <= 8 for s in clustered), clustered
    assert all(s.unique_values <= 8 for s in clustered if "dense" in s.name or "classifier" in s.name), clustered

    qat = run.result("qat", "int8")
    assert qat.accuracy >= base.accuracy - 0.01, (qat.accuracy, base.accuracy)  # within 1 point of float
    assert all(s.quantized for s in qat.layers) and len(qat.layers) == 5
    # tfmot's PQAT/PCQAT keep the zeros and clusters of Conv2D and Dense kernels (not of a DepthwiseConv2D).
    pqat = _kernels(run.result("pqat", "int8"), depthwise=False)
    assert len(pqat) == 4 and all(abs(s.sparsity - 0.5) <= 0.02 for s in pqat), pqat
    pcqat = _kernels(run.result("pcqat", "int8"), depthwise=False)
    assert len(pcqat) == 4 and all(abs(s.sparsity - 0.5) <= 0.02 for s in pcqat), pcqat
    assert all(s.unique_per_channel <= 8 for s in pcqat), pcqat
    assert run.result("pcqat", "int8").accuracy >= base.accuracy - 0.03

    depthwise = {d.layer: d.reason for t in run.transforms if t.variant == "pqat" and t.transform == "qat"
                 for d in t.layers}  # fmt: skip
    assert "preserves no zeros" in depthwise["dw"]
    report = (tmp_path / "reports" / f"kinds_{kind}" / "report.md").read_text()
    assert ("Keep their int8 .tflite files" in report) == (kind == "keras3")
    _returned_model_loads_in_plain_keras(run, digits, tmp_path, kind)


def _returned_model_loads_in_plain_keras(run, digits, tmp_path: Path, kind: str) -> None:
    """The pruned and clustered variants come back in the user's Keras, predicting what their float32 file does."""
    if kind != "keras3":
        return
    np.save(tmp_path / "x.npy", digits.x_test)
    script = (  # a fresh process that never imports tfopt: plain Keras 3 reads the files
        "import sys, numpy as np, keras; x = np.load(sys.argv[1]); "
        "[np.save(p + '.npy', keras.saving.load_model(p).predict(x, verbose=0)) for p in sys.argv[2:]]; "
        "assert 'tfopt' not in sys.modules"
    )
    paths = [run.result(v, "keras").path for v in ("pruned", "clustered")]
    assert all(p.endswith(".keras") for p in paths)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.npy"), *paths],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for variant, p in zip(("pruned", "clustered"), paths):
        lite = TfliteRunner(run.result(variant, "float32").path).predict(digits.x_test)
        assert np.max(np.abs(np.load(p + ".npy") - lite)) <= 1e-5, variant
