"""Training: distribution strategy from a name, and the fit loop with progress and TensorBoard."""

from tfopt.train.fit import compile_model, fit, make_dataset
from tfopt.train.strategy import resolve_strategy

__all__ = ["compile_model", "fit", "make_dataset", "resolve_strategy"]
