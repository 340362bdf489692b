"""Apply a variant's steps to a model: the one step loop of tfopt.

The pipeline, the tests and the coming search all call ``apply_steps``; a Python user can too::

    from tfopt.pipeline import Recipe, apply_steps
    applied = apply_steps(model, [{"prune": {"final_sparsity": 0.5}}, "qat"], splits,
                          Recipe(epochs=2, batch_size=32, learning_rate=5e-4))
    applied.model, applied.reports   # the stripped model; what each step did, layer by layer
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from tfopt import models
from tfopt._keras import keras, tf
from tfopt.backends import Backend, backend_for
from tfopt.data import num_examples, take
from tfopt.errors import ConfigError, ModelError, TransformError
from tfopt.results import Training, TransformReport
from tfopt.schema import ModelConfig, TransformSpec, VariantConfig
from tfopt.train import fit
from tfopt.train.checkpoint import RunCheckpoints, fingerprint
from tfopt.transforms import TECHNIQUES, Context, DataSpec

StepsLike = Union[VariantConfig, Sequence[Union[TransformSpec, str, dict]]]

_SAMPLE = 256  # training inputs handed to a technique in Context.data (importance scores, calibration)


@dataclass(frozen=True)
class Recipe:
    """How each step is fine-tuned: epochs, global batch, learning rate, optimizer, seed."""

    epochs: int
    batch_size: int  # the global batch, all replicas together
    learning_rate: float
    optimizer: str = "adam"
    seed: int = 0
    verbose: int = 0

    @property
    def weights_fingerprint(self) -> tuple:
        """What of the recipe changes the trained weights (not how verbosely it runs): keys the snapshots."""
        return self.epochs, self.batch_size, self.learning_rate, self.optimizer, self.seed


@dataclass
class Applied:
    """A variant's result: the stripped model, and the records of each step (restored ones included)."""

    model: Any
    backend: Optional[Backend] = None  # the model's backend (a Keras 3 model's QAT variant is a tf_keras model)
    trainings: list[Training] = field(default_factory=list)
    reports: list[TransformReport] = field(default_factory=list)


def as_specs(steps: StepsLike) -> list[TransformSpec]:
    """Steps as written in YAML (``"qat"``, ``{prune: {...}}``) or as ``TransformSpec``s."""
    if isinstance(steps, VariantConfig):
        return list(steps.transforms)
    if all(isinstance(s, TransformSpec) for s in steps):
        return list(steps)
    return list(VariantConfig.model_validate(list(steps)).transforms)


def apply_steps(
    model: Any,
    steps: StepsLike,
    splits: Any,
    recipe: Recipe,
    *,
    backend: Optional[Backend] = None,
    variant: str = "variant",
    strategy: Any = None,
    log_dir: Optional[Path] = None,
    checkpoints: Optional[RunCheckpoints] = None,
    fingerprint_base: str = "",
    safe_mode: bool = True,
    log: Callable[[str], None] = print,
) -> Applied:
    """Apply steps in order to a copy of ``model``, each fine-tuned and stripped in turn.

    Each finished step is snapshotted in ``checkpoints``; after a kill, the variant restarts
    after its last finished step. ``model`` itself is not changed.

    Raises:
        TransformError: a step cannot handle the model, or needs a fine-tune that ``recipe`` does not give.
    """
    backend = backend or backend_for(model)
    strategy = strategy or tf().distribute.get_strategy()
    specs = as_specs(steps)
    ckpt = checkpoints or RunCheckpoints(Path("."), enabled=False)
    keys = [f"{variant}.{i + 1}_{s.name}" for i, s in enumerate(specs)]
    fps = [
        fingerprint(fingerprint_base, [s.model_dump(mode="json") for s in specs[: i + 1]], recipe.weights_fingerprint)
        for i in range(len(specs))
    ]
    with strategy.scope():
        start, applied = _restore(ckpt, keys, fps, safe_mode)
        if applied is None:
            applied = Applied(backend.clone(model), backend)
        else:  # restored after a kill: a finished QAT step of a Keras 3 model left a tf_keras one
            applied.backend = backend_for(applied.model)
    runner = _StepRunner(splits, recipe, applied.backend, strategy, variant, log_dir, ckpt, log)
    for i in range(start, len(specs)):
        runner.run(applied, specs, i, keys[i], fps[i])
    return applied


