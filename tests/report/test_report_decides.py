"""The report decides: the recommendation at the top, its settings, the "cannot choose" cases, plot labels.

The synthetic records below are made up to exercise the wording and the label placement; the real
run (``real_report``, tests/report/conftest.py) is small_cnn trained and exported on real digits.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
from matplotlib.text import Text

from tfopt import config
from tfopt.errors import ConfigError, TfoptError
from tfopt.report import render
from tfopt.report import plots
from tfopt.report.recommend import OBJECTIVES, recommend
from tfopt.report.render import SECTIONS, build_blocks, to_markdown
from tfopt.results import DatasetInfo, Latency, Result, Run, load_run
from tfopt.schema import Objective, ReportConfig


def _r(variant: str, fmt: str, val: float, gzip: int, p50: float, test: float) -> Result:
    return Result(
        variant=variant, format=fmt, path=f"models/x/{variant}_{fmt}.tflite", accuracy=test, size_bytes=gzip * 2,
        gzip_bytes=gzip, sparsity=0.0, max_abs_diff=0.0, tolerance=1.0,
        latency_ms=Latency(p50=p50, p90=p50 * 1.2, mean=p50, runs=10, threads=1), val_accuracy=val,
    )  # fmt: skip


def _run(results: list[Result], report: dict | None = None, data: dict | None = None) -> Run:
    cfg = {"data": data or {"name": "synthetic", "val_fraction": 0.1}}
    if report is not None:
        cfg["report"] = report
    return Run(
        pipeline="decide", dataset=DatasetInfo("synthetic", 100, 20, 50, 10, [8, 8, 1], "synthetic"),
        results=results, transforms=[], training=[], stages=[], versions={}, machine={}, config=cfg,
        created="2026-01-01T00:00:00Z",
    )  # fmt: skip


ROWS = [
    _r("baseline", "float32", 0.960, 40_000, 2.0, 0.950),
    _r("baseline", "int8", 0.955, 11_000, 1.0, 0.948),
    _r("pruned", "int8", 0.952, 4_000, 0.8, 0.930),  # smallest within 1 point of validation accuracy
    _r("pruned90", "int8", 0.900, 2_000, 0.8, 0.990),  # best on test, but 6 points lost on validation
]


def _top(md: str) -> str:
    """The report above its run details: the title and the recommendation."""
    return md.split("\n- **Pipeline:**", 1)[0]


def _summary(run: Run, **settings) -> str:
    """The title and recommendation sections alone as Markdown (no plots drawn: fast)."""
    if settings:
        run = dataclasses.replace(run, config={**run.config, "report": ReportConfig(**settings).model_dump()})
    return to_markdown(build_blocks(run, SECTIONS[:2]))


def test_recommendation_opens_the_report_with_figures_reason_and_settings(tmp_path: Path) -> None:
    md = render(_run(ROWS), tmp_path)["markdown"].read_text(encoding="utf-8")
    top = _top(md)
    assert "**Deploy models/x/pruned_int8.tflite: 10.0x smaller (gzip) than baseline float32" in top
    assert "2.50x faster (p50)" in top and "-2.00 points on test" in top  # 0.930 - 0.950, reported only
    assert "chosen on validation accuracy" in top and "never used to choose it" in top
    assert (
        "report: {max_accuracy_drop: 0.01 (default), relative: false (default), objective: gzip_bytes (default)}" in top
    )
    assert "pipeline YAML" in top and "docs/reports.md" in top
    assert md.index("## Recommendation") < md.index("## Results")


def test_settings_come_from_the_runs_report_section(tmp_path: Path) -> None:
    run = _run(ROWS, report={"max_accuracy_drop": 0.07, "objective": "latency_p50"})
    top = _summary(run)
    assert "objective: latency_p50}" in top and "max_accuracy_drop: 0.07," in top  # not marked (default)
    assert "Deploy models/x/pruned_int8.tflite" in top  # 0.8 ms ties pruned90; the tie goes to validation accuracy
    top = _top(render(_run(ROWS), tmp_path, report=ReportConfig(max_accuracy_drop=0.07))["markdown"].read_text())
    assert "Deploy models/x/pruned90_int8.tflite" in top  # the override, not the run's settings


def test_budget_not_met_says_so_and_names_the_closest(tmp_path: Path) -> None:
    rows = [ROWS[0]] + [dataclasses.replace(r, val_accuracy=r.val_accuracy - 0.05) for r in ROWS[1:]]
    written = render(_run(rows), tmp_path)
    md, html = written["markdown"].read_text(encoding="utf-8"), written["html"].read_text(encoding="utf-8")
    top = _top(md)
    assert "Deploy" not in top
    assert (
        "No file meets the budget (at most 1 point of validation accuracy against baseline float32) with a lower "
        "gzip_bytes than baseline float32 itself: keep models/x/baseline_float32.tflite." in top
    )
    # the most accurate of the others on validation, with its figures and what it loses
    assert "The closest is models/x/baseline_int8.tflite: 3.6x smaller (gzip)" in top
    assert "5.50 points below on validation" in top
    assert "No file meets the budget" in html and 'class="rec none"' in html


def test_test_figures_never_change_the_recommendation() -> None:
    flipped = [dataclasses.replace(r, accuracy=1.0 - r.val_accuracy) for r in ROWS]
    tops = [_summary(_run(rows)) for rows in (ROWS, flipped)]
    assert all("Deploy models/x/pruned_int8.tflite" in t for t in tops)


def test_old_run_json_renders_with_the_cannot_choose_note(tmp_path: Path) -> None:
    """A schema-3 file (no val_accuracy, no report settings) loads, renders and says why nothing is chosen."""
    data = json.loads(_run(ROWS).to_json())
    data["schema_version"] = 3
    for r in data["results"]:
        del r["val_accuracy"]
    path = tmp_path / "old" / "run.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data), encoding="utf-8")
    written = render(path)
    top = _top(written["markdown"].read_text(encoding="utf-8"))
    assert "Cannot choose a file to deploy" in top and "before run.json schema version 4" in top
    assert "Deploy" not in top and "objective: gzip_bytes (default)" in top
    assert {"accuracy_vs_size", "accuracy_vs_latency"} <= set(written)  # plotted on test accuracy, without a front


def test_no_validation_split_is_named() -> None:
    rows = [dataclasses.replace(r, val_accuracy=None) for r in ROWS]
    run = _run(rows, data={"name": "synthetic", "val_fraction": 0})
    top = _summary(run)
    assert "Cannot choose a file to deploy: the run has no validation split (data.val_fraction: 0)" in top


def test_bad_report_settings_in_run_json_name_the_key() -> None:
    with pytest.raises(TfoptError, match=r"config\.report\.objective.*gzip_bytes"):
        _summary(_run(ROWS, report={"objective": "gzip"}))


def test_report_section_of_the_pipeline_yaml() -> None:
    base = "name: x\ndata: {name: digits}\nmodel: {name: small_cnn}\n"
    assert config.loads(base).report == ReportConfig()  # defaults when absent
    cfg = config.loads(base + "report: {max_accuracy_drop: 0.02, relative: true, objective: macs}\n")
    assert (cfg.report.max_accuracy_drop, cfg.report.relative, cfg.report.objective) == (0.02, True, "macs")
    assert cfg.model_dump(mode="json")["report"] == {"max_accuracy_drop": 0.02, "relative": True, "objective": "macs"}
    with pytest.raises(ConfigError, match=r"x\.yaml:4: report\.objective.*'gzip_bytes'"):
        config.loads(base + "report: {objective: gzip}\n", "x.yaml")
    with pytest.raises(
        ConfigError, match=r"x\.yaml:4: unknown key 'report\.max_drop'. Did you mean 'max_accuracy_drop'"
    ):
        config.loads(base + "report: {max_drop: 0.02}\n", "x.yaml")
    assert set(typing.get_args(Objective)) == set(OBJECTIVES)  # the schema's names are the ones recommend computes


def _crowded() -> list[Result]:
    """Four variants x four formats with close sizes and accuracies, shaped like a real pruning sweep."""
    rows = []
    for i, (variant, sparsity) in enumerate((("baseline", 0.0), ("pruned_50", 0.5), ("pruned_80", 0.8), ("p90", 0.9))):
        for j, (fmt, scale) in enumerate((("float32", 1.0), ("dynamic", 0.27), ("float16", 0.5), ("int8", 0.26))):
            gzip = int(150_000 * scale * (1 - 0.75 * sparsity))
            val = 0.99 - 0.004 * i * i - 0.0007 * j
            rows.append(_r(variant, fmt, val, gzip, 0.04 * (0.75 if fmt in ("dynamic", "int8") else 1) + 1e-4 * i, val))
    return rows


@pytest.mark.parametrize("objective", ["gzip_bytes", "latency_p50"])
def test_plot_labels_never_overlap(objective: str) -> None:
    rows = _crowded()
    drawn = plots.tradeoff_figure(rows, objective, "baseline", recommend(rows).result)
    renderer = drawn.fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(label, renderer) for label in drawn.labels]
    assert len(boxes) == len(rows) == 16 and [b.width > 0 for b in boxes] == [True] * 16
    clashes = [(drawn.labels[i].get_text(), drawn.labels[j].get_text())
               for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]  # fmt: skip
    assert clashes == []
    figure = drawn.fig.bbox
    assert all(figure.x0 <= b.x0 and b.x1 <= figure.x1 and figure.y0 <= b.y0 and b.y1 <= figure.y1 for b in boxes)


def test_html_points_carry_hover_titles(tmp_path: Path) -> None:
    html = render(_run(ROWS), tmp_path)["html"].read_text(encoding="utf-8")
    size_plot = html.split('id="plot-accuracy_vs_size"', 1)[1].split("</figure>", 1)[0]
    assert size_plot.count('class="tfopt-point"><title>') == len(ROWS)
    assert "<title>pruned / int8: validation 95.20%, test 93.00%, gzip 3.9 KiB" in size_plot
    assert "(recommended) (on the Pareto front)</title>" in size_plot


# --- the real run ------------------------------------------------------------------------------


def test_real_run_report_recommends_a_file_in_markdown_and_html(real_report) -> None:
    run, folder = real_report
    assert run.config["report"] == {"max_accuracy_drop": 0.01, "relative": False, "objective": "gzip_bytes"}
    rec = recommend(run)  # quickstart.yaml has no report: section, so the defaults
    assert rec is not None and rec.met and Path(rec.result.path).is_file()
    md = (folder / "report.md").read_text(encoding="utf-8")
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert f"Deploy {rec.result.path}:" in _top(md) and f"Deploy {rec.result.path}:" in html
    assert "objective: gzip_bytes (default)" in _top(md)
    ref = run.result("baseline", "float32")
    ratio = ref.gzip_bytes / rec.result.gzip_bytes
    assert f"{ratio:.1f}x smaller (gzip)" in _top(md) and ratio > 3  # quantized and/or 80% pruned: far below float32
    assert rec.result.val_accuracy >= ref.val_accuracy - 0.01 - 1e-9
    delta = (rec.result.accuracy - ref.accuracy) * 100
    assert f"{delta:+.2f} points on test" in _top(md)  # reported for the chosen file
    assert load_run(folder / "run.json") == run
