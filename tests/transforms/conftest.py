"""Helpers for the transform tests: apply a chain of steps as the pipeline does, on real digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest

from tfopt.config import ExportSpec
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.export import convert
from tfopt.pipeline import Recipe, apply_steps


def _run_chain(
    model: Any, digits: Any, steps: list[tuple[str, dict]], epochs: int = 2, log_dir: Optional[Path] = None
) -> tuple[list, Any]:
    """Apply, fine-tune and strip each (name, params) step in turn with the pipeline's own step loop.

    Returns each step's TransformReport (backend label, per-layer decisions) and the stripped model.
    """
    recipe = Recipe(epochs=epochs, batch_size=32, learning_rate=5e-4, seed=0)
    applied = apply_steps(
        model, [{name: params} for name, params in steps], digits, recipe, log_dir=log_dir, log=lambda _: None
    )
    return applied.reports, applied.model


def _export(model: Any, digits: Any, path: Path, fmt: str = "int8", **opts) -> tuple[list, float]:
    """Export, then read the weights back from the file and measure its accuracy through LiteRT."""
    path.write_bytes(convert(model, ExportSpec(format=fmt, **opts), digits.x_train))
    acc = float(np.mean(TfliteRunner(path).predict(digits.x_test).argmax(-1) == digits.y_test))
    return tflite_weight_stats(path), acc


@pytest.fixture
def run_chain() -> Callable:
    return _run_chain


@pytest.fixture
def export_file() -> Callable:
    return _export


def keras_accuracy(model: Any, digits: Any) -> float:
    return float(np.mean(model.predict(digits.x_test, verbose=0).argmax(-1) == digits.y_test))


@pytest.fixture
def accuracy_of() -> Callable:
    return keras_accuracy