@dataclass
class _StepRunner:
    """Applies, fine-tunes, strips and snapshots one step of a variant (the body of ``apply_steps``)."""

    splits: Any
    recipe: Recipe
    backend: Backend
    strategy: Any
    variant: str
    log_dir: Optional[Path]
    ckpt: RunCheckpoints
    log: Callable[[str], None]

    def run(self, applied: Applied, specs: list[TransformSpec], i: int, key: str, fp: str) -> None:
        spec, tech, recipe = specs[i], TECHNIQUES.get(specs[i].name), self.recipe
        if recipe.epochs == 0 and tech.needs_finetune:
            raise TransformError(
                f"Variant {self.variant!r}: {tech.name} needs fine-tuning. Fix: set finetune.epochs to at least 1."
            )
        step_dir = None if self.log_dir is None else self.log_dir / f"{i + 1}_{spec.name}"
        params = tech.Config.model_validate(spec.params)
        step = tech.for_backend(self.backend.kind)(params, self._context(specs[:i], step_dir))
        with self.strategy.scope():
            model = step.apply(applied.model)
            # A step may hand the model on to another Keras (QAT of a Keras 3 model trains its tf_keras twin).
            self.backend = applied.backend = step.context.backend or self.backend
            step.compile(model, recipe.optimizer, recipe.learning_rate)
        if recipe.epochs:
            applied.trainings.append(
                fit(model, step.train_splits(self.splits), variant=f"{self.variant}/{step.name}", epochs=recipe.epochs,
                    batch_size=recipe.batch_size, seed=recipe.seed, callbacks=step.callbacks(), log_dir=step_dir,
                    verbose=recipe.verbose, backup_dir=self.ckpt.fit_backup(key, fp), log=self.log,
                    backend=self.backend)
            )  # fmt: skip
        applied.model = step.strip(model)
        described = TransformReport(
            self.variant, step.name, params.model_dump(mode="json"), step.backend, step.describe()
        )
        applied.reports.append(described)
        self.ckpt.save_stage(key, fp, applied.model, applied.trainings, applied.reports, self.backend)

    def _context(self, previous: list[TransformSpec], log_dir: Optional[Path]) -> Context:
        x_train = self.splits.x_train
        return Context(
            steps_per_epoch=math.ceil(num_examples(x_train) / self.recipe.batch_size),
            finetune_epochs=self.recipe.epochs,
            log_dir=log_dir,
            previous=tuple(s.name for s in previous),
            backend=self.backend,
            data=DataSpec(tuple(self.splits.input_shape), self.splits.num_classes, take(x_train, slice(0, _SAMPLE))),
            build_model=self._build_model,
        )

    def _build_model(self, cfg: ModelConfig) -> Any:
        """A model a step names (distill's student), built for the data after seeding as the run is: a
        variant and its control start from the same weights."""
        keras().utils.set_random_seed(self.recipe.seed)
        with self.strategy.scope():
            return models.build(cfg, tuple(self.splits.input_shape), self.splits.num_classes)


def _restore(ckpt: RunCheckpoints, keys: list[str], fps: list[str], safe_mode: bool) -> tuple[int, Optional[Applied]]:
    """The last step that finished before a kill: (steps done, what they left), or (0, None)."""
    for i in reversed(range(len(keys))):
        restored = ckpt.load_stage(keys[i], fps[i], safe_mode)
        if restored:
            model, trainings, reports = restored
            return i + 1, Applied(model, None, list(trainings), list(reports))
    return 0, None


def check_variants(
    variants: dict[str, VariantConfig], precision: str, backend: Optional[str] = None, model: Any = None
) -> None:
    """Refuse, before any training, steps that cannot run: under ``precision``, for ``backend`` when known,
    and on ``model`` when given (``Transform.check_model``, e.g. a layer prune_channels cannot follow).

    Raises:
        ConfigError: a technique does not train under the precision (names variant, transform, fix).
        TransformError: a technique has no implementation for the model's Keras, or cannot handle the model.
    """
    reshaped: set[str] = set()  # variants past a step that changes the architecture: later steps see another model
    for vname, spec in _steps(variants):
        tech = TECHNIQUES.get(spec.name)
        if precision not in tech.precisions:
            raise ConfigError(
                f"variant {vname!r}: transform {spec.name!r} does not train under train.precision: {precision} "
                f"(tfmot supports it in {', '.join(tech.precisions)} only; it would fail deep inside tfmot). "
                "Fix: set train.precision: float32, or move this variant to a float32 pipeline. "
                f"Received: precision={precision!r}"
            )
        if backend is not None:
            impl = tech.for_backend(backend)
            if model is not None and vname not in reshaped:
                _check_model(vname, impl, tech.Config.model_validate(spec.params), model)
        if tech.changes_architecture:
            reshaped.add(vname)


