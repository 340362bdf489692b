"""VGG16 (Keras' ``applications.VGG16``) for any image size of at least 32x32 and any number of classes.

Example::

    model:
      name: vgg16
      params: {image_size: 32, weights: none, freeze_base: false, dense: 256, dropout: 0.5}

Everything the network needs is inside the model as layers, so the exported TFLite file takes the
dataset's images as they are (float in [0, 1], grey or RGB): padding or resizing to
``image_size``, grey repeated to three channels, and VGG16's own ("caffe") preprocessing
(scale to [0, 255], subtract the ImageNet channel means). Standard layers only, so the file loads
in Keras safe mode and converts to int8.

``weights``:

- ``none``: trained from scratch;
- ``imagenet``: Keras' ImageNet weights of the convolutional base, read from the Keras cache
  (``~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, or under ``$KERAS_HOME``).
  Nothing is downloaded: when the file is missing, the error says which file to place where;
- a path: an HDF5 weights file with the base's layer names (``block1_conv1`` ... ``block5_conv3``),
  e.g. ``model.save_weights("w.h5")`` of a tfopt vgg16 model, in its RGB channel order.

Keras' ImageNet kernels expect BGR input; the model takes RGB, so the input-channel axis of
``block1_conv1`` is reversed on load (exactly equivalent to flipping the image, without a layer).
tfmot's QAT has no quantizer for the preprocessing (Rescaling): keep it in float with
``qat: {skip: ["vgg16_*"]}`` (``vgg16_preprocess`` and the identity ``vgg16_input`` after it).
``freeze_base: true`` is the classic fine-tuning recipe: the convolutional base stays fixed and only
the new head (global average pooling, ``dense`` units, dropout, softmax) trains, in the baseline and
in every fine-tune.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import Field, field_validator

from tfopt._keras import keras
from tfopt.errors import ModelError
from tfopt.models import MODELS
from tfopt.schema import Strict

NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
NOTOP_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + NOTOP_FILE
IMAGENET_MEAN_RGB = (
    123.68,
    116.779,
    103.939,
)  # the caffe means Keras' vgg16.preprocess_input subtracts (in BGR order there)
BASE_LAYERS = tuple(f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for c in range(1, n + 1))
BASE_PARAMS = 14_714_688  # the convolutional base (include_top=False)


class Options(Strict):
    """``model.params`` of vgg16 (see the module docstring)."""

    image_size: Optional[tuple[int, int]] = Field(
        None, description="size the network sees: a number or [height, width], at least 32"
    )
    fit: Literal["pad", "resize"] = "resize"
    weights: Optional[str] = Field("none", description="none, imagenet (from the Keras cache) or an HDF5 weights path")
    freeze_base: bool = False
    dense: int = Field(256, ge=0, description="units of the head's hidden layer (0: none)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout before the softmax (0: none)")

    @field_validator("image_size", mode="before")
    @classmethod
    def _square(cls, v: Any) -> Any:
        if v is None or isinstance(v, (list, tuple)):
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            return (v, v)
        raise ValueError("image_size must be a number or [height, width]. Fix: write e.g. 32 or [32, 48]")

    @field_validator("image_size")
    @classmethod
    def _at_least_32(cls, v: Optional[tuple[int, int]]) -> Optional[tuple[int, int]]:
        if v is not None and min(v) < 32:
            raise ValueError(
                f"vgg16 needs images of at least 32x32 (five 2x2 poolings), and image_size is "
                f"{v[0]}x{v[1]}. Fix: use 32 or more; images are padded or resized inside the model"
            )
        return v


def imagenet_weights_path() -> Path:
    """Where Keras caches the ImageNet notop weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models" / NOTOP_FILE


def _target_size(input_shape: tuple[int, ...], image_size: Union[int, list, tuple, None]) -> tuple[int, int]:
    h, w = input_shape[0], input_shape[1]
    if image_size is None:
        target = (h, w)
    elif isinstance(image_size, int):
        target = (image_size, image_size)
    elif isinstance(image_size, (list, tuple)) and len(image_size) == 2 and all(isinstance(v, int) for v in image_size):
        target = (int(image_size[0]), int(image_size[1]))
    else:
        raise ModelError(f"vgg16: image_size must be a number or [height, width]. Received: image_size={image_size!r}")
    if min(target) < 32:
        why = f"the dataset's images are {h}x{w}" if image_size is None else f"image_size is {target[0]}x{target[1]}"
        raise ModelError(
            f"vgg16 needs images of at least 32x32 (five 2x2 poolings), and {why}. "
            "Fix: set model.params.image_size: 32 (or more); images are padded or resized inside the model."
        )
    return target


def _read_h5_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> weight arrays, from a Keras HDF5 weights (or whole-model) file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise ModelError(
                    f"{path} is HDF5 but not a Keras weights file with layer names. "
                    "Fix: save it with model.save_weights('w.h5') from a tf_keras VGG16."
                )
            out = {}
            for raw in group.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                names = [
                    w.decode() if isinstance(w, bytes) else str(w) for w in group[name].attrs.get("weight_names", [])
                ]
                out[name] = [np.asarray(group[name][w]) for w in names]
            return out
    except OSError as e:
        raise ModelError(
            f"Cannot read weights file {path}: {e}. Fix: check that the file is a complete HDF5 weights file."
        ) from None


