"""Optimization techniques, one file each, behind one small interface.

A technique subclasses ``Transform``, declares its parameter schema as ``Config`` (validated when
the pipeline loads), and registers itself with ``@TRANSFORMS.register(name)``. For each step of a
variant, in order, the pipeline calls ``apply`` inside the strategy scope, fine-tunes with
``callbacks()``, then ``strip`` leaves a plain Keras model for the next step or for export;
``describe()`` says per layer what was done or skipped and why. A step sees the steps before it
in ``Context.previous``, so a later technique can preserve what an earlier one achieved
(collaborative optimization: sparsity-preserving clustering, PQAT, CQAT, PCQAT).
"""

from __future__ import annotations

import abc
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from pydantic import BaseModel

from tfopt.registry import Registry
from tfopt.results import LayerDecision

TRANSFORMS: Registry = Registry("transform")  # tf_keras (Keras 2) implementations, mostly tfmot
KERAS3_TRANSFORMS: Registry = Registry("Keras 3 transform")  # same names and Config, for Keras 3 models


@dataclass(frozen=True)
class Context:
    """What a transform may need to know about the fine-tune that follows it."""

    steps_per_epoch: int
    finetune_epochs: int
    log_dir: Optional[Path] = None
    previous: tuple[str, ...] = ()  # transforms applied (and stripped) before this one, in order

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.finetune_epochs


class Transform(abc.ABC):
    """One optimization technique applied to one model."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    backend: ClassVar[str] = "tf_keras"
    needs_finetune: ClassVar[bool] = True

    def __init__(self, config: BaseModel, context: Context):
        self.config = config
        self.context = context
        self.decisions: list[LayerDecision] = []

    @abc.abstractmethod
    def apply(self, model: Any) -> Any:
        """Return a model ready for fine-tuning (wrapped layers, masks...)."""

    def callbacks(self) -> list:
        """Keras callbacks the fine-tune needs (e.g. the pruning step)."""
        return []

    def strip(self, model: Any) -> Any:
        """Remove training-only wrappers; the result exports as a plain model."""
        return model

    def describe(self) -> list[LayerDecision]:
        return list(self.decisions)

    @classmethod
    def check_previous(cls, previous: tuple[str, ...]) -> None:
        """Raise ValueError when this technique cannot follow the steps ``previous`` (checked at load)."""


def layer_selected(name: str, only: Optional[list[str]], skip: list[str]) -> tuple[bool, str]:
    """Match a layer name against glob patterns; returns (selected, reason if not)."""
    for pattern in skip:
        if fnmatch.fnmatchcase(name, pattern):
            return False, f"skipped by pattern {pattern!r}"
    if only is not None and not any(fnmatch.fnmatchcase(name, p) for p in only):
        return False, "not matched by 'layers'"
    return True, ""


def transform_class(name: str, kind: str) -> type[Transform]:
    """The implementation of technique ``name`` for a model of Keras kind ``kind``.

    Which backend runs follows from the model, never from the user: tfmot for tf_keras models,
    tfopt's own implementations for Keras 3 models.

    Raises:
        TransformError: the technique has no implementation for that Keras.
    """
    from tfopt.errors import TransformError

    registry = KERAS3_TRANSFORMS if kind == "keras3" else TRANSFORMS
    if name in registry:
        return registry.get(name)
    if name in TRANSFORMS and kind == "keras3":
        available = ", ".join(KERAS3_TRANSFORMS) or "none"
        raise TransformError(
            f"Transform {name!r} cannot be applied to a Keras 3 model: tensorflow-model-optimization works "
            f"with Keras 2 (tf_keras) models only. Transforms available for Keras 3: {available}. Received: transform={name!r}"
        )
    if name in KERAS3_TRANSFORMS:
        raise TransformError(
            f"Transform {name!r} applies to Keras 3 models only (e.g. model: {{name: bert}}). "
            f"Transforms available for tf_keras models: {', '.join(TRANSFORMS)}. Received: transform={name!r}"
        )
    return TRANSFORMS.get(name)  # raises the unknown-name error


def any_transform(name: str) -> type[Transform]:
    """A technique's class from either registry, for what does not depend on the model (its Config)."""
    return TRANSFORMS.get(name) if name in TRANSFORMS or name not in KERAS3_TRANSFORMS else KERAS3_TRANSFORMS.get(name)


def _register_builtins() -> None:
    from tfopt.transforms import cluster, prune, qat  # noqa: F401
    from tfopt.transforms import cluster_keras3, prune_keras3, quantize_keras3  # noqa: F401  (Keras 3 backends)


_register_builtins()
