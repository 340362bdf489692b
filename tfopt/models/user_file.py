"""Load a user's model file (.keras, .h5, SavedModel folder) safely, in the Keras that wrote it.

Which Keras wrote a file is read from the file itself: a ``.keras`` archive's ``metadata.json``
and an HDF5 file's ``keras_version`` attribute name the version (2.x: tf_keras, 3.x: Keras 3, the
default Keras of TensorFlow >= 2.16); a SavedModel folder with ``keras_metadata.pb`` is a tf_keras
model. The file is then loaded by that Keras' backend, so a Keras 3 model stays a Keras 3 model
(and its optimized variants are saved back as Keras 3 files).

Keras safe mode is on by default: a ``.keras`` file with a Lambda layer carries arbitrary
Python code, so it is refused unless the user opts in with ``model.safe_mode: false``; Keras
enforces it only for ``.keras`` files, so tfopt looks for Lambda layers in the others' configs.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any, Optional

from tfopt.backends import Backend, backend_named
from tfopt.errors import ModelError

# The Keras packages whose model files tfopt reads, by major version of the file's keras_version.
_BACKEND_OF_MAJOR = {2: "tf_keras", 3: "keras3"}
_REGISTER = {
    "tf_keras": "@tf_keras.saving.register_keras_serializable()",
    "keras3": "@keras.saving.register_keras_serializable()",
}


def load_model_file(path: str | Path, safe_mode: bool = True) -> Any:
    """The Keras model in ``path``, loaded by the backend of the Keras that wrote it.

    Raises:
        ModelError: a missing, corrupt or unsafe file, an inference-only SavedModel, a file of a
            Keras tfopt cannot read, or a class not registered here (named, with the fix).
    """
    path = Path(path).expanduser()
    kind = _file_kind(path)
    version = file_keras_version(path, kind)
    backend = _backend_for_version(path, kind, version)
    if safe_mode and kind != ".keras" and _has_lambda(path, kind):
        raise _lambda_refused(path)
    try:
        model = backend.load(path, safe_mode=safe_mode)
    except Exception as e:  # Keras raises many types for bad files; translate them all.
        raise _load_error(path, kind, version, backend, e) from None
    if not isinstance(model, backend.keras().Model):
        raise ModelError(
            f"{path} loaded as {type(model).__name__}, not a Keras model. Fix: save a Keras model (model.save)."
        )
    return model


def _file_kind(path: Path) -> str:
    """'SavedModel', '.keras' or 'HDF5', from the path; anything else is refused."""
    if not path.exists():
        raise ModelError(
            f"Model file not found: {path}. Fix: check model.path (relative paths start from the current folder)."
        )
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(
                f"{path} is a folder but not a SavedModel (no saved_model.pb). "
                "Fix: point model.path at a .keras/.h5 file or a SavedModel folder."
            )
        return "SavedModel"
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelError(
                f"{path} is not a valid .keras file (not a zip archive; truncated or corrupt?). "
                "Fix: save the model again with model.save('x.keras')."
            )
        return ".keras"
    if suffix in (".h5", ".hdf5"):
        return "HDF5"
    raise ModelError(f"Unsupported model file {path.name!r}. Fix: use a .keras or .h5 file or a SavedModel folder.")


def file_keras_version(path: str | Path, kind: str) -> Optional[str]:
    """The Keras version a model file says wrote it (e.g. '3.15.1', '2.21.0'), or None if it says none."""
    path = Path(path)
    if kind == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("metadata.json"))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None
        version = meta.get("keras_version") if isinstance(meta, dict) else None
    elif kind == "HDF5":
        version = _h5_attrs(path).get("keras_version")
    else:  # a tf_keras SavedModel carries keras_metadata.pb; Keras 3's model.export writes none
        return "2" if (path / "keras_metadata.pb").is_file() else None
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return str(version) if version else None


def _backend_for_version(path: Path, kind: str, version: Optional[str]) -> Backend:
    """The backend that reads a file of this Keras version (a file naming none is taken as tf_keras's)."""
    if kind == "SavedModel" and version is None:
        raise ModelError(
            f"{path} is an inference-only SavedModel (no Keras model config: Keras 3's model.export or "
            "tf.saved_model.save write these), so it cannot be fine-tuned. "
            "Fix: save the trainable model with model.save('model.keras') and point model.path at it."
        )
    if version is None:
        return backend_named("tf_keras")
    major = re.match(r"\d+", version)
    name = _BACKEND_OF_MAJOR.get(int(major.group())) if major else None
    if name is None:
        raise ModelError(
            f"{path} was written by Keras {version}; tfopt reads files of Keras 2 (tf_keras) and Keras 3. "
            "Fix: load it with that Keras and save it again with a Keras 3 (model.save('model.keras')). "
            f"Received: keras_version={version!r}"
        )
    return backend_named(name)


def _load_error(path: Path, kind: str, version: Optional[str], backend: Backend, e: Exception) -> ModelError:
    """One line for a file its Keras could not load: a Lambda, an unregistered class, or the reason."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "lambda" in msg.lower() or "safe_mode" in msg.lower():
        return _lambda_refused(path)
    custom = re.search(
        r"(?:Cannot deserialize object of type|Unknown layer:?|Could not locate class) [`'\"]?(\w+)", msg
    )
    unknown = custom.group(1) if custom else None
    if unknown is None and kind == ".keras":
        unknown = (_unregistered_classes(path, backend) or [None])[0]
    written = f" (a Keras {version} file)" if version else ""
    if unknown:  # the file is fine; the class it names is not known to this process
        return ModelError(
            f"{path}{written} uses the custom class {unknown!r}, which is not registered here. "
            f"Fix: from Python, decorate it with {_REGISTER[backend.kind]} and import it before tfopt.pipeline.run, "
            "or rebuild the model from built-in layers."
        )
    return ModelError(
        f"Cannot load {kind} model {path}{written}: {msg[:300]}. Fix: check that the file is a complete Keras model."
    )


def _unregistered_classes(path: Path, backend: Backend) -> list[str]:
    """Classes named in a .keras file's config that are neither Keras' own nor registered here.

    Keras reports these only as "'str' object is not callable" when the class came from an
    importable module, so tfopt looks for them itself to name the class.
    """
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    get = backend.keras().saving.get_registered_object
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            module, name = node.get("module"), node.get("class_name")
            # "__keras_tensor__" and other dunder entries describe the graph, not classes
            if isinstance(name, str) and "config" in node and name != "function" and not name.startswith("__"):
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
    config = _h5_attrs(path).get("model_config", "")
    if isinstance(config, bytes):
        config = config.decode("utf-8", "replace")
    return '"class_name": "Lambda"' in str(config)


def _h5_attrs(path: Path) -> dict:
    """The root attributes of an HDF5 model file (keras_version, model_config...)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return dict(f.attrs)
    except OSError as e:
        raise ModelError(f"Cannot read HDF5 model {path}: {e}. Fix: check that the file is complete.") from None
