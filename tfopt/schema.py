"""The pipeline schema: pure, strict, typed configuration objects and nothing else.

Why pydantic: one declaration gives types, ranges, defaults and error locations. Unknown keys are
always an error (a misspelt ``epoch:`` silently ignored would train with the default and mislead
the user). This module sits below every registry, so it names no dataset, model, technique or
format: names and each component's own options are checked by the loader (``tfopt.config``),
which also turns validation errors into ``file:line`` messages.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# Default max |Keras - TFLite| on softmax outputs, per format. float32 must match to rounding;
# quantized formats legitimately move probabilities, so their bound only catches broken exports.
DEFAULT_TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "dynamic": 0.25, "int8": 0.5}
# LiteRT Quantizer formats (tfopt/export/litert_quantizer.py), bounded like their converter twins.
DEFAULT_TOLERANCE.update(
    {
        "lq_dynamic_int8": 0.25,
        "lq_weight_only_int8": 0.25,
        "lq_weight_only_int4": 0.5,
        "lq_static_int8": 0.5,
        "lq_static_int16x8": 0.25,
    }
)


class Strict(BaseModel):
    """Base of every config class: unknown keys refused, values frozen, numbers finite."""

    # No inf/NaN: `learning_rate: .inf` would otherwise train to NaN weights and report garbage.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(Strict):
    """Which dataset, how to split it, and the dataset's own options, all in one flat mapping.

    The split keys (``test_fraction``, ``val_fraction``, ``subset``) apply to every dataset; any
    other key is an option of the dataset ``name`` selects (``path``, ``image_size`` ...), kept
    here as given and checked at load against that dataset's own ``Options`` class (see
    ``tfopt.data``), so an option of one dataset is refused for another.

    Example::

        data: {name: digits, test_fraction: 0.2, val_fraction: 0.1}
        data: {name: image_folder, path: photos, image_size: [32, 32], color_mode: rgb}
    """

    # Extra keys are the dataset's options: the schema cannot know them (it sits below the
    # registries), so it keeps them and the loader validates them against the named dataset.
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    name: str
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    subset: Optional[int] = Field(None, gt=0, description="cap on training examples")

    @property
    def options(self) -> dict[str, Any]:
        """The dataset's own keys as given (everything but name and the split keys)."""
        return dict(self.model_extra or {})


class ModelConfig(Strict):
    """A registered builder (``name``) or a user's model file (``path``).

    ``params`` are the builder's options, checked at load against that model's own ``Options``
    class (see ``tfopt.models``).

    Example::

        model: {name: small_cnn, params: {filters: 32}}
        model: {path: my_model.keras}            # loaded with Keras safe mode
    """

    name: Optional[str] = None
    path: Optional[str] = None
    params: dict[str, Any] = Field(default_factory=dict)
    safe_mode: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a registered model) or 'path' (a model file)")
        if self.path is not None and self.params:
            raise ValueError("'params' applies to registered models only, not to a model file")
        return self


class EarlyStoppingConfig(Strict):
    patience: int = Field(3, gt=0)
    monitor: str = "val_loss"


