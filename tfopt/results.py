"""The run record: small frozen dataclasses serialised to ``run.json``.

``run.json`` is the single source of truth of a run: the report is rendered from it alone, and
``tfopt report`` re-renders it without importing TensorFlow. This module must stay free of
TensorFlow imports for that reason.

One typed schema reads and writes it: pydantic validates these dataclasses (``_schema()``) with
strict JSON types (no "1" for 1, no true for 1; an integer is accepted where a float is
expected), non-negative sizes and counts, and no unknown keys. ``load_run`` refuses a damaged or
hand-edited file naming the field (``results[0].accuracy``); ``Run.to_json``/``Run.save``
validate what they write the same way, so every file written loads back.

Schema versions (``schema_version``; adding a field or changing a meaning bumps it, noted here):

- 1: the first record. Fields were added during version 1 without a bump, so a version-1 file may
  lack any of: ``Latency.p99/batch/warmup/throughput``; ``LayerStats.layer/quantized/
  quantization/channels/unique_per_channel/pattern_2_4``; ``Result.details``;
  ``Training.strategy/replicas/global_batch_size/precision/initial_epoch/restored``;
  ``Run.not_exported``. They load with their defaults (None; ``batch`` and ``replicas`` 1;
  ``details`` {}; ``precision`` "float32"; ``initial_epoch`` 0; ``restored`` False; ``[]``).
  Types were loosely checked (list elements and values inside objects not at all), unknown
  keys ignored.
- 2: ``Run.model_backend`` names the Keras of the input model (``tf_keras`` or ``keras3``; None in
  version-1 files, which did not record it). Every field is always written; sizes and counts are
  validated >= 0; unknown keys are refused. ``gzip_bytes`` is always the measured size. Version 1
  used -1 as the pipeline's in-memory placeholder for "not computed yet", but the sizes were filled
  in before saving, so no tfopt wrote it to a file: ``gzip_bytes`` stays an ``int`` (not
  ``Optional``), and a negative value is refused as damage in files of either version. A version-1
  file otherwise loads as it is and is upgraded in memory (``schema_version`` 2). A file of a newer
  version is refused with "upgrade tfopt".
- 3: ``Result.macs`` (multiply-accumulates of one inference, read from the exported file's operators
  and tensor shapes: ``tfopt.evaluate.macs``; None for the Keras row) and ``Result.weights`` (weight
  values in the model's weight tensors, as read for ``layers``). Version-1 and -2 files load with
  both None and are upgraded in memory (``schema_version`` 3).
- 4: ``Result.val_accuracy``: the same file's accuracy on the validation split. Anything tfopt
  chooses (the report's recommendation, ``tfopt tune``'s search, ``best()``) is chosen on it, so the
  test split only reports. Older files load with None (nothing to choose on: the report says so) and
  are upgraded in memory (``schema_version`` 4). Also in version 4 (before its release):
  ``Latency.rounds`` and ``Latency.interleaved``. A run's files are timed in turn, in ``rounds``
  blocks over all ``interleaved`` files of the run, so one run's latencies (and the report's speed-up
  ratios) are measured under the same load; older files load with None (timed one after the other).
  Also added during version 4, with defaults: ``Run.tune`` (a ``tfopt tune`` search's budget,
  objective, oracle and per-layer sensitivity), ``Run.trials`` (each trial's parameters,
  validation figures, seconds, whether it met the budget), ``Run.pareto`` (the variant names of the
  Pareto front) and ``Run.recommended`` (``{variant, format, path, met, reason}``); None or empty
  in ``tfopt run`` records. Then ``Result.val_drop_se`` and ``Trial.val_drop_se`` (the paired
  standard error of a file's validation drop against the reference; None where not measured) and
  ``TuneSummary.margin`` (how many of them a trial had to clear the budget by; 0 in older files).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import pydantic
from pydantic import NonNegativeInt

import tfopt
from tfopt.errors import TfoptError
from tfopt.io import atomic_write_text

SCHEMA_VERSION = 4

# Only this version is written; older ones are upgraded on load (see load_run).
_CurrentVersion = Annotated[int, pydantic.Field(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)]
# Unknown keys are refused: a misspelt optional key would otherwise vanish silently.
_RECORD = pydantic.ConfigDict(extra="forbid")


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class Latency:
    """Latency of one ``invoke()`` in milliseconds after warm-up (one sample unless ``batch`` says more).

    Fields after ``threads`` were added during schema version 1 with defaults (see the module doc).
    """

    p50: float
    p90: float
    mean: float
    runs: NonNegativeInt
    threads: NonNegativeInt
    p99: Optional[float] = None
    batch: NonNegativeInt = 1
    warmup: Optional[NonNegativeInt] = None
    throughput: Optional[float] = None  # samples per second: batch / mean latency
    # Added during schema version 4 (None in older files): how the runs were spread.
    rounds: Optional[NonNegativeInt] = None  # blocks the timed runs were split into (1: one block)
    interleaved: Optional[NonNegativeInt] = None  # files timed in turn in those rounds, this one included


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class LayerStats:
    """One weight tensor as stored in the Keras model or in the exported file."""

    name: str
    size: NonNegativeInt  # number of weight values
    sparsity: float  # fraction of exact zeros
    unique_values: NonNegativeInt
    dtype: str
    # Added during schema version 1 with defaults, so version-1 files without them still load.
    layer: Optional[str] = None  # the Keras layer the tensor belongs to, read from its name
    quantized: Optional[bool] = None  # stored as integers with scale/zero-point (read from the file)
    quantization: Optional[str] = None  # e.g. "int8 per-channel (32 scales, axis 0)", "float16", "none"
    channels: Optional[NonNegativeInt] = None  # output channels
    unique_per_channel: Optional[NonNegativeInt] = None  # most distinct values in any one output channel
    pattern_2_4: Optional[bool] = None  # every 4 consecutive input-channel weights hold >= 2 zeros


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class Result:
    """One (variant, format) pair: the Keras model (format 'keras') or one exported .tflite."""

    variant: str
    format: str
    path: str
    accuracy: float
    size_bytes: NonNegativeInt
    gzip_bytes: NonNegativeInt  # gzip -9 size of the file, always measured (no placeholder: see the module doc)
    sparsity: float  # overall weight sparsity over all kernels (not biases)
    max_abs_diff: Optional[float]  # max |Keras - this| on test outputs; None for the Keras row
    tolerance: Optional[float]
    latency_ms: Optional[Latency]
    layers: list[LayerStats] = field(default_factory=list)
    details: dict[str, Any] = field(
        default_factory=dict
    )  # format-specific facts, e.g. the LiteRT Quantizer's validation
    # Added in schema version 3 (None in older files).
    macs: Optional[NonNegativeInt] = None  # multiply-accumulates of one inference, read from the file (None: Keras row)
    weights: Optional[NonNegativeInt] = None  # weight values over the weight tensors of ``layers``
    # Added in schema version 4 (None in older files): what recommendations are chosen on.
    val_accuracy: Optional[float] = None  # the same file's accuracy on the validation split
    # Paired standard error of (reference - this) validation accuracy on the same images (tfopt tune's trials).
    val_drop_se: Optional[float] = None


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class NotExported:
    """A (variant, format) the converter could not produce, with its reason; the run goes on.

    E.g. a Keras 3 natively quantized BERT: the converter has no kernel for its int8 matmuls.
    """

    variant: str
    format: str
    reason: str


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class LayerDecision:
    layer: str
    applied: bool
    reason: str = ""


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class TransformReport:
    """What one transform step did to one variant, layer by layer."""

    variant: str
    transform: str
    params: dict[str, Any]
    backend: str
    layers: list[LayerDecision] = field(default_factory=list)


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class Training:
    """One fit: the baseline or a variant's fine-tune."""

    variant: str
    epochs_run: NonNegativeInt
    seconds: float
    examples_per_second: float
    final: dict[str, float]  # last epoch's metrics (loss, accuracy, val_loss, val_accuracy)
    # Added during schema version 1 with defaults, so version-1 files without them still load.
    strategy: Optional[str] = None  # tf.distribute strategy, e.g. MirroredStrategy
    replicas: NonNegativeInt = 1  # devices training in sync (over all workers)
    global_batch_size: Optional[NonNegativeInt] = None  # examples per step over all replicas
    precision: str = "float32"  # Keras dtype policy of the training
    initial_epoch: NonNegativeInt = 0  # > 0: resumed from an epoch checkpoint after an interruption
    restored: bool = False  # True: finished in an earlier, interrupted invocation and reloaded, not retrained


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_train: NonNegativeInt
    num_val: NonNegativeInt
    num_test: NonNegativeInt
    num_classes: NonNegativeInt
    input_shape: list[NonNegativeInt]
    source: str


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class LayerSensitivity:
    """How much one layer alone costs on validation (``tfopt tune``'s first stage, no fine-tune)."""

    layer: str
    weights: NonNegativeInt  # values in its kernel
    pruned_val_accuracy: list[float]  # validation accuracy with only this layer pruned, per TuneSummary.sparsities
    quant_error: Optional[float] = None  # int8 RMSE of its output against float (TensorFlow's quantization debugger)
    kept_float_val_accuracy: Optional[float] = None  # the int8 file's validation accuracy with this layer left float


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class TuneSummary:
    """What a ``tfopt tune`` search aimed for and measured before it searched."""

    objective: str
    max_accuracy_drop: float
    relative: bool
    tuner: str
    reference: str  # variant/format the budget is measured against (the baseline's float32 file)
    reference_val_accuracy: float
    sparsities: list[float]
    sensitivity: list[LayerSensitivity] = field(default_factory=list)
    seconds: float = 0.0
    margin: float = 0.0  # standard errors of the validation drop a trial had to clear the budget by


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class Trial:
    """One trial of a ``tfopt tune`` search, scored on the validation split only."""

    trial_id: str
    variant: str
    params: dict[str, Any]
    status: str  # COMPLETED | FAILED (keras-tuner's status)
    seconds: float
    format: Optional[str] = None
    val_accuracy: Optional[float] = None
    objective: Optional[float] = None  # the raw objective of the file (e.g. gzip bytes)
    score: Optional[float] = None  # what the oracle minimised: the objective, penalised when the budget is missed
    met_budget: bool = False
    path: Optional[str] = None  # the reported trials' file in models/<name>/ (None: not reported, not kept)
    error: Optional[str] = None
    tuner_id: Optional[str] = None  # the keras-tuner worker that ran it (KERASTUNER_TUNER_ID; tuner0 alone)
    val_drop_se: Optional[float] = None  # paired standard error of the validation drop (Result.val_drop_se)


