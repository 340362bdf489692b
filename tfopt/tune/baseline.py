"""``search.baseline``: a keras-tuner search of the baseline's training before the compression search.

The classic keras-tuner use: each trial trains the pipeline's model with other ``train:`` values
(learning_rate, batch_size, epochs, optimizer) and model ``params``, with the same function ``tfopt
run`` trains its baseline with (``train_baseline``), and is scored on its validation accuracy. The
best values become the pipeline's ``train:`` and ``model.params``, and the baseline is then trained
once more with them, checkpointed as usual.

Example::

    search:
      baseline: {max_trials: 4, learning_rate: [3.0e-4, 3.0e-3], batch_size: [32, 64], model: {dense: [32, 128]}}
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

from tfopt.io import atomic_write_text
from tfopt.pipeline import accuracy, train_baseline
from tfopt.results import Trial, records
from tfopt.schema import PipelineConfig, SearchConfig
from tfopt.train.checkpoint import RunCheckpoints
from tfopt.train.precision import precision_policy
from tfopt.tune import tuner as tuner_mod
from tfopt.tune.space import param

TRAIN_KEYS = ("learning_rate", "batch_size", "epochs", "optimizer")


def search_baseline(
    cfg: PipelineConfig, search: SearchConfig, splits: Any, project: Path, log: Callable[[str], None]
) -> tuple[PipelineConfig, list[Trial]]:
    """The pipeline with the best training values found on validation, and the trials that found them."""
    kt = tuner_mod.keras_tuner()
    space = dict(search.baseline or {})
    max_trials = int(space.pop("max_trials", 4))
    hp = kt.HyperParameters()
    for key, value in space.items():
        if key == "model":
            for name, v in value.items():
                param(hp, f"model/{name}", v)
        else:
            param(hp, f"train/{key}", value)
    seed = search.seed if search.seed is not None else cfg.seed
    kind = "random" if search.tuner == "hyperband" else search.tuner  # epochs are a searched value here
    oracle = tuner_mod.make_oracle(kind, hp, max_trials, 1, seed)

    def trial_fn(trial: Any) -> dict:
        start, values = time.monotonic(), dict(trial.hyperparameters.values)
        trial_cfg = with_values(cfg, values)
        with precision_policy(cfg.train.precision):
            base = train_baseline(
                trial_cfg, splits, RunCheckpoints(project, enabled=False), project / "tb", lambda _: None
            )
        val = accuracy(base.model.predict(splits.x_val, batch_size=256, verbose=0), splits.y_val)
        record = Trial(trial.trial_id, f"baseline_trial_{trial.trial_id}", values, "COMPLETED",
                       round(time.monotonic() - start, 3), "keras", val, None, round(1 - val, 6), False,
                       tuner_id="baseline")  # fmt: skip
        atomic_write_text(
            project / f"trial_{trial.trial_id}" / "tfopt_trial.json", json.dumps(dataclasses.asdict(record))
        )
        log(f"[tfopt] baseline trial {trial.trial_id} ({len(_done(project))}/{max_trials}): val acc {val:.4f}  "
            f"{record.seconds:.1f}s  [{' '.join(f'{k}={v}' for k, v in values.items())}]")  # fmt: skip
        return {"score": 1 - val}

    tuner = tuner_mod.tuner_class()(oracle, trial_fn, str(project.parent), project.name, max_trials=max_trials)
    try:
        tuner.search(verbose=0)
    except tuner_mod.SearchStopped:
        pass
    trials = _done(project)
    best = max(trials, key=lambda t: (t.val_accuracy, -int(t.trial_id)))
    log(f"[tfopt] baseline search: best {best.variant} (val acc {best.val_accuracy:.4f}): {best.params}")
    return with_values(cfg, best.params), trials


def with_values(cfg: PipelineConfig, values: dict[str, Any]) -> PipelineConfig:
    """``cfg`` with a baseline trial's ``train/...`` and ``model/...`` values in place."""
    train = {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("train/")}
    params = {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("model/")}
    data = cfg.model_dump(mode="json")
    data["train"].update(train)
    data["model"]["params"].update(params)
    return PipelineConfig.model_validate(data)  # validated: a bad value fails here, not in training


def _done(project: Path) -> list[Trial]:
    paths = sorted(project.glob("trial_*/tfopt_trial.json"))
    return records(Trial, [json.loads(p.read_text(encoding="utf-8")) for p in paths])
