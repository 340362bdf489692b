"""Load a user's model file (.keras, .h5, SavedModel folder) safely.

Keras safe mode is on by default: a ``.keras`` file with a Lambda layer carries arbitrary
Python code, so it is refused unless the user opts in with ``model.safe_mode: false``.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

from tfopt._keras import keras
from tfopt.errors import ModelError


def load_model_file(path: str | Path, safe_mode: bool = True) -> Any:
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(
            f"Model file not found: {path}. Fix: check model.path (relative paths start from the current folder)."
        )
    k = keras()
    suffix = path.suffix.lower()
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(
                f"{path} is a folder but not a SavedModel (no saved_model.pb). "
                "Fix: point model.path at a .keras/.h5 file or a SavedModel folder."
            )
        kind = "SavedModel"
    elif suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelError(
                f"{path} is not a valid .keras file (not a zip archive; truncated or corrupt?). "
                "Fix: save the model again with model.save('x.keras')."
            )
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
        custom = re.search(r"(?:Cannot deserialize object of type|Unknown layer:?) [`'\"]?(\w+)", msg)
        unknown = (
            custom.group(1) if custom else (_unregistered_classes(path) or [None])[0] if kind == ".keras" else None
        )
        if unknown:  # the file is fine; the class it names is not known to this process
            raise ModelError(
                f"{path} uses the custom class {unknown!r}, which is not registered here. "
                "Fix: from Python, decorate it with @tf_keras.saving.register_keras_serializable() "
                "and import it before tfopt.pipeline.run, or rebuild the model from built-in layers."
            ) from None
        raise ModelError(
            f"Cannot load {kind} model {path}: {msg[:300]}. Fix: check that the file is a complete Keras model."
        ) from None
    if not isinstance(model, k.Model):
        raise ModelError(
            f"{path} loaded as {type(model).__name__}, not a Keras model. Fix: save a Keras model (model.save)."
        )
    return model


def _unregistered_classes(path: Path) -> list[str]:
    """Classes named in a .keras file's config that are neither Keras' own nor registered here.

    Keras reports these only as "'str' object is not callable" when the class came from an
    importable module, so tfopt looks for them itself to name the class.
    """
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    get = keras().saving.get_registered_object
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            module, name = node.get("module"), node.get("class_name")
            if isinstance(name, str) and "config" in node and name != "function":
                builtin = isinstance(module, str) and module.split(".")[0] in ("tf_keras", "keras", "builtins")
                if not builtin and get(node.get("registered_name") or name) is None and name not in found:
                    found.append(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


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
