"""The quickstart done by hand with tfmot and the TFLite converter: the yardstick for tfopt's overhead.

What a user would write without tfopt for the same work as ``pipelines/quickstart.yaml``: the same
digits split sizes, the same CNN, 25 epochs of baseline training, 80% polynomial pruning with 10
fine-tune epochs, four TFLite formats of both models, and each file's test accuracy through
LiteRT. It leaves out what tfopt adds on top (TensorBoard logs, per-layer statistics read back
from the files, latency, the report), so the difference is an upper bound on tfopt's overhead.

    python benchmarks/plain_quickstart.py OUT_DIR
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tfmot needs Keras 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
keras.utils.set_random_seed(0)
d = load_digits()
x, y = (d.images / 16.0).astype("float32")[..., None], d.target
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.1, stratify=y_train, random_state=1)

L = keras.layers
inp = L.Input((8, 8, 1))
h = L.Conv2D(32, 3, padding="same", activation="relu")(inp)
h = L.Conv2D(64, 3, padding="same", activation="relu")(h)
h = L.MaxPooling2D(2)(h)
h = L.Dropout(0.25)(L.Flatten()(h))
h = L.Dropout(0.25)(L.Dense(128, activation="relu")(h))
model = keras.Model(inp, L.Dense(10, activation="softmax")(h))
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
model.fit(x_train, y_train, batch_size=32, epochs=25, validation_data=(x_val, y_val), verbose=2)

steps = int(np.ceil(len(x_train) / 32)) * 10
schedule = tfmot.sparsity.keras.PolynomialDecay(
    0.0, 0.8, begin_step=0, end_step=2 * steps // 3, frequency=max(1, 2 * steps // 3 // 20)
)
pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
pruned.compile(keras.optimizers.Adam(5e-4), "sparse_categorical_crossentropy", ["accuracy"])
pruned.fit(
    x_train,
    y_train,
    batch_size=32,
    epochs=10,
    validation_data=(x_val, y_val),
    verbose=2,
    callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
)
pruned = tfmot.sparsity.keras.strip_pruning(pruned)


def representative():
    for i in range(200):
        yield [x_train[i : i + 1]]


for name, m in (("baseline", model), ("pruned_80", pruned)):
    m.save(f"{out}/{name}.keras")
    for fmt in ("float32", "dynamic", "float16", "int8"):
        conv = tf.lite.TFLiteConverter.from_keras_model(m)
        if fmt != "float32":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if fmt == "float16":
            conv.target_spec.supported_types = [tf.float16]
        if fmt == "int8":
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        path = f"{out}/{name}_{fmt}.tflite"
        with open(path, "wb") as f:
            f.write(conv.convert())
        interp = Interpreter(model_path=path)
        i, o = interp.get_input_details()[0], interp.get_output_details()[0]
        interp.resize_tensor_input(i["index"], [len(x_test), 8, 8, 1])
        interp.allocate_tensors()
        interp.set_tensor(i["index"], x_test)
        interp.invoke()
        acc = np.mean(np.argmax(interp.get_tensor(o["index"]), -1) == y_test)
        print(f"{name} {fmt}: accuracy {acc:.4f}, {os.path.getsize(path) / 1024:.1f} KiB")
