"""The pipeline in parts: apply a variant's steps, export and evaluate a model, run it all.

``run`` is the library function the CLI calls; a Python user calls it the same way::

    from tfopt import config, pipeline
    run = pipeline.run(config.load("pipelines/quickstart.yaml"))

Its parts are public, for the tests, the search and notebooks: ``apply_steps`` (steps.py) applies a
variant's techniques to a model, ``export_and_evaluate`` (evaluation.py) writes and measures every
file of one model, ``time_latencies`` (evaluation.py) times a run's files together, ``Outputs``
(outputs.py) writes a run's folders atomically, ``Given`` (given.py) hands ``run`` a model and data
already in memory (``tfopt.optimize``), ``train_baseline`` (run.py) trains the pipeline's baseline
once (``tfopt tune`` starts from it too).
"""

from tfopt.pipeline.evaluation import Evaluation, accuracy, export_and_evaluate, time_latencies
from tfopt.pipeline.given import Given
from tfopt.pipeline.outputs import Outputs, Stages, storage_failure
from tfopt.pipeline.run import Baseline, build_record, load_data, recipe_for, run, train_baseline
from tfopt.pipeline.steps import (
    CONTROL_SUFFIX,
    Applied,
    Recipe,
    add_controls,
    apply_steps,
    as_specs,
    check_step_models,
    check_variants,
)

__all__ = [
    "CONTROL_SUFFIX",
    "Applied",
    "Baseline",
    "Evaluation",
    "Given",
    "Outputs",
    "Recipe",
    "Stages",
    "accuracy",
    "add_controls",
    "apply_steps",
    "as_specs",
    "build_record",
    "check_step_models",
    "check_variants",
    "export_and_evaluate",
    "load_data",
    "recipe_for",
    "run",
    "storage_failure",
    "time_latencies",
    "train_baseline",
]
