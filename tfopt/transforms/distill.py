"""Knowledge distillation: a smaller student learns from the model the step is given (the teacher).

Example::

    variants:
      student: [{distill: {student: {name: small_cnn, params: {filters: 8, dense: 32}}}}]
      student_pqat: [{distill: {student: {name: small_cnn, params: {filters: 8, dense: 32}}}},
                     {prune: {final_sparsity: 0.5}}, qat]
      from_file: [{distill: {student: {path: student.keras}, teacher: {path: big.keras}, temperature: 2}}]

The teacher is the model handed to the step (the run's trained baseline, or the previous step's
output), or ``teacher: {path: ...}``; it never trains. The student is a registered model with its
options (built for the run's data, seeded as the run is) or a user file. The step returns the
student, so later steps (prune, cluster, qat) apply to it.

Loss per example (Hinton et al. 2015), on logits::

    alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))

The T^2 keeps the soft term's gradients the same size whatever T. A model whose last layer
ends in a softmax (a ``Dense(activation="softmax")`` or a separate ``Softmax`` layer) is distilled
on that softmax's input: a twin with a linear last layer trains, and ``strip`` hands back the
student with its softmax, as the user's model had it.

Defaults ``temperature: 2, alpha: 0.5`` with the student trained 40 epochs (the variant's
``finetune: {epochs: 40}``), chosen on the validation split (seeds 0-2, Fashion-MNIST, teacher
small_cnn 421,642 weights, student small_cnn filters 8, dense 64, no dropout, 52,138 weights):
90.34% against 90.22% for T=4/alpha=0.5 and 89.43% from scratch; at 10 epochs distillation gained
nothing. ``pipelines/distill_fashion_mnist.yaml``'s int8 files on the 10,000 test images: distilled
89.03 +- 0.14%, scratch 88.10 +- 0.46%, teacher 89.22 +- 0.39% (docs/techniques.md, "Knowledge
distillation").

The pipeline adds ``<variant>_scratch`` for every variant that distills (``control`` below): the
same student, the same initial weights (the student is built after the same seeding), the same
recipe and the same later steps, trained on the hard labels only, so the report shows whether
distillation helped.

Teacher-output caching (``cache_teacher: true``, the default): the teacher runs in inference mode
and tfopt's data has no augmentation, so its outputs for an image are the same at every epoch.
``train_splits`` computes its logits once for the train and validation images, before the
student's first epoch, and packs them beside the labels (``y = (labels, teacher_logits)``); the
distiller reads them from the batch instead of running the teacher, so a student trained E epochs
costs one teacher pass over the data instead of E. The step's report (its backend line) says
which was used and what it saved. Under MirroredStrategy each replica gets the rows of its own
examples, labels and logits sliced together. ``cache_teacher: false`` runs the teacher on every
batch (for data that would be augmented; the same loss on fixed data, tests/transforms/test_distill.py).

Feature (hint) loss, optional (FitNets, Romero et al. 2015)::

    distill: {student: {name: small_cnn, params: {filters: 8}}, feature: {teacher: conv2, student: conv2, weight: 1}}

adds ``weight * mean((t - P(s))^2)`` per example (``feature`` may be a list of pairs): ``t`` the named
teacher layer's output, ``s`` the student's, ``P`` a learned projection to the teacher's width (1x1
Conv2D for 4-D maps, Dense otherwise, identity when the widths match; ``Hint.projection``). ``P``
trains with the student inside the distiller and is dropped with it, so the exported student is the
plain student. Spatial sizes must match. With a feature loss the teacher runs on every batch: caching
its feature maps would cost memory of the order of the dataset times a conv map (Fashion-MNIST's
conv1: 15,000 x 28 x 28 x 32 floats, 1.5 GB), and the backend line says so. Unknown layer names and
mismatched shapes are refused by ``check_hints`` before the student trains, and by
``pipeline.check_step_models`` before the baseline trains when the teacher is the run's model.

Keras 3 models (``distill_keras3.py``) train with ``keras.distillation.Distiller`` and
``LogitsDistillation``, which compute the same loss (``student_loss_weight`` is alpha; KL times
T^2) once given ``loss=keras.losses.KLDivergence()`` (its default string skips the softmax and
T^2: see that file). It did not fit as it is in one more point: it distills the models' outputs
as they are, so a softmax-ending model gets the same logits twin as here. The tf_keras distiller
below is tfopt's own: keras.distillation is Keras 3 only. The student must be of the teacher's Keras (tfopt's
registered CNNs build tf_keras models; a Keras 3 teacher takes a Keras 3 file as its student).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional, Union

import numpy as np

from pydantic import Field, field_validator

from tfopt._keras import keras, tf
from tfopt.backends import backend_for, outputs_probabilities
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.schema import ModelConfig, Strict
from tfopt.transforms import Transform, sample_of, technique


class FeatureLoss(Strict):
    """One hint pair: ``weight`` x MSE(teacher layer's output, projection of the student layer's output)."""

    teacher: str = Field(description="the teacher layer whose output the student's is pulled towards")
    student: str = Field(description="the student layer whose output (projected to the teacher's width) is compared")
    weight: float = Field(1.0, ge=0, description="weight of this feature term in the per-example loss")


class TeacherLayers(Strict):
    """``student: {layers: k}``: the teacher itself with every k-th encoder layer kept (DistilBERT's initialisation).

    For a BERT teacher of n layers the student keeps layers k, 2k, ... (0-based k-1, 2k-1, ...: the
    last one, which feeds the pooler and the fine-tuned head, always stays), with the teacher's
    embeddings, pooler and classifier head, so it starts where the teacher is, not at random.
    """

    layers: int = Field(ge=2, description="keep every k-th encoder layer of the (BERT) teacher")


class DistillConfig(Strict):
    """``distill``'s parameters: the student, the loss' temperature and weight, optionally the teacher."""

    student: Union[TeacherLayers, ModelConfig] = Field(
        description="a registered model {name, params}, a model file {path}, or {layers: k} of a BERT teacher"
    )
    temperature: float = Field(2.0, gt=0, description="softens both outputs before the KL term (T)")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the hard-label loss; 1 - alpha goes to the teacher")
    teacher: Optional[ModelConfig] = Field(None, description="a model file {path}; default: the step's input model")
    cache_teacher: bool = Field(
        True, description="compute the teacher's outputs once and reuse them every epoch (data not augmented)"
    )
    feature: Optional[Union[FeatureLoss, list[FeatureLoss]]] = Field(
        None, description="optional hint loss(es) {teacher: layer, student: layer, weight} (FitNets)"
    )
    scratch: bool = Field(False, description="internal: the control, the student trained on hard labels only")

    @property
    def features(self) -> list[FeatureLoss]:
        """``feature`` as a list (one pair, several, or none)."""
        if self.feature is None:
            return []
        return list(self.feature) if isinstance(self.feature, list) else [self.feature]

    @field_validator("student", mode="before")
    @classmethod
    def _student_kind(cls, v: Any) -> Any:
        # one class per shape, so an error names the keys of the intended form, not both forms' keys
        if isinstance(v, dict) and "layers" in v:
            return TeacherLayers.model_validate(v)
        return ModelConfig.model_validate(v) if isinstance(v, dict) else v

    @field_validator("teacher")
    @classmethod
    def _trained_teacher(cls, v: Optional[ModelConfig]) -> Optional[ModelConfig]:
        if v is not None and v.path is None:
            raise ValueError(
                "a teacher is a trained model file, {path: ...}; a registered name would be untrained. "
                "Fix: leave teacher out to distill the step's model (the trained baseline)"
            )
        return v


def distillation_loss(
    y: Any, student_logits: Any, teacher_logits: Any, temperature: float, alpha: float, scale: bool = True
) -> Any:
    """Per-example loss: ``alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))``.

    Args:
        y: integer labels, shape (batch,).
        student_logits, teacher_logits: shape (batch, classes), before any softmax.
        scale: multiply the KL term by T^2 (Hinton et al.); False only to compare.
    """
    t = tf()
    s = t.cast(student_logits, t.float32)
    teacher = t.stop_gradient(t.cast(teacher_logits, t.float32))
    hard = t.nn.sparse_softmax_cross_entropy_with_logits(labels=t.cast(t.reshape(y, [-1]), t.int32), logits=s)
    p_teacher = t.nn.softmax(teacher / temperature)
    kl = t.reduce_sum(
        p_teacher * (t.nn.log_softmax(teacher / temperature) - t.nn.log_softmax(s / temperature)), axis=-1
    )
    return alpha * hard + (1.0 - alpha) * (temperature**2 if scale else 1.0) * kl


def feature_loss(teacher_features: Any, student_projected: Any, weight: float) -> Any:
    """Per-example ``weight * mean((t - p)^2)`` over every axis but the batch (FitNets, Romero et al. 2015)."""
    t = tf()
    diff = t.stop_gradient(t.cast(teacher_features, t.float32)) - t.cast(student_projected, t.float32)
    return weight * t.reduce_mean(t.reshape(t.square(diff), [t.shape(diff)[0], -1]), axis=-1)


@dataclasses.dataclass
class Hint:
    """A checked hint pair: the layers' names, the weight and the output shapes (batch axis dropped)."""

    teacher: str
    student: str
    weight: float
    teacher_shape: tuple
    student_shape: tuple

    def projection(self, k: Any, name: str) -> Any:
        """The learned projection of the student's output to the teacher's width, built; None when the widths match.

        A 1x1 Conv2D for 4-D maps, else a Dense on the last axis; no activation (a linear regressor, as FitNets'
        regressor for equal spatial sizes). It trains with the student and is dropped by ``strip``.
        """
        width, own = self.teacher_shape[-1], self.student_shape[-1]
        if width == own:
            return None
        layer = (
            k.layers.Conv2D(width, 1, name=name) if len(self.student_shape) == 3 else k.layers.Dense(width, name=name)
        )
        layer.build((None, *self.student_shape))
        return layer


