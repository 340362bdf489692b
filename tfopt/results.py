"""The run record: small frozen dataclasses serialised to ``run.json``.

``run.json`` is the single source of truth of a run: the report is rendered from it alone, and
``tfopt report`` re-renders it without importing TensorFlow. This module must stay free of
TensorFlow imports for that reason.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tfopt.errors import TfoptError
from tfopt.io import atomic_write_text

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Latency:
    """Single-sample latency in milliseconds after warm-up."""

    p50: float
    p90: float
    mean: float
    runs: int
    threads: int


@dataclass(frozen=True)
class LayerStats:
    """One weight tensor as stored in the Keras model or in the exported file."""

    name: str
    size: int  # number of weight values
    sparsity: float  # fraction of exact zeros
    unique_values: int
    dtype: str


@dataclass(frozen=True)
class Result:
    """One (variant, format) pair: the Keras model (format 'keras') or one exported .tflite."""

    variant: str
    format: str
    path: str
    accuracy: float
    size_bytes: int
    gzip_bytes: int
    sparsity: float  # overall weight sparsity over all kernels (not biases)
    max_abs_diff: Optional[float]  # max |Keras - this| on test outputs; None for the Keras row
    tolerance: Optional[float]
    latency_ms: Optional[Latency]
    layers: list[LayerStats] = field(default_factory=list)


@dataclass(frozen=True)
class LayerDecision:
    layer: str
    applied: bool
    reason: str = ""


@dataclass(frozen=True)
class TransformReport:
    """What one transform step did to one variant, layer by layer."""

    variant: str
    transform: str
    params: dict[str, Any]
    backend: str
    layers: list[LayerDecision] = field(default_factory=list)


@dataclass(frozen=True)
class Training:
    """One fit: the baseline or a variant's fine-tune."""

    variant: str
    epochs_run: int
    seconds: float
    examples_per_second: float
    final: dict[str, float]  # last epoch's metrics (loss, accuracy, val_loss, val_accuracy)


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_train: int
    num_val: int
    num_test: int
    num_classes: int
    input_shape: list[int]
    source: str


@dataclass(frozen=True)
class Run:
    pipeline: str
    dataset: DatasetInfo
    results: list[Result]
    transforms: list[TransformReport]
    training: list[Training]
    stages: list[Stage]
    versions: dict[str, str]
    machine: dict[str, Any]
    config: dict[str, Any]
    created: str
    validation_failures: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def result(self, variant: str, fmt: str) -> Result:
        for r in self.results:
            if r.variant == variant and r.format == fmt:
                return r
        raise KeyError(f"no result for variant={variant!r} format={fmt!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json() + "\n")


def _build(cls: type, data: Any) -> Any:
    """Rebuild nested frozen dataclasses from plain JSON data."""
    if not dataclasses.is_dataclass(cls) or not isinstance(data, dict):
        return data
    hints = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, f in hints.items():
        if name not in data:
            continue
        value = data[name]
        kwargs[name] = _convert(f.type, value)
    return cls(**kwargs)


_TYPES = {c.__name__: c for c in (Latency, LayerStats, Result, LayerDecision, TransformReport, Training, Stage, DatasetInfo)}


def _convert(type_str: Any, value: Any) -> Any:
    t = str(type_str)
    for name, cls in _TYPES.items():
        if t in (name, f"Optional[{name}]"):
            return None if value is None else _build(cls, value)
        if t == f"list[{name}]":
            return [_build(cls, v) for v in value]
    return value


def load_run(path: str | Path) -> Run:
    """Read a ``run.json`` written by ``tfopt run``.

    Raises:
        TfoptError: if the file is missing or is not a tfopt run record.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TfoptError(f"Run file not found: {path}. Fix: pass the run.json of a finished run (reports/<run>/run.json).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TfoptError(f"{path} is not valid JSON ({e}). Fix: pass the run.json written by 'tfopt run'.") from None
    if not isinstance(data, dict) or "results" not in data or "pipeline" not in data:
        raise TfoptError(f"{path} is not a tfopt run record (no 'pipeline'/'results'). Fix: pass reports/<run>/run.json.")
    try:
        return _build(Run, data)
    except TypeError as e:
        raise TfoptError(f"{path}: run record does not match schema version {SCHEMA_VERSION} ({e}).") from None
