"""Helpers for the robustness suite: run the CLI as a user would and check how it fails.

A module of its own (not ``conftest``): ``from conftest import`` picks whichever conftest.py
pytest imported first, which depends on the folders collected.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A pipeline small enough to run in seconds on 2 cores: tiny CNN, one epoch, two formats.
TINY = (
    "name: tiny\ndata: {name: digits}\nmodel: {name: small_cnn, params: {filters: 4, dense: 16}}\n"
    "train: {epochs: 1, batch_size: 64, verbose: 0}\nexport: [float32, int8]\n"
    "evaluate: {latency_runs: 5, latency_warmup: 1}\n"
)


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python -m tfopt ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "tfopt", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, no traceback, exactly one ``tfopt: error:`` line holding every needle; returns it."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tfopt: error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (empty if it does not exist), except empty run locks.

    ``reports/.<name>.lock`` is the flock that keeps two runs of one pipeline apart; it holds no
    data and stays by design (deleting a lock file races with the next process taking it).
    """
    if not folder.exists():
        return []
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not (p.name.endswith(".lock") and p.stat().st_size == 0)
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in files_under(root)}