def check_hints(teacher: Any, student: Any, features: list[FeatureLoss]) -> list[Hint]:
    """The hint pairs, each layer found and the shapes compatible; called before the student trains.

    Raises:
        TransformError: ``distill.feature[.i].teacher|student`` names no layer (a few valid names given),
            or the two outputs differ in rank or spatial size.
    """
    hints = []
    for i, f in enumerate(features):
        where = "distill.feature" + (f"[{i}]" if len(features) > 1 else "")
        shapes = []
        for role, model, name in (("teacher", teacher, f.teacher), ("student", student, f.student)):
            names = [layer.name for layer in model.layers]
            if name not in names:
                few = ", ".join(repr(n) for n in names[1:7])
                raise TransformError(
                    f"{where}.{role}: the {role} model {model.name!r} has no layer {name!r}. Fix: name one of its "
                    f"layers, e.g. {few}. Received: {role}={name!r}"
                )
            shapes.append(tuple(model.get_layer(name).output.shape[1:]))
        t_shape, s_shape = shapes
        if len(t_shape) != len(s_shape) or t_shape[:-1] != s_shape[:-1]:
            raise TransformError(
                f"{where}: teacher layer {f.teacher!r} outputs {t_shape} and student layer {f.student!r} {s_shape}; "
                "the projection maps the last axis only, so the other sizes must match. Fix: pair layers of the "
                f"same spatial size (e.g. after the same number of poolings). Received: teacher_shape={t_shape}, "
                f"student_shape={s_shape}"
            )
        hints.append(Hint(f.teacher, f.student, f.weight, t_shape, s_shape))
    return hints


