"""Magnitude pruning through tfmot (``prune_low_magnitude`` / ``strip_pruning``).

Example::

    variants:
      pruned_80: [{prune: {final_sparsity: 0.8, schedule: polynomial}}]

The polynomial schedule ramps from ``initial_sparsity`` to ``final_sparsity`` between
``begin_step`` and ``end_step``; by default it ends at two thirds of the fine-tune so the last
third trains at the target sparsity, and masks are updated about 20 times along the ramp.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from tfopt._keras import keras, tfmot
from tfopt.config import Strict
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.transforms import TRANSFORMS, Transform, layer_selected


class PruneConfig(Strict):
    final_sparsity: float = Field(ge=0, lt=1, description="fraction of weights set to zero, in [0, 1)")
    initial_sparsity: float = Field(0.0, ge=0, lt=1)
    schedule: Literal["polynomial", "constant"] = "polynomial"
    begin_step: int = Field(0, ge=0)
    end_step: Optional[int] = Field(None, gt=0, description="default: 2/3 of the fine-tune steps")
    frequency: Optional[int] = Field(None, gt=0, description="steps between mask updates")
    power: float = Field(3.0, gt=0)
    layers: Optional[list[str]] = Field(None, description="glob patterns of layers to prune (default: all prunable)")
    skip: list[str] = Field(default_factory=list, description="glob patterns of layers to leave dense")

    @model_validator(mode="after")
    def _order(self) -> "PruneConfig":
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError("initial_sparsity must not exceed final_sparsity")
        if self.end_step is not None and self.end_step <= self.begin_step:
            raise ValueError("end_step must be after begin_step")
        return self


def _has_kernel(layer: Any) -> bool:
    return any(w.name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel", "embeddings") for w in layer.weights)


@TRANSFORMS.register("prune")
class Prune(Transform):
    """Zero the smallest-magnitude weights, fine-tuning between mask updates."""

    name = "prune"
    Config = PruneConfig

    def schedule(self) -> Any:
        c, ctx = self.config, self.context
        sparsity = tfmot().sparsity.keras
        end = c.end_step or max(c.begin_step + 1, (2 * ctx.total_steps) // 3)
        freq = c.frequency or max(1, (end - c.begin_step) // 20)
        if ctx.total_steps and c.begin_step >= ctx.total_steps:
            raise TransformError(
                f"prune.begin_step={c.begin_step} is past the end of the fine-tune ({ctx.total_steps} steps): "
                "nothing would be pruned. Fix: lower begin_step or raise finetune.epochs."
            )
        if c.schedule == "constant":
            return sparsity.ConstantSparsity(c.final_sparsity, begin_step=c.begin_step, end_step=end if c.end_step else -1, frequency=freq)
        return sparsity.PolynomialDecay(
            initial_sparsity=c.initial_sparsity, final_sparsity=c.final_sparsity,
            begin_step=c.begin_step, end_step=end, power=c.power, frequency=freq,
        )

    def apply(self, model: Any) -> Any:
        k, sparsity = keras(), tfmot().sparsity.keras
        schedule = self.schedule()
        self.decisions = []

        def wrap(layer: Any) -> Any:
            if not layer.weights or isinstance(layer, k.layers.InputLayer):
                return layer
            selected, reason = layer_selected(layer.name, self.config.layers, self.config.skip)
            if selected and not _has_kernel(layer):
                selected, reason = False, f"no prunable kernel ({type(layer).__name__})"
            if selected:
                try:
                    wrapped = sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)
                except (ValueError, TypeError) as e:
                    selected, reason = False, f"not supported by tfmot pruning ({type(layer).__name__}): {str(e).splitlines()[0][:120]}"
                else:
                    self.decisions.append(LayerDecision(layer.name, True))
                    return wrapped
            self.decisions.append(LayerDecision(layer.name, False, reason))
            return layer

        try:
            pruned = k.models.clone_model(model, clone_function=wrap)
        except ValueError as e:
            raise TransformError(f"Cannot prune model {model.name!r}: {str(e).splitlines()[0]}") from None
        if not any(d.applied for d in self.decisions):
            raise TransformError(
                f"prune matched no layer of model {model.name!r} (layers with weights: "
                f"{', '.join(d.layer for d in self.decisions) or 'none'}). Fix: check prune.layers / prune.skip."
            )
        return pruned

    def callbacks(self) -> list:
        sparsity = tfmot().sparsity.keras
        cbs = [sparsity.UpdatePruningStep()]
        if self.context.log_dir is not None:
            cbs.append(sparsity.PruningSummaries(log_dir=str(self.context.log_dir)))
        return cbs

    def strip(self, model: Any) -> Any:
        return tfmot().sparsity.keras.strip_pruning(model)
