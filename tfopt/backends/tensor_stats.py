"""Statistics of one weight tensor, shared by the Keras backends and the .tflite reader.

Both sides lay tensors out as TFLite stores them (output channels first, input channels last),
so per-channel counts and the 2:4 pattern mean the same thing for a Keras model and its file.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from tfopt.results import LayerStats


def unique_per_channel(values: np.ndarray, axis: int) -> int:
    """Most distinct values found in any one slice along ``axis`` (an output channel)."""
    per = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    if per.shape[1] == 0:
        return 0
    s = np.sort(per, axis=1)
    return int((1 + np.count_nonzero(np.diff(s, axis=1), axis=1)).max())


def holds_m_by_n(values: np.ndarray, m: int = 2, n: int = 4) -> bool:
    """Whether every ``n`` consecutive values along the last axis hold at least ``m`` zeros.

    This is tfmot's definition of M:N sparsity in TFLite's weight layout (input channels last;
    a short last group counts as zero-padded, as in ``pruning_utils.is_pruned_m_by_n``).
    """
    rows = values.reshape(-1, values.shape[-1])
    pad = (-rows.shape[1]) % n
    if pad:
        rows = np.pad(rows, ((0, 0), (0, pad)))
    groups = rows.reshape(-1, n)
    return bool(np.all(np.count_nonzero(groups, axis=1) <= n - m))


def layer_of(tensor_name: str) -> Optional[str]:
    # "model/conv1/Conv2D;model/conv1/BiasAdd" -> "conv1"; "conv1/kernel" -> "conv1"
    parts = tensor_name.split(";")[0].split("/")
    if len(parts) >= 3:
        return parts[1]
    if len(parts) == 2:
        return parts[0]
    return None


def tensor_stats(
    name: str,
    values: np.ndarray,
    dtype: str,
    *,
    channel_axis: Optional[int] = None,
    m_by_n: bool = False,
    quantization: Optional[str] = None,
    quantized: Optional[bool] = None,
    layer: Optional[str] = None,
) -> LayerStats:
    flat = values.reshape(-1)
    channels = per_channel = pattern = None
    if channel_axis is not None and values.ndim >= 2:
        channels = int(values.shape[channel_axis])
        per_channel = unique_per_channel(values, channel_axis)
    if m_by_n and values.ndim >= 2 and values.shape[-1] >= 4:  # fewer input channels: vacuously true
        pattern = holds_m_by_n(values)
    return LayerStats(
        name=name,
        size=int(flat.size),
        sparsity=round(float(np.count_nonzero(flat == 0) / max(flat.size, 1)), 6),
        unique_values=int(np.unique(flat).size),
        dtype=dtype,
        layer=layer if layer is not None else layer_of(name),
        quantized=quantized,
        quantization=quantization,
        channels=channels,
        unique_per_channel=per_channel,
        pattern_2_4=pattern,
    )
