"""A .tflite file opened as its flatbuffer (no interpreter): what weights.py and macs.py read from."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt.errors import TfoptError


@dataclass(frozen=True)
class TfliteFile:
    """The file's bytes, its root ``Model`` and first subgraph, and LiteRT's generated schema module."""

    buf: bytes
    model: Any
    subgraph: Any
    schema: Any

    def op_name(self, op: Any) -> str:
        """The builtin name of operator ``op`` (e.g. ``CONV_2D``), "?" when unknown."""
        code = self.model.OperatorCodes(op.OpcodeIndex())
        return _names(self.schema.BuiltinOperator).get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")

    def type_name(self, tensor: Any) -> str:
        """The element type of ``tensor`` (e.g. ``INT8``), "?" when unknown."""
        return _names(self.schema.TensorType).get(tensor.Type(), "?")


def read_tflite(path: str | Path) -> TfliteFile:
    """Open ``path`` as a .tflite flatbuffer.

    Raises:
        TfoptError: the file is missing, unreadable or not a valid .tflite flatbuffer.
    """
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        raise TfoptError(f"File not found: {path}. Fix: check the path (a run's files are in models/<run>/).") from None
    except IsADirectoryError:
        raise TfoptError(f"{path} is a folder, not a .tflite file. Fix: pass the path of a .tflite file.") from None
    except OSError as e:
        raise TfoptError(f"Cannot read {path}: {e.strerror or e}. Fix: pass a readable .tflite file.") from None
    try:
        if not schema.Model.ModelBufferHasIdentifier(buf, 0):
            raise ValueError("missing TFL3 identifier")
        model = schema.Model.GetRootAs(buf, 0)
        subgraph = model.Subgraphs(0)
    except Exception as e:  # flatbuffers raises struct/index errors on garbage
        raise TfoptError(
            f"{path} is not a valid .tflite file ({e}). "
            "Fix: pass a TFLite flatbuffer, or export it again if it was one."
        ) from None
    return TfliteFile(buf, model, subgraph, schema)


@functools.cache  # read per operator and tensor
def _names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}
