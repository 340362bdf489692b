"""The repo passes ruff: lint (``ruff check``) and format (``ruff format --check``), as configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")  # installed next to this Python from requirements.txt


def _ruff(*args: str) -> subprocess.CompletedProcess:
    if not RUFF.is_file():
        pytest.fail(f"{RUFF} not found. Fix: pip install -r requirements.txt (it pins ruff).")
    return subprocess.run([str(RUFF), *args, "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check() -> None:
    done = _ruff("check", "--output-format", "concise")
    print(done.stdout, done.stderr)
    assert done.returncode == 0, (
        f"ruff check found problems (fixable ones: ruff check --fix .):\n{done.stdout}{done.stderr}"
    )


def test_ruff_format() -> None:
    done = _ruff("format", "--check", "--output-format", "concise")
    print(done.stdout, done.stderr)
    assert done.returncode == 0, f"files ruff format would change (fix: ruff format .):\n{done.stdout}{done.stderr}"
