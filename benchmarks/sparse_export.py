"""Sparse against dense TFLite storage of the same pruned model: file size, gzip size, latency ratio.

Two pruned models, both trained on real digits: the quickstart CNN at 80% sparsity, and a wide MLP
(2 x 1024 hidden units) at 90%, where fully-connected weights dominate. The sparse file is the
export option ``{float32: {sparse: true}}`` (``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``); both files
are timed alternately in one process through LiteRT with its default XNNPACK delegate.

    python benchmarks/sparse_export.py [--runs 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import gzip
import math

from common import footer, header, table


def _pruned(model, digits, sparsity: float, epochs: int):
    from tfopt.train import compile_model
    from tfopt.transforms import Context
    from tfopt.transforms.prune import Prune, PruneConfig

    compile_model(model, "adam", 1e-3)
    model.fit(digits.x_train, digits.y_train, epochs=epochs, batch_size=32, verbose=0)
    t = Prune(PruneConfig(final_sparsity=sparsity), Context(math.ceil(len(digits.x_train) / 32), 3))
    pruned = t.apply(model)
    compile_model(pruned, "adam", 5e-4)
    pruned.fit(digits.x_train, digits.y_train, epochs=3, batch_size=32, verbose=0, callbacks=t.callbacks())
    return t.strip(pruned)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    start = header("sparse vs dense float32 export of a pruned model (LiteRT, XNNPACK)")
    import numpy as np

    from tfopt._keras import keras
    from tfopt.config import DataConfig, ExportSpec
    from tfopt.data import load
    from tfopt.evaluate.latency import measure_pair, prepare_interpreter
    from tfopt.evaluate.litert import TfliteRunner
    from tfopt.evaluate.weights import overall_sparsity, tflite_weight_stats
    from tfopt.export import convert
    from tfopt.models.small_cnn import small_cnn

    k = keras()
    k.utils.set_random_seed(0)
    digits = load(DataConfig(name="digits"), seed=0)
    L = k.layers
    inp = L.Input(digits.input_shape)
    x = L.Flatten()(inp)
    x = L.Dense(1024, activation="relu", name="fc1")(x)
    x = L.Dense(1024, activation="relu", name="fc2")(x)
    mlp = k.Model(inp, L.Dense(10, activation="softmax", name="classifier")(x), name="mlp")
    models = [
        ("quickstart small_cnn, 80% pruned", _pruned(small_cnn(digits.input_shape, 10), digits, 0.8, 10)),
        ("MLP 2x1024, 90% pruned", _pruned(mlp, digits, 0.9, 5)),
    ]
    rows = []
    for name, model in models:
        dense = convert(model, ExportSpec(format="float32"), digits.x_train)
        sparse = convert(model, ExportSpec(format="float32", sparse=True), digits.x_train)
        same = np.max(np.abs(TfliteRunner(dense).predict(digits.x_test) - TfliteRunner(sparse).predict(digits.x_test)))
        acc = float(np.mean(np.argmax(TfliteRunner(sparse).predict(digits.x_test), -1) == digits.y_test))
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "s.tflite").write_bytes(sparse)
            sp = overall_sparsity(tflite_weight_stats(Path(d) / "s.tflite"))
        a = prepare_interpreter(sparse, digits.x_test, args.threads)
        b = prepare_interpreter(dense, digits.x_test, args.threads)
        lat_s, lat_d = measure_pair(a, b, runs=args.runs, warmup=20, threads=args.threads, rounds=10)
        rows.append(
            [
                name,
                f"{sp:.2f}",
                f"{acc:.3f}",
                f"{same:.1e}",
                f"{len(dense) / 1024:,.0f}",
                f"{len(sparse) / 1024:,.0f}",
                f"{len(dense) / len(sparse):.2f}x",
                f"{len(gzip.compress(dense, 9)) / 1024:,.0f}",
                f"{len(gzip.compress(sparse, 9)) / 1024:,.0f}",
                f"{lat_d.p50:.4f}",
                f"{lat_s.p50:.4f}",
                f"{lat_d.p50 / lat_s.p50:.2f}x",
            ]
        )
    print(
        f"threads: {args.threads}; batch 1; p50 of {args.runs} invocations per file after 20 warm-up, "
        "alternating in 10 rounds"
    )
    table(
        [
            "model",
            "sparsity (file)",
            "accuracy (sparse file)",
            "max abs diff, dense vs sparse outputs",
            "dense KiB",
            "sparse KiB",
            "size ratio",
            "dense gzip KiB",
            "sparse gzip KiB",
            "dense p50 (ms)",
            "sparse p50 (ms)",
            "speed-up",
        ],
        rows,
    )
    footer(start)


if __name__ == "__main__":
    main()