class Hinted:
    """The models and projections of the hint pairs: (logits, features) of the teacher and of the student.

    Built on the logits twins, whose layers keep the user's names; the student's feature model shares the
    student's layers, so training it trains the student.
    """

    def __init__(self, k: Any, student: Any, teacher: Any, hints: list[Hint]):
        self.hints = hints
        self.teacher = k.Model(teacher.inputs, [teacher.output] + [teacher.get_layer(h.teacher).output for h in hints])
        self.student = k.Model(student.inputs, [student.output] + [student.get_layer(h.student).output for h in hints])
        self.projections = [h.projection(k, f"hint_projection_{i}") for i, h in enumerate(hints)]

    def variables(self) -> list:
        return [v for p in self.projections if p is not None for v in p.trainable_variables]

    def losses(self, x: Any, training: bool) -> tuple[Any, Any, Any]:
        """(student logits, teacher logits, per-example sum of the weighted feature terms)."""
        teacher_out, student_out = self.teacher(x, training=False), self.student(x, training=training)
        total = 0.0
        for hint, projection, t_feat, s_feat in zip(self.hints, self.projections, teacher_out[1:], student_out[1:]):
            total += feature_loss(t_feat, s_feat if projection is None else projection(s_feat), hint.weight)
        return student_out[0], teacher_out[0], total