def _load_base(model: Any, path: Path, bgr: bool) -> None:
    stored = _read_h5_weights(path)
    missing = [name for name in BASE_LAYERS if name not in stored]
    if missing:
        raise ModelError(
            f"{path} has no weights for {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: "
            "not a VGG16 base. "
            f"Fix: give a file saved from a VGG16 with Keras' layer names ({BASE_LAYERS[0]} ... {BASE_LAYERS[-1]})."
        )
    for name in BASE_LAYERS:
        layer, values = model.get_layer(name), stored[name]
        want = [tuple(w.shape) for w in layer.get_weights()]
        if [tuple(v.shape) for v in values] != want:
            raise ModelError(
                f"{path}: {name} has weights of shapes {[v.shape for v in values]}, VGG16 needs {want}. "
                "Fix: use VGG16 weights."
            )
        if bgr and name == "block1_conv1":
            values = [values[0][:, :, ::-1, :], values[1]]  # BGR kernels -> RGB input
        layer.set_weights(values)


@MODELS.register("vgg16", options=Options, tiny={"image_size": 32, "fit": "pad", "dense": 16})
def vgg16(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    image_size: Union[int, list, None] = None,
    fit: str = "resize",
    weights: Optional[str] = "none",
    freeze_base: bool = False,
    dense: int = 256,
    dropout: float = 0.5,
):
    """VGG16's convolutional base with the preprocessing inside and a new classification head.

    Args:
        input_shape: the dataset's images, (height, width, 1 or 3).
        num_classes: outputs of the softmax head.
        image_size: size the network sees (an int or [h, w], at least 32); default: the images' own.
        fit: ``pad`` (zeros around, pixels untouched: 28 -> 32) or ``resize`` (bilinear) to reach it.
        weights: ``none``, ``imagenet`` (from the Keras cache, never downloaded) or an HDF5 path.
        freeze_base: train only the head (the base keeps its weights).
        dense: units of the head's hidden layer (0: none).
        dropout: dropout before the softmax (0: none).

    Raises:
        ModelError: images too small, unsupported channels, bad options, weights missing or not VGG16's.
    """
    k = keras()
    L = k.layers
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ModelError(
            f"vgg16 takes images of shape (height, width, 1 or 3). Received: input_shape={tuple(input_shape)}"
        )
    if fit not in ("pad", "resize"):
        raise ModelError(f"vgg16: fit must be 'pad' or 'resize'. Received: fit={fit!r}")
    h, w, channels = input_shape
    th, tw = _target_size(input_shape, image_size)
    source = None if weights in (None, "none") else weights
    path: Optional[Path] = None
    if source == "imagenet":
        path = imagenet_weights_path()
        if not path.is_file():
            raise ModelError(
                f"vgg16 weights: imagenet needs Keras' file {NOTOP_FILE} at {path}, and tfopt does not download. "
                f"Fix: download {NOTOP_URL} on a machine with network and place it at {path}, "
                "or use weights: none or weights: <path>."
            )
    elif source is not None:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ModelError(
                f"vgg16 weights file not found: {path}. Fix: check model.params.weights (a path, imagenet or none)."
            )

    inputs = L.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if (th, tw) != (h, w):
        if fit == "pad":
            if th < h or tw < w:
                raise ModelError(f"vgg16: fit: pad cannot shrink {h}x{w} images to {th}x{tw}. Fix: use fit: resize.")
            x = L.ZeroPadding2D(
                (((th - h) // 2, th - h - (th - h) // 2), ((tw - w) // 2, tw - w - (tw - w) // 2)), name="pad"
            )(x)
        else:
            x = L.Resizing(th, tw, interpolation="bilinear", name="resize")(x)
    if channels == 1:
        x = L.Concatenate(name="grey_to_rgb")([x, x, x])
    x = L.Rescaling(255.0, offset=[-m for m in IMAGENET_MEAN_RGB], name="vgg16_preprocess")(x)  # caffe mode, RGB order
    # An identity that tfmot's 8-bit registry knows: with qat: {skip: ["vgg16_*"]} the float preprocessing
    # ends at a layer whose output CQAT/PCQAT can quantize (they fail on Rescaling even when it is skipped).
    x = L.Activation("linear", name="vgg16_input")(x)
    base = k.applications.VGG16(include_top=False, weights=None, input_tensor=x, input_shape=(th, tw, 3))
    x = L.GlobalAveragePooling2D(name="avg_pool")(base.output)
    if dense:
        x = L.Dense(dense, activation="relu", name="fc1")(x)
    if dropout:
        x = L.Dropout(dropout, name="dropout")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="classifier")(x)
    model = k.Model(inputs, outputs, name="vgg16")
    if path is not None:
        _load_base(model, path, bgr=source == "imagenet")
    if freeze_base:
        for name in BASE_LAYERS:
            model.get_layer(name).trainable = False
    return model