@pydantic.with_config(_RECORD)
@dataclass(frozen=True)
class Recommended:
    variant: str
    format: str
    path: str
    met: bool  # False: no trial met the budget and this is the closest one
    reason: str


@pydantic.with_config(_RECORD)
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
    model_backend: Optional[str] = None  # the Keras of the input model: tf_keras | keras3 (None: a version-1 file)
    # Added during schema version 4 with defaults (tfopt tune; see the module doc).
    tune: Optional[TuneSummary] = None
    trials: list[Trial] = field(default_factory=list)
    pareto: list[str] = field(default_factory=list)  # variant names of the Pareto front's trials
    recommended: Optional[Recommended] = None
    schema_version: _CurrentVersion = SCHEMA_VERSION

    def result(self, variant: str, fmt: str) -> Result:
        for r in self.results:
            if r.variant == variant and r.format == fmt:
                return r
        raise KeyError(f"no result for variant={variant!r} format={fmt!r}")

    def to_json(self) -> str:
        """The record as ``run.json`` text, checked by the schema ``load_run`` reads it with.

        Raises:
            ValueError: a field breaks the schema (a bug in whoever built the record); nothing is written.
        """
        text = _json_text(dataclasses.asdict(self))
        try:
            _schema().validate_json(text, strict=True)
        except pydantic.ValidationError as e:
            raise ValueError(
                f"run record does not match schema version {SCHEMA_VERSION} ({_describe(e)}); not written"
            ) from None
        return text

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json() + "\n")


