"""A model and data handed in by a Python caller (``tfopt.optimize``) in place of the config's sources.

``tfopt run`` builds or loads the model named by ``model:`` and loads the dataset named by ``data:``;
a notebook already holds both. ``run(cfg, given=Given(model, splits))`` takes them as they are and
runs the same pipeline: the config's ``data`` and ``model`` then only label the run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from tfopt import models
from tfopt.backends import backend_for
from tfopt.data import Splits


@dataclass(frozen=True)
class Given:
    """The in-memory sources of a run; either may be None (then the config's source is used)."""

    model: Any = None  # a tf_keras or Keras 3 model; copied, so the caller's object is never recompiled or trained
    splits: Optional[Splits] = None

    def fingerprint_parts(self) -> tuple:
        """Digests of the given weights and arrays: a checkpoint left by other inputs is not resumed."""
        parts = []
        if self.model is not None:
            parts.append(("model", type(self.model).__name__, _digest(self.model.get_weights())))
        if self.splits is not None:
            s = self.splits
            parts.append(("data", _digest([s.x_train, s.y_train, s.x_val, s.y_val, s.x_test, s.y_test])))
        return tuple(parts)

    def baseline(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
        """A copy of the given model that fits the data; call inside ``strategy.scope()``."""
        copy = backend_for(self.model).clone(self.model)
        models.check_fits(copy, input_shape, num_classes, self.model.name)
        return copy


def _digest(arrays: list[Any]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        for part in [a[k] for k in sorted(a)] if isinstance(a, dict) else [a]:
            part = np.ascontiguousarray(part)
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(part.tobytes() if part.dtype != object else "\x00".join(map(str, part.ravel())).encode())
    return h.hexdigest()[:16]