def logits_twin(model: Any, k: Any = None) -> tuple[Any, bool]:
    """A model computing ``model``'s logits: (twin, shares_layers).

    A separate final ``Softmax``/``Activation`` layer: a model on its input, sharing the layers.
    A final layer with a softmax activation: a clone whose last layer is linear, with the same
    weights (copy them back after training). Anything else already outputs logits: itself.
    ``k``: the model's Keras module (default tf_keras).
    """
    k = k or keras()
    last = model.layers[-1]
    if not outputs_probabilities(model):
        if isinstance(last, (k.layers.Softmax, k.layers.Activation)) and len(model.layers) > 1:
            return k.Model(model.inputs, last.input, name=f"{model.name}_logits"), True
        return model, True

    def linear_last(layer: Any) -> Any:
        config = layer.get_config()
        if layer is last:
            config["activation"] = "linear"
        return type(layer).from_config(config)

    twin = k.models.clone_model(model, clone_function=linear_last)
    twin.set_weights(model.get_weights())
    return twin, False


def _order(previous: tuple[str, ...]) -> None:
    if "qat" in previous:
        raise ValueError(
            "distill cannot follow qat: the student would not be quantization-aware. Fix: put distill before qat"
        )


def _control(params: dict) -> dict:
    return {**params, "scratch": True}


DISTILL = technique(
    "distill",
    DistillConfig,
    summary="Train a smaller student on the teacher's softened outputs (KL x T^2) and the labels.",
    order=_order,
    owns_loss=True,
    changes_architecture=True,
    control=_control,
    example={"student": {"name": "small_cnn", "params": {"filters": 4, "dense": 16}}},
)


def labels_and_teacher(x: Any, y: Any, teacher: Any) -> tuple[Any, Any]:
    """(labels, teacher logits) of a batch: read from ``y = (labels, logits)`` when the teacher's
    outputs were cached, else the teacher run on ``x`` in inference mode."""
    if isinstance(y, (tuple, list)):
        return y[0], y[1]
    return y, teacher(x, training=False)


