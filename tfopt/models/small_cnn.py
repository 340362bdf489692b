"""A small convolutional classifier: fast enough for the quickstart and tests on 2 CPU cores."""

from __future__ import annotations

from pydantic import Field

from tfopt._keras import keras
from tfopt.models import MODELS
from tfopt.schema import Strict


class Options(Strict):
    """``model.params`` of small_cnn, e.g. ``{filters: 32, dense: 128, dropout: 0.25}``."""

    filters: int = Field(32, gt=0, description="filters of the first conv block (the second has twice as many)")
    dense: int = Field(128, gt=0, description="units of the hidden dense layer")
    dropout: float = Field(0.25, ge=0, lt=1, description="dropout before and after the dense layer (0: none)")


@MODELS.register("small_cnn", options=Options, tiny={"filters": 4, "dense": 16})
def small_cnn(
    input_shape: tuple[int, ...], num_classes: int, *, filters: int = 32, dense: int = 128, dropout: float = 0.25
):
    """Two 3x3 conv blocks then a dense head; pools only while the feature map stays >= 4x4.

    ``filters=4, dense=16`` (the registered ``tiny``) gives a tiny model for tests.
    """
    k = keras()
    L = k.layers
    h, w = input_shape[0], input_shape[1]
    inputs = L.Input(shape=input_shape, name="image")
    x = inputs
    for i, f in enumerate((filters, filters * 2)):
        x = L.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if min(h, w) >= 8 and (i == 1 or min(h, w) >= 16):
            x = L.MaxPooling2D(2, name=f"pool{i + 1}")(x)
            h, w = h // 2, w // 2
    x = L.Flatten(name="flatten")(x)
    if dropout:
        x = L.Dropout(dropout, name="dropout1")(x)
    x = L.Dense(dense, activation="relu", name="dense1")(x)
    if dropout:
        x = L.Dropout(dropout, name="dropout2")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="classifier")(x)
    return k.Model(inputs, outputs, name="small_cnn")
