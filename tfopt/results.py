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
    """Latency of one ``invoke()`` in milliseconds after warm-up (one sample unless ``batch`` says more).

    Fields after ``threads`` were added later with defaults, so older run.json files still load.
    """

    p50: float
    p90: float
    mean: float
    runs: int
    threads: int
    p99: Optional[float] = None
    batch: int = 1
    warmup: Optional[int] = None
    throughput: Optional[float] = None  # samples per second: batch / mean latency


@dataclass(frozen=True)
class LayerStats:
    """One weight tensor as stored in the Keras model or in the exported file."""

    name: str
    size: int  # number of weight values
    sparsity: float  # fraction of exact zeros
    unique_values: int
    dtype: str
    # Added later with defaults, so older run.json files still load.
    layer: Optional[str] = None  # the Keras layer the tensor belongs to, read from its name
    quantized: Optional[bool] = None  # stored as integers with scale/zero-point (read from the file)
    quantization: Optional[str] = None  # e.g. "int8 per-channel (32 scales, axis 0)", "float16", "none"
    channels: Optional[int] = None  # output channels
    unique_per_channel: Optional[int] = None  # most distinct values in any one output channel
    pattern_2_4: Optional[bool] = None  # every 4 consecutive input-channel weights hold >= 2 zeros


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
    details: dict[str, Any] = field(default_factory=dict)  # format-specific facts, e.g. the LiteRT Quantizer's validation


@dataclass(frozen=True)
class NotExported:
    """A (variant, format) the converter could not produce, with its reason; the run goes on.

    E.g. a Keras 3 natively quantized BERT: the converter has no kernel for its int8 matmuls.
    """

    variant: str
    format: str
    reason: str


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
    # Added later with defaults, so older run.json files still load.
    strategy: Optional[str] = None  # tf.distribute strategy, e.g. MirroredStrategy
    replicas: int = 1  # devices training in sync (over all workers)
    global_batch_size: Optional[int] = None  # examples per step over all replicas
    precision: str = "float32"  # Keras dtype policy of the training
    initial_epoch: int = 0  # > 0: resumed from an epoch checkpoint after an interruption
    restored: bool = False  # True: finished in an earlier, interrupted invocation and reloaded, not retrained


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
    not_exported: list[NotExported] = field(default_factory=list)
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
    if not dataclasses.is_dataclass(cls):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} should be an object, got {type(data).__name__}")
    hints = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, f in hints.items():
        if name not in data:
            continue
        value = data[name]
        try:
            kwargs[name] = _convert(f.type, value)
        except TypeError as e:
            raise TypeError(f"{cls.__name__}.{name}: {e}") from None
    return cls(**kwargs)


_TYPES = {c.__name__: c for c in (Latency, LayerStats, Result, NotExported, LayerDecision, TransformReport, Training, Stage, DatasetInfo)}


# JSON types of the plain fields, so a hand-edited or damaged run.json fails on load with the field
# named, rather than deep inside the report's number formatting.
_NUMBER = (int, float)
_PLAIN = {"float": _NUMBER, "int": (int,), "str": (str,), "bool": (bool,), "Optional[float]": _NUMBER + (type(None),),
          "Optional[int]": (int, type(None)), "Optional[str]": (str, type(None)), "Optional[bool]": (bool, type(None)),
          "list[str]": (list,), "list[int]": (list,)}


def _convert(type_str: Any, value: Any) -> Any:
    t = str(type_str)
    for name, cls in _TYPES.items():
        if t in (name, f"Optional[{name}]"):
            return None if value is None else _build(cls, value)
        if t == f"list[{name}]":
            if not isinstance(value, list):
                raise TypeError(f"{name} entries should be a list, got {type(value).__name__}")
            return [_build(cls, v) for v in value]
    if t.startswith("dict[") and not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r:.40}")
    ok = _PLAIN.get(t)
    if ok is not None and (not isinstance(value, ok) or (isinstance(value, bool) and bool not in ok)):
        raise TypeError(f"expected {t}, got {value!r:.40}")
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
    except OSError as e:
        raise TfoptError(f"Cannot read {path}: {e.strerror or e}. Fix: pass a readable reports/<run>/run.json.") from None
    if not isinstance(data, dict) or "results" not in data or "pipeline" not in data:
        raise TfoptError(f"{path} is not a tfopt run record (no 'pipeline'/'results'). Fix: pass reports/<run>/run.json.")
    try:
        return _build(Run, data)
    except TypeError as e:
        raise TfoptError(
            f"{path}: run record does not match schema version {SCHEMA_VERSION} ({e}). "
            "Fix: pass an undamaged run.json, or run the pipeline again to write a new one."
        ) from None
