"""Magnitude pruning through tfmot (``prune_low_magnitude`` / ``strip_pruning``).

Example::

    variants:
      pruned_80: [{prune: {final_sparsity: 0.8, schedule: polynomial, skip: [conv1, classifier]}}]
      pruned_2_4: [{prune: {sparsity_m_by_n: "2:4", layer_types: [Conv2D, Dense]}}]

The polynomial schedule ramps from ``initial_sparsity`` to ``final_sparsity`` between
``begin_step`` and ``end_step``; by default it ends at two thirds of the fine-tune so the last
third trains at the target sparsity, and masks are updated about 20 times along the ramp.

``sparsity_m_by_n: "M:N"`` prunes structurally instead: at least M zeros in every N consecutive
weights along the input-channel axis (the last axis of TFLite's weight layout), the pattern that
hardware with structured-sparsity support accelerates (2:4). Custom layers are pruned when they
implement ``tfmot.sparsity.keras.PrunableLayer``.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from tfopt._keras import keras, tfmot
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.transforms import ALL_PRECISIONS, Transform, technique
from tfopt.transforms.common import (
    LayerSelection,
    clone_wrapping,
    fresh_copy,
    has_weights_to_change,
    refuse_after_qat,
    require_some_applied,
    require_tf_keras,
    tfmot_leaves,
    unsupported_layer,
)


class PruneConfig(LayerSelection):
    final_sparsity: Optional[float] = Field(None, ge=0, lt=1, description="fraction of weights set to zero, in [0, 1)")
    initial_sparsity: float = Field(0.0, ge=0, lt=1)
    schedule: Optional[Literal["polynomial", "constant"]] = Field(
        None, description="default: polynomial (constant with sparsity_m_by_n)"
    )
    begin_step: int = Field(0, ge=0)
    end_step: Optional[int] = Field(None, gt=0, description="default: 2/3 of the fine-tune steps")
    frequency: Optional[int] = Field(None, gt=0, description="steps between mask updates")
    power: float = Field(3.0, gt=0)
    sparsity_m_by_n: Optional[str] = Field(
        None, description='structured sparsity "M:N": M zeros in every N weights, e.g. "2:4"'
    )
    sparsities: Optional[dict[str, float]] = Field(
        None,
        description="final sparsity per layer (name glob -> sparsity in [0, 1)), overriding final_sparsity for "
        "the layers it names: tfopt tune allocates them from each layer's sensitivity",
    )

    @field_validator("sparsities")
    @classmethod
    def _per_layer(cls, v: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
        bad = {k: s for k, s in (v or {}).items() if not 0 <= s < 1}
        if bad:
            raise ValueError(f"each per-layer sparsity must be in [0, 1); got {bad}")
        return v

    @field_validator("sparsity_m_by_n")
    @classmethod
    def _m_by_n(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(v))
        if not m or not 0 < int(m.group(1)) < int(m.group(2)):
            raise ValueError('write it as "M:N" with 0 < M < N, e.g. "2:4"')
        return f"{int(m.group(1))}:{int(m.group(2))}"

    @model_validator(mode="after")
    def _order(self) -> PruneConfig:
        if self.sparsity_m_by_n is not None:
            if self.final_sparsity is not None:
                raise ValueError(
                    f"give final_sparsity or sparsity_m_by_n, not both ({self.sparsity_m_by_n} sets the sparsity)"
                )
            if self.sparsities:
                raise ValueError("sparsities (per layer) apply to final_sparsity pruning, not sparsity_m_by_n")
            if self.schedule == "polynomial":
                raise ValueError(
                    "sparsity_m_by_n applies its pattern at every mask update: use schedule: constant (or leave it out)"
                )
            return self
        if self.final_sparsity is None:
            raise ValueError('give final_sparsity (e.g. 0.8) or sparsity_m_by_n (e.g. "2:4")')
        if self.initial_sparsity > min([self.final_sparsity, *(self.sparsities or {}).values()]):
            raise ValueError("initial_sparsity must not exceed final_sparsity")
        if self.end_step is not None and self.end_step <= self.begin_step:
            raise ValueError("end_step must be after begin_step")
        return self

    @property
    def m_by_n(self) -> Optional[tuple[int, int]]:
        if self.sparsity_m_by_n is None:
            return None
        m, n = self.sparsity_m_by_n.split(":")
        return int(m), int(n)

    def sparsity_of(self, layer: str) -> float:
        """The final sparsity of one layer: its ``sparsities`` entry (first matching glob), else ``final_sparsity``."""
        for pattern, value in (self.sparsities or {}).items():
            if fnmatch.fnmatchcase(layer, pattern):
                return float(value)
        return self.target_sparsity

    @property
    def target_sparsity(self) -> float:
        """The fraction of zeros aimed for (M/N for structured sparsity)."""
        if self.m_by_n is not None:
            return self.m_by_n[0] / self.m_by_n[1]
        return float(self.final_sparsity)


def _order(previous: tuple[str, ...]) -> None:
    refuse_after_qat("prune", previous)
    if "cluster" in previous:
        raise ValueError(
            "prune after cluster would break the clusters. Fix: put prune before cluster "
            "(clustering then preserves the sparsity)"
        )


# Measured with tfmot 0.8.1 on TF 2.21 (tests/train/test_precision.py): pruning trains under both mixed policies.
PRUNE = technique(
    "prune",
    PruneConfig,
    summary="Zero the smallest-magnitude weights (or M:N structured), fine-tuning between mask updates.",
    order=_order,
    precisions=ALL_PRECISIONS,
    example={"final_sparsity": 0.5},
)


@PRUNE.implementation("tf_keras")
class Prune(Transform):
    """Zero the smallest-magnitude weights, fine-tuning between mask updates."""

    def schedule(self, final: Optional[float] = None) -> Any:
        """The tfmot schedule, ending at ``final`` (a layer's own sparsity) or the config's."""
        c, ctx = self.config, self.context
        sparsity = tfmot().sparsity.keras
        end = c.end_step or max(c.begin_step + 1, (2 * ctx.total_steps) // 3)
        freq = c.frequency or max(1, (end - c.begin_step) // 20)
        if ctx.total_steps and c.begin_step >= ctx.total_steps:
            raise TransformError(
                f"prune.begin_step={c.begin_step} is past the end of the fine-tune ({ctx.total_steps} steps): "
                "nothing would be pruned. Fix: lower begin_step or raise finetune.epochs."
            )
        if (c.schedule or ("constant" if c.m_by_n else "polynomial")) == "constant":
            return sparsity.ConstantSparsity(
                c.target_sparsity if final is None else final,
                begin_step=c.begin_step,
                end_step=end if c.end_step else -1,
                frequency=freq,
            )
        return sparsity.PolynomialDecay(
            initial_sparsity=c.initial_sparsity,
            final_sparsity=c.final_sparsity if final is None else final,
            begin_step=c.begin_step,
            end_step=end,
            power=c.power,
            frequency=freq,
        )

    def apply(self, model: Any) -> Any:
        require_tf_keras(model, self.name)
        k, sparsity = keras(), tfmot().sparsity.keras
        self.config.check_types(self.name, model)
        model = fresh_copy(model)
        schedule = self.schedule()
        m_by_n = self.config.m_by_n
        self.backend = (
            f"tf_keras: tfmot {self.config.sparsity_m_by_n} structured pruning"
            if m_by_n
            else "tf_keras: tfmot magnitude pruning"
        )
        self.decisions = []

        def wrap(layer: Any) -> Any:
            selected, reason = self.config.select(layer)
            if selected and not has_weights_to_change(layer, sparsity.PrunableLayer):
                selected, reason = False, f"no prunable kernel ({type(layer).__name__})"
            if selected and (why := tfmot_leaves(layer)):
                selected, reason = False, why
            if selected and m_by_n and not isinstance(layer, (k.layers.Conv2D, k.layers.Dense, sparsity.PrunableLayer)):
                selected, reason = (
                    False,
                    (
                        f"{self.config.sparsity_m_by_n} sparsity applies to Conv2D and Dense kernels "
                        f"({type(layer).__name__})"
                    ),
                )
            if not selected:
                self.decisions.append(LayerDecision(layer.name, False, reason))
                return layer
            try:
                own = self.config.sparsity_of(layer.name) if self.config.sparsities else None
                wrapped = sparsity.prune_low_magnitude(
                    layer, pruning_schedule=self.schedule(own) if own is not None else schedule, sparsity_m_by_n=m_by_n
                )
            except (
                ValueError,
                TypeError,
            ) as e:  # a kernel tfmot does not know how to prune: say so, do not skip it silently
                raise unsupported_layer(
                    self.name,
                    layer,
                    f"tfmot pruning does not support it ({str(e).splitlines()[0][:160]})",
                    "tfmot.sparsity.keras.PrunableLayer",
                ) from None
            self.decisions.append(
                LayerDecision(layer.name, True, f"{self.config.sparsity_m_by_n} structured" if m_by_n else "")
            )
            return wrapped

        pruned = clone_wrapping(model, self.name, wrap)
        require_some_applied("prune", model, self.decisions, "check prune.layers / prune.layer_types / prune.skip.")
        return pruned

    def callbacks(self) -> list:
        sparsity = tfmot().sparsity.keras
        cbs = [sparsity.UpdatePruningStep()]
        if self.context.log_dir is not None:
            cbs.append(sparsity.PruningSummaries(log_dir=str(self.context.log_dir)))
        return cbs

    def strip(self, model: Any) -> Any:
        return tfmot().sparsity.keras.strip_pruning(model)
