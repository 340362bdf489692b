"""Magnitude pruning for Keras 3 models (keras-hub BERT), with tfmot's semantics and options.

No maintained library prunes Keras 3 models, so tfopt does it: the same ``PruneConfig`` as the
tfmot transform (``final_sparsity``, ``initial_sparsity``, ``schedule: polynomial | constant``,
``begin_step``, ``end_step``, ``frequency``, ``power``, ``sparsity_m_by_n``, ``layers``,
``layer_types``, ``skip``) and the same schedule objects, so a YAML variant means the same thing
for either Keras. What differs is the mechanism: instead of wrapping layers (keras-hub nests them
several levels deep), a callback owns one mask per weight matrix and, like tfmot's wrapper,

- at each training step where the schedule says so, recomputes the masks: the smallest
  magnitudes of each matrix are zeroed until it reaches the scheduled sparsity (ties kept, as
  tfmot keeps every weight at the threshold);
- multiplies the weights by their masks before every step and after it, so the forward pass,
  validation and the final model see pruned weights and masks hold through the fine-tune.

``strip`` applies the masks one last time; the model is a plain Keras 3 model throughout.
Pruned matrices: Dense / EinsumDense kernels and Embedding tables (token and segment
embeddings), as tfmot prunes Dense kernels and Embedding tables.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from tfopt._keras import keras3, tf
from tfopt.backends.keras3 import (
    check_layer_types,
    layer_path,
    matrix_layers,
    kernel_variables,
    select,
    weight_attribute,
)
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.transforms.common import require_some_applied
from tfopt.transforms.prune import PRUNE, Prune


def magnitude_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """1 where a weight is kept, 0 where pruned: the ``round(size * (1 - sparsity))`` largest magnitudes stay.

    Every weight equal to the threshold magnitude is kept, as in tfmot, so ties can leave a
    matrix slightly below the target.
    """
    flat = np.abs(values).reshape(-1)
    keep = int(round(flat.size * (1.0 - float(sparsity))))
    if keep >= flat.size:
        return np.ones(values.shape, np.float32)
    if keep <= 0:
        return np.zeros(values.shape, np.float32)
    threshold = np.partition(flat, flat.size - keep)[flat.size - keep]
    return (np.abs(values) >= threshold).astype(np.float32)


def m_by_n_mask(values: np.ndarray, m: int, n: int, axes: tuple[int, ...]) -> np.ndarray:
    """Keep the ``n - m`` largest of every ``n`` consecutive weights along the contracted (input) axes.

    That is tfmot's M:N along the input channels, which TFLite stores last in a FULLY_CONNECTED
    weight; ``axes`` are the kernel's input axes (Dense: (0,); EinsumDense: those contracted; Conv2D
    (kh, kw, in, out): (2,), the input channels, which TFLite's CONV_2D weight (OHWI) stores last).
    """
    other = [a for a in range(values.ndim) if a not in axes]
    moved = np.transpose(values, other + list(axes))
    rows = moved.reshape(int(np.prod([values.shape[a] for a in other], dtype=np.int64)), -1)
    pad = (-rows.shape[1]) % n
    padded = np.pad(np.abs(rows), ((0, 0), (0, pad)), constant_values=-1.0)  # padding is never kept
    groups = padded.reshape(rows.shape[0], -1, n)
    order = np.argsort(-groups, axis=-1, kind="stable")
    keep = np.zeros_like(groups, dtype=np.float32)
    np.put_along_axis(keep, order[..., : n - m], 1.0, axis=-1)
    keep = keep.reshape(rows.shape[0], -1)[:, : rows.shape[1]]
    return np.transpose(keep.reshape(moved.shape), np.argsort(other + list(axes))).astype(np.float32)


def contracted_axes(layer: Any, attr: str) -> Optional[tuple[int, ...]]:
    """The kernel axes summed over with the input (where M:N groups run), or None for tables."""
    L = keras3().layers
    if attr != "kernel":
        return None
    if isinstance(layer, L.EinsumDense):
        inputs, rest = layer.equation.split(",")
        kernel = rest.split("->")[0]
        return tuple(i for i, c in enumerate(kernel) if c in inputs)
    if isinstance(layer, L.Dense):
        return (0,)
    if isinstance(layer, (L.Conv1D, L.Conv2D)):  # (..., in, out): TFLite stores the input channels last too
        return (len(layer.kernel.shape) - 2,)
    return None


@PRUNE.implementation("keras3")
class PruneKeras3(Prune):
    """Zero the smallest-magnitude weights of a Keras 3 model, fine-tuning between mask updates."""

    backend = "keras3: tfopt magnitude pruning (masks kept by a callback, tfmot schedules)"

    def apply(self, model: Any) -> Any:
        c = self.config
        if c.sparsities:
            raise TransformError(
                "prune.sparsities (per-layer sparsities) applies to tf_keras models; a Keras 3 model is pruned to one "
                f"final_sparsity. Fix: remove prune.sparsities. Received: sparsities={c.sparsities!r}"
            )
        check_layer_types(self.name, c, model)
        self._schedule = self.schedule()  # tfmot's PolynomialDecay / ConstantSparsity: pure TensorFlow
        self._targets: list[tuple[str, Any, Optional[tuple[int, ...]]]] = []  # (path, variable, M:N axes)
        self.decisions = []
        for layer in matrix_layers(model):
            path, attr = layer_path(layer), weight_attribute(layer)
            variables = kernel_variables(layer)
            selected, reason = select(c, layer)
            if selected and not variables:
                selected, reason = (
                    False,
                    f"no prunable kernel ({type(layer).__name__}: "
                    "no weight matrix in a kernel, depthwise_kernel, pointwise_kernel or embeddings attribute)",
                )
            axes = contracted_axes(layer, attr) if attr else None
            if selected and c.m_by_n and axes is None:
                selected, reason = (
                    False,
                    f"{c.sparsity_m_by_n} sparsity applies to Dense, EinsumDense and Conv1D/Conv2D kernels "
                    f"({type(layer).__name__})",
                )
            if selected:
                self._targets.extend((path, v, axes if c.m_by_n else None) for v in variables)
                self.decisions.append(LayerDecision(path, True, f"{c.sparsity_m_by_n} structured" if c.m_by_n else ""))
            else:
                self.decisions.append(LayerDecision(path, False, reason))
        require_some_applied("prune", model, self.decisions, "check prune.layers / prune.layer_types / prune.skip.")
        self._masks: list[Any] = [None] * len(self._targets)
        self._step = 0
        return model

    def update_masks(self, sparsity: float) -> None:
        """Recompute every mask from the current weights (magnitude, or M:N)."""
        m_by_n = self.config.m_by_n
        for i, (_, var, axes) in enumerate(self._targets):
            values = np.asarray(var.numpy())
            mask = m_by_n_mask(values, m_by_n[0], m_by_n[1], axes) if m_by_n else magnitude_mask(values, sparsity)
            self._masks[i] = tf().constant(mask, dtype=var.dtype)

    def apply_masks(self) -> None:
        """weights = weights * mask for every pruned matrix that has a mask yet."""
        for (_, var, _), mask in zip(self._targets, self._masks):
            if mask is not None:
                var.assign(var.value * mask)

    def on_step(self) -> None:
        should_prune, sparsity = self._schedule(tf().constant(self._step, tf().int64))
        if bool(should_prune):
            self.update_masks(float(sparsity))
        self.apply_masks()

    def callbacks(self) -> list:
        return [_mask_callback(self)]

    def strip(self, model: Any) -> Any:
        self.apply_masks()
        return model


def _mask_callback(pruner: PruneKeras3) -> Any:
    """Keeps masks across the fine-tune: update on schedule before a step, apply before and after it."""

    class MaskCallback(keras3().callbacks.Callback):  # defined here: Keras 3 is imported only when used
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            pruner.on_step()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            pruner._step += 1
            pruner.apply_masks()

    return MaskCallback()


__all__ = ["PruneKeras3", "magnitude_mask", "m_by_n_mask"]