class TrainConfig(Strict):
    """Baseline training recipe, and where and how every training of the run happens.

    ``epochs: 0`` keeps an already trained user model as is. Moving from one device to several
    GPUs, hosts or a TPU is one line (``strategy``); see ``tfopt/train/strategy.py``.

    Example::

        train: {epochs: 10, batch_size: 64, strategy: mirrored, precision: mixed_float16}
        train: {strategy: tpu, tpu: grpc://10.0.0.2:8470, precision: mixed_bfloat16}
    """

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(64, gt=0)
    batch_size_per: Literal["global", "replica"] = Field(
        "global", description="global: batch_size is split over the replicas; replica: each replica gets batch_size"
    )
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    early_stopping: Optional[EarlyStoppingConfig] = None
    strategy: Literal["auto", "one_device", "mirrored", "multi_worker", "tpu"] = "auto"
    device: Optional[str] = Field(None, description="one_device (or auto): e.g. /cpu:0; default: first GPU, else CPU")
    devices: Optional[list[str]] = Field(
        None, min_length=1, description="mirrored: e.g. [/gpu:0, /gpu:1]; default: all GPUs"
    )
    cross_device_ops: Optional[Literal["nccl", "hierarchical_copy", "reduction_to_one_device", "ring", "auto"]] = Field(
        None,
        description="mirrored: nccl | hierarchical_copy | reduction_to_one_device; multi_worker: auto | ring | nccl",
    )
    tpu: Optional[str] = Field(None, description="tpu: a Cloud TPU name, grpc://host:port, or local on a TPU VM")
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    checkpoint: bool = Field(True, description="back up every epoch and resume a killed run where it stopped")
    verbose: Literal[0, 1, 2] = 2

    @model_validator(mode="after")
    def _strategy_options(self) -> TrainConfig:
        if self.device is not None and self.strategy not in ("auto", "one_device"):
            raise ValueError(
                f"'device' applies to strategy one_device; for {self.strategy} use 'devices'"
                if self.strategy == "mirrored"
                else f"'device' applies to strategy one_device, not {self.strategy}"
            )
        if self.devices is not None and self.strategy != "mirrored":
            raise ValueError(f"'devices' applies to strategy mirrored, not {self.strategy}")
        if self.tpu is not None and self.strategy != "tpu":
            raise ValueError(f"'tpu' applies to strategy tpu, not {self.strategy}")
        allowed = {
            "mirrored": ("nccl", "hierarchical_copy", "reduction_to_one_device"),
            "multi_worker": ("auto", "ring", "nccl"),
        }
        if self.cross_device_ops is not None and self.cross_device_ops not in allowed.get(self.strategy, ()):
            known = ", ".join(allowed.get(self.strategy, ())) or "none (it applies to mirrored and multi_worker)"
            raise ValueError(
                f"cross_device_ops {self.cross_device_ops!r} does not apply to strategy {self.strategy}; "
                f"known for it: {known}"
            )
        if self.strategy == "tpu" and self.precision == "mixed_float16":
            raise ValueError("TPUs compute in bfloat16, not float16. Fix: use precision: mixed_bfloat16 on a TPU")
        return self


class FinetuneConfig(Strict):
    """Fine-tuning after transforms. Unset values fall back to ``train``."""

    epochs: int = Field(4, ge=0)
    learning_rate: Optional[float] = Field(None, gt=0)
    batch_size: Optional[int] = Field(None, gt=0)


class TransformSpec(Strict):
    """One step of a variant: a registered transform name and its raw parameters.

    Parameters are validated by the transform's own config class (see ``load``).
    """

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class VariantConfig(Strict):
    transforms: list[TransformSpec] = Field(min_length=1)
    finetune: Optional[FinetuneConfig] = None

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        # `pruned: [{prune: {...}}]` is shorthand for `pruned: {transforms: [...]}`.
        if isinstance(value, list):
            value = {"transforms": value}
        if isinstance(value, dict) and isinstance(value.get("transforms"), list):
            value = dict(value, transforms=[_transform_item(t) for t in value["transforms"]])
        return value


def _transform_item(item: Any) -> Any:
    if isinstance(item, str):
        return {"name": item}
    if isinstance(item, dict) and len(item) == 1:
        ((name, params),) = item.items()
        return {"name": name, "params": {} if params is None else params}
    if isinstance(item, dict) and len(item) > 1 and not {"name", "params"} >= set(item):
        names = ", ".join(map(str, item))
        raise ValueError(
            f"one transform per list item, got {len(item)} ({names}). "
            "Fix: write each as its own item, e.g. [{prune: ...}, {cluster: ...}]"
        )
    return item  # let pydantic report the shape problem


