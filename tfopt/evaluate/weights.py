"""Weight statistics (sparsity, unique values) read back from a Keras model or a .tflite file.

The file is what a user deploys, so its numbers are read from the flatbuffer itself: for every
conv / depthwise / fully-connected / transpose-conv operator, the constant weight operand
(following a DEQUANTIZE for float16 and some quantized files) and its raw stored values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from tfopt.errors import TfoptError
from tfopt.results import LayerStats

# Operators whose input 1 is the weight tensor.
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL", "EMBEDDING_LOOKUP")
_DTYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32}


def _stats(name: str, values: np.ndarray, dtype: str) -> LayerStats:
    flat = values.reshape(-1)
    return LayerStats(
        name=name,
        size=int(flat.size),
        sparsity=round(float(np.count_nonzero(flat == 0) / max(flat.size, 1)), 6),
        unique_values=int(np.unique(flat).size),
        dtype=dtype,
    )


def overall_sparsity(layers: Iterable[LayerStats]) -> float:
    """Zeros over all weight values, weighting each layer by its size."""
    layers = list(layers)
    total = sum(l.size for l in layers)
    return round(sum(l.sparsity * l.size for l in layers) / total, 6) if total else 0.0


def _unpack_int4(raw: np.ndarray, count: int) -> np.ndarray:
    low = (raw & 0x0F).astype(np.int8)
    high = (raw >> 4).astype(np.int8)
    both = np.stack([low, high], axis=-1).reshape(-1)[:count]
    return np.where(both > 7, both - 16, both)


def tflite_weight_stats(path: str | Path) -> list[LayerStats]:
    """Per-weight-tensor stats of a .tflite file, read from the flatbuffer (no interpreter)."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    try:
        if not schema.Model.ModelBufferHasIdentifier(buf, 0):
            raise ValueError("missing TFL3 identifier")
        model = schema.Model.GetRootAs(buf, 0)
        subgraph = model.Subgraphs(0)
    except Exception as e:  # flatbuffers raises struct/index errors on garbage
        raise TfoptError(f"{path} is not a valid .tflite file ({e}). Fix: export it again.") from None
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def opname(op: Any) -> str:
        code = model.OperatorCodes(op.OpcodeIndex())
        return op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")

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
        tname = type_names.get(tensor.Type(), "?")
        count = int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1
        if tname == "INT4":
            return _unpack_int4(raw, count), tname
        if tname not in _DTYPES:
            return None
        return np.frombuffer(raw.tobytes(), _DTYPES[tname]), tname

    out: dict[str, LayerStats] = {}
    for op in ops:
        if opname(op) not in _WEIGHT_OPS or op.InputsLength() < 2:
            continue
        t_idx = int(op.Inputs(1))
        if t_idx < 0:
            continue
        if t_idx in producer and opname(producer[t_idx]) == "DEQUANTIZE":
            t_idx = int(producer[t_idx].Inputs(0))
        got = tensor_values(t_idx)
        if got is None:
            continue
        name = subgraph.Tensors(t_idx).Name().decode("utf-8", "replace")
        out.setdefault(name, _stats(name, got[0], got[1]))
    return list(out.values())


def keras_weight_stats(model: Any) -> list[LayerStats]:
    """Per-kernel stats of a Keras model (the same tensors the exporter turns into weights)."""
    out = []
    for layer in model.layers:
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short in ("kernel", "depthwise_kernel", "embeddings") and len(w.shape) >= 2:
                out.append(_stats(f"{layer.name}/{short}", np.asarray(w.numpy()), str(w.dtype.name)))
    return out
