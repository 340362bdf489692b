"""MobileNetV2 (Keras' ``applications.MobileNetV2``) for any image size of at least 32x32 and any number of classes.

Example::

    model:
      name: mobilenet_v2
      params: {alpha: 0.35, image_size: 32, weights: none, dropout: 0.2}   # tiny: {..., blocks: 6}

The architecture people deploy on phones: inverted residual blocks (1x1 expansion, 3x3 depthwise,
1x1 projection, residual Add), which is what ``prune_channels`` must follow consistently. The
preprocessing is inside the model as standard layers, so the exported file takes the dataset's
images as they are (float in [0, 1], grey or RGB): resized to ``image_size`` when it differs,
grey repeated to three channels, scaled to [-1, 1] as MobileNetV2 expects.

``weights``: ``none`` (trained from scratch), ``imagenet`` (Keras' no-top file for this ``alpha``
and size, read from the Keras cache ``~/.keras/models`` or ``$KERAS_HOME/models``; nothing is
downloaded) or a path to a Keras weights file of the base (``base.save_weights("w.h5")``).

``blocks`` keeps the first of the 17 inverted residual blocks (Keras names them ``expanded_conv``,
``block_1`` ... ``block_16``) and, below 17, drops the final 1x1 conv (``Conv_1``): the pooling reads
the last kept block. The same layers and names, cut short: ``blocks: 6`` (through ``block_5``, with
its three projections joined by two residual Adds, about 50 layers) converts in seconds where the
whole base takes half a minute on 2 cores, so the default tests run the architecture's real paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import Field

from tfopt._keras import keras
from tfopt.errors import ModelError
from tfopt.models import MODELS
from tfopt.schema import Strict

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZES = (96, 128, 160, 192, 224)
BLOCKS = 17  # expanded_conv, block_1 ... block_16
BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"


class Options(Strict):
    """``model.params`` of mobilenet_v2 (see the module docstring)."""

    alpha: float = Field(1.0, gt=0, description="width multiplier of every layer (Keras' ImageNet files: 0.35 to 1.4)")
    image_size: Optional[int] = Field(None, ge=32, description="side the network sees (>= 32); default: the images'")
    weights: Optional[str] = Field("none", description="none, imagenet (from the Keras cache) or a weights file path")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the softmax (0: none)")
    blocks: int = Field(BLOCKS, ge=1, le=BLOCKS, description="inverted residual blocks kept (17: all, with Conv_1)")


def block_output(base: Any, blocks: int) -> Any:
    """The output tensor of the ``blocks``-th inverted residual block of Keras' base (its Add when it has one)."""
    if blocks == BLOCKS:
        return base.output
    prefix = "expanded_conv" if blocks == 1 else f"block_{blocks - 1}"
    names = {layer.name for layer in base.layers}
    return base.get_layer(f"{prefix}_add" if f"{prefix}_add" in names else f"{prefix}_project_BN").output


def imagenet_file(alpha: float, size: int) -> str:
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{size}_no_top.h5"


def _weights_path(weights: Optional[str], alpha: float, size: int) -> Optional[Path]:
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        if alpha not in ALPHAS or size not in IMAGENET_SIZES:
            raise ModelError(
                f"mobilenet_v2 weights: imagenet exists for alpha in {ALPHAS} and image_size in {IMAGENET_SIZES}. "
                f"Fix: choose one of those, or weights: none. Received: alpha={alpha}, image_size={size}"
            )
        name = imagenet_file(alpha, size)
        path = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models" / name
        if not path.is_file():
            raise ModelError(
                f"mobilenet_v2 weights: imagenet needs Keras' file {name} at {path}, and tfopt does not download. "
                f"Fix: download {BASE_URL}{name} on a machine with network and place it at {path}, "
                "or use weights: none or weights: <path>."
            )
        return path
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(
            f"mobilenet_v2 weights file not found: {path}. Fix: check model.params.weights (a path, imagenet or none)."
        )
    return path


@MODELS.register("mobilenet_v2", options=Options, tiny={"alpha": 0.35, "image_size": 32, "dropout": 0.0, "blocks": 6})
def mobilenet_v2(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    alpha: float = 1.0,
    image_size: Union[int, None] = None,
    weights: Optional[str] = "none",
    dropout: float = 0.2,
    blocks: int = BLOCKS,
) -> Any:
    """MobileNetV2's base with the preprocessing inside and a new softmax head (global average pooling).

    Raises:
        ModelError: images too small or not grey/RGB, weights missing or not this base's.
    """
    k = keras()
    L = k.layers
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ModelError(
            f"mobilenet_v2 takes images of shape (height, width, 1 or 3). Received: input_shape={tuple(input_shape)}"
        )
    h, w, channels = input_shape
    side = image_size or min(h, w)
    if image_size is None and (h != w or side < 32):
        raise ModelError(
            f"mobilenet_v2 needs square images of at least 32x32, and the dataset's are {h}x{w}. "
            "Fix: set model.params.image_size: 32 (or more); images are resized inside the model."
        )
    path = _weights_path(weights, alpha, side)
    inputs = L.Input(shape=tuple(input_shape), name="image")
    x = inputs if (h, w) == (side, side) else L.Resizing(side, side, name="mobilenet_v2_resize")(inputs)
    if channels == 1:
        x = L.Concatenate(name="mobilenet_v2_rgb")([x, x, x])
    x = L.Rescaling(2.0, offset=-1.0, name="mobilenet_v2_preprocess")(x)
    # Built on ``x``: its layers join this model's graph (no nested model), so every technique sees each one.
    base = k.applications.MobileNetV2(
        input_shape=(side, side, 3), input_tensor=x, alpha=alpha, include_top=False, weights=None
    )
    if path is not None:
        try:
            base.load_weights(str(path))
        except (ValueError, OSError) as e:
            raise ModelError(
                f"mobilenet_v2: {path} does not hold this base's weights (alpha {alpha}, {side}x{side}): "
                f"{str(e).splitlines()[0][:200]}. Fix: give a file saved from the same base, or weights: none."
            ) from None
    x = L.GlobalAveragePooling2D(name="pool")(block_output(base, blocks))
    if dropout:
        x = L.Dropout(dropout, name="dropout")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="classifier")(x)
    return k.Model(inputs, outputs, name="mobilenet_v2")
