"""The report tests' real run: pipelines/quickstart.yaml on real digits (tests/conftest.py runs it once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def real_report(quickstart_run):
    """(run, folder holding run.json, report.md and report.html) of the quickstart pipeline, rendered by the run."""
    root, run = quickstart_run
    return run, root / "reports" / run.pipeline
