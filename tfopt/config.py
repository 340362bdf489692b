"""Typed, strict pipeline schema and its YAML loader.

Why pydantic: one declaration gives types, ranges, defaults and error locations. Why a custom
loader on top of ``yaml.safe_load``: users need the *line* of a bad key, and pydantic only knows
the path. Unknown keys are always an error (a misspelt ``epoch:`` silently ignored would train
with the default and mislead the user), with the closest valid key suggested.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tfopt.errors import ConfigError

EXPORT_FORMATS = ("float32", "dynamic", "float16", "int8")

# Default max |Keras - TFLite| on softmax outputs, per format. float32 must match to rounding;
# quantized formats legitimately move probabilities, so their bound only catches broken exports.
DEFAULT_TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "dynamic": 0.25, "int8": 0.5}
# LiteRT Quantizer formats (tfopt/export/litert_quantizer.py), bounded like their converter twins.
DEFAULT_TOLERANCE.update({"lq_dynamic_int8": 0.25, "lq_weight_only_int8": 0.25, "lq_weight_only_int4": 0.5,
                          "lq_static_int8": 0.5, "lq_static_int16x8": 0.25})


class Strict(BaseModel):
    # No inf/NaN: `learning_rate: .inf` would otherwise train to NaN weights and report garbage.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(Strict):
    """Which dataset and how to split it.

    Example::

        data: {name: digits, test_fraction: 0.2, val_fraction: 0.1}
    """

    name: str
    path: Optional[str] = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    subset: Optional[int] = Field(None, gt=0, description="cap on training examples")
    image_size: Optional[tuple[int, int]] = None
    color_mode: Literal["grayscale", "rgb"] = "grayscale"


class ModelConfig(Strict):
    """A registered builder (``name``) or a user's model file (``path``).

    Example::

        model: {name: small_cnn, params: {filters: 32}}
        model: {path: my_model.keras}            # loaded with Keras safe mode
    """

    name: Optional[str] = None
    path: Optional[str] = None
    params: dict[str, Any] = Field(default_factory=dict)
    safe_mode: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> "ModelConfig":
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
    devices: Optional[list[str]] = Field(None, min_length=1, description="mirrored: e.g. [/gpu:0, /gpu:1]; default: all GPUs")
    cross_device_ops: Optional[Literal["nccl", "hierarchical_copy", "reduction_to_one_device", "ring", "auto"]] = Field(
        None, description="mirrored: nccl | hierarchical_copy | reduction_to_one_device; multi_worker: auto | ring | nccl"
    )
    tpu: Optional[str] = Field(None, description="tpu: a Cloud TPU name, grpc://host:port, or local on a TPU VM")
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    checkpoint: bool = Field(True, description="back up every epoch and resume a killed run where it stopped")
    verbose: Literal[0, 1, 2] = 2

    @model_validator(mode="after")
    def _strategy_options(self) -> "TrainConfig":
        if self.device is not None and self.strategy not in ("auto", "one_device"):
            raise ValueError(f"'device' applies to strategy one_device; for {self.strategy} use 'devices'" if self.strategy == "mirrored"
                             else f"'device' applies to strategy one_device, not {self.strategy}")
        if self.devices is not None and self.strategy != "mirrored":
            raise ValueError(f"'devices' applies to strategy mirrored, not {self.strategy}")
        if self.tpu is not None and self.strategy != "tpu":
            raise ValueError(f"'tpu' applies to strategy tpu, not {self.strategy}")
        allowed = {"mirrored": ("nccl", "hierarchical_copy", "reduction_to_one_device"), "multi_worker": ("auto", "ring", "nccl")}
        if self.cross_device_ops is not None and self.cross_device_ops not in allowed.get(self.strategy, ()):
            known = ", ".join(allowed.get(self.strategy, ())) or "none (it applies to mirrored and multi_worker)"
            raise ValueError(f"cross_device_ops {self.cross_device_ops!r} does not apply to strategy {self.strategy}; known for it: {known}")
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
        (name, params), = item.items()
        return {"name": name, "params": {} if params is None else params}
    if isinstance(item, dict) and len(item) > 1 and not {"name", "params"} >= set(item):
        names = ", ".join(map(str, item))
        raise ValueError(f"one transform per list item, got {len(item)} ({names}). Fix: write each as its own item, e.g. [{{prune: ...}}, {{cluster: ...}}]")
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

    @model_validator(mode="after")
    def _int8_only(self) -> "ExportSpec":
        if self.integer_io and self.format != "int8":
            raise ValueError("'integer_io' applies to the int8 format only")
        if self.sparse and self.format not in ("float32", "float16"):
            # Measured with ai-edge-litert 2.3.0: XNNPACK, LiteRT's default CPU delegate, fails to
            # prepare sparse int8 weights ("failed to delegate FULLY_CONNECTED"), so refuse them here.
            raise ValueError("'sparse' applies to float32 and float16 only: LiteRT's default CPU delegate (XNNPACK) "
                             "cannot run sparse int8 weights")
        return self

    @property
    def label(self) -> str:
        """Names the file and the report row: the format, with ``_sparse`` for sparse storage."""
        return f"{self.format}_sparse" if self.sparse else self.format

    @property
    def max_abs_diff(self) -> float:
        return self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE.get(self.format, 0.5)


class EvaluateConfig(Strict):
    latency_runs: int = Field(100, ge=0, description="single-sample invocations timed; 0 disables")
    latency_warmup: int = Field(10, ge=0)
    threads: int = Field(1, gt=0)


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
                (fmt, opts), = item.items()
                if not (isinstance(opts, dict) or opts is None) and fmt not in ExportSpec.model_fields:
                    raise ValueError(f"the options of format {fmt!r} must be a mapping. Fix: write e.g. {{{fmt}: {{tolerance: 0.3}}}}, or just {fmt}")
                item = dict(opts or {}, format=fmt) if isinstance(opts, dict) or opts is None else item
            out.append(item)
        return out

    @field_validator("export")
    @classmethod
    def _unique_formats(cls, v: list[ExportSpec]) -> list[ExportSpec]:
        seen = [e.label for e in v]
        dupes = sorted({f for f in seen if seen.count(f) > 1})
        if dupes:
            raise ValueError(f"export format listed twice: {', '.join(dupes)}")
        if not v:
            raise ValueError(f"list at least one format out of: {', '.join(EXPORT_FORMATS)}")
        return v


# --------------------------------------------------------------------------- YAML with lines


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML safely and map each key path to its 1-based line number."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem}). Fix the syntax at that line.") from None
    lines: dict[tuple, int] = {}

    visited: set[int] = set()

    def walk(n: yaml.Node, path: tuple) -> None:
        lines.setdefault(path, n.start_mark.line + 1)
        if id(n) in visited:  # an alias seen before (`a: &x [*x]` refers to itself)
            return
        visited.add(id(n))
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in n.value:
                key = k.value
                if key in seen:
                    raise ConfigError(
                        f"{source}:{k.start_mark.line + 1}: key {'.'.join(map(str, path + (key,)))!s} "
                        "appears twice. Fix: keep one of them."
                    )
                seen.add(key)
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, path + (i,))
        elif n.tag == "tag:yaml.org,2002:float" and n.value.lower().lstrip("+-") in (".nan", ".inf"):
            # .nan/.inf mean nothing in a pipeline, and free-form mappings (model.params) would pass
            # them on to a model builder that fails deep inside TensorFlow.
            value = float("nan") if "nan" in n.value.lower() else float(n.value.lower().replace(".inf", "inf"))
            raise ConfigError(
                f"{source}:{n.start_mark.line + 1}: {'.'.join(map(str, path)) or '(top level)'}: not a finite number. Fix: use a finite number. "
                f"Received: {path[-1] if path else 'value'}={value!r}"
            )

    if node is not None:
        walk(node, ())
    return data, lines


def _line_for(loc: tuple, lines: dict[tuple, int]) -> Optional[int]:
    # Pydantic locations contain synthetic steps ('transforms', 'params', union tags) that
    # are not in the YAML: skip those and keep the deepest real match.
    path: tuple = ()
    best = lines.get(())
    for part in loc:
        for candidate in (part, str(part)):
            if path + (candidate,) in lines:
                path = path + (candidate,)
                best = lines[path]
                break
    return best


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part in ("transforms", "params") or (isinstance(part, str) and ("[" in part or part.startswith("function-"))):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at the parent of ``loc`` (for 'did you mean')."""
    cur: Any = model
    for part in loc[:-1]:
        if isinstance(cur, type) and issubclass(cur, BaseModel) and part in cur.model_fields:
            ann = cur.model_fields[part].annotation
            cur = _unwrap(ann)
        elif part == "transforms" and cur is VariantConfig:
            cur = TransformSpec
        else:
            cur = _unwrap(cur) if not isinstance(cur, type) else cur
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return list(cur.model_fields)
    return []


