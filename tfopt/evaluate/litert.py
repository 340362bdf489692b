"""Run a ``.tflite`` file through the LiteRT interpreter (``ai_edge_litert``).

Quantized inputs and outputs are handled here, so callers always pass float images and get
float outputs, whatever the file's interface.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from tfopt.quiet import native_logs_hidden
from tfopt.errors import TfoptError

_delegate_notice = {"hidden": False}


def make_interpreter(model: str | Path | bytes, threads: int = 1) -> Any:
    """A LiteRT interpreter with the default delegates (XNNPACK on CPU)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        if isinstance(model, (bytes, bytearray)):
            return _first_allocation_quiet(Interpreter(model_content=bytes(model), num_threads=threads))
        path = Path(model)
        if path.is_dir():
            raise TfoptError(f"{path} is a folder, not a .tflite file. Fix: pass the path of a .tflite file.")
        if not path.is_file():
            raise TfoptError(
                f"TFLite file not found: {path}. Fix: check the path (exported files are in models/<run>/)."
            )
        return _first_allocation_quiet(Interpreter(model_path=str(path), num_threads=threads))
    except ValueError as e:
        what = "model" if isinstance(model, (bytes, bytearray)) else str(model)
        reason = (str(e).splitlines() or ["unreadable"])[0][:200]
        raise TfoptError(
            f"Not a valid .tflite {what} ({reason}; truncated or corrupt?). Fix: export it again."
        ) from None


def _first_allocation_quiet(interp: Any) -> Any:
    """Allocate the process's first interpreter with fd 2 caught: LiteRT prints "INFO: Created TensorFlow
    Lite XNNPACK delegate for CPU." once per process there (``tfopt.quiet``). Later allocations print nothing."""
    if not _delegate_notice["hidden"]:
        _delegate_notice["hidden"] = True
        with native_logs_hidden(), contextlib.suppress(Exception):  # the caller's own allocation reports errors
            interp.allocate_tensors()
    return interp


def to_input_dtype(x: np.ndarray, detail: dict) -> np.ndarray:
    """Cast float data to an input tensor's dtype, quantizing with its scale and zero point if it has one."""
    dtype = detail["dtype"]
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return np.asarray(x).astype(dtype)


def input_names(interpreter: Any) -> dict[int, str]:
    """Input tensor index -> the name the model was exported with (its signature's input names).

    Multi-input files (BERT: token_ids, padding_mask, segment_ids) list their inputs in no fixed
    order, so data is matched to them by name, never by position.
    """
    names: dict[int, str] = {}
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        names = {int(d["index"]): name for name, d in runner.get_input_details().items()}
    for d in interpreter.get_input_details():  # no signature: 'serving_default_token_ids:0' -> token_ids
        names.setdefault(int(d["index"]), re.sub(r"^serving_default_|:\d+$", "", d["name"]))
    return names


def match_inputs(interpreter: Any, x: Any) -> list[tuple[dict, np.ndarray]]:
    """Pair each input tensor's details with its data: an array feeds a single-input model, a dict feeds inputs by name.

    Raises:
        TfoptError: the data's names or count do not match the model's inputs.
    """
    details = interpreter.get_input_details()
    if not isinstance(x, dict):
        if len(details) != 1:
            names = ", ".join(sorted(input_names(interpreter).values()))
            raise TfoptError(
                f"The model has {len(details)} inputs ({names}); pass a dict of arrays by input name, not one array."
            )
        return [(details[0], x)]
    names = input_names(interpreter)
    missing = sorted(n for n in names.values() if n not in x)
    if missing:
        raise TfoptError(f"No data for model input(s) {', '.join(missing)}. Received: inputs={sorted(x)!r}")
    return [(d, x[names[int(d["index"])]]) for d in details]


class TfliteRunner:
    """Batched inference on float inputs; (de)quantizes where the file's I/O is integer.

    Inputs are an array (single-input models) or a dict of arrays matched to the file's inputs
    by name (multi-input models such as BERT).
    """

    def __init__(self, model: str | Path | bytes, threads: int = 1):
        self.interpreter = make_interpreter(model, threads)
        self._batch = None
        out = self.interpreter.get_output_details()
        if len(out) != 1:
            raise TfoptError(f"Expected one output, found {len(out)}.")

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            for d in self.interpreter.get_input_details():
                self.interpreter.resize_tensor_input(d["index"], [batch] + list(d["shape"])[1:], strict=False)
            self.interpreter.allocate_tensors()
            self._batch = batch

    def set_inputs(self, x: Any) -> None:
        """Resize to the batch of ``x`` and set every input (quantized where the file's input is)."""
        pairs = match_inputs(self.interpreter, x)
        self._resize(len(pairs[0][1]))
        for d, values in pairs:
            self.interpreter.set_tensor(d["index"], to_input_dtype(values, d))

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return to_input_dtype(x, self.interpreter.get_input_details()[0])

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        outs = []
        n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
        for i in range(0, n, batch_size):
            chunk = {k: v[i : i + batch_size] for k, v in x.items()} if isinstance(x, dict) else x[i : i + batch_size]
            self.set_inputs(chunk)
            self.interpreter.invoke()
            d = self.interpreter.get_output_details()[0]
            y = self.interpreter.get_tensor(d["index"])
            if np.issubdtype(d["dtype"], np.integer):
                scale, zero = d["quantization"]
                y = (y.astype("float32") - zero) * scale
            outs.append(np.asarray(y, dtype="float32").copy())
        return np.concatenate(outs)
