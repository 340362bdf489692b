"""Write a Keras 3 model file as a user's own code would: plain ``import keras``, no tfopt.

The model has the layers people's small CNNs have: Conv2D + BatchNormalization + ReLU, a
depthwise-separable residual block (DepthwiseConv2D, 1x1 Conv2D, Add), pooling, Dropout, Dense.
It is saved untrained; ``pipelines/keras3_user_model.yaml`` trains it on Fashion-MNIST::

    python examples/keras3_model.py            # writes models/keras3_cnn.keras
    tfopt run pipelines/keras3_user_model.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras  # Keras 3: the default Keras of TensorFlow 2.21


def build(input_shape=(28, 28, 1), num_classes: int = 10) -> keras.Model:
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(1.0, name="rescale")(inputs)  # the data is already in [0, 1]
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    y = keras.layers.Conv2D(32, 1, name="pw")(y)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.25, name="dropout")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense1")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="keras3_cnn")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "models/keras3_cnn.keras")
    out.parent.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    build().save(out)
    print(f"wrote {out} (Keras {keras.__version__})")
