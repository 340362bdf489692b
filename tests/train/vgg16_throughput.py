"""Steady-state VGG16 throughput on Fashion-MNIST at 32x32, per kind of stage (docs/scale.md).

Run from the repository root (not collected by pytest)::

    .venv/bin/python tests/train/vgg16_throughput.py   # after make setup (tfopt installed), else PYTHONPATH=.

Images per second after one traced warm-up batch: baseline training, each transform's fine-tune,
Keras inference, and int8 LiteRT inference on one thread, with the load average around it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import tfopt  # noqa: F401  (before TensorFlow)
from tfopt._keras import keras
from tfopt.config import DataConfig, ExportSpec
from tfopt.data import load
from tfopt.evaluate.litert import TfliteRunner
from tfopt.export import export_tflite
from tfopt.models.vgg16 import vgg16
from tfopt.train import compile_model, make_dataset
from tfopt.transforms import Context
from tfopt.transforms.cluster import Cluster, ClusterConfig
from tfopt.transforms.prune import Prune, PruneConfig
from tfopt.transforms.qat import Qat, QatConfig


def main(n_train: int = 1280, batch: int = 64) -> dict:
    d = load(DataConfig(name="fashion_mnist", subset=2000, val_fraction=0), seed=0)
    x, y = d.x_train[:n_train], d.y_train[:n_train]
    out: dict = {"load_average_before": os.getloadavg()}
    keras().utils.set_random_seed(0)
    base = vgg16(d.input_shape, 10, image_size=32, fit="pad")

    def speed(model, callbacks=()) -> float:
        compile_model(model, "adam", 1e-4)
        ds = make_dataset(x, y, batch, shuffle=True, seed=0)
        model.fit(ds.take(2), epochs=1, verbose=0, callbacks=list(callbacks))  # trace once
        start = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0, callbacks=list(callbacks))
        return len(x) / (time.perf_counter() - start)

    steps = n_train // batch
    out["train_baseline"] = speed(base)
    p = Prune(PruneConfig(final_sparsity=0.5), Context(steps, 1))
    out["finetune_prune"] = speed(p.apply(base), p.callbacks())
    out["finetune_cluster"] = speed(Cluster(ClusterConfig(number_of_clusters=16), Context(steps, 1)).apply(base))
    out["finetune_qat"] = speed(Qat(QatConfig(skip=["vgg16_*"]), Context(steps, 1)).apply(base))
    start = time.perf_counter()
    base.predict(d.x_test[:2048], batch_size=256, verbose=0)
    out["keras_predict"] = 2048 / (time.perf_counter() - start)
    start = time.perf_counter()
    data = export_tflite(base, ExportSpec(format="int8"), d.x_train).data
    out["int8_convert_seconds"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vgg16_int8.tflite")
        with open(path, "wb") as f:
            f.write(data)
        runner = TfliteRunner(path, threads=1)
        start = time.perf_counter()
        runner.predict(d.x_test[:512])
        out["litert_int8_predict_1_thread"] = 512 / (time.perf_counter() - start)
    out["load_average_after"] = os.getloadavg()
    return out


if __name__ == "__main__":
    result = main()
    print(
        json.dumps(
            {k: round(v, 1) if isinstance(v, float) else [round(a, 2) for a in v] for k, v in result.items()}, indent=1
        )
    )
