"""run.json through its one typed schema (tfopt.results): what is written loads back equal, version-1
files still load, damaged files fail naming the field, newer files ask for a newer tfopt.

Every record here is SYNTHETIC (made-up or generated values); none is a measurement.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfopt.errors import TfoptError
from tfopt.results import (
    SCHEMA_VERSION,
    DatasetInfo,
    Latency,
    LayerDecision,
    LayerStats,
    NotExported,
    Result,
    Run,
    Stage,
    Training,
    TransformReport,
    load_run,
)

# -- generated records ---------------------------------------------------------------------------

text = st.text(max_size=12)  # hypothesis' text() holds no lone surrogates (see test_undecodable_path_...)
count = st.integers(min_value=0, max_value=2**63)
number = st.floats(allow_nan=False) | st.integers(-(2**53), 2**53)  # an int is a valid float; NaN breaks ==
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
json_object = st.dictionaries(text, json_value, max_size=3)


def opt(s):
    return st.none() | s


latencies = st.builds(
    Latency,
    number,
    number,
    number,
    count,
    count,
    p99=opt(number),
    batch=count,
    warmup=opt(count),
    throughput=opt(number),
)
layer_stats = st.builds(
    LayerStats,
    text,
    count,
    number,
    count,
    text,
    layer=opt(text),
    quantized=opt(st.booleans()),
    quantization=opt(text),
    channels=opt(count),
    unique_per_channel=opt(count),
    pattern_2_4=opt(st.booleans()),
)
results = st.builds(
    Result,
    text,
    text,
    text,
    number,
    count,
    count,
    number,
    opt(number),
    opt(number),
    opt(latencies),
    layers=st.lists(layer_stats, max_size=2),
    details=json_object,
)
trainings = st.builds(
    Training,
    text,
    count,
    number,
    number,
    st.dictionaries(text, number, max_size=3),
    strategy=opt(text),
    replicas=count,
    global_batch_size=opt(count),
    precision=text,
    initial_epoch=count,
    restored=st.booleans(),
)
transform_reports = st.builds(
    TransformReport,
    text,
    text,
    json_object,
    text,
    layers=st.lists(st.builds(LayerDecision, text, st.booleans(), text), max_size=2),
)
runs = st.builds(
    Run,
    text,
    st.builds(DatasetInfo, text, count, count, count, count, st.lists(count, max_size=3), text),
    st.lists(results, max_size=2),
    st.lists(transform_reports, max_size=2),
    st.lists(trainings, max_size=2),
    st.lists(st.builds(Stage, text, number), max_size=2),
    st.dictionaries(text, text, max_size=2),
    json_object,
    json_object,
    text,
    validation_failures=st.lists(text, max_size=2),
    not_exported=st.lists(st.builds(NotExported, text, text, text), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(run=runs)
def test_every_record_written_loads_back_equal(tmp_path_factory, run: Run) -> None:
    path = run.save(tmp_path_factory.getbasetemp() / "roundtrip" / "run.json")
    loaded = load_run(path)
    assert loaded == run  # an int given for a float field comes back as the equal float
    assert load_run(loaded.save(path)).to_json() == loaded.to_json()


# -- fixed records -------------------------------------------------------------------------------


def _run(**result_changes) -> Run:
    result = Result(
        "baseline",
        "int8",
        "m.tflite",
        0.9,
        1000,
        800,
        0.5,
        0.01,
        0.5,
        Latency(1.0, 1.5, 1.1, 50, 1),
        [LayerStats("m/conv1/Conv2D", 144, 0.5, 100, "INT8")],
    )
    return Run(
        "p",
        DatasetInfo("digits", 10, 2, 5, 10, [8, 8, 1], "sklearn"),
        [dataclasses.replace(result, **result_changes)],
        [],
        [Training("baseline", 2, 1.0, 100.0, {"loss": 0.5})],
        [Stage("data", 0.1)],
        {"tfopt": "0.1.0"},
        {},
        {},
        "now",
    )


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_non_finite_floats_round_trip(tmp_path: Path) -> None:
    loaded = load_run(_run(max_abs_diff=math.nan, tolerance=math.inf).save(tmp_path / "run.json"))
    assert math.isnan(loaded.results[0].max_abs_diff) and loaded.results[0].tolerance == math.inf


def test_undecodable_path_is_written_with_a_replacement_and_loads(tmp_path: Path) -> None:
    path = "/reports/caf\udce9/m.tflite"  # how Python decodes a non-UTF-8 file name
    loaded = load_run(_run(path=path).save(tmp_path / "run.json"))
    assert loaded.results[0].path == "/reports/caf?/m.tflite"


# A record as the first tfopt (schema version 1) wrote it: none of the fields added later.
V1_RECORD = {
    "pipeline": "quickstart",
    "dataset": {
        "name": "digits",
        "num_train": 10,
        "num_val": 2,
        "num_test": 5,
        "num_classes": 10,
        "input_shape": [8, 8, 1],
        "source": "sklearn",
    },
    "results": [
        {
            "variant": "baseline",
            "format": "float32",
            "path": "m.tflite",
            "accuracy": 1,
            "size_bytes": 1000,
            "gzip_bytes": 900,
            "sparsity": 0,
            "max_abs_diff": 0,
            "tolerance": 0.0001,
            "latency_ms": {"p50": 1, "p90": 2.5, "mean": 1.5, "runs": 50, "threads": 1},
            "layers": [{"name": "conv", "size": 144, "sparsity": 0.5, "unique_values": 70, "dtype": "float32"}],
        }
    ],
    "transforms": [
        {
            "variant": "pruned",
            "transform": "prune",
            "params": {"target_sparsity": 0.8},
            "backend": "tfmot",
            "layers": [{"layer": "conv", "applied": True, "reason": ""}],
        }
    ],
    "training": [
        {
            "variant": "baseline",
            "epochs_run": 3,
            "seconds": 2,
            "examples_per_second": 10.5,
            "final": {"loss": 0.1, "accuracy": 1},
        }
    ],
    "stages": [{"name": "data", "seconds": 0.1}],
    "versions": {"tfopt": "0.1.0"},
    "machine": {"cpus": 2},
    "config": {"name": "quickstart"},
    "created": "2025-01-01",
    "validation_failures": [],
    "schema_version": 1,
}


def test_version_1_record_loads_with_defaults(tmp_path: Path) -> None:
    run = load_run(_write(tmp_path, V1_RECORD))
    assert run.schema_version == SCHEMA_VERSION == 4  # upgraded in memory
    assert run.not_exported == [] and run.results[0].details == {}
    assert run.results[0].accuracy == 1.0 and isinstance(run.results[0].accuracy, float)
    assert run.results[0].latency_ms == Latency(1.0, 2.5, 1.5, 50, 1, p99=None, batch=1, warmup=None, throughput=None)
    assert run.results[0].layers[0].quantized is None and run.results[0].layers[0].layer is None
    t = run.training[0]
    assert (t.strategy, t.replicas, t.global_batch_size, t.precision, t.initial_epoch, t.restored) == (
        None,
        1,
        None,
        "float32",
        0,
        False,
    )
    assert load_run(run.save(tmp_path / "v4" / "run.json")) == run  # and it writes back as version 4
    assert json.loads((tmp_path / "v4" / "run.json").read_text())["schema_version"] == 4


def test_version_2_record_loads_without_macs(tmp_path: Path) -> None:
    """Version 3 added Result.macs and Result.weights: a version-2 file loads with both None."""
    run = load_run(_write(tmp_path, {**V1_RECORD, "schema_version": 2}))
    assert run.schema_version == 4
    assert (run.results[0].macs, run.results[0].weights) == (None, None)


def test_version_3_record_loads_without_val_accuracy(tmp_path: Path) -> None:
    """Version 4 added Result.val_accuracy: a version-3 file loads with None (nothing to choose a file on)."""
    run = load_run(_write(tmp_path, {**V1_RECORD, "schema_version": 3}))
    assert run.schema_version == 4
    assert run.results[0].val_accuracy is None


def test_record_without_schema_version_reads_as_version_1(tmp_path: Path) -> None:
    data = {k: v for k, v in V1_RECORD.items() if k != "schema_version"}
    assert load_run(_write(tmp_path, data)).results[0].gzip_bytes == 900


def _damaged(path: tuple, value):
    data = json.loads(json.dumps(V1_RECORD))
    data["schema_version"] = 2
    *parents, last = path
    target = data
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    "path,value,needles",
    [
        (("results", 0, "accuracy"), "high", ["results[0].accuracy: input should be a valid number, got 'high'"]),
        (("results", 0, "size_bytes"), "1000", ["results[0].size_bytes: input should be a valid integer, got '1000'"]),
        (("results", 0, "size_bytes"), 1000.5, ["results[0].size_bytes"]),
        (
            ("results", 0, "gzip_bytes"),
            -1,
            ["results[0].gzip_bytes: input should be greater than or equal to 0, got -1"],
        ),
        (("results", 0, "layers", 0, "size"), -5, ["results[0].layers[0].size"]),
        (("results", 0, "layers", 0, "quantized"), 1, ["results[0].layers[0].quantized"]),
        (
            ("results", 0, "latency_ms", "runs"),
            True,
            ["results[0].latency_ms.runs: input should be a valid integer, got True"],
        ),
        (("results", 0, "latency_ms", "p50"), False, ["results[0].latency_ms.p50"]),
        (("results", 0, "latency_ms"), [1.0], ["results[0].latency_ms"]),
        (("results", 0, "details"), "x", ["results[0].details"]),
        (("results", 0, "acuracy"), 0.9, ["unknown field results[0].acuracy"]),
        (("results", 0, "variant"), KeyError, ["missing field results[0].variant"]),
        (("training", 0, "final", "val loss"), "low", ["training[0].final['val loss']"]),
        (("dataset", "input_shape", 1), None, ["dataset.input_shape[1]"]),
        (("dataset",), [], ["dataset: input should be an object"]),
        (("versions", "tfopt"), 1, ["versions.tfopt"]),
        (("stages", 0), "data", ["stages[0]"]),
        (("schema_version",), "2", ["schema_version: should be a whole number from 1 to 4, got '2'"]),
        (("schema_version",), 0, ["schema_version"]),
    ],
)
def test_damaged_record_fails_naming_the_field(tmp_path: Path, path, value, needles) -> None:
    with pytest.raises(TfoptError) as e:
        load_run(_write(tmp_path, _damaged(path, value)))
    message = str(e.value)
    assert (
        "\n" not in message
        and "does not match schema version" in message
        and message.endswith("Fix: pass an undamaged run.json, or run the pipeline again to write a new one.")
    )
    for needle in needles:
        assert needle in message


def test_version_1_negative_gzip_is_refused_as_damage(tmp_path: Path) -> None:
    data = json.loads(json.dumps(V1_RECORD))
    data["results"][0]["gzip_bytes"] = -1
    with pytest.raises(
        TfoptError, match=r"schema version 1 \(results\[0\]\.gzip_bytes: input should be greater than or equal to 0"
    ):
        load_run(_write(tmp_path, data))


def test_many_problems_stay_on_one_line(tmp_path: Path) -> None:
    data = _damaged(("results", 0, "accuracy"), "x")
    data["results"][0].update(path=3, size_bytes=-2, sparsity=None)
    del data["dataset"]
    with pytest.raises(TfoptError) as e:
        load_run(_write(tmp_path, data))
    assert "\n" not in str(e.value) and "; and 2 more)" in str(e.value)


def test_newer_record_asks_for_a_newer_tfopt(tmp_path: Path) -> None:
    data = {**V1_RECORD, "schema_version": SCHEMA_VERSION + 1, "versions": {"tfopt": "9.0.0"}, "new_field": 1}
    with pytest.raises(
        TfoptError,
        match=r"written by a newer tfopt \(9\.0\.0\): run.json schema version 5, this tfopt .* reads "
        r"versions 1 to 4\. Fix: upgrade tfopt to 9\.0\.0 or later",
    ):
        load_run(_write(tmp_path, data))


def test_invalid_record_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"results\[0\]\.gzip_bytes: input should be greater than or equal to 0, got -1\); not written"
    ):
        _run(gzip_bytes=-1).save(tmp_path / "run.json")
    assert not (tmp_path / "run.json").exists()
    with pytest.raises(ValueError, match="schema_version"):
        dataclasses.replace(_run(), schema_version=1).to_json()
