"""run.json files written before the per-layer quantization fields and Result.details still load and render."""

from __future__ import annotations

import json

from tfopt.report import render
from tfopt.results import DatasetInfo, LayerStats, Result, Run, load_run


def test_old_run_json_without_new_fields_loads_and_renders(tmp_path) -> None:
    layer = LayerStats(
        "m/conv1/Conv2D", 144, 0.5, 100, "INT8", layer="conv1", quantized=True, quantization="int8 per-tensor"
    )
    result = Result(
        "baseline", "int8", "m.tflite", 0.9, 1000, 800, 0.5, 0.01, 0.5, None, [layer], details={"recipe": "x"}
    )
    run = Run("p", DatasetInfo("digits", 10, 2, 5, 10, [8, 8, 1], "sklearn"), [result], [], [], [], {}, {}, {}, "now")
    data = json.loads(run.to_json())
    for key in ("layer", "quantized", "quantization", "channels", "unique_per_channel", "pattern_2_4"):
        del data["results"][0]["layers"][0][key]
    del data["results"][0]["details"]
    data["schema_version"] = 1  # those fields were added during schema version 1
    (tmp_path / "run.json").write_text(json.dumps(data))
    old = load_run(tmp_path / "run.json")
    assert old.results[0].details == {} and old.results[0].layers[0].quantized is None
    md = render(tmp_path / "run.json")["markdown"].read_text()
    assert "| – | m/conv1/Conv2D | 144 | 50.00% | 100 | – | – | int8 | – |" in md