def _make_distiller(student: Any, teacher: Any, temperature: float, alpha: float, hints: list[Hint] = ()) -> Any:
    """A tf_keras Model that trains ``student`` (logits) against the frozen ``teacher`` (logits), plus the
    feature terms of ``hints`` (their projections train with the student; the teacher then runs per batch)."""
    k, t = keras(), tf()

    class Distiller(k.Model):
        def __init__(self):
            super().__init__(name="distiller")
            self.student, self.teacher = student, teacher
            self.teacher.trainable = False
            self.hinted = Hinted(k, student, teacher, list(hints)) if hints else None
            self.projections = self.hinted.projections if hints else []  # tracked: checkpointed with the student
            self.loss_tracker = k.metrics.Mean(name="loss")
            self.accuracy = k.metrics.SparseCategoricalAccuracy(name="accuracy")

        @property
        def metrics(self):
            return [self.loss_tracker, self.accuracy]

        def call(self, x, training=False):
            return self.student(x, training=training)

        def _loss(self, x, y, training):
            if self.hinted is not None:  # the feature loss needs the teacher's layer outputs: run per batch
                logits, teacher_logits, hint = self.hinted.losses(x, training)
                return y, logits, distillation_loss(y, logits, teacher_logits, temperature, alpha) + hint
            y, teacher_logits = labels_and_teacher(x, y, self.teacher)
            logits = self.student(x, training=training)
            return y, logits, distillation_loss(y, logits, teacher_logits, temperature, alpha)

        def train_step(self, data):
            x, y = data
            with t.GradientTape() as tape:
                y, logits, per_example = self._loss(x, y, True)
                loss = t.nn.compute_average_loss(per_example)  # over the global batch (all replicas)
            variables = self.student.trainable_variables + (self.hinted.variables() if self.hinted else [])
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return self._track(y, logits, per_example)

        def test_step(self, data):
            x, y = data
            y, logits, per_example = self._loss(x, y, False)
            return self._track(y, logits, per_example)

        def _track(self, y, logits, per_example):
            self.loss_tracker.update_state(per_example)
            self.accuracy.update_state(y, logits)
            return {m.name: m.result() for m in self.metrics}

    return Distiller()