class ExportSpec(Strict):
    """One TFLite export format and its options.

    Example::

        export: [float32, dynamic, {int8: {integer_io: true, tolerance: 0.3}}]
    """

    format: str = Field(description="a registered export format (tfopt list)")
    tolerance: Optional[float] = Field(None, gt=0, description="max |Keras - TFLite| on test outputs")
    integer_io: bool = False
    calibration_samples: int = Field(200, gt=0)
    sparse: bool = Field(False, description="store pruned weights in TFLite's sparse format (float32, float16)")
    validation_samples: int = Field(50, ge=0, description="real inputs for the LiteRT Quantizer's per-tensor check")
    float_layers: list[str] = Field(
        default_factory=list,
        description="int8: Keras layers left in float (selective quantization, Intel Neural Compressor's fallback)",
    )

    @model_validator(mode="after")
    def _int8_only(self) -> ExportSpec:
        if self.integer_io and self.format != "int8":
            raise ValueError("'integer_io' applies to the int8 format only")
        if self.float_layers and (self.format != "int8" or self.integer_io or self.sparse):
            raise ValueError("'float_layers' applies to the int8 format with float inputs and outputs only")
        if self.sparse and self.format not in ("float32", "float16"):
            # Measured with ai-edge-litert 2.3.0: XNNPACK, LiteRT's default CPU delegate, fails to
            # prepare sparse int8 weights ("failed to delegate FULLY_CONNECTED"), so refuse them here.
            raise ValueError(
                "'sparse' applies to float32 and float16 only: LiteRT's default CPU delegate (XNNPACK) "
                "cannot run sparse int8 weights"
            )
        return self

    @property
    def label(self) -> str:
        """Names the file and the report row: the format, with ``_sparse`` for sparse storage."""
        if self.float_layers:
            return f"{self.format}_mixed"  # some layers in float: not the full-integer file
        return f"{self.format}_sparse" if self.sparse else self.format

    @property
    def max_abs_diff(self) -> float:
        return self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE.get(self.format, 0.5)


class EvaluateConfig(Strict):
    latency_runs: int = Field(100, ge=0, description="single-sample invocations timed; 0 disables")
    latency_warmup: int = Field(10, ge=0)
    # 25 (blocks of 4 of the default 100 runs): on the quickstart's 0.04 ms files under load, the p50
    # ratios of same-work files stayed within [0.96, 1.04] over 40 repeats, against [0.87, 1.23] with 10
    # rounds and [0.68, 1.18] timed one after the other; 100 rounds inflated the p50s by 3-8% (cold caches).
    latency_rounds: int = Field(
        25, gt=0, description="blocks the timed runs are split into, every file of the run timed in turn in each"
    )
    threads: int = Field(1, gt=0)


# What the report's recommendation may minimise; tfopt.report.recommend.OBJECTIVES computes them (a test keeps
# the two in step: the schema sits below the report and cannot import it).
Objective = Literal["gzip_bytes", "size_bytes", "latency_p50", "macs"]


class ReportConfig(Strict):
    """How the report picks the file to deploy: the smallest ``objective`` within an accuracy budget.

    The budget is on **validation** accuracy against the baseline's float32 file; test figures are
    only reported for the chosen file. See docs/reports.md.

    Example::

        report: {max_accuracy_drop: 0.01, objective: gzip_bytes}     # at most 1 point lost (the defaults)
        report: {max_accuracy_drop: 0.02, relative: true}           # at most 2% of the baseline's accuracy
        report: {objective: latency_p50}                             # the fastest file within 1 point
    """

    max_accuracy_drop: float = Field(
        0.01, ge=0, le=1, description="validation accuracy a file may lose, as a fraction (0.01 = 1 point)"
    )
    relative: bool = Field(False, description="true: max_accuracy_drop is a fraction of the baseline's accuracy")
    objective: Objective = Field("gzip_bytes", description="what the chosen file minimises")


class RelativeDrop(Strict):
    relative: float = Field(gt=0, lt=1, description="fraction of the baseline's accuracy, e.g. 0.01")


