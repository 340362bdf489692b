"""The search space: ``search.space`` (or a default) as keras-tuner hyperparameters, and a trial's
values back as a variant (the same ``VariantConfig`` a YAML variant is).

A technique in the space is one optional step of the chain ``distill -> prune_channels -> prune ->
cluster -> qat``; its reserved key ``use`` says whether the search may leave it out (``[true, false]``, the
default) or always applies it (``true``). ``prune`` also gets ``prune/allocation``: ``uniform``
(one sparsity for every layer) or ``sensitivity`` (per-layer sparsities from
``sensitivity.allocate``, same overall sparsity). After ``distill`` the model is the student, whose
layers the baseline's sensitivity does not describe: its pruning is uniform.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from tfopt.config import TUNABLE
from tfopt.results import LayerSensitivity
from tfopt.schema import ExportSpec, PipelineConfig, VariantConfig
from tfopt.tune.sensitivity import allocate

CHAIN = TUNABLE  # the order tfopt applies them


def default_space(cfg: PipelineConfig, backend_kind: str) -> dict[str, Any]:
    """A space from the techniques that apply to the model: magnitude pruning (always), clustering and
    QAT (each optional), full-integer int8 files, at most ``DEFAULT_EPOCHS`` fine-tune epochs per step.

    Sized so the quickstart's search (12 trials) fits in 10 minutes on 2 loaded cores (docs/tune.md).
    """
    space: dict[str, Any] = {
        "prune": {"use": True, "final_sparsity": [0.7, 0.95]},
        "cluster": {"use": [True, False], "number_of_clusters": [8, 32]},
        "qat": {"use": [True, False]},
        "export": ["int8"],
        "finetune_epochs": max(1, min(cfg.finetune.epochs, DEFAULT_EPOCHS)),
    }
    if backend_kind != "tf_keras":
        space["prune"]["allocation"] = ["uniform"]  # per-layer sparsities are a tf_keras prune option
    return space


DEFAULT_EPOCHS = 4


def declare(hp: Any, space: dict[str, Any], epochs: bool = True) -> Any:
    """Declare ``space`` on a ``keras_tuner.HyperParameters`` (returned); ``epochs`` False leaves the
    fine-tune length to the oracle (Hyperband's ``tuner/epochs``)."""
    for tech in CHAIN:
        if tech not in space:
            continue
        params = dict(space[tech] or {})
        use = params.pop("use", [True, False])
        param(hp, f"use_{tech}", use)
        if tech == "prune" and "sparsity_m_by_n" not in params:
            param(hp, "prune/allocation", params.pop("allocation", ["sensitivity", "uniform"]))
        for name, value in params.items():
            param(hp, f"{tech}/{name}", value)
    param(hp, "export", space.get("export", ["int8"]))
    if epochs:
        param(hp, "finetune_epochs", space.get("finetune_epochs", 4))
    return hp


def param(hp: Any, name: str, value: Any) -> None:
    """``[low, high]``: a range (Int if both are integers); another list: a choice; a scalar: fixed.

    Choices that are lists or mappings (``skip: [[], [classifier]]``, ``student: [{name: ...}, ...]``)
    and mapping values are kept as JSON text (keras-tuner's values are scalars) and decoded by
    ``to_variant``.
    """
    if isinstance(value, dict):
        value = _JSON + json.dumps(value, sort_keys=True)
    if isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value):
        value = [_JSON + json.dumps(v, sort_keys=True) for v in value]
    numeric = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if numeric and len(value) == 2 and value[0] < value[1]:
        if all(isinstance(v, int) for v in value):
            hp.Int(name, value[0], value[1])
        else:  # a learning rate is searched on a log scale
            log = name.endswith("learning_rate") and value[0] > 0
            hp.Float(name, float(value[0]), float(value[1]), sampling="log" if log else "linear")
    elif isinstance(value, list) and sorted(map(repr, value)) == ["False", "True"]:
        hp.Boolean(name)
    elif isinstance(value, list):
        if len(set(map(repr, value))) == 1:
            hp.Fixed(name, value[0])
        else:
            hp.Choice(name, value)
    else:
        hp.Fixed(name, value)


def to_variant(
    values: dict[str, Any],
    sensitivity: Sequence[LayerSensitivity] = (),
    sparsities: Sequence[float] = (),
    reference: Optional[float] = None,
) -> tuple[VariantConfig, ExportSpec, int]:
    """A trial's values as (the variant to apply, the export format, fine-tune epochs)."""
    steps: list[dict[str, Any]] = []
    for tech in CHAIN:
        if not values.get(f"use_{tech}", False):
            continue
        params = {k.split("/", 1)[1]: _decoded(v) for k, v in values.items() if k.startswith(f"{tech}/")}
        allocation = params.pop("allocation", None)
        student = any("distill" in s for s in steps)  # the sensitivity was measured on the teacher's layers
        if tech == "prune" and allocation == "sensitivity" and sensitivity and reference is not None and not student:
            params["sparsities"] = allocate(sensitivity, sparsities, float(params["final_sparsity"]), reference)
        steps.append({tech: params})
    if not steps:  # the search left every technique out: the baseline itself, exported
        steps = [{"prune": {"final_sparsity": 0.0, "schedule": "constant"}}]
    epochs = int(values.get("tuner/epochs", values.get("finetune_epochs", 1)))
    return VariantConfig.model_validate(steps), ExportSpec(format=str(values.get("export", "int8"))), max(epochs, 1)


_JSON = "json:"


def _decoded(v: Any) -> Any:
    return json.loads(v[len(_JSON) :]) if isinstance(v, str) and v.startswith(_JSON) else v


def budget_of(space: dict[str, Any], cfg: PipelineConfig) -> int:
    """The most fine-tune epochs a trial gets (Hyperband's ``max_epochs``)."""
    value = space.get("finetune_epochs", cfg.finetune.epochs)
    return int(max(value) if isinstance(value, list) else value) or 1
