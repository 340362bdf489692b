"""``tfopt inspect``: what a .tflite file holds, read from its flatbuffer the way tfopt's reports read it.

The per-operator table is built from the same readers as run.json's figures (weights.py for
dtype, quantization, sparsity and unique values; macs.py for multiply-accumulates), so a file
inspected on its own shows what its run recorded. Any .tflite works, not only tfopt's. Neither
TensorFlow nor an interpreter is loaded: only LiteRT's generated flatbuffer schema.

Example::

    from tfopt.evaluate.inspection import inspect_tflite, format_inspection
    info = inspect_tflite("models/quickstart/pruned_80_int8.tflite")
    print(format_inspection(info))          # or json.dumps(info.to_dict())
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tfopt.evaluate.flatbuffer import TfliteFile, read_tflite
from tfopt.evaluate.macs import tflite_op_macs
from tfopt.evaluate.weights import overall_sparsity, tflite_op_weights
from tfopt.results import LayerStats


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, element type, shape (-1 where the batch or a length is free)."""

    name: str
    dtype: str
    shape: list[int]
    quantization: Optional[str] = None  # "scale 0.003922, zero point -128" for a quantized tensor


@dataclass(frozen=True)
class OperatorRow:
    """One operator that holds weights or whose MACs are counted, in execution order."""

    index: int
    op: str
    output: str  # its output tensor's name (names the Keras layer in converted models)
    weight: Optional[LayerStats]  # the stored weight it reads, None for weightless ops such as BATCH_MATMUL
    weight_shape: Optional[list[int]]
    macs: Optional[int]


@dataclass(frozen=True)
class Inspection:
    """Everything ``tfopt inspect`` shows for one file."""

    path: str
    size_bytes: int
    subgraphs: int
    operators: int  # in the first subgraph, the one tfopt reads
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    rows: list[OperatorRow]
    other_operators: dict[str, int]  # operators without weights or counted MACs, by kind
    weights: int  # weight values over the distinct stored weight tensors
    sparsity: float  # zeros over those values (run.json's Result.sparsity)
    macs: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def inspect_tflite(path: str | Path) -> Inspection:
    """Read a .tflite file's operators, weights, MACs, inputs and outputs (no TensorFlow, no interpreter).

    Raises:
        TfoptError: the file is missing, unreadable or not a .tflite flatbuffer.
    """
    file = read_tflite(path)
    weights = dict(tflite_op_weights(file))
    macs = {m.index: m for m in tflite_op_macs(path)}
    sub = file.subgraph
    rows, others = [], Counter()
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        if i not in weights and i not in macs:
            others[file.op_name(op)] += 1
            continue
        out = int(op.Outputs(0)) if op.OutputsLength() else -1
        rows.append(
            OperatorRow(
                index=i,
                op=file.op_name(op),
                output=_name(sub.Tensors(out)) if out >= 0 else "",
                weight=weights.get(i),
                weight_shape=list(macs[i].weight_shape) if i in macs else None,
                macs=macs[i].macs if i in macs else None,
            )
        )
    distinct = list({w.name: w for w in weights.values()}.values())  # a tensor shared by several ops once
    return Inspection(
        path=str(path),
        size_bytes=len(file.buf),
        subgraphs=file.model.SubgraphsLength(),
        operators=sub.OperatorsLength(),
        inputs=[_tensor(file, int(t)) for t in (sub.InputsAsNumpy() if sub.InputsLength() else [])],
        outputs=[_tensor(file, int(t)) for t in (sub.OutputsAsNumpy() if sub.OutputsLength() else [])],
        rows=rows,
        other_operators=dict(sorted(others.items())),
        weights=sum(w.size for w in distinct),
        sparsity=overall_sparsity(distinct),
        macs=sum(m.macs for m in macs.values()),
    )


def _name(tensor: Any) -> str:
    return tensor.Name().decode("utf-8", "replace")


def _tensor(file: TfliteFile, index: int) -> TensorInfo:
    t = file.subgraph.Tensors(index)
    dims = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else (t.ShapeAsNumpy() if t.ShapeLength() else [])
    q = t.Quantization()
    quant = None
    if q is not None and q.ScaleLength():
        zero = int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0
        quant = f"scale {float(q.Scale(0)):.6g}, zero point {zero}"
        if q.ScaleLength() > 1:
            quant = f"{q.ScaleLength()} scales (axis {int(q.QuantizedDimension())})"
    return TensorInfo(_name(t), file.type_name(t).lower(), [int(d) for d in dims], quant)


def _count(n: Optional[int]) -> str:
    return "" if n is None else f"{n:,}"


def format_inspection(info: Inspection) -> str:
    """The inspection as aligned plain text: inputs, outputs, the operator table and the totals."""
    lines = [
        f"{info.path}: {info.size_bytes:,} bytes, {info.operators} operators"
        + (f" in the first of {info.subgraphs} subgraphs" if info.subgraphs > 1 else "")
    ]
    for title, tensors in (("inputs", info.inputs), ("outputs", info.outputs)):
        lines.append(f"{title}:")
        for t in tensors:
            shape = "[" + ", ".join("?" if d < 0 else str(d) for d in t.shape) + "]"
            lines.append(f"  {t.name}  {t.dtype} {shape}" + (f"  ({t.quantization})" if t.quantization else ""))
    header = (
        "#",
        "operator",
        "layer / output",
        "weight",
        "dtype",
        "quantization",
        "values",
        "sparsity",
        "unique",
        "MACs",
    )
    table = [header]
    for r in info.rows:
        w = r.weight
        table.append(
            (
                str(r.index),
                r.op,
                (w.layer if w and w.layer else r.output)[:40],
                "x".join(str(d) for d in r.weight_shape) if r.weight_shape else "",
                w.dtype.lower() if w else "",
                (w.quantization or "") if w else "",
                _count(w.size if w else None),
                f"{w.sparsity:.3f}" if w else "",
                _count(w.unique_values if w else None),
                _count(r.macs),
            )
        )
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    right = {0, 6, 7, 8, 9}  # numbers
    for row in table:
        cells = [cell.rjust(w) if c in right else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    if info.other_operators:
        lines.append("other operators: " + ", ".join(f"{k} x{n}" for k, n in info.other_operators.items()))
    lines.append(
        f"total: {info.weights:,} weight values, sparsity {info.sparsity:.3f}, {info.macs:,} MACs per inference"
    )
    return "\n".join(lines)
