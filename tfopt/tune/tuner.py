"""The keras-tuner side: a custom tuner whose trials are tfopt variants, and the oracles that propose them.

keras-tuner's oracle (Bayesian optimisation, Hyperband or random) proposes hyperparameters;
``TfoptTuner.run_trial`` hands them to a trial function (``tfopt.tune.search``: build the variant,
fine-tune, export, evaluate on validation) and returns its score for the oracle to minimise. The
tuner's project folder keeps every finished trial, so a killed search started again with
``overwrite=False`` continues where it stopped; keras-tuner's chief/worker mode (environment
``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``) shares one oracle
between processes or hosts.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

from tfopt.errors import ConfigError

ORACLES = ("bayesian", "hyperband", "random")


class SearchStopped(Exception):
    """Raised by the tuner when the time budget or the trial count is spent."""


def keras_tuner() -> Any:
    import keras_tuner as kt  # imports Keras 3: kept out of tfopt's import (tfopt itself trains with tf_keras)

    return kt


def make_oracle(kind: str, hp: Any, max_trials: int, max_epochs: int, seed: int) -> Any:
    """keras-tuner's oracle for ``search.tuner``, minimising the trial's ``score``."""
    kt = keras_tuner()
    objective = kt.Objective("score", direction="min")
    common = dict(objective=objective, hyperparameters=hp, seed=seed, tune_new_entries=False, allow_new_entries=False)
    if kind == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=max_trials, num_initial_points=2, **common)
    if kind == "random":
        return kt.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if kind == "hyperband":
        return kt.oracles.HyperbandOracle(max_epochs=max(max_epochs, 2), factor=3, **common)
    raise ConfigError(f"Unknown search.tuner {kind!r}. Fix: use one of {', '.join(ORACLES)}. Received: {kind!r}")


def tuner_class() -> type:
    """``TfoptTuner``, defined on first use so importing tfopt does not import keras-tuner (and Keras 3)."""
    kt = keras_tuner()

    class TfoptTuner(kt.engine.base_tuner.BaseTuner):
        """Runs each trial through ``trial_fn(trial) -> metrics`` (a dict holding ``score``).

        ``after_trial(trial)`` runs once the trial is saved in the project folder (progress lines; a
        test raises from it to simulate a kill). The search stops, trials in flight finishing, once
        ``deadline`` (time.monotonic) passes or ``max_trials`` trials are done.
        """

        def __init__(
            self,
            oracle: Any,
            trial_fn: Callable[[Any], dict],
            directory: str,
            project_name: str,
            after_trial: Optional[Callable[[Any], None]] = None,
            deadline: Optional[float] = None,
            max_trials: Optional[int] = None,
        ):
            self.trial_fn, self.after_trial = trial_fn, after_trial
            self.deadline, self.max_trials = deadline, max_trials
            super().__init__(oracle, hypermodel=None, directory=directory, project_name=project_name, overwrite=False)

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict:
            return self.trial_fn(trial)

        def pre_create_trial(self) -> None:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise SearchStopped("time budget spent")
            if self.max_trials is not None and _finished(self.oracle) >= self.max_trials:
                raise SearchStopped("trial count reached")

        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)  # the oracle records it and the project folder keeps it
            if self.after_trial is not None:
                self.after_trial(trial)

        def save_model(self, trial_id: str, model: Any, step: int = 0) -> None:
            """Nothing to do: each trial writes its own files (``tfopt.tune.search``)."""

        def load_model(self, trial: Any) -> Any:
            raise NotImplementedError("tfopt trials are files in the project folder, not Keras models to reload")

    return TfoptTuner


def _finished(oracle: Any) -> int:
    try:
        return sum(1 for t in oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID"))
    except AttributeError:  # a worker's OracleClient proxies the chief's oracle: the chief counts
        return 0


def role() -> str:
    """``single`` (no distributed mode), ``chief`` (serves the oracle) or ``worker``, from keras-tuner's environment."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    return "chief" if os.environ.get("KERASTUNER_TUNER_ID", "chief") == "chief" else "worker"
