"""Optimization techniques: one registry (``TECHNIQUES``), one file per technique and backend.

A technique is registered once, with its parameter schema (``Config``, validated when the
pipeline loads), its ordering rule (which steps it may follow), and capability flags in the style
of Hugging Face's quantizers (needs fine-tuning? calibration data? owns the loss? changes the
architecture? which training precisions?). Each Keras backend gets its own implementation, a
``Transform`` subclass registered with ``@TECHNIQUE.implementation("tf_keras")`` (or
``"keras3"``); which one runs follows from the model's backend, never from the user.

For each step of a variant, in order, ``tfopt.pipeline.apply_steps`` calls ``apply`` inside the
strategy scope, ``compile`` (a technique that owns its loss, such as distillation, overrides it),
fine-tunes with ``callbacks()``, then ``strip`` leaves a plain Keras model for the next step or for
export; ``describe()`` says per layer what was done or skipped and why. ``apply`` may return a
model of another shape (structured pruning, distillation's student). A step sees the steps before it in
``Context.previous``, so a later technique can preserve what an earlier one achieved
(collaborative optimization: sparsity-preserving clustering, PQAT, CQAT, PCQAT).

Adding a technique: one file here that calls ``technique(...)`` and registers an implementation
per backend, and its import in ``_register_builtins`` below.
"""

from __future__ import annotations

import abc
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from pydantic import BaseModel

from tfopt.errors import TransformError
from tfopt.registry import Registry
from tfopt.results import LayerDecision

ALL_PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass(frozen=True)
class DataSpec:
    """What a technique may need to know of the data: shapes, classes, and a few real training inputs."""

    input_shape: tuple[int, ...]
    num_classes: int
    sample: Any = None  # a few training inputs (an array, or a dict of arrays by input name)


@dataclass(frozen=True)
class Context:
    """What a transform may need to know about the model, the data and the fine-tune that follows it."""

    steps_per_epoch: int
    finetune_epochs: int
    log_dir: Optional[Path] = None
    previous: tuple[str, ...] = ()  # transforms applied (and stripped) before this one, in order
    backend: Any = None  # the model's tfopt.backends.Backend
    data: Optional[DataSpec] = None
    # Builds a model the step names (a ``tfopt.schema.ModelConfig``: registered builder or user file) for the
    # data, seeded as the run is, inside the strategy scope; given by the pipeline (transforms sit below models).
    build_model: Optional[Callable[[Any], Any]] = None

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.finetune_epochs


def sample_of(context: Optional[Context]) -> Any:
    """The step's training sample (array or dict of arrays), or None when the step was given no data."""
    return None if context is None or context.data is None else context.data.sample


