"""Training: strategy from a name, precision policy, the fit loop, checkpoints and resume."""

from tfopt.train.fit import compile_model, fit, make_dataset
from tfopt.train.strategy import global_batch_size, is_chief, resolve_strategy

__all__ = ["compile_model", "fit", "global_batch_size", "is_chief", "make_dataset", "resolve_strategy"]
