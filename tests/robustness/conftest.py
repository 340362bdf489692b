"""Fixtures for the robustness suite; the helpers live in robust_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from robust_helpers import TINY


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A real finished run of the TINY pipeline (in-process), to check that failures leave it intact."""
    from tfopt import config, pipeline

    root = tmp_path_factory.mktemp("finished")
    pipeline.run(config.loads(TINY, source="tiny.yaml"), root=root, log=lambda line: None)
    return root
