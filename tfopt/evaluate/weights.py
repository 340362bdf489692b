"""Weight statistics (sparsity, unique values, quantization) read back from a Keras model or a .tflite file.

The file is what a user deploys, so its numbers are read from the flatbuffer itself: for every
conv / depthwise / fully-connected / transpose-conv / embedding operator, the constant weight
operand and its raw stored values. Weights reach an operator through DEQUANTIZE (float16 and
weight-only files), QUANTIZE+DEQUANTIZE (a QAT model exported as float32) or DENSIFY (sparse
files); those chains are followed back to the stored constant, and sparse constants are expanded.
Quantization is read from the tensor's own parameters (dtype, number of scales, axis), so
"quantized" in a report means quantized in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from tfopt.backends import Backend, backend_for
from tfopt.evaluate.flatbuffer import TfliteFile, read_tflite
from tfopt.backends.tensor_stats import holds_m_by_n, layer_of, tensor_stats, unique_per_channel
from tfopt.results import LayerStats

__all__ = [
    "holds_m_by_n",
    "unique_per_channel",
    "keras_weight_stats",
    "overall_sparsity",
    "tflite_op_weights",
    "tflite_weight_stats",
]

# Operator -> (index of its weight input, axis of output channels in TFLite's layout).
_WEIGHT_OPS = {
    "CONV_2D": (1, 0),
    "DEPTHWISE_CONV_2D": (1, 3),
    "FULLY_CONNECTED": (1, 0),
    "TRANSPOSE_CONV": (1, 0),
    "CONV_3D": (1, 4),
    "BATCH_MATMUL": (1, -1),
    "EMBEDDING_LOOKUP": (1, None),
    "GATHER": (0, None),  # an embedding table (only when constant)
}
_PASS_THROUGH = ("DEQUANTIZE", "QUANTIZE", "DENSIFY")  # ops between a stored weight and its user
_M_BY_N_OPS = ("CONV_2D", "FULLY_CONNECTED")  # input channels are the last axis: where tfmot's M:N applies
_DTYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
}


def overall_sparsity(layers: Iterable[LayerStats]) -> float:
    """Zeros over all weight values, weighting each layer by its size."""
    layers = list(layers)
    total = sum(layer.size for layer in layers)
    return round(sum(layer.sparsity * layer.size for layer in layers) / total, 6) if total else 0.0


def _unpack_int4(raw: np.ndarray, count: int) -> np.ndarray:
    low = (raw & 0x0F).astype(np.int8)
    high = (raw >> 4).astype(np.int8)
    both = np.stack([low, high], axis=-1).reshape(-1)[:count]
    return np.where(both > 7, both - 16, both)


def _index_vector(schema: Any, kind: int, table: Any) -> np.ndarray:
    cls = {1: schema.Int32Vector, 2: schema.Uint16Vector, 3: schema.Uint8Vector}.get(kind)
    if cls is None or table is None:
        return np.zeros(0, np.int64)
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64) if vec.ValuesLength() else np.zeros(0, np.int64)


def _densify(schema: Any, stored: np.ndarray, shape: tuple[int, ...], sparsity: Any) -> np.ndarray:
    """Expand a constant stored in TFLite's sparse format (traversal order, blocks, CSR levels)."""
    rank = len(shape)
    order = [int(x) for x in sparsity.TraversalOrderAsNumpy()]
    block_map = [int(x) for x in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    pos = np.zeros(1, np.int64)
    coords: list[np.ndarray] = []
    sizes = []
    for level in range(sparsity.DimMetadataLength()):
        meta = sparsity.DimMetadata(level)
        if meta.Format() == schema.DimensionType.DENSE:
            size = int(meta.DenseSize())
            coords = [np.repeat(c, size) for c in coords]
            coords.append(np.tile(np.arange(size), len(pos)))
            pos = (pos[:, None] * size + np.arange(size)).reshape(-1)
        else:
            segments = _index_vector(schema, meta.ArraySegmentsType(), meta.ArraySegments())
            indices = _index_vector(schema, meta.ArrayIndicesType(), meta.ArrayIndices())
            starts, ends = segments[pos], segments[pos + 1]
            counts = ends - starts
            coords = [np.repeat(c, counts) for c in coords]
            new_pos = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(
                int(counts.sum())
            )
            coords.append(indices[new_pos])
            pos = new_pos
            size = None
        sizes.append(size)
    level_of = {dim: level for level, dim in enumerate(order)}
    block_size = {block_map[j]: sizes[level_of[rank + j]] for j in range(len(block_map))}
    index = [np.zeros(len(pos), np.int64) for _ in range(rank)]
    for level, dim in enumerate(order):
        if dim < rank:
            index[dim] = index[dim] + coords[level] * block_size.get(dim, 1)
        else:
            d = block_map[dim - rank]
            index[d] = index[d] + coords[level]
    dense = np.zeros(shape, stored.dtype)
    dense[tuple(index)] = stored[pos]
    return dense


def _quantization(tensor: Any, tname: str) -> tuple[Optional[bool], str, Optional[int]]:
    """(quantized, description, quantized axis) from a tensor's own quantization parameters."""
    q = tensor.Quantization()
    scales = q.ScaleLength() if q is not None else 0
    if tname.startswith(("INT", "UINT")) and scales:
        bits = tname.lower()
        if scales > 1:
            axis = int(q.QuantizedDimension())
            return True, f"{bits} per-channel ({scales} scales, axis {axis})", axis
        return True, f"{bits} per-tensor", None
    if tname == "FLOAT16":
        return False, "float16", None
    return False, "none", None


def tflite_weight_stats(path: str | Path) -> list[LayerStats]:
    """Per-weight-tensor stats of a .tflite file, read from the flatbuffer (no interpreter)."""
    out: dict[str, LayerStats] = {}
    for _, stats in tflite_op_weights(read_tflite(path)):
        out.setdefault(stats.name, stats)  # a tensor shared by several operators counts once
    return list(out.values())


def tflite_op_weights(file: TfliteFile) -> list[tuple[int, LayerStats]]:
    """(operator index, stats of its stored weight) for each weight operator of the first subgraph.

    For ``tfopt inspect``'s per-operator table; ``tflite_weight_stats`` keeps each tensor once.
    """
    buf, model, subgraph, schema, opname = file.buf, file.model, file.subgraph, file.schema, file.op_name
    producer = {}
    ops = [subgraph.Operators(i) for i in range(subgraph.OperatorsLength())]
    for op in ops:
        for t in op.OutputsAsNumpy() if op.OutputsLength() else []:
            producer[int(t)] = op

    def tensor_values(t_idx: int) -> tuple[np.ndarray, str] | None:
        tensor = subgraph.Tensors(t_idx)
        buffer = model.Buffers(tensor.Buffer())
        if buffer.DataLength():
            raw = buffer.DataAsNumpy()
        elif buffer.Offset() > 1:
            raw = np.frombuffer(buf, np.uint8, count=buffer.Size(), offset=buffer.Offset())
        else:
            return None  # not a constant
        tname = file.type_name(tensor)
        shape = tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        count = int(np.prod(shape)) if shape else 1
        if tname == "INT4":
            values = _unpack_int4(raw, count if tensor.Sparsity() is None else 2 * raw.size)
        elif tname in _DTYPES:
            values = np.frombuffer(raw.tobytes(), _DTYPES[tname])
        else:
            return None
        if tensor.Sparsity() is not None:
            return _densify(schema, values, shape, tensor.Sparsity()), tname
        return (values.reshape(shape) if shape and values.size == count else values), tname

    out: list[tuple[int, LayerStats]] = []
    for index, op in enumerate(ops):
        kind = opname(op)
        if kind not in _WEIGHT_OPS:
            continue
        weight_input, channel_axis = _WEIGHT_OPS[kind]
        if op.InputsLength() <= weight_input:
            continue
        t_idx = int(op.Inputs(weight_input))
        if t_idx < 0:
            continue
        user_name = subgraph.Tensors(t_idx).Name().decode("utf-8", "replace")
        for _ in range(4):  # follow DEQUANTIZE / QUANTIZE / DENSIFY back to the stored constant
            if t_idx in producer and opname(producer[t_idx]) in _PASS_THROUGH:
                t_idx = int(producer[t_idx].Inputs(0))
        got = tensor_values(t_idx)
        if got is None:
            continue
        values, tname = got
        tensor = subgraph.Tensors(t_idx)
        name = tensor.Name().decode("utf-8", "replace")
        quantized, description, q_axis = _quantization(tensor, tname)
        axis = q_axis if q_axis is not None else channel_axis
        if axis is not None and values.ndim:
            axis = axis % values.ndim
        layer = layer_of(name) or layer_of(user_name)
        out.append(
            (
                index,
                tensor_stats(
                    name,
                    values,
                    tname,
                    channel_axis=axis if values.ndim >= 2 else None,
                    m_by_n=kind in _M_BY_N_OPS,
                    quantization=description,
                    quantized=quantized,
                    layer=layer,
                ),
            )
        )
    return out


def keras_weight_stats(model: Any, backend: Optional[Backend] = None) -> list[LayerStats]:
    """Per-kernel stats of a Keras model (the same tensors the exporter turns into weights).

    Kernels are laid out as TFLite stores them (output channels first, input channels last) so
    per-channel counts and the 2:4 pattern mean the same thing for both kinds of stats.
    """
    return (backend or backend_for(model)).weight_stats(model)
