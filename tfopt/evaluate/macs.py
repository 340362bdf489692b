"""Multiply-accumulates (MACs) of one inference, read from a .tflite file's operators and tensor shapes.

The file is what runs, so the count is read from the flatbuffer, not from the Keras model: a
structurally pruned model shows its smaller layers here, a magnitude-pruned one does not (its
zeros are still multiplied). Counted per invocation of the file's first subgraph (its batch, 1 for
tfopt's exports), for the operators that do nearly all the arithmetic of the models tfopt handles:

- CONV_2D: output elements x kernel height x width x input channels per group;
- DEPTHWISE_CONV_2D: output elements x kernel height x width;
- CONV_3D: output elements x kernel depth x height x width x input channels;
- TRANSPOSE_CONV: input elements x kernel height x width x output channels;
- FULLY_CONNECTED: input rows x units x input features;
- BATCH_MATMUL: output elements x the contracted dimension.

Element-wise ops, pooling and normalisation are not counted (a few percent of a CNN's work).
A dynamic dimension (-1 in the shape signature) is resolved through the RESHAPE that made the tensor:
a Keras ``Dense`` on a (batch, tokens, features) input is exported as RESHAPE to (-1, features) then
FULLY_CONNECTED, and its rows are the reshape's input elements / features (counting the -1 as 1 would
undercount a transformer's feed-forward block by the sequence length). Other unknown dimensions count as 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt.evaluate.flatbuffer import read_tflite

COUNTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL")


@dataclass(frozen=True)
class OpMacs:
    """One counted operator: its kind, output tensor name, weight (second operand) shape, MACs and index."""

    op: str
    output: str
    weight_shape: tuple[int, ...]
    macs: int
    index: int = -1  # position among the subgraph's operators


def tflite_op_macs(path: str | Path) -> list[OpMacs]:
    """The MACs of each counted operator of a .tflite file, in execution order (no interpreter).

    Raises:
        TfoptError: the file is not a valid .tflite flatbuffer.
    """
    file = read_tflite(path)
    subgraph, schema = file.subgraph, file.schema

    def shape(t: int) -> tuple[int, ...]:
        if t < 0:
            return ()
        tensor = subgraph.Tensors(t)
        return tuple(max(1, int(d)) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()

    reshaped = {}  # output tensor of a RESHAPE -> its input tensor (same elements)
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        if file.op_name(op) == "RESHAPE" and op.InputsLength() and op.OutputsLength():
            reshaped[int(op.Outputs(0))] = int(op.Inputs(0))

    def elements(t: int) -> int:
        tensor = subgraph.Tensors(t)
        dynamic = tensor.ShapeSignatureLength() and any(int(d) < 0 for d in tensor.ShapeSignatureAsNumpy())
        if dynamic and t in reshaped:
            return elements(reshaped[t])
        return math.prod(shape(t))

    out = []
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        kind = file.op_name(op)
        if kind not in COUNTED_OPS or op.InputsLength() < 2 or op.OutputsLength() < 1:
            continue
        ins = [int(op.Inputs(j)) for j in range(op.InputsLength())]
        out_t = int(op.Outputs(0))
        if kind == "FULLY_CONNECTED" and len(shape(ins[1])) == 2:  # weights (units, features)
            units, features = shape(ins[1])
            macs = max(1, elements(ins[0]) // features) * units * features
        else:
            macs = _macs(kind, op, schema, [shape(t) for t in ins], shape(out_t))
        name = subgraph.Tensors(out_t).Name().decode("utf-8", "replace")
        weight = ins[2] if kind == "TRANSPOSE_CONV" else ins[1]
        out.append(OpMacs(kind, name, shape(weight), macs, index=i))
    return out


def _macs(kind: str, op: Any, schema: Any, ins: list[tuple[int, ...]], out: tuple[int, ...]) -> int:
    n_out = math.prod(out) if out else 0
    if kind == "CONV_2D":  # filter (O, H, W, I/groups)
        _, kh, kw, cin = ins[1]
        return n_out * kh * kw * cin
    if kind == "DEPTHWISE_CONV_2D":  # filter (1, H, W, O)
        return n_out * ins[1][1] * ins[1][2]
    if kind == "CONV_3D":  # filter (D, H, W, I, O)
        kd, kh, kw, cin, _ = ins[1]
        return n_out * kd * kh * kw * cin
    if kind == "TRANSPOSE_CONV":  # inputs: output_shape, filter (O, H, W, I), input (N, H, W, I)
        cout, kh, kw, _ = ins[1]
        return math.prod(ins[2]) * kh * kw * cout
    if kind == "FULLY_CONNECTED":  # weights (units, features)
        return n_out * ins[1][-1]
    # BATCH_MATMUL: (..., M, K) x (..., K, N); adj_x transposes the first operand
    adj_x = False
    table = op.BuiltinOptions()
    if table is not None:
        options = schema.BatchMatMulOptions()
        options.Init(table.Bytes, table.Pos)
        adj_x = bool(options.AdjX())
    a = ins[0]
    k = (a[-2] if adj_x else a[-1]) if len(a) >= 2 else (a[0] if a else 1)
    return n_out * k


def tflite_macs(path: str | Path) -> int:
    """Total multiply-accumulates of one invocation of a .tflite file (see the module doc)."""
    return sum(o.macs for o in tflite_op_macs(path))
