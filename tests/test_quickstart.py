"""Acceptance: pipelines/quickstart.yaml end to end on real digits, numbers read back from files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.weights import overall_sparsity, tflite_weight_stats

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quickstart(quickstart_run):
    return quickstart_run  # tests/conftest.py: run once per session, the report tests read it too


def test_baseline_accuracy_on_real_digits(quickstart) -> None:
    _, run = quickstart
    assert run.result("baseline", "keras").accuracy >= 0.95
    assert run.dataset.name == "digits" and run.dataset.num_test == 359


def test_pruned_int8_sparsity_and_gzip(quickstart) -> None:
    _, run = quickstart
    pruned = run.result("pruned_80", "int8")
    layers = tflite_weight_stats(pruned.path)  # read back from the file, not trusted from run.json
    assert overall_sparsity(layers) >= 0.75
    assert abs(overall_sparsity(layers) - pruned.sparsity) < 1e-6
    assert pruned.gzip_bytes <= 0.5 * run.result("baseline", "float32").gzip_bytes


@pytest.mark.parametrize("variant", ["baseline", "pruned_80"])
def test_int8_size_and_accuracy_vs_float32(quickstart, variant) -> None:
    out, run = quickstart
    f32, i8 = run.result(variant, "float32"), run.result(variant, "int8")
    assert Path(i8.path).stat().st_size <= 0.30 * Path(f32.path).stat().st_size
    assert abs(i8.accuracy - f32.accuracy) <= 0.02
    # the recorded accuracy is reproducible from the file with the real test split
    from tfopt.config import DataConfig
    from tfopt.data import load

    splits = load(DataConfig(name="digits", test_fraction=0.2, val_fraction=0.1), seed=0)
    acc = float(np.mean(TfliteRunner(i8.path).predict(splits.x_test).argmax(-1) == splits.y_test))
    assert acc == pytest.approx(i8.accuracy, abs=1e-6)
    # and so is its validation accuracy (what recommendations are chosen on), on the other split
    val = float(np.mean(TfliteRunner(i8.path).predict(splits.x_val).argmax(-1) == splits.y_val))
    assert val == pytest.approx(i8.val_accuracy, abs=1e-6)
    assert len(splits.y_val) > 0 and not np.array_equal(
        splits.x_val[: len(splits.x_test)], splits.x_test[: len(splits.x_val)]
    )


def test_run_json_has_the_documented_fields(quickstart) -> None:
    out, run = quickstart
    data = json.loads((out / "reports" / "quickstart" / "run.json").read_text())
    assert data["pipeline"] == "quickstart"
    assert {"name", "num_test"} <= data["dataset"].keys()
    formats = {(r["variant"], r["format"]) for r in data["results"]}
    assert formats == {
        (v, f) for v in ("baseline", "pruned_80") for f in ("keras", "float32", "dynamic", "float16", "int8")
    }
    for r in data["results"]:
        assert {
            "variant",
            "format",
            "path",
            "accuracy",
            "size_bytes",
            "gzip_bytes",
            "sparsity",
            "max_abs_diff",
            "latency_ms",
        } <= r.keys()
        assert Path(r["path"]).exists()
        if r["format"] != "keras":
            assert r["max_abs_diff"] <= r["tolerance"]
            assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p90"]
    assert {"tensorflow", "tf-keras", "tensorflow-model-optimization"} <= data["versions"].keys()
    assert [s["name"] for s in data["stages"]][:2] == ["data", "baseline"]
    assert data["validation_failures"] == []
    assert any(d["applied"] for t in data["transforms"] for d in t["layers"])


def test_all_files_of_the_run_timed_in_turn(quickstart) -> None:
    """Every .tflite of the run is timed in the same rounds, after all exports: ratios under the same load."""
    _, run = quickstart
    files = [r for r in run.results if r.format != "keras"]
    assert len(files) == 8
    for r in files:
        assert (r.latency_ms.interleaved, r.latency_ms.rounds, r.latency_ms.runs) == (8, 25, 100)  # the defaults
    names = [s.name for s in run.stages]
    assert names.index("latency") > max(i for i, n in enumerate(names) if n.startswith("export+evaluate"))


def test_report_and_tensorboard_written(quickstart) -> None:
    out, _ = quickstart
    rep = out / "reports" / "quickstart"
    html = (rep / "report.html").read_text()
    assert "data:image/png;base64," in html and "pruned_80" in html
    assert "pruned_80" in (rep / "report.md").read_text()
    assert list((rep / "tensorboard" / "baseline").rglob("events.out.tfevents.*"))
    assert list((rep / "tensorboard" / "pruned_80").rglob("events.out.tfevents.*"))
    assert sorted(p.name for p in (out / "models" / "quickstart").iterdir() if not p.name.startswith(".")) == sorted(
        [f"{v}.keras" for v in ("baseline", "pruned_80")]
        + [f"{v}_{f}.tflite" for v in ("baseline", "pruned_80") for f in ("float32", "dynamic", "float16", "int8")]
    )


def test_report_command_rerenders_without_tensorflow(quickstart, tmp_path) -> None:
    out, _ = quickstart
    run_json = out / "reports" / "quickstart" / "run.json"
    (out / "reports" / "quickstart" / "report.md").unlink()
    code = (
        "import sys; from tfopt.cli import main; rc = main(['report', sys.argv[1]]); "
        "assert 'tensorflow' not in sys.modules, 'report imported TensorFlow'; sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(run_json)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "reports" / "quickstart" / "report.md").exists()


_INSPECT_ALL = """
import contextlib, io, json, sys
from tfopt.cli import main
out = []
for path in sys.argv[1:]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["inspect", path, "--json"]) == 0
    out.append(json.loads(buf.getvalue()))
assert "tensorflow" not in sys.modules, "inspect imported TensorFlow"
print(json.dumps(out))
"""


def test_inspect_shows_what_run_json_recorded_without_tensorflow(quickstart, capsys) -> None:
    """``tfopt inspect --json`` on every quickstart file: the sparsity, quantization, weights and MACs of run.json."""
    out, run = quickstart
    files = [r for r in run.results if r.format != "keras"]
    proc = subprocess.run(
        [sys.executable, "-c", _INSPECT_ALL, *[r.path for r in files]],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for r, info in zip(files, json.loads(proc.stdout)):
        assert info["sparsity"] == pytest.approx(r.sparsity, abs=1e-6), r.path
        assert (info["weights"], info["macs"], info["size_bytes"]) == (r.weights, r.macs, r.size_bytes)
        shown = {row["weight"]["name"]: row["weight"] for row in info["rows"] if row["weight"]}
        assert {n: (w["quantization"], w["sparsity"], w["unique_values"]) for n, w in shown.items()} == {
            layer.name: (layer.quantization, layer.sparsity, layer.unique_values) for layer in r.layers
        }, r.path
        assert [i["dtype"] for i in info["inputs"]] == ["float32"] and info["inputs"][0]["shape"][1:] == [8, 8, 1]
    from tfopt.cli import main

    pruned = run.result("pruned_80", "int8")
    assert main(["inspect", pruned.path]) == 0
    text = capsys.readouterr().out
    assert "int8 per-channel" in text and f"sparsity {pruned.sparsity:.3f}" in text and "CONV_2D" in text
    for bad, expected in ((out / "missing.tflite", "File not found"), (run.result("baseline", "keras").path, "TFL3")):
        assert main(["inspect", str(bad)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("tfopt: error:") and expected in err[0], err