@functools.cache
def _schema() -> pydantic.TypeAdapter:
    """The run.json schema, built on first use: building it costs ~35 ms, kept out of every import."""
    return pydantic.TypeAdapter(Run)


def _json_text(data: Any) -> str:
    """JSON text as written: indented, non-ASCII characters as they are, NaN/Infinity as Python's json writes them.

    A string that is not valid Unicode (a path with undecodable bytes, which Python decodes to lone
    surrogates) cannot be JSON text: such characters are written as '?'.
    """
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8", "replace").decode("utf-8")


def _where(loc: tuple) -> str:
    """A validation error's location as a field path: results[0].layers[2].size, training[0].final['val loss']."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "the record"


def _fields(kind: str, names: list[str], most: int = 6) -> str:
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"{kind} field{'s' if len(names) > 1 else ''} " + ", ".join(names[:most]) + more


def _describe(error: pydantic.ValidationError, most: int = 3) -> str:
    """The first few problems of a validation error on one line; missing and unknown fields grouped."""
    missing, unknown, parts = [], [], []
    for e in error.errors(include_url=False):
        where = _where(e["loc"])
        if e["type"] == "missing":
            missing.append(where)
        elif e["type"] == "unexpected_keyword_argument":
            unknown.append(where)
        else:
            parts.append(f"{where}: {e['msg'][:1].lower()}{e['msg'][1:]}, got {e['input']!r:.40}")
    parts += [_fields(kind, names) for kind, names in (("missing", missing), ("unknown", unknown)) if names]
    more = f"; and {len(parts) - most} more" if len(parts) > most else ""
    return "; ".join(parts[:most]) + more


def records(cls: type, items: Any) -> list:
    """Rebuild a list of record dataclasses (``Training``, ``TransformReport``...) from their JSON form.

    Checkpoints keep a finished stage's records this way; the same schema as run.json checks them.

    Raises:
        ValueError: the items do not match the schema (a damaged snapshot).
    """
    try:
        return pydantic.TypeAdapter(list[cls]).validate_python(items)
    except pydantic.ValidationError as e:
        raise ValueError(f"{cls.__name__} records do not match the schema ({_describe(e)})") from None


def load_run(path: str | Path) -> Run:
    """Read a ``run.json`` written by ``tfopt run`` (schema versions 1 to 4; see the module doc).

    Raises:
        TfoptError: if the file is missing, is not a tfopt run record, breaks the schema (the
            message names the field), or was written by a newer tfopt.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TfoptError(
            f"Run file not found: {path}. Fix: pass the run.json of a finished run (reports/<run>/run.json)."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TfoptError(f"{path} is not valid JSON ({e}). Fix: pass the run.json written by 'tfopt run'.") from None
    except OSError as e:
        raise TfoptError(
            f"Cannot read {path}: {e.strerror or e}. Fix: pass a readable reports/<run>/run.json."
        ) from None
    if not isinstance(data, dict) or "results" not in data or "pipeline" not in data:
        raise TfoptError(
            f"{path} is not a tfopt run record (no 'pipeline'/'results'). Fix: pass reports/<run>/run.json."
        )
    fix = "Fix: pass an undamaged run.json, or run the pipeline again to write a new one."
    version = data.get("schema_version", 1)  # not written by hand-made version-1 files
    if type(version) is not int or version < 1:
        raise TfoptError(
            f"{path}: run record does not match schema version {SCHEMA_VERSION} "
            f"(schema_version: should be a whole number from 1 to {SCHEMA_VERSION}, got {version!r:.40}). {fix}"
        )
    if version > SCHEMA_VERSION:
        versions = data.get("versions")
        writer = versions.get("tfopt") if isinstance(versions, dict) else None
        writer = f"{writer:.20}" if isinstance(writer, str) else None  # the tfopt that wrote it, if it says
        raise TfoptError(
            f"{path} was written by a newer tfopt{f' ({writer})' if writer else ''}: "
            f"run.json schema version {version}, this tfopt {tfopt.__version__} reads versions 1 to {SCHEMA_VERSION}. "
            f"Fix: upgrade tfopt{f' to {writer} or later' if writer else ''} to read it."
        )
    data["schema_version"] = SCHEMA_VERSION  # versions 1 to 3 need no other change (see the module doc)
    try:
        # Validated as the JSON text that is written: strict mode takes JSON objects for the dataclasses there.
        return _schema().validate_json(_json_text(data), strict=True)
    except pydantic.ValidationError as e:
        raise TfoptError(
            f"{path}: run record does not match schema version {version} ({_describe(e)}). {fix}"
        ) from None
