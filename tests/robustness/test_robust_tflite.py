"""Corrupt, truncated and wrong files given to ``tfopt benchmark`` and ``tfopt compare``.

Each case runs in its own process, so a crash inside LiteRT's C++ (a segfault) would show as a
failed exit status here rather than take the test run down.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robust_helpers import assert_one_line_error, files_under, run_cli


@pytest.fixture(scope="module")
def good(tiny_tflite) -> bytes:
    return tiny_tflite["float32"].read_bytes()


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.5, 0.9, 0.999])
def test_benchmark_truncated_tflite(tmp_path: Path, good: bytes, fraction: float) -> None:
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(good[: int(len(good) * fraction)])
    assert_one_line_error(
        run_cli("benchmark", str(bad), "--runs", "3"),
        "Not a valid .tflite",
        "truncated or corrupt",
        "Fix: export it again",
    )


@pytest.mark.parametrize("damage", ["garbage", "flipped_header", "zeroed_middle", "keras_zip"])
def test_benchmark_corrupt_tflite(tmp_path: Path, good: bytes, damage: str) -> None:
    data = {
        "garbage": b"not a model" * 50,
        "flipped_header": good[:4] + b"XXXX" + good[8:],
        "zeroed_middle": good[: len(good) // 4] + b"\x00" * (len(good) // 2) + good[3 * len(good) // 4 :],
        "keras_zip": b"PK\x03\x04" + b"\x00" * 200,
    }[damage]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(data)
    proc = run_cli("benchmark", str(bad), "--runs", "3", "--no-memory")
    if damage == "zeroed_middle" and proc.returncode == 0:
        # Zeroing weight bytes can leave a structurally valid file (only weight values changed):
        # then it must still run and say so, not crash.
        assert "p50 (ms)" in proc.stdout
        return
    assert_one_line_error(proc, "Fix: export it again")


def test_benchmark_missing_and_folder(tmp_path: Path, tiny_tflite) -> None:
    assert_one_line_error(
        run_cli("benchmark", str(tmp_path / "nope.tflite")), "TFLite file not found", "Fix: check the path"
    )
    assert_one_line_error(run_cli("benchmark", str(tmp_path)), "is a folder, not a .tflite file", "Fix:")
    assert_one_line_error(
        run_cli("benchmark", str(tiny_tflite["float32"]), "--vs", str(tmp_path / "other.tflite")),
        "TFLite file not found",
    )


def test_benchmark_bad_counts_and_data(tmp_path: Path, tiny_tflite) -> None:
    model = str(tiny_tflite["float32"])
    assert_one_line_error(run_cli("benchmark", model, "--runs", "0"), "runs must be at least 1", "Received: runs=0")
    assert_one_line_error(run_cli("benchmark", model, "--batch", "0"), "batch must be at least 1")
    np.savez(tmp_path / "big.npz", x=np.zeros((4, 28, 28), np.float32))
    assert_one_line_error(
        run_cli("benchmark", model, "--data", str(tmp_path / "big.npz")),
        "expects inputs of shape (8, 8, 1)",
        "the data's are (28, 28, 1)",
        "Fix:",
    )
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04broken")
    assert_one_line_error(run_cli("benchmark", model, "--data", str(tmp_path / "broken.npz")), "Cannot read", "Fix:")
    assert_one_line_error(
        run_cli("benchmark", model, "--data", "digitz"), "neither an .npz file nor a registered dataset", "digits"
    )


def _good_run_json(tmp_path: Path) -> Path:
    from tfopt.results import DatasetInfo, Result, Run

    run = Run(
        "r",
        DatasetInfo("d", 1, 1, 1, 2, [8, 8, 1], "s"),
        [Result("baseline", "float32", "p", 0.5, 1, 1, 0.0, 0.0, 1e-4, None)],
        [],
        [],
        [],
        {},
        {},
        {},
        "2025-01-01",
    )
    return run.save(tmp_path / "good" / "run.json")


@pytest.mark.parametrize(
    "content,needles",
    [
        (None, ["Run file not found", "Fix:"]),
        ('{"pipeline": "r", "results": [', ["is not valid JSON", "Fix:"]),
        ("\x00\x01\x02", ["is not valid JSON"]),
        ("[1, 2]", ["is not a tfopt run record", "Fix:"]),
        ('{"pipeline": "r", "results": []}', ["does not match schema", "Fix:"]),
        ('{"pipeline": "r", "results": [1], "dataset": {}}', ["does not match schema"]),
        ("TRUNCATE", ["is not valid JSON"]),
        ("TYPES", ["does not match schema", "accuracy"]),
    ],
    ids=[
        "missing",
        "cut_json",
        "binary",
        "a_list",
        "no_dataset",
        "results_not_objects",
        "truncated_real",
        "wrong_types",
    ],
)
def test_compare_bad_run_json(tmp_path: Path, content, needles) -> None:
    good = _good_run_json(tmp_path)
    bad = tmp_path / "run.json"
    if content == "TRUNCATE":
        bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    elif content == "TYPES":
        data = json.loads(good.read_text())
        data["results"][0]["accuracy"] = "high"
        bad.write_text(json.dumps(data))
    elif content is not None:
        bad.write_text(content, encoding="utf-8", errors="surrogateescape")
    out = tmp_path / "cmp"
    assert_one_line_error(run_cli("compare", str(good), str(bad), "--out", str(out)), *needles)
    assert files_under(out) == []
    assert_one_line_error(run_cli("report", str(bad)), *needles)  # the same reader serves `tfopt report`


def test_compare_given_a_tflite(tmp_path: Path, tiny_tflite) -> None:
    out = tmp_path / "cmp"
    assert_one_line_error(
        run_cli("compare", str(_good_run_json(tmp_path)), str(tiny_tflite["int8"]), "--out", str(out)),
        "is a .tflite model, not a run record",
        "tfopt benchmark",
    )
    truncated = tmp_path / "half.tflite"
    truncated.write_bytes(tiny_tflite["int8"].read_bytes()[:100])
    assert_one_line_error(run_cli("compare", str(truncated), "--out", str(out)), "is a .tflite model")
    assert files_under(out) == []
