"""A real small run for the report tests: small_cnn trained on real digits, pruned, exported to float32 and int8."""

from __future__ import annotations

import pytest

# Small but real: every figure in its report is measured (the pipeline writes run.json and renders it).
REAL_PIPELINE = """
name: report_digits
seed: 0
data: {name: digits, test_fraction: 0.2, val_fraction: 0.15}
model: {name: small_cnn, params: {filters: 8, dense: 32}}
train: {epochs: 4, batch_size: 32, learning_rate: 3.0e-3}
finetune: {epochs: 1}
variants:
  pruned_50: [{prune: {final_sparsity: 0.5}}]
export: [float32, dynamic, int8]
evaluate: {latency_runs: 30, latency_warmup: 5}
report: {max_accuracy_drop: 0.02}
"""


@pytest.fixture(scope="session")
def real_report(tmp_path_factory):
    """(run, folder holding run.json, report.md and report.html) of a real pipeline run on digits."""
    from tfopt import config, pipeline

    root = tmp_path_factory.mktemp("report_real")
    run = pipeline.run(config.loads(REAL_PIPELINE, "report_digits.yaml"), root=root, log=lambda _: None)
    return run, root / "reports" / "report_digits"
