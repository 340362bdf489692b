"""Helpers for the transform tests: apply a chain of steps as the pipeline does, on real digits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest

from tfopt.config import ExportSpec
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.export import convert
from tfopt.pipeline import _clone
from tfopt.train import compile_model
from tfopt.transforms import TRANSFORMS, Context


def _run_chain(model: Any, digits: Any, steps: list[tuple[str, dict]], epochs: int = 2, log_dir: Optional[Path] = None) -> tuple[list, Any]:
    """Apply, fine-tune and strip each (name, params) step in turn; later steps see the earlier ones."""
    done: list = []
    model = _clone(model)
    for i, (name, params) in enumerate(steps):
        cls = TRANSFORMS.get(name)
        ctx = Context(
            steps_per_epoch=math.ceil(len(digits.x_train) / 32), finetune_epochs=epochs,
            log_dir=None if log_dir is None else log_dir / f"{i}_{name}", previous=tuple(t.name for t in done),
        )
        step = cls(cls.Config(**params), ctx)
        model = step.apply(model)
        compile_model(model, "adam", 5e-4)
        model.fit(digits.x_train, digits.y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=step.callbacks())
        model = step.strip(model)
        done.append(step)
    return done, model


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
