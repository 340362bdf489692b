"""Load a user's model file (.keras, .h5, SavedModel folder) safely.

Keras safe mode is on by default: a ``.keras`` file with a Lambda layer carries arbitrary
Python code, so it is refused unless the user opts in with ``model.safe_mode: false``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from tfopt._keras import keras
from tfopt.errors import ModelError


def load_model_file(path: str | Path, safe_mode: bool = True) -> Any:
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"Model file not found: {path}. Fix: check model.path (relative paths start from the current folder).")
    k = keras()
    suffix = path.suffix.lower()
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"{path} is a folder but not a SavedModel (no saved_model.pb). Fix: point model.path at a .keras/.h5 file or a SavedModel folder.")
        kind = "SavedModel"
    elif suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path} is not a valid .keras file (not a zip archive; truncated or corrupt?). Fix: save the model again with model.save('x.keras').")
        kind = ".keras"
    elif suffix in (".h5", ".hdf5"):
        kind = "HDF5"
    else:
        raise ModelError(f"Unsupported model file {path.name!r}. Fix: use a .keras or .h5 file or a SavedModel folder.")
    if safe_mode and kind != ".keras" and _has_lambda(path, kind):
        raise _lambda_refused(path)
    try:
        if kind == ".keras":
            model = k.models.load_model(path, safe_mode=safe_mode, compile=False)
        else:
            model = k.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for bad files; translate them all.
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "lambda" in msg.lower() or "safe_mode" in msg.lower():
            raise _lambda_refused(path) from None
        raise ModelError(f"Cannot load {kind} model {path}: {msg[:300]}. Fix: check that the file is a complete Keras model.") from None
    if not isinstance(model, k.Model):
        raise ModelError(f"{path} loaded as {type(model).__name__}, not a Keras model. Fix: save a Keras model (model.save).")
    return model


def _lambda_refused(path: Path) -> ModelError:
    return ModelError(
        f"{path} contains a Lambda layer, which runs arbitrary Python code and is refused in safe mode. "
        "Fix: if you trust the file, set model.safe_mode: false."
    )


def _has_lambda(path: Path, kind: str) -> bool:
    """Keras only enforces safe mode for .keras files; look for Lambda in the others' configs."""
    if kind == "SavedModel":
        meta = path / "keras_metadata.pb"
        return meta.is_file() and b'"class_name": "Lambda"' in meta.read_bytes()
    try:
        import h5py

        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config", "")
    except OSError as e:
        raise ModelError(f"Cannot read HDF5 model {path}: {e}. Fix: check that the file is complete.") from None
    if isinstance(config, bytes):
        config = config.decode("utf-8", "replace")
    return '"class_name": "Lambda"' in str(config)
