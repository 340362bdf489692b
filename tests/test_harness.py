"""Every registered technique, model, dataset and export format through the shared battery (tests/harness.py).

Registering a component in tfopt adds it here without a new test: the parameters come from the
registries at collection time.
"""

from __future__ import annotations

import pytest

from tfopt import models
from tfopt.data import DATASETS, load
from tfopt.errors import DataError
from tfopt.export import EXPORTERS
from tfopt.models import MODELS
from tfopt.options import options_class
from tfopt.schema import DataConfig, ExportSpec, ModelConfig
from tfopt.transforms import TECHNIQUES

from harness import (
    MODEL_DATA,
    SLOW_MODELS,
    NO_LATENCY,
    check_config_round_trip,
    check_files_hold_the_model,
    check_model,
    check_splits,
    check_technique,
    dataset_fixture,
    smaller,
    technique_example,
)

TECHNIQUE_BACKENDS = [(name, backend) for name, t in TECHNIQUES.items() for backend in t.backends]


@pytest.fixture(scope="module")
def keras3_mlp(digits):
    """A Keras 3 (``import keras``) functional model of built-in layers, trained on real digits."""
    from tfopt._keras import keras3

    k = keras3()
    k.utils.set_random_seed(0)
    inputs = k.Input(digits.input_shape)
    x = k.layers.Flatten()(inputs)
    x = k.layers.Dense(64, activation="relu", name="dense1")(x)
    model = k.Model(
        inputs, k.layers.Dense(digits.num_classes, activation="softmax", name="classifier")(x), name="mlp_k3"
    )
    model.compile(optimizer=k.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(digits.x_train, digits.y_train, epochs=8, batch_size=32, verbose=0)
    return model


@pytest.mark.parametrize("name,backend", TECHNIQUE_BACKENDS, ids=[f"{n}-{b}" for n, b in TECHNIQUE_BACKENDS])
def test_technique(name, backend, trained_small_cnn, keras3_mlp, digits, tmp_path) -> None:
    model = {"tf_keras": trained_small_cnn, "keras3": keras3_mlp}[backend]
    params = technique_example(name, TECHNIQUES.get(name), backend, digits, tmp_path)
    check_technique(name, TECHNIQUES.get(name), backend, model, digits, tmp_path, params)


MODEL_PARAMS = [
    pytest.param(e, id=e.name, marks=[pytest.mark.slow] if e.name in SLOW_MODELS else []) for e in MODELS.entries()
]


@pytest.mark.parametrize("entry", MODEL_PARAMS)
def test_model(entry, request, tmp_path) -> None:
    assert entry.name in MODEL_DATA, (
        f"model {entry.name!r}: add the real data it trains on to tests/harness.py:MODEL_DATA"
    )
    assert entry.tiny, f"model {entry.name!r} registers no tiny options"
    splits = smaller(request.getfixturevalue(MODEL_DATA[entry.name]), 128, 32)
    check_config_round_trip(options_class(entry), dict(entry.tiny))
    model = models.build(ModelConfig(name=entry.name, params=dict(entry.tiny)), splits.input_shape, splits.num_classes)
    check_model(model, splits, tmp_path)


@pytest.mark.parametrize("entry", DATASETS.entries(), ids=lambda e: e.name)
def test_dataset(entry, digits, rt_text, tmp_path) -> None:
    options = dataset_fixture(entry.name, tmp_path, digits, rt_text)
    check_config_round_trip(options_class(entry), options)
    cfg = DataConfig(name=entry.name, **options)
    try:
        splits = load(cfg, seed=0)
    except DataError as e:
        if entry.name == "fashion_mnist":  # a Debian package; `make` installs it where apt and root are available
            pytest.skip(f"fashion_mnist files not installed here: {e}")
        raise
    check_splits(splits, load(cfg, seed=0))


@pytest.mark.parametrize("fmt", list(EXPORTERS))
def test_export_format(fmt, trained_small_cnn, digits, tmp_path) -> None:
    from tfopt.pipeline import export_and_evaluate

    formats = [ExportSpec(format=fmt)]
    evaluation = export_and_evaluate(
        trained_small_cnn, "m", formats, digits, tmp_path, evaluate=NO_LATENCY, log=lambda _: None
    )
    assert not evaluation.not_exported, evaluation.not_exported  # a trained float model exports in every format
    check_files_hold_the_model(trained_small_cnn, evaluation, formats)
    (result,) = [r for r in evaluation.results if r.format == fmt]
    assert result.accuracy >= 0.85, result.accuracy  # real digits test split; every format within a few points of Keras