def _check_model(vname: str, impl: Any, params: Any, model: Any) -> None:
    try:
        impl.check_model(params, model)
    except TransformError as e:
        raise TransformError(f"variant {vname!r}: {e}") from None


def _steps(variants: dict[str, VariantConfig]) -> Iterable[tuple[str, TransformSpec]]:
    for vname, variant in variants.items():
        for spec in variant.transforms:
            yield vname, spec


CONTROL_SUFFIX = "_scratch"


def add_controls(variants: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
    """The variants, each one with a step that needs a control followed by its control ``<variant>_scratch``.

    The control is the same variant with each such step replaced by the params its technique's
    ``control`` returns (distill: the same student trained from scratch on the labels), so it has
    the same recipe, data, later steps and export formats. Calling it again changes nothing.

    Raises:
        ConfigError: the user's own variant already has the control's name.
    """
    out: dict[str, VariantConfig] = {}
    for vname, variant in variants.items():
        out[vname] = variant
        steps = [_control_step(s) for s in variant.transforms]
        if steps == list(variant.transforms):
            continue
        name, control = vname + CONTROL_SUFFIX, variant.model_copy(update={"transforms": steps})
        if name in variants and variants[name] != control:
            raise ConfigError(
                f"variant {name!r}: the name is taken by the control tfopt adds for variant {vname!r} "
                f"(the same student trained from scratch). Fix: rename variant {name!r}. Received: variant={name!r}"
            )
        out[name] = control
    return out


def _control_step(spec: TransformSpec) -> TransformSpec:
    tech = TECHNIQUES.get(spec.name) if spec.name in TECHNIQUES else None
    if tech is None or tech.control is None:
        return spec
    return TransformSpec(name=spec.name, params=tech.control(dict(spec.params)))


def check_step_models(variants: dict[str, VariantConfig], splits: Any, model: Any = None) -> bool:
    """Load every model file a step names (distill's student or teacher) and check it fits the data.

    Called before any training, so a student of the wrong input shape or class count is refused
    in one line, not after the baseline has trained. Registered models are built for the data.
    ``model``: the run's model (its ``ModelConfig``, or the model handed in), the teacher of a first
    distill step: the layer names of distill's ``feature`` loss are checked against it and the student.
    Returns whether registered models were built for that (random draws: the caller seeds again).

    Raises:
        ModelError: a file is missing, unsafe, or does not fit the data (names variant and step).
        TransformError: a ``feature`` layer name or shape that does not fit (names variant, step and key).
    """
    shape, classes = tuple(splits.input_shape), splits.num_classes
    drew = False
    for vname, variant in variants.items():
        for i, spec in enumerate(variant.transforms):
            params = TECHNIQUES.get(spec.name).Config.model_validate(spec.params)
            built = {}
            for key, value in params:
                if isinstance(value, ModelConfig) and (value.path is not None or getattr(params, "features", None)):
                    try:
                        built[key] = models.build(value, shape, classes)
                    except ModelError as e:
                        raise ModelError(f"variant {vname!r}: {spec.name}.{key}: {e}") from None
            if getattr(params, "features", None) and not getattr(params, "scratch", False):
                teacher = built.get("teacher") or (_built(model, shape, classes) if i == 0 else None)
                if teacher is not None:  # after other steps the teacher exists only then: checked by the step
                    _check_features(teacher, built["student"], params.features, f"variants.{vname}[{i}]")
                drew = True
    return drew


def _built(model: Any, shape: tuple, classes: int) -> Any:
    if isinstance(model, ModelConfig):
        return models.build(model, shape, classes) if model.name or model.path else None
    return model


def _check_features(teacher: Any, student: Any, features: Any, where: str) -> None:
    from tfopt.transforms.distill import check_hints

    try:
        check_hints(teacher, student, features)
    except TransformError as e:
        raise TransformError(f"{where}.{e}") from None
