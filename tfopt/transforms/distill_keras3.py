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

Example::

    variants:
      student: [{distill: {student: {path: small_keras3.keras}, temperature: 4, alpha: 0.1}}]
"""

from __future__ import annotations

from typing import Any

from tfopt.transforms.distill import DISTILL, Distill


@DISTILL.implementation("keras3")
class DistillKeras3(Distill):
    """Distill a Keras 3 teacher into a Keras 3 student with ``keras.distillation``."""

    kind = "keras3"
    backend = "keras3: keras.distillation.Distiller + LogitsDistillation (on logits)"

    def _distiller(self, student_logits: Any, teacher_logits: Any) -> Any:
        k = self.context.backend.keras()
        return k.distillation.Distiller(
            teacher=teacher_logits,
            student=student_logits,
            # loss= given explicitly: see the module docstring (the default skips the softmax and T^2).
            distillation_losses=k.distillation.LogitsDistillation(
                temperature=self.config.temperature, loss=k.losses.KLDivergence()
            ),
            student_loss_weight=self.config.alpha,
        )

    def compile(self, model: Any, optimizer: str, learning_rate: float) -> None:
        if self.config.scratch:
            return super().compile(model, optimizer, learning_rate)
        k = self.context.backend.keras()
        model.compile(
            optimizer=self.context.backend.optimizer(optimizer, learning_rate),
            loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