@DISTILL.implementation("tf_keras")
class Distill(Transform):
    """Distill the step's model (the teacher) into the configured student; ``scratch``: the control."""

    backend = "tf_keras: tfopt distiller (KL x T^2 + hard-label CE, on logits)"

    kind = "tf_keras"
    student_note = ""  # how the student was made, when not by a builder (``student: {layers: k}``)

    def apply(self, model: Any) -> Any:
        c = self.config
        teacher = model if c.teacher is None else self._build(c.teacher, "teacher")
        self._require_kind(teacher, "teacher")
        if isinstance(c.student, TeacherLayers):
            student = self._shallow(teacher, c.student.layers)
        else:
            student = self._build(c.student, "student")
        self._require_kind(student, "student")
        _check_compatible(teacher, student)
        self._hints = check_hints(teacher, student, c.features) if not c.scratch else []
        self._student = student
        self.decisions = self._decisions(teacher, student)
        if c.scratch:
            self.backend = f"{self.kind}: the student trained from scratch on the labels (control)"
            return student
        k = self.context.backend.keras() if self.context.backend is not None else keras()
        teacher_logits, _ = self._logits_twin(teacher, k)
        self._teacher_logits = teacher_logits
        self._twin, self._shared = self._logits_twin(student, k)
        distiller = self._distiller(self._twin, teacher_logits)
        distiller(_one_input(student, self.context))  # built: Keras' BackupAndRestore needs it to resume
        return distiller

    def _logits_twin(self, model: Any, k: Any) -> tuple[Any, bool]:
        return logits_twin(model, k)

    def _shallow(self, teacher: Any, every: int) -> Any:
        raise TransformError(
            f"distill.student: {{layers: {every}}} keeps encoder layers of a BERT teacher; teacher {teacher.name!r} "
            f"is a {self.kind} model. Fix: give a student model ({{name: ..., params: ...}} or {{path: ...}}). "
            f"Received: student={{layers: {every}}}"
        )

    def _distiller(self, student_logits: Any, teacher_logits: Any) -> Any:
        return _make_distiller(student_logits, teacher_logits, self.config.temperature, self.config.alpha, self._hints)

    def train_splits(self, splits: Any) -> Any:
        """``splits`` with the teacher's logits, computed once, beside the labels (``cache_teacher``)."""
        c = self.config
        if self._hints and not c.scratch:
            pairs = ", ".join(
                f"teacher {h.teacher!r} {h.teacher_shape} <- student {h.student!r} {h.student_shape} "
                f"({'identity' if h.teacher_shape[-1] == h.student_shape[-1] else 'learned projection'}, "
                f"weight {h.weight:g})"
                for h in self._hints
            )
            self.backend += f"; feature loss: {pairs}; teacher run on every batch (its layer outputs are not cached)"
            return splits
        if c.scratch or not c.cache_teacher:
            if not c.scratch:
                self.backend += "; teacher run on every batch (cache_teacher: false)"
            return splits
        start = time.perf_counter()
        parts = {}
        for part in ("train", "val"):
            x, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
            if len(y):
                logits = self._teacher_logits.predict(x, batch_size=256, verbose=0)
                parts[f"y_{part}"] = (y, np.asarray(logits, np.float32))
        seconds = time.perf_counter() - start
        n, epochs = len(splits.y_train) + len(splits.y_val), self.context.finetune_epochs
        self.cache_note = (
            f"teacher outputs cached: computed once for {n:,} train+val examples in {seconds:.1f} s and reused "
            f"over {epochs} epochs, saving {n * (epochs - 1):,} teacher forward passes "
            f"(about {seconds * (epochs - 1):.0f} s)"
        )
        self.backend += f"; {self.cache_note}"
        return dataclasses.replace(splits, **parts)

    def _require_kind(self, model: Any, role: str) -> None:
        kind = backend_for(model).kind
        if kind != self.kind:
            raise TransformError(
                f"distill: the {role} is a {kind} model, the step's model a {self.kind} one; the teacher and "
                f"the student must be of one Keras. Fix: give a {self.kind} {role} "
                f"(a model file: {role}: {{path: ...}}). Received: {role} kind={kind!r}"
            )

    def compile(self, model: Any, optimizer: str, learning_rate: float) -> None:
        if self.config.scratch:
            return super().compile(model, optimizer, learning_rate)
        model.compile(optimizer=self.context.backend.optimizer(optimizer, learning_rate))

    def strip(self, model: Any) -> Any:
        """The trained student as the user's model has it (its softmax included)."""
        if self.config.scratch or self._shared:
            return self._student
        self._student.set_weights(self._twin.get_weights())
        return self._student

    def _build(self, cfg: ModelConfig, role: str) -> Any:
        if self.context.build_model is None:
            raise TransformError(
                f"distill.{role}: no model builder in the step's context. Fix: apply distill through "
                "tfopt.pipeline.apply_steps, which gives one."
            )
        return self.context.build_model(cfg)

    def _decisions(self, teacher: Any, student: Any) -> list[LayerDecision]:
        c = self.config
        how = (
            "trained from scratch on the labels (control)"
            if c.scratch
            else f"trained on teacher {teacher.name!r} ({teacher.count_params():,} weights), "
            f"T={c.temperature:g}, alpha={c.alpha:g}"
        ) + self.student_note
        return [LayerDecision(layer.name, True, f"student layer, {how}") for layer in student.layers if layer.weights]


def _one_input(model: Any, context: Any) -> Any:
    """One input row for ``model``: the first training sample when the step has one, else zeros of its input."""
    sample = sample_of(context)
    if isinstance(sample, dict):
        return {name: np.asarray(v)[:1] for name, v in sample.items()}
    if sample is not None and len(sample):
        return np.asarray(sample)[:1]
    return tf().zeros((1, *model.input_shape[1:]))


def _check_compatible(teacher: Any, student: Any) -> None:
    """Refuse a student whose input shape or class count differs from the teacher's."""
    t_in, s_in = tuple(teacher.input_shape[1:]), tuple(student.input_shape[1:])
    t_out, s_out = teacher.output_shape[-1], student.output_shape[-1]
    if t_in != s_in or t_out != s_out:
        raise TransformError(
            f"distill.student: model {student.name!r} (input {s_in}, {s_out} classes) does not fit teacher "
            f"{teacher.name!r} (input {t_in}, {t_out} classes). Fix: give a student with the teacher's input "
            f"shape and number of classes. Received: student input_shape={s_in}, classes={s_out}"
        )
