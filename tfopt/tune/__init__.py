"""``tfopt tune``: per-layer sensitivity, then a keras-tuner search over techniques, chains and formats,
for the best file within an accuracy budget chosen on validation (docs/tune.md).

``tune`` (search.py) is the library function the CLI calls; ``sensitivity.py`` measures each
layer, ``space.py`` turns ``search.space`` into hyperparameters and a trial's values into a variant,
``tuner.py`` is the keras-tuner tuner and its oracles.
"""

from tfopt.tune.search import NO_LEAKAGE, headline, project_dir, tune

__all__ = ["NO_LEAKAGE", "headline", "project_dir", "tune"]