class SensitivityConfig(Strict):
    """The per-layer sensitivity ``tfopt tune`` measures first (no fine-tune: cheap)."""

    sparsities: list[float] = Field(
        default_factory=lambda: [0.5, 0.75, 0.9, 0.97], min_length=1, description="each layer pruned alone to these"
    )
    quantization: bool = Field(True, description="each layer's int8 error (TensorFlow's quantization debugger)")

    @field_validator("sparsities")
    @classmethod
    def _in_range(cls, v: list[float]) -> list[float]:
        if any(not 0 < s < 1 for s in v):
            raise ValueError(f"each sparsity must be in (0, 1). Fix: e.g. [0.5, 0.75, 0.9]; got {v}")
        return sorted(set(v))


class SearchConfig(Strict):
    """``tfopt tune``'s budget and search (docs/tune.md).

    ``space`` maps a technique (prune, cluster, qat, prune_channels) to its searched parameters:
    ``[low, high]`` a range (integers if both are), a longer list or strings a choice, a scalar
    fixed; ``export`` lists the formats tried, ``finetune_epochs`` the fine-tune length. Technique
    and parameter names are checked against the registries by the loader (``tfopt.config``).

    Example::

        search: {objective: gzip_bytes, max_accuracy_drop: 0.01, max_trials: 20, tuner: bayesian,
                 space: {prune: {final_sparsity: [0.5, 0.95]}, cluster: {number_of_clusters: [8, 32]},
                         export: [int8]}}
    """

    objective: Literal["gzip_bytes", "size_bytes", "latency_p50", "macs"] = "gzip_bytes"
    max_accuracy_drop: float | RelativeDrop = Field(0.01, description="absolute (0.01 = 1 point), or {relative: f}")
    max_trials: int = Field(12, gt=0)
    time_budget: Optional[str | float] = Field(None, description="seconds, or e.g. 30m, 1h, 90s")
    tuner: Literal["bayesian", "hyperband", "random"] = "bayesian"
    space: Optional[dict[str, Any]] = Field(None, description="default: built from the techniques the model takes")
    sensitivity: SensitivityConfig = Field(default_factory=SensitivityConfig)
    fallback: int = Field(
        2,
        ge=0,
        description="an int8 trial that misses the budget is exported again with up to this many of the most "
        "sensitive layers left float (Intel Neural Compressor's fallback); 0: never",
    )
    margin: float = Field(
        1.0,
        ge=0,
        le=5,
        description="a trial meets the budget when its validation drop plus this many paired standard errors "
        "fits: the best of many trials is optimistic on validation (the winner's curse); 0: the figure alone",
    )
    seed: Optional[int] = Field(None, ge=0, lt=2**32, description="the oracle's seed; default: the pipeline's")
    baseline: Optional[dict[str, Any]] = Field(
        None, description="search the baseline's training first: learning_rate, batch_size, epochs, optimizer, model"
    )

    @field_validator("max_accuracy_drop")
    @classmethod
    def _drop(cls, v: float | RelativeDrop) -> float | RelativeDrop:
        if isinstance(v, float | int) and not 0 <= v < 1:
            raise ValueError(
                "an absolute drop is a fraction of accuracy in [0, 1). "
                f"Fix: e.g. 0.01 for 1 point, or {{relative: 0.01}}; got {v}"
            )
        return v

    @field_validator("time_budget")
    @classmethod
    def _duration(cls, v: Optional[str | float]) -> Optional[str | float]:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("space")
    @classmethod
    def _space_shape(cls, v: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
        for key, params in (v or {}).items():
            if key in ("export", "finetune_epochs"):
                if key == "export" and not (
                    isinstance(params, list) and params and all(isinstance(f, str) for f in params)
                ):
                    raise ValueError(f"space.export: a list of format names. Fix: e.g. [int8, dynamic]; got {params!r}")
                if key == "finetune_epochs" and not (_is_range(params) or isinstance(params, int)):
                    raise ValueError(
                        f"space.finetune_epochs: an integer or [low, high]. Fix: e.g. 4 or [2, 8]; got {params!r}"
                    )
                continue
            if params is not None and not isinstance(params, dict):
                raise ValueError(
                    f"space.{key}: a mapping of parameter -> [low, high] | [choices] | value. "
                    f"Fix: e.g. {{final_sparsity: [0.5, 0.9]}}; got {params!r}"
                )
            for name, value in (params or {}).items():
                if isinstance(value, list) and not all(
                    isinstance(x, (int, float, str, bool, list, dict)) for x in value
                ):
                    raise ValueError(
                        f"space.{key}.{name}: each choice is a number, string, boolean, list or mapping. "
                        f"Fix: e.g. skip: [[], [classifier]] to search whether to skip a layer; got {value!r}"
                    )
                if isinstance(value, list) and (
                    not value
                    or (
                        len(value) == 2
                        and not _is_range(value)
                        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
                    )
                ):
                    raise ValueError(
                        f"space.{key}.{name}: [low, high] needs low < high. Fix: e.g. [0.5, 0.9]; got {value!r}"
                    )
        return v

    @property
    def drop(self) -> tuple[float, bool]:
        """(max drop, relative?)."""
        if isinstance(self.max_accuracy_drop, RelativeDrop):
            return self.max_accuracy_drop.relative, True
        return float(self.max_accuracy_drop), False

    @property
    def seconds(self) -> Optional[float]:
        return None if self.time_budget is None else parse_duration(self.time_budget)


def _is_range(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        and v[0] < v[1]
    )


def parse_duration(v: str | float) -> float:
    """Seconds from 90, "90s", "30m", "1.5h"; ValueError otherwise."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if v <= 0:
            raise ValueError(f"a time budget must be positive. Fix: e.g. 900 (seconds) or 30m; got {v}")
        return float(v)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(v))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"not a duration. Fix: write seconds or e.g. 90s, 30m, 1h; got {v!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class PipelineConfig(Strict):
    """A whole pipeline: data, model, baseline training, variants, exports."""

    name: str
    seed: int = Field(0, ge=0, lt=2**32, description="NumPy and TensorFlow accept 32-bit seeds")
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    variants: dict[str, VariantConfig] = Field(default_factory=dict)
    export: list[ExportSpec] = Field(default_factory=lambda: [ExportSpec(format="float32")])
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    search: Optional[SearchConfig] = Field(None, description="tfopt tune's budget and space (default: built)")

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("use letters, digits, '_', '-' or '.' (it names the run's folders)")
        return v

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, v: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        for name in v:
            if name == "baseline":
                raise ValueError("'baseline' is reserved: the baseline is always trained and exported")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name)):
                raise ValueError(f"variant name {name!r}: use letters, digits, '_', '-' or '.'")
        return v

    @field_validator("export", mode="before")
    @classmethod
    def _export_items(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for item in v:
            if isinstance(item, str):
                item = {"format": item}
            elif isinstance(item, dict) and len(item) == 1 and "format" not in item:
                ((fmt, opts),) = item.items()
                if not (isinstance(opts, dict) or opts is None) and fmt not in ExportSpec.model_fields:
                    raise ValueError(
                        f"the options of format {fmt!r} must be a mapping. "
                        f"Fix: write e.g. {{{fmt}: {{tolerance: 0.3}}}}, or just {fmt}"
                    )
                item = dict(opts or {}, format=fmt) if isinstance(opts, dict) or opts is None else item
            out.append(item)
        return out

    @field_validator("export")
    @classmethod
    def _unique_formats(cls, v: list[ExportSpec], info: ValidationInfo) -> list[ExportSpec]:
        seen = [e.label for e in v]
        dupes = sorted({f for f in seen if seen.count(f) > 1})
        if dupes:
            raise ValueError(f"export format listed twice: {', '.join(dupes)}")
        if not v:
            # The formats are the exporters' registry's to list; the loader passes them as context.
            known = (info.context or {}).get("export_formats")
            listed = f" out of: {', '.join(known)}" if known else " (tfopt list shows them)"
            raise ValueError(f"list at least one format{listed}. Fix: e.g. export: [float32]")
        return v
