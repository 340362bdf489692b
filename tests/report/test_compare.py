"""``tfopt compare`` on SYNTHETIC run records: merging, prefixes, reference row, notes, no TensorFlow.

The numbers are made up to check the arithmetic; none is a measurement.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from tfopt.report.compare import compare, merge_runs
from tfopt.results import DatasetInfo, Latency, Result, Run, Stage, Training, load_run

ROOT = Path(__file__).resolve().parents[2]


def _run(pipeline: str, p50_scale: float = 1.0, dataset: str = "synthetic", cpus: int = 2) -> Run:
    def res(variant: str, fmt: str, acc: float, gz: int, p50):
        lat = None if p50 is None else Latency(p50 * p50_scale, p50 * p50_scale * 1.2, p50 * p50_scale, 50, 1)
        return Result(variant, fmt, f"/synthetic/{variant}_{fmt}", acc, gz * 2, gz, 0.0, None, None, lat)

    return Run(
        pipeline=pipeline,
        dataset=DatasetInfo(dataset, 100, 10, 40, 10, [8, 8, 1], "synthetic"),
        results=[
            res("baseline", "float32", 0.90, 40_000, 2.0),
            res("baseline", "int8", 0.89, 10_000, 1.0),
            res("pruned", "int8", 0.88, 5_000, 0.5),
        ],
        transforms=[],
        training=[Training("baseline", 1, 1.0, 100.0, {"loss": 0.5})],
        stages=[Stage("data", 0.1)],
        versions={"tfopt": "0.1.0"},
        machine={"platform": "synthetic", "cpus": cpus},
        config={},
        created="2025-01-01T00:00:00Z",
    )


def _row(md: str, variant: str, fmt: str) -> list[str]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[:2] == [variant, fmt]:
            return cells
    raise AssertionError(f"no row {variant}/{fmt}")


def test_merge_prefixes_everything_with_the_run_name() -> None:
    merged = merge_runs([_run("a"), _run("b")], ["a", "b"])
    assert [r.variant for r in merged.results] == ["a/baseline"] * 2 + ["a/pruned"] + ["b/baseline"] * 2 + ["b/pruned"]
    assert [t.variant for t in merged.training] == ["a/baseline", "b/baseline"]
    assert [s.name for s in merged.stages] == ["a/data", "b/data"]


def test_compare_report_is_relative_to_the_first_baseline(tmp_path: Path) -> None:
    a = _run("fast").save(tmp_path / "a" / "run.json")
    b = _run("slow", p50_scale=2.0).save(tmp_path / "b" / "run.json")
    written = compare([a, b.parent], tmp_path / "cmp")  # a folder holding run.json works too
    md = written["markdown"].read_text(encoding="utf-8")
    speed_up = 12  # the speed-up column (weights, MACs and MACs ratio follow it)
    assert _row(md, "fast/baseline", "float32")[speed_up] == "1.00x"
    assert _row(md, "slow/pruned", "int8")[speed_up] == "2.00x"  # 2.0 ms reference / (0.5 ms * 2)
    assert _row(md, "slow/pruned", "int8")[7] == "8.0x"  # gzip 40,000 / 5,000
    assert "different test sets" not in md and "different machines" not in md
    html = written["html"].read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert set(written) >= {"markdown", "html", "accuracy_vs_size", "latency"}


def test_same_pipeline_twice_gets_distinct_names_and_notes(tmp_path: Path) -> None:
    a = _run("q").save(tmp_path / "a.json")
    b = replace(_run("q", dataset="other", cpus=16)).save(tmp_path / "b.json")
    md = compare([a, b], tmp_path / "cmp")["markdown"].read_text(encoding="utf-8")
    assert _row(md, "q-2/pruned", "int8")
    assert "different test sets" in md and "different machines" in md


def test_compare_never_imports_tensorflow(tmp_path: Path) -> None:
    a = _run("a").save(tmp_path / "a.json")
    code = (
        "import sys; from tfopt.cli import main; "
        f"rc = main(['compare', {str(a)!r}, '--out', {str(tmp_path / 'o')!r}]); "
        "print('TF', 'tensorflow' in sys.modules); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TF False" in proc.stdout and (tmp_path / "o" / "report.html").is_file()
    assert load_run(a).pipeline == "a"  # inputs untouched
