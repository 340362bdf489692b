"""The CLI: clear one-line errors with non-zero exit, no traceback, and `tfopt list`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_quiet import native_lines

ROOT = Path(__file__).resolve().parents[1]
QUICK = (ROOT / "pipelines" / "quickstart.yaml").read_text()


def tfopt(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a user's own level would win
    return subprocess.run(
        [sys.executable, "-m", "tfopt", *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=env
    )


@pytest.mark.parametrize(
    "old,new,expected",
    [
        (
            "train: {epochs: 25,",
            "train: {epoch: 25,",
            "quickstart.yaml:7: unknown key 'train.epoch'. Did you mean 'epochs'?",
        ),
        ("data: {name: digits,", "data: {name: digitz,", "Unknown dataset 'digitz'. Did you mean 'digits'?"),
        ("model: {name: small_cnn}", "model: {path: missing.keras}", "Model file not found: missing.keras"),
        ("final_sparsity: 0.8", "final_sparsity: 1.5", "Received: final_sparsity=1.5"),
        ("{prune:", "{prun:", "Unknown transform 'prun'. Did you mean 'prune'?"),
    ],
)
def test_bad_pipelines_fail_with_one_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in QUICK
    bad = tmp_path / "quickstart.yaml"
    bad.write_text(QUICK.replace(old, new))
    proc = tfopt("run", str(bad), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tfopt: error:")]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert native_lines(proc.stdout + proc.stderr) == [], "TensorFlow's start-up lines are hidden by default"
    assert not (tmp_path / "reports" / "quickstart" / "run.json").exists()


def test_verbose_shows_tensorflows_start_up_lines(tmp_path: Path) -> None:
    """What the default hides is there with --verbose (after the command), with the error line still last."""
    bad = tmp_path / "q.yaml"
    bad.write_text(QUICK.replace("model: {name: small_cnn}", "model: {path: missing.keras}"))  # fails after TF's import
    proc = tfopt("run", str(bad), "--out", str(tmp_path), "--verbose")
    assert proc.returncode == 2 and native_lines(proc.stderr), proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("tfopt: error: Model file not found")


def test_debug_shows_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "q.yaml"
    bad.write_text(QUICK.replace("data: {name: digits,", "data: {name: digitz,"))
    proc = tfopt("--debug", "run", str(bad))
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_list_shows_registries() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tfopt", "list"], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env=dict(os.environ, COLUMNS="120"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name in ("digits", "mnist_5k", "fashion_mnist", "npz", "image_folder", "small_cnn", "prune", "int8", "float16"):
        assert name in proc.stdout
    assert "`" not in proc.stdout  # plain text, no reStructuredText
    entries = [line for line in proc.stdout.splitlines() if line.startswith("  ") and line[2] != " "]
    assert len(entries) >= 25
    described = [line[2:].split(" ", 1) for line in entries]
    assert all(len(parts) == 2 and parts[1].strip() for parts in described), "every entry has a description"
    assert len({len(line) - len(parts[1].lstrip()) for line, parts in zip(entries, described)}) == 1, "one column"
    assert max(len(line) for line in proc.stdout.splitlines()) <= 120


def test_list_aligns_and_wraps_any_name_length() -> None:
    from tfopt.cli import describe, format_listing

    assert describe("Uses ``x`` and `y` (:class:`Z`).\n    More on\n    two lines.\n\n    Args: ...") == (
        "Uses x and y (Z). More on two lines."
    )
    long = "a_dataset_with_a_very_long_name_of_40_chr"
    text = format_listing([("datasets", [("digits", "word " * 30), (long, "short")])], width=80)
    lines = text.splitlines()
    starts = {line.index("word") if "word" in line else line.index("short") for line in lines[1:]}
    assert starts == {2 + len(long) + 2}  # one column past the longest name, continuation lines included
    assert len(lines) > 3 and all(len(line) <= 2 + len(long) + 2 + 40 for line in lines)  # wrapped, 40 chars kept


def test_report_of_missing_run_is_clear(tmp_path: Path) -> None:
    proc = tfopt("report", str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and "Run file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_tolerance_miss_fails_the_run_but_keeps_the_report(tmp_path: Path) -> None:
    """A float16 file cannot match Keras to 1e-9: the run must fail, with the report still written."""
    cfg = tmp_path / "tol.yaml"
    cfg.write_text(
        "name: tol\ndata: {name: digits}\nmodel: {name: small_cnn, params: {filters: 4, dense: 16}}\n"
        "train: {epochs: 1, verbose: 0}\nexport: [float32, {float16: {tolerance: 1.0e-9}}]\n"
        "evaluate: {latency_runs: 5}\n"
    )
    proc = tfopt("run", str(cfg), "--out", str(tmp_path))  # a whole tiny run with default settings
    assert proc.returncode == 2, proc.stderr
    assert native_lines(proc.stdout + proc.stderr) == [], "TensorFlow's native logger printed: " + proc.stderr
    assert "[tfopt] > latency" in proc.stdout and "[tfopt] report:" in proc.stdout
    assert "baseline/float16: max |Keras - TFLite|" in proc.stderr and "exceeds the tolerance 1e-09" in proc.stderr
    assert (tmp_path / "reports" / "tol" / "run.json").exists() and (
        tmp_path / "reports" / "tol" / "report.html"
    ).exists()
