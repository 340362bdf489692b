"""Knowledge distillation for Keras 3 models with Keras' own ``keras.distillation``.

``keras.distillation.Distiller(teacher, student, LogitsDistillation(temperature=T),
student_loss_weight=alpha)`` computes tfopt's loss, ``alpha * CE + (1 - alpha) * T^2 * KL``
(see ``distill.py``); tfopt adds what it lacks: models that end in a softmax are distilled on
their logits (``logits_twin``), the student is built or loaded for the run's data, and ``strip``
hands back the student as the user's model had it.

One trap, measured with Keras 3.15: ``LogitsDistillation``'s default ``loss="kl_divergence"``
resolves to the function ``keras.losses.kl_divergence``, not a ``KLDivergence`` instance, so its
softmax-then-T^2 branch is skipped and it takes the KL of the raw scaled logits (1.278 instead of
0.419 on the fixed logits of tests/transforms/test_distill.py). tfopt passes
``loss=keras.losses.KLDivergence()``, which gives the hand-computed value.

Teacher-output caching (the default, ``cache_teacher: true``): ``Distiller`` cannot take cached
outputs. Its ``compute_loss`` always runs ``self.teacher(x, training=False)`` (through the private
``_extract_all_teacher_features``), and it has no public hook for precomputed outputs; feeding
the logits through ``x`` would change the inputs the student sees. So with caching tfopt bypasses
``Distiller`` for a small ``keras.Model`` (``CachedDistiller`` below) whose ``compute_loss`` takes
the cached logits from ``y = (labels, logits)`` and applies the same ``LogitsDistillation``'s
``compute_loss`` (KL x T^2) beside ``alpha`` x the hard-label cross-entropy, Distiller's sum;
``cache_teacher: false`` uses ``Distiller`` as it is.

Feature (hint) loss (``feature: {teacher: layer, student: layer, weight}``): also in ``CachedDistiller``,
not ``keras.distillation.FeatureDistillation``. FeatureDistillation compares the two layers' outputs as
they are (its MSE needs equal shapes) and has no learned projection for differing widths; a projection
outside the student would not be among ``Distiller``'s trained weights, and inside it would change the
exported student. tfopt's ``Hinted`` (distill.py) adds the projection to the distiller, trained with the
student and dropped by ``strip``; the teacher then runs on every batch (its layer outputs are not cached).

Example::

    variants:
      student: [{distill: {student: {path: small_keras3.keras}, temperature: 4, alpha: 0.1}}]
"""

from __future__ import annotations

from typing import Any

from tfopt.backends import bert_surgery, outputs_probabilities
from tfopt.errors import TransformError
from tfopt.transforms.distill import DISTILL, Distill, Hint, Hinted, labels_and_teacher, logits_twin


def cached_distiller(
    k: Any, student: Any, teacher: Any, temperature: float, alpha: float, hints: list[Hint] = ()
) -> Any:
    """A Keras 3 model training ``student`` on ``alpha * CE + (1 - alpha) * LogitsDistillation``, the teacher's
    logits read from ``y = (labels, logits)`` when cached (else the teacher is run, as ``Distiller`` does),
    plus the batch mean of the ``hints``' feature terms (``Hinted``; the teacher then runs per batch)."""

    class CachedDistiller(k.Model):
        def __init__(self):
            super().__init__(name="distiller")
            self.student, self.teacher = student, teacher
            self.teacher.trainable = False
            self.kd = k.distillation.LogitsDistillation(temperature=temperature, loss=k.losses.KLDivergence())
            self.hard = k.losses.SparseCategoricalCrossentropy(from_logits=True)
            self.hinted = Hinted(k, student, teacher, list(hints)) if hints else None
            self.projections = self.hinted.projections if hints else []  # tracked: trained with the student

        def call(self, x, training=False):
            return self.student(x, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            if self.hinted is not None:
                y_pred, teacher_logits, hint = self.hinted.losses(x, training)
                hint = k.ops.mean(hint)
            else:
                y, teacher_logits = labels_and_teacher(x, y, self.teacher)
                y_pred = self(x, training=training) if y_pred is None else y_pred
                hint = 0.0
            soft = self.kd.compute_loss(teacher_logits, y_pred)
            return alpha * self.hard(y, y_pred) + (1.0 - alpha) * soft + hint

        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            return super().compute_metrics(x, labels_and_teacher(x, y, self.teacher)[0], y_pred, sample_weight)

    return CachedDistiller()


@DISTILL.implementation("keras3")
class DistillKeras3(Distill):
    """Distill a Keras 3 teacher into a Keras 3 student with ``keras.distillation``."""

    kind = "keras3"
    backend = "keras3: keras.distillation.Distiller + LogitsDistillation (on logits)"

    def _distiller(self, student_logits: Any, teacher_logits: Any) -> Any:
        k = self.context.backend.keras()
        c = self.config
        if c.cache_teacher or self._hints:
            self.backend = f"{self.kind}: tfopt CachedDistiller + keras.distillation.LogitsDistillation (on logits)"
            return cached_distiller(k, student_logits, teacher_logits, c.temperature, c.alpha, self._hints)
        return k.distillation.Distiller(
            teacher=teacher_logits,
            student=student_logits,
            # loss= given explicitly: see the module docstring (the default skips the softmax and T^2).
            distillation_losses=k.distillation.LogitsDistillation(
                temperature=self.config.temperature, loss=k.losses.KLDivergence()
            ),
            student_loss_weight=self.config.alpha,
        )

    def _logits_twin(self, model: Any, k: Any) -> tuple[Any, bool]:
        # keras-hub classifiers do not clone layer by layer: the twin is the same BERT rebuilt with a linear head
        if bert_surgery.is_bert(model) and outputs_probabilities(model):
            return bert_surgery.rebuild(model, activation=None), False
        return logits_twin(model, k)

    def _shallow(self, teacher: Any, every: int) -> Any:
        """The teacher with encoder layers every-1, 2*every-1, ... kept (``student: {layers: k}``)."""
        if not bert_surgery.is_bert(teacher):
            return super()._shallow(teacher, every)
        n = len(bert_surgery.encoder_layers(teacher))
        kept = list(range(every - 1, n, every))
        if every > n:
            raise TransformError(
                f"distill.student: {{layers: {every}}} would keep none of teacher {teacher.name!r}'s {n} encoder "
                f"layers. Fix: use layers between 2 and {n}. Received: layers={every}"
            )
        self.student_note = f"; initialised from teacher encoder layers {', '.join(map(str, kept))} of 0-{n - 1}"
        return bert_surgery.rebuild(teacher, layers=kept)

    def compile(self, model: Any, optimizer: str, learning_rate: float) -> None:
        if self.config.scratch:
            return super().compile(model, optimizer, learning_rate)
        k = self.context.backend.keras()
        model.compile(
            optimizer=self.context.backend.optimizer(optimizer, learning_rate),
            loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
