"""The pipeline loader: YAML with line numbers, validated by the schema and the registries.

Why a custom loader on top of ``yaml.safe_load``: users need the *line* of a bad key, and pydantic
only knows the path. The types live in ``tfopt.schema`` (below every registry); this module sits
above the registries, so it can check names (datasets, models, techniques, export formats) and
validate each component's own options (a dataset's keys, a model's ``params``, a step's
parameters) with the class that component registered, each problem reported as
``file:line: key: problem. Fix: ... Received: key=value``.

The schema's names are re-exported here, so ``from tfopt.config import ExportSpec`` keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ValidationError

from tfopt import data as data_mod
from tfopt import models
from tfopt.errors import ConfigError
from tfopt.export import EXPORTERS
from tfopt.options import describe_errors, options_class
from tfopt.schema import (
    DEFAULT_TOLERANCE,
    DataConfig,
    EarlyStoppingConfig,
    EvaluateConfig,
    ExportSpec,
    FinetuneConfig,
    ModelConfig,
    PipelineConfig,
    ReportConfig,
    Strict,
    TrainConfig,
    TransformSpec,
    VariantConfig,
)
from tfopt.transforms import TECHNIQUES

__all__ = [
    "DEFAULT_TOLERANCE",
    "DataConfig",
    "EarlyStoppingConfig",
    "EvaluateConfig",
    "ExportSpec",
    "FinetuneConfig",
    "ModelConfig",
    "PipelineConfig",
    "ReportConfig",
    "Strict",
    "TrainConfig",
    "TransformSpec",
    "VariantConfig",
    "check_references",
    "format_validation_error",
    "load",
    "loads",
    "transform_config",
]


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
                f"{source}:{n.start_mark.line + 1}: {'.'.join(map(str, path)) or '(top level)'}: "
                "not a finite number. Fix: use a finite number. "
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


def format_validation_error(
    err: ValidationError,
    source: str,
    lines: dict[tuple, int],
    model: type[BaseModel],
    prefix: tuple = (),
    *,
    owner: Optional[str] = None,
    known: Optional[list[str]] = None,
) -> str:
    """Turn pydantic's error list into one line per problem: file:line, key, problem, fix.

    ``owner`` and ``known`` word unknown keys of a component's options (see
    ``tfopt.options.describe_errors``).
    """
    msgs = []
    for loc, text in describe_errors(err, model, prefix, owner=owner, known=known):
        line = _line_for(loc, lines)
        msgs.append(f"{source}:{line}: {text}" if line else f"{source}: {text}")
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
        raise ConfigError(
            f"Pipeline file not found: {path}. Fix: check the path (see pipelines/ for examples)."
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Cannot read pipeline file {path}: {e}") from None
    return loads(text, source=str(path), default_name=path.stem)


def loads(text: str, source: str = "<string>", default_name: str = "pipeline") -> PipelineConfig:
    """Validate pipeline YAML given as text (see ``load``)."""
    data, lines = _parse_yaml(text, source)
    if data is None:
        raise ConfigError(f"{source}: the pipeline is empty. Fix: give at least 'data' and 'model'.")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}:1: a pipeline must be a mapping of keys (data, model, ...), got {type(data).__name__}."
        )
    data = dict(data)
    data.setdefault("name", default_name)
    try:
        cfg = PipelineConfig.model_validate(data, context={"export_formats": list(EXPORTERS)})
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source, lines, PipelineConfig)) from None
    check_references(cfg, source, lines)
    return cfg


def check_references(
    cfg: PipelineConfig,
    source: str = "<config>",
    lines: Optional[dict] = None,
    *,
    data: bool = True,
    model: bool = True,
) -> None:
    """Check names against the registries and validate each component's own options.

    The named dataset's options (``data``'s keys beyond name and the split keys), the named
    model's ``params`` and every step's parameters are validated with the classes those
    components registered; a step's ordering rule (e.g. nothing after qat) is checked too.
    ``data=False`` / ``model=False`` skip the dataset / the model, for a run handed them in memory
    (``tfopt.optimize``), whose config's entries only label the run.

    Raises:
        ConfigError: ``file:line`` (when ``lines`` are given) and a fix, one line per problem.
    """
    lines = lines or {}

    def fail(loc: tuple, msg: str) -> None:
        line = _line_for(loc, lines)
        raise ConfigError(f"{source}:{line}: {msg}" if line else f"{source}: {msg}")

    def check_options(entry: Any, raw: dict, prefix: tuple, owner: str, common: tuple = ()) -> None:
        cls = options_class(entry)
        try:
            cls.model_validate(raw)
        except ValidationError as e:
            known = [*common, *cls.model_fields]
            msg = format_validation_error(e, source, lines, cls, prefix, owner=owner, known=known)
            raise ConfigError(msg) from None

    def check_step_models(params: BaseModel, where: tuple) -> None:
        # A step parameter that names a registered model (distill's student) is checked as `model` is.
        for key, value in params:
            if isinstance(value, ModelConfig) and value.name is not None:
                if value.name not in models.MODELS:
                    fail(where + (key, "name"), models.MODELS.unknown_message(value.name))
                entry = models.MODELS.entry(value.name)
                check_options(entry, value.params, where + (key, "params"), f"model {value.name!r}")

    for i, spec in enumerate(cfg.export):
        if spec.format not in EXPORTERS:
            fail(("export", i), EXPORTERS.unknown_message(spec.format))

    if data and cfg.data.name not in data_mod.DATASETS:
        fail(("data", "name"), data_mod.DATASETS.unknown_message(cfg.data.name))
    if data:
        check_options(
            data_mod.DATASETS.entry(cfg.data.name),
            cfg.data.options,
            ("data",),
            f"dataset {cfg.data.name!r}",
            common=tuple(DataConfig.model_fields),
        )
    if model and cfg.model.name is not None:
        if cfg.model.name not in models.MODELS:
            fail(("model", "name"), models.MODELS.unknown_message(cfg.model.name))
        check_options(
            models.MODELS.entry(cfg.model.name), cfg.model.params, ("model", "params"), f"model {cfg.model.name!r}"
        )
    for vname, variant in cfg.variants.items():
        for i, spec in enumerate(variant.transforms):
            if spec.name not in TECHNIQUES:
                fail(("variants", vname, i), TECHNIQUES.unknown_message(spec.name))
            technique = TECHNIQUES.get(spec.name)
            try:
                technique.Config.model_validate(spec.params)
            except ValidationError as e:
                where = ("variants", vname, i, spec.name)
                raise ConfigError(format_validation_error(e, source, lines, technique.Config, where)) from None
            check_step_models(technique.Config.model_validate(spec.params), ("variants", vname, i, spec.name))
            try:  # collaborative chains: a step may refuse to follow some others (e.g. nothing after qat)
                technique.check_previous(tuple(s.name for s in variant.transforms[:i]))
            except ValueError as e:
                fail(
                    ("variants", vname, i),
                    f"variant {vname!r}: {e}. Received: transforms={[s.name for s in variant.transforms]}",
                )
    _check_search(cfg, fail)


def _check_search(cfg: PipelineConfig, fail: Any) -> None:
    """``search.space``'s technique, parameter and format names, against the registries."""
    for key, value in ((cfg.search.baseline or {}) if cfg.search is not None else {}).items():
        where = ("search", "baseline", key)
        if key == "model":
            known = options_class(models.MODELS.entry(cfg.model.name)).model_fields if cfg.model.name else {}
            for name in value if isinstance(value, dict) else {}:
                if name not in known:
                    fail(
                        where + (name,),
                        f"search.baseline.model: {name!r} is not an option of model {cfg.model.name!r}. "
                        f"Fix: use one of {', '.join(known) or 'none'}. Received: {name!r}",
                    )
        elif key not in ("learning_rate", "batch_size", "epochs", "optimizer", "max_trials"):
            fail(where, f"search.baseline: {key!r} is not searched. Fix: use learning_rate, batch_size, epochs, "
                 f"optimizer, model or max_trials. Received: {key!r}")  # fmt: skip
    space = cfg.search.space if cfg.search is not None else None
    for key, params in (space or {}).items():
        where = ("search", "space", key)
        if key == "export":
            for i, fmt in enumerate(params):
                if fmt not in EXPORTERS:
                    fail(
                        where + (i,),
                        f"search.space.export: {EXPORTERS.unknown_message(fmt)} Fix: use formats of that list.",
                    )
            continue
        if key == "finetune_epochs":
            continue
        if key not in TUNABLE:
            fail(
                where,
                f"search.space: {key!r} is not a technique tfopt tune searches. "
                f"Fix: use {', '.join(TUNABLE)}, export or finetune_epochs. Received: {key!r}",
            )
        fields = TECHNIQUES.get(key).Config.model_fields
        for name in params or {}:
            if name == "use" or (
                key == "prune" and name == "allocation"
            ):  # the search's own keys (tfopt/tune/space.py)
                continue
            if name not in fields:
                fail(
                    where + (name,),
                    f"search.space.{key}: unknown parameter {name!r}. Fix: use one of {', '.join(fields)}. "
                    f"Received: {name!r}",
                )


TUNABLE = ("distill", "prune_channels", "prune", "cluster", "qat")
"""The techniques ``tfopt tune`` chains, in the order it applies them."""


def transform_config(spec: TransformSpec) -> BaseModel:
    """The validated parameter object of one transform step (its technique's ``Config``)."""
    return TECHNIQUES.get(spec.name).Config.model_validate(spec.params)
