"""Rendering mechanics of tfopt.report on a SYNTHETIC run record.

Every number below is made up to check the renderer's arithmetic and output format; none of it is
a measurement of any model.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tfopt.errors import TfoptError
from tfopt.report import render
from tfopt.report.plots import shorten_layer_names
from tfopt.results import (
    DatasetInfo,
    Latency,
    LayerDecision,
    LayerStats,
    Result,
    Run,
    Stage,
    Training,
    TransformReport,
    load_run,
)

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Synthetic numbers: (variant, format) -> (accuracy, size_bytes, gzip_bytes, sparsity, p50, p90)
SYNTHETIC = {
    ("baseline", "keras"): (0.950, 120_000, 100_000, 0.00, None, None),
    ("baseline", "float32"): (0.950, 41_000, 40_000, 0.00, 2.0, 2.5),
    ("baseline", "int8"): (0.945, 11_000, 10_000, 0.00, 1.0, 1.3),
    ("pruned", "keras"): (0.940, 120_000, 60_000, 0.50, None, None),
    ("pruned", "float32"): (0.940, 41_000, 12_000, 0.50, 1.9, 2.4),
    ("pruned", "int8"): (0.938, 11_000, 5_000, 0.50, 0.8, 1.0),
}
LAYER_NAMES = [
    "sequential/conv2d/Conv2D",
    "sequential/dense/MatMul;sequential/dense/BiasAdd",
    "sequential/dense_1/MatMul",
]


def _synthetic_run(variant_names: dict[str, str] | None = None) -> Run:
    names = variant_names or {}
    results = []
    for (variant, fmt), (acc, size, gz, sp, p50, p90) in SYNTHETIC.items():
        layers = [
            LayerStats(n, 1000 * (i + 1), sp, 200 if fmt == "int8" else 900, "int8" if fmt == "int8" else "float32")
            for i, n in enumerate(LAYER_NAMES)
        ]
        results.append(
            Result(
                variant=names.get(variant, variant),
                format=fmt,
                path=f"/synthetic/{variant}.{fmt}",
                accuracy=acc,
                size_bytes=size,
                gzip_bytes=gz,
                sparsity=sp,
                max_abs_diff=None if fmt == "keras" else 1e-6,
                tolerance=None if fmt == "keras" else 1e-5,
                latency_ms=None if p50 is None else Latency(p50=p50, p90=p90, mean=p50 * 1.1, runs=50, threads=1),
                layers=layers,
            )
        )
    pruned = names.get("pruned", "pruned")
    return Run(
        pipeline="synthetic_report_test",
        dataset=DatasetInfo("synthetic", 100, 20, 50, 10, [8, 8, 1], "synthetic numbers (tests)"),
        results=results,
        transforms=[
            TransformReport(
                pruned,
                "prune",
                {"target_sparsity": 0.5, "schedule": "polynomial"},
                "tfmot",
                [
                    LayerDecision("conv2d", True),
                    LayerDecision("dense", True),
                    LayerDecision("flatten", False, "no weights"),
                ],
            )
        ],
        training=[
            Training("baseline", 3, 12.5, 4000.0, {"loss": 0.2, "accuracy": 0.95}),
            Training(
                pruned,
                2,
                8.0,
                3900.0,
                {"loss": 0.25, "accuracy": 0.94},
                strategy="MirroredStrategy",
                replicas=2,
                global_batch_size=64,
                precision="mixed_float16",
            ),
        ],
        stages=[Stage("train", 12.5), Stage("export", 3.0)],
        versions={"python": "3.11", "tensorflow": "synthetic"},
        machine={"cpu": "synthetic", "cores": 2},
        config={},
        created="2025-01-01T00:00:00Z",
    )


def _md_row(md: str, variant: str, fmt: str) -> list[str]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[:2] == [variant, fmt]:
            return cells
    raise AssertionError(f"no row {variant}/{fmt} in report.md")


@pytest.fixture
def run_json(tmp_path: Path) -> Path:
    return _synthetic_run().save(tmp_path / "run.json")


def test_render_writes_all_files(run_json: Path) -> None:
    written = render(run_json)
    plots = ("accuracy_vs_size", "accuracy_vs_latency", "latency", "sparsity")
    assert set(written) == {"markdown", "html", *plots}
    for key, path in written.items():
        assert path.parent == run_json.parent and path.stat().st_size > 0, key
    for key in plots:
        assert written[key].read_bytes()[:8] == PNG_MAGIC
        assert written[key].name == f"{key}.png"


def test_markdown_table_arithmetic(run_json: Path) -> None:
    md = render(run_json)["markdown"].read_text(encoding="utf-8")
    acc, _, gz, _, p50, _ = SYNTHETIC[("pruned", "int8")]
    base_acc, _, base_gz, _, base_p50, _ = SYNTHETIC[("baseline", "float32")]
    cells = _md_row(md, "pruned", "int8")
    assert cells[2] == f"{acc * 100:.2f}%"
    assert cells[3] == "–"  # no validation accuracy in this synthetic record
    assert cells[4] == f"{(acc - base_acc) * 100:+.2f} pp" == "-1.20 pp"
    assert cells[6] == f"{gz / 1024:,.1f}"
    assert cells[7] == f"{base_gz / gz:.1f}x" == "8.0x"
    assert cells[12] == f"{base_p50 / p50:.2f}x" == "2.50x"
    # The reference row compares to itself; the Keras row has no latency or diff.
    assert _md_row(md, "baseline", "float32")[4:8:3] == ["+0.00 pp", "1.0x"]
    keras = _md_row(md, "baseline", "keras")
    assert keras[9] == keras[10] == keras[12] == "–"
    for name in ("accuracy_vs_size.png", "accuracy_vs_latency.png", "latency.png", "sparsity.png"):
        assert f"]({name})" in md


def test_training_table_says_what_each_training_ran_on(run_json: Path) -> None:
    md = render(run_json)["markdown"].read_text(encoding="utf-8")
    header = next(line for line in md.splitlines() if line.startswith("| variant | epochs"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "variant",
        "epochs",
        "seconds",
        "examples/s",
        "strategy",
        "replicas",
        "global batch",
        "precision",
        "final metrics",
    ]
    rows = {
        r[0]: r
        for r in (
            [c.strip() for c in line.strip("|").split("|")]
            for line in md.splitlines()
            if line.startswith("| baseline |") or line.startswith("| pruned |")
        )
        if len(r) == 9
    }
    assert rows["pruned"][3:8] == ["3,900", "MirroredStrategy", "2", "64", "mixed_float16"]
    assert rows["baseline"][4:8] == ["–", "1", "–", "float32"]


def test_delta_falls_back_to_keras_baseline(tmp_path: Path) -> None:
    run = _synthetic_run()
    run = replace(run, results=[r for r in run.results if (r.variant, r.format) != ("baseline", "float32")])
    md = render(run, tmp_path)["markdown"].read_text(encoding="utf-8")
    acc = SYNTHETIC[("pruned", "int8")][0]
    base_keras_acc = SYNTHETIC[("baseline", "keras")][0]
    cells = _md_row(md, "pruned", "int8")
    assert cells[4] == f"{(acc - base_keras_acc) * 100:+.2f} pp"
    assert cells[7] == cells[12] == "–"  # no float32 reference for ratios


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    run = _synthetic_run({"pruned": "prune<50%>&co"})
    html = render(run.save(tmp_path / "run.json"))["html"].read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2  # latency and sparsity bars; the trade-off plots are SVG
    assert html.count("<svg") == 2 and html.count('class="tfopt-point"') == 2 * 4  # 4 exported files per plot
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "http:" not in html and "https:" not in html  # not even an XML namespace: nothing to fetch, offline
    assert html.lower().count("<script") == 1 and "<script src" not in html.lower() and "<link" not in html.lower()
    assert "prune&lt;50%&gt;&amp;co" in html and "prune<50%>" not in html
    assert "<details>" in html and "no weights" in html


def test_missing_plot_data_is_skipped(tmp_path: Path) -> None:
    run = _synthetic_run()
    bare = [replace(r, latency_ms=None, layers=[]) for r in run.results]
    written = render(replace(run, results=bare), tmp_path)
    assert set(written) == {"markdown", "html", "accuracy_vs_size"}
    assert "No latency was measured." in written["markdown"].read_text(encoding="utf-8")


def test_round_trip_through_run_json(run_json: Path) -> None:
    assert load_run(run_json) == _synthetic_run()


def test_shorten_layer_names() -> None:
    assert shorten_layer_names(LAYER_NAMES) == ["conv2d", "dense", "dense_1"]
    assert shorten_layer_names(["model/block_1/query/einsum/Einsum", "model/block_2/query/einsum/Einsum"]) == [
        "block_1/query",
        "block_2/query",
    ]
    assert shorten_layer_names(["conv2d/kernel:0"]) == ["conv2d"]
    deep = [f"bert/layer_{i}/attention/{p}/einsum/Einsum" for i in range(2) for p in ("query", "key")]
    assert shorten_layer_names(deep) == ["layer_0/…/query", "layer_0/…/key", "layer_1/…/query", "layer_1/…/key"]


def test_render_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(TfoptError, match="not found"):
        render(tmp_path / "nope" / "run.json")


def test_render_run_object_needs_out_dir() -> None:
    with pytest.raises(TfoptError, match="out_dir"):
        render(_synthetic_run())


def test_render_never_imports_tensorflow(run_json: Path) -> None:
    code = (
        f"import sys, tfopt.report as r; r.render({str(run_json)!r}); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_teacher_scratch_and_distilled_rows_side_by_side(tmp_path: Path) -> None:
    run = _synthetic_run({"pruned": "student"})
    scratch = [
        replace(r, variant="student_scratch", accuracy=r.accuracy - 0.02) for r in run.results if r.variant == "student"
    ]
    steps = [
        TransformReport(
            v, "distill", {"student": {"name": "small_cnn"}, "scratch": s}, "tf_keras", [LayerDecision("c", True)]
        )
        for v, s in (("student", False), ("student_scratch", True))
    ]
    run = replace(run, results=[*run.results, *scratch], transforms=[*run.transforms, *steps])
    md = (render(run, tmp_path)["markdown"]).read_text(encoding="utf-8")
    section = md.split("## Distillation", 1)[1].split("\n## ", 1)[0]
    rows = [
        [c.strip() for c in line.strip("|").split(" | ")]
        for line in section.splitlines()
        if line.startswith("| student")
    ]
    assert [(r[1], r[2]) for r in rows[:3]] == [
        ("keras", "teacher (baseline)"),
        ("keras", "scratch student (student_scratch)"),
        ("keras", "distilled student (student)"),
    ]
    assert len(rows) == 9  # keras, float32, int8 x teacher, scratch, distilled
    int8 = {r[2]: r for r in rows if r[1] == "int8"}
    assert (
        int8["distilled student (student)"][4] == "93.80%" and int8["scratch student (student_scratch)"][4] == "91.80%"
    )
    assert int8["teacher (baseline)"][3] == "6,000"  # kernel weights: the synthetic keras row's layer sizes summed


def test_no_distillation_section_without_a_distilled_variant(tmp_path: Path) -> None:
    md = (render(_synthetic_run(), tmp_path)["markdown"]).read_text(encoding="utf-8")
    assert "## Distillation" not in md