def _unwrap(ann: Any) -> Any:
    """Peel Optional/list/dict to the inner BaseModel class, if any."""
    for arg in getattr(ann, "__args__", ()) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return ann


# Fixes for pydantic's generic error types; the transforms' own ValueErrors carry their own.
_FIXES = {
    "dict_type": "write a mapping (key: value), as in the pipeline reference.",
    "model_type": "write a mapping (key: value), as in the pipeline reference.",
    "list_type": "write a list, e.g. [a, b].",
    "tuple_type": "write a list, e.g. [64, 64].",
    "int_parsing": "use a whole number.", "int_type": "use a whole number.", "int_from_float": "use a whole number.",
    "float_parsing": "use a number.", "float_type": "use a number.", "finite_number": "use a finite number.",
    "bool_parsing": "use true or false.", "bool_type": "use true or false.",
    "string_type": "use a text value (quote it if it looks like a number).",
    "greater_than": "use a value in that range.", "greater_than_equal": "use a value in that range.",
    "less_than": "use a value in that range.", "less_than_equal": "use a value in that range.",
    "literal_error": "use one of those values.",
    "too_short": "give at least one item (a variant lists its transforms, e.g. [{prune: {final_sparsity: 0.5}}]).",
}


def format_validation_error(
    err: ValidationError, source: str, lines: dict[tuple, int], model: type[BaseModel], prefix: tuple = ()
) -> str:
    """Turn pydantic's error list into one line per problem: file:line, key, problem, fix."""
    msgs = []
    for e in err.errors():
        loc = prefix + tuple(e["loc"])
        line = _line_for(loc, lines)
        where = f"{source}:{line}" if line else source
        key = _dotted(loc)
        if e["type"] == "extra_forbidden":
            bad = str(loc[-1])
            known = _known_fields(model, tuple(e["loc"]))
            close = difflib.get_close_matches(bad, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            msgs.append(f"{where}: unknown key {key!r}.{hint} Known keys here: {', '.join(known)}.")
        elif e["type"] == "missing":
            msgs.append(f"{where}: missing required key {key!r}. Fix: add it.")
        else:
            received = e.get("input")
            rec = "" if isinstance(received, (dict, list)) else f" Received: {key.split('.')[-1]}={received!r}"
            msg = e["msg"].removeprefix("Value error, ")
            fix = _FIXES.get(e["type"], "")
            msgs.append(f"{where}: {key}: {msg}.{' Fix: ' + fix if fix and 'Fix:' not in msg else ''}{rec}")
    return "\n".join(msgs)


def load(path: str | Path) -> PipelineConfig:
    """Load and validate a pipeline YAML file.

    Raises:
        ConfigError: with ``file:line`` and a fix for every problem found.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Pipeline file not found: {path}. Fix: check the path (see pipelines/ for examples).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Cannot read pipeline file {path}: {e}") from None
    return loads(text, source=str(path), default_name=path.stem)


def loads(text: str, source: str = "<string>", default_name: str = "pipeline") -> PipelineConfig:
    """Validate pipeline YAML given as text (see ``load``)."""
    data, lines = _parse_yaml(text, source)
    if data is None:
        raise ConfigError(f"{source}: the pipeline is empty. Fix: give at least 'data' and 'model'.")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: a pipeline must be a mapping of keys (data, model, ...), got {type(data).__name__}.")
    data = dict(data)
    data.setdefault("name", default_name)
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source, lines, PipelineConfig)) from None
    check_references(cfg, source, lines)
    return cfg


def check_references(cfg: PipelineConfig, source: str = "<config>", lines: Optional[dict] = None) -> None:
    """Check names against the registries and validate each transform's own parameters."""
    from tfopt import data as data_mod, models, transforms

    from tfopt.export import EXPORTERS

    lines = lines or {}

    def fail(loc: tuple, msg: str) -> None:
        line = _line_for(loc, lines)
        raise ConfigError(f"{source}:{line}: {msg}" if line else f"{source}: {msg}")

    for i, spec in enumerate(cfg.export):
        if spec.format not in EXPORTERS:
            fail(("export", i), EXPORTERS.unknown_message(spec.format))

    if cfg.data.name not in data_mod.DATASETS:
        fail(("data", "name"), data_mod.DATASETS.unknown_message(cfg.data.name))
    if cfg.model.name is not None and cfg.model.name not in models.MODELS:
        fail(("model", "name"), models.MODELS.unknown_message(cfg.model.name))
    for vname, variant in cfg.variants.items():
        for i, spec in enumerate(variant.transforms):
            loc = ("variants", vname, i, spec.name)
            if spec.name not in transforms.TRANSFORMS and spec.name not in transforms.KERAS3_TRANSFORMS:
                fail(("variants", vname, i), transforms.TRANSFORMS.unknown_message(spec.name))
            cls = transforms.any_transform(spec.name)  # a Keras-3-only technique (quantize) validates too
            try:
                cls.Config.model_validate(spec.params)
            except ValidationError as e:
                raise ConfigError(format_validation_error(e, source, lines, cls.Config, prefix=loc)) from None
            try:  # collaborative chains: a step may refuse to follow some others (e.g. nothing after qat)
                cls.check_previous(tuple(s.name for s in variant.transforms[:i]))
            except ValueError as e:
                fail(("variants", vname, i), f"variant {vname!r}: {e}. Received: transforms={[s.name for s in variant.transforms]}")


def transform_config(spec: TransformSpec) -> BaseModel:
    """The validated parameter object of one transform step."""
    from tfopt import transforms

    return transforms.any_transform(spec.name).Config.model_validate(spec.params)