class Transform(abc.ABC):
    """One technique's implementation for one Keras backend, applied to one model.

    ``name``, ``Config`` and ``technique`` are set when the class is registered with
    ``Technique.implementation``.
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    technique: ClassVar[Technique]
    backend: ClassVar[str] = "tf_keras"  # what ran, as the report shows it (instances refine it)

    def __init__(self, config: BaseModel, context: Context):
        self.config = config
        self.context = context
        self.decisions: list[LayerDecision] = []

    @classmethod
    def check_model(cls, config: BaseModel, model: Any) -> None:
        """Refuse, before any training, a model this technique cannot handle (default: accept).

        The pipeline calls it on the baseline for each step up to the first that changes the architecture.

        Raises:
            TransformError: naming the layer and the fix.
        """
        return None

    @abc.abstractmethod
    def apply(self, model: Any) -> Any:
        """Return a model ready for fine-tuning (wrapped layers, masks, or a smaller model)."""

    def compile(self, model: Any, optimizer: str, learning_rate: float) -> None:
        """Compile the model for its fine-tune; a technique that owns its loss overrides this."""
        self.context.backend.compile(model, optimizer, learning_rate)

    def train_splits(self, splits: Any) -> Any:
        """The data the fine-tune trains and validates on: ``splits`` itself, or a copy with more targets
        (distillation packs the teacher's outputs, computed once, beside the labels)."""
        return splits

    def callbacks(self) -> list:
        """Keras callbacks the fine-tune needs (e.g. the pruning step)."""
        return []

    def strip(self, model: Any) -> Any:
        """Remove training-only wrappers; the result exports as a plain model."""
        return model

    def describe(self) -> list[LayerDecision]:
        return list(self.decisions)


def _any_order(previous: tuple[str, ...]) -> None:
    """The default ordering rule: a technique may follow any step."""


@dataclass(frozen=True)
class Technique:
    """One registered technique: its schema, ordering rule, flags and an implementation per backend.

    Example::

        PRUNE = technique("prune", PruneConfig, order=_prune_order, precisions=ALL_PRECISIONS)

        @PRUNE.implementation("tf_keras")
        class Prune(Transform): ...
    """

    name: str
    Config: type[BaseModel]
    summary: str = ""
    order: Callable[[tuple[str, ...]], None] = _any_order  # raises ValueError when it cannot follow ``previous``
    needs_finetune: bool = True
    needs_calibration: bool = False  # reads training samples before the fine-tune (e.g. an importance score)
    owns_loss: bool = False  # its ``Transform.compile`` sets its own loss (e.g. distillation)
    changes_architecture: bool = False  # ``apply`` returns a model of another shape (e.g. structured pruning)
    precisions: tuple[str, ...] = ("float32",)  # training precisions it supports (measured, see its file)
    example: dict = field(default_factory=dict, compare=False)  # typical params: docs and the tests' shared battery
    # A technique whose effect needs a control (distillation: the same student from scratch) returns the
    # params of the control step; the pipeline then adds ``<variant>_scratch`` with that step in its place.
    control: Optional[Callable[[dict], dict]] = field(default=None, compare=False)
    implementations: dict[str, type[Transform]] = field(default_factory=dict, compare=False)

    def check_previous(self, previous: tuple[str, ...]) -> None:
        """Raise ValueError when this technique cannot follow the steps ``previous`` (checked at load)."""
        self.order(previous)

    def implementation(self, backend: str) -> Callable[[type[Transform]], type[Transform]]:
        """Register a ``Transform`` subclass as this technique's implementation for ``backend``."""

        def deco(cls: type[Transform]) -> type[Transform]:
            if backend in self.implementations:
                raise ValueError(f"Duplicate {backend} implementation of technique {self.name!r}.")
            cls.name, cls.Config, cls.technique = self.name, self.Config, self
            self.implementations[backend] = cls
            return cls

        return deco

    def for_backend(self, backend: str) -> type[Transform]:
        """The implementation for a model of backend ``backend`` (a Backend's ``kind``).

        Raises:
            TransformError: the technique has no implementation for that Keras.
        """
        if backend in self.implementations:
            return self.implementations[backend]
        have = ", ".join(self.implementations)
        others = ", ".join(n for n, t in TECHNIQUES.items() if backend in t.implementations) or "none"
        if backend == "keras3":
            raise TransformError(
                f"Transform {self.name!r} cannot be applied to a Keras 3 model yet: tfopt implements it for tf_keras "
                f"(Keras 2) models only. Transforms available for Keras 3: {others}. Fix: build the model with "
                f"tf_keras (tfopt._keras.keras()), or use one of those. Received: transform={self.name!r}"
            )
        where = "Keras 3 models only (e.g. model: {name: bert})" if have == "keras3" else f"{have} models only"
        raise TransformError(
            f"Transform {self.name!r} applies to {where}. "
            f"Transforms available for {backend} models: {others}. Received: transform={self.name!r}"
        )

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self.implementations)


TECHNIQUES: Registry[Technique] = Registry("transform")


def technique(name: str, Config: type[BaseModel], **flags: Any) -> Technique:
    """Declare and register technique ``name``; returns it, to register implementations on."""
    return TECHNIQUES.register(name)(Technique(name=name, Config=Config, **flags))


def layer_selected(name: str, only: Optional[list[str]], skip: list[str]) -> tuple[bool, str]:
    """Match a layer name against glob patterns; returns (selected, reason if not)."""
    for pattern in skip:
        if fnmatch.fnmatchcase(name, pattern):
            return False, f"skipped by pattern {pattern!r}"
    if only is not None and not any(fnmatch.fnmatchcase(name, p) for p in only):
        return False, "not matched by 'layers'"
    return True, ""


def transform_class(name: str, backend: str) -> type[Transform]:
    """The implementation of technique ``name`` for a model of backend ``backend``.

    Raises:
        TfoptError: unknown technique, or none for that Keras (TransformError).
    """
    return TECHNIQUES.get(name).for_backend(backend)


def _register_builtins() -> None:
    from tfopt.transforms import cluster, distill, prune, prune_channels, qat, quantize  # noqa: F401
    from tfopt.transforms import cluster_keras3, distill_keras3, prune_keras3  # noqa: F401  (Keras 3 backends)


_register_builtins()
