"""Run a ``.tflite`` file through the LiteRT interpreter (``ai_edge_litert``).

Quantized inputs and outputs are handled here, so callers always pass float images and get
float outputs, whatever the file's interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfopt.errors import TfoptError


def make_interpreter(model: str | Path | bytes, threads: int = 1) -> Any:
    """A LiteRT interpreter with the default delegates (XNNPACK on CPU)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        if isinstance(model, (bytes, bytearray)):
            return Interpreter(model_content=bytes(model), num_threads=threads)
        path = Path(model)
        if not path.is_file():
            raise TfoptError(f"TFLite file not found: {path}.")
        return Interpreter(model_path=str(path), num_threads=threads)
    except ValueError as e:
        raise TfoptError(f"Not a valid .tflite model ({str(e).splitlines()[0][:200]}). Fix: export it again.") from None


class TfliteRunner:
    """Batched inference on float inputs; (de)quantizes where the file's I/O is integer."""

    def __init__(self, model: str | Path | bytes, threads: int = 1):
        self.interpreter = make_interpreter(model, threads)
        self._batch = None
        inp = self.interpreter.get_input_details()
        out = self.interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise TfoptError(f"Expected one input and one output, found {len(inp)} and {len(out)}.")

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            idx = self.interpreter.get_input_details()[0]["index"]
            shape = list(self.interpreter.get_input_details()[0]["shape"])
            self.interpreter.resize_tensor_input(idx, [batch] + shape[1:], strict=False)
            self.interpreter.allocate_tensors()
            self._batch = batch

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        d = self.interpreter.get_input_details()[0]
        if np.issubdtype(d["dtype"], np.integer):
            scale, zero = d["quantization"]
            info = np.iinfo(d["dtype"])
            return np.clip(np.round(x / scale + zero), info.min, info.max).astype(d["dtype"])
        return x.astype(d["dtype"])

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        outs = []
        for i in range(0, len(x), batch_size):
            chunk = x[i : i + batch_size]
            self._resize(len(chunk))
            self.interpreter.set_tensor(self.interpreter.get_input_details()[0]["index"], self.quantize_input(chunk))
            self.interpreter.invoke()
            d = self.interpreter.get_output_details()[0]
            y = self.interpreter.get_tensor(d["index"])
            if np.issubdtype(d["dtype"], np.integer):
                scale, zero = d["quantization"]
                y = (y.astype("float32") - zero) * scale
            outs.append(np.asarray(y, dtype="float32").copy())
        return np.concatenate(outs)
