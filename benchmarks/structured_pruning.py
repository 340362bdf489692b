"""Structured pruning (prune_channels) against the baseline: MACs read from the files, latency and accuracy.

small_cnn (filters 32, dense 128) trained on real Fashion-MNIST, then 50% of its channels and
units removed (``prune_channels: {fraction: 0.5}``) and fine-tuned with the pipeline's own step
loop. Both models are exported to float32 and int8 (calibrated on training images); MACs are read
from each file (``tfopt.evaluate.macs``), accuracy is measured through LiteRT on the 10,000 test
images, and each pruned file is timed alternately with the baseline's file of the same format in
one process (``measure_pair``).

    python benchmarks/structured_pruning.py [--epochs 4] [--finetune-epochs 3] [--fraction 0.5] [--runs 300]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import footer, header, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4, help="baseline training epochs")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--importance", default="l1")
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    start = header("structured pruning (prune_channels) vs baseline: MACs, latency, accuracy (LiteRT, XNNPACK)")
    import numpy as np

    from tfopt._keras import keras
    from tfopt.config import DataConfig, ExportSpec
    from tfopt.data import load
    from tfopt.evaluate.latency import measure_pair, prepare_interpreter
    from tfopt.evaluate.litert import TfliteRunner
    from tfopt.evaluate.macs import tflite_macs
    from tfopt.export import convert
    from tfopt.models.small_cnn import small_cnn
    from tfopt.pipeline import Recipe, apply_steps
    from tfopt.train import compile_model

    k = keras()
    k.utils.set_random_seed(0)
    data = load(DataConfig(name="fashion_mnist"), seed=0)
    baseline = small_cnn(data.input_shape, data.num_classes)
    compile_model(baseline, "adam", 1e-3)
    baseline.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=64, verbose=2)
    step = {"prune_channels": {"fraction": args.fraction, "importance": args.importance}}
    recipe = Recipe(epochs=args.finetune_epochs, batch_size=64, learning_rate=5e-4, verbose=2)
    applied = apply_steps(baseline, [step], data, recipe)
    for d in applied.reports[0].layers:
        print(f"  {d.layer}: {'pruned' if d.applied else 'kept'} ({d.reason})")
    thin = applied.model
    calibration = data.x_train[:500]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("float32", "int8"):
            files = {}
            for name, model in (("baseline", baseline), ("thin", thin)):
                path = Path(folder) / f"{name}_{fmt}.tflite"
                path.write_bytes(convert(model, ExportSpec(format=fmt, calibration_samples=500), calibration))
                probs = TfliteRunner(path).predict(data.x_test)
                files[name] = (path, tflite_macs(path), float(np.mean(np.argmax(probs, -1) == data.y_test)))
            (bp, bmacs, bacc), (tp, tmacs, tacc) = files["baseline"], files["thin"]
            a = prepare_interpreter(tp.read_bytes(), data.x_test, args.threads)
            b = prepare_interpreter(bp.read_bytes(), data.x_test, args.threads)
            lat_t, lat_b = measure_pair(a, b, runs=args.runs, warmup=20, threads=args.threads, rounds=10)
            rows.append(
                [
                    fmt,
                    f"{bmacs / 1e6:.3f}",
                    f"{tmacs / 1e6:.3f}",
                    f"{tmacs / bmacs:.3f}x",
                    f"{bp.stat().st_size / 1024:,.0f}",
                    f"{tp.stat().st_size / 1024:,.0f}",
                    f"{lat_b.p50:.4f}",
                    f"{lat_t.p50:.4f}",
                    f"{lat_b.p50 / lat_t.p50:.2f}x",
                    f"{bacc * 100:.2f}",
                    f"{tacc * 100:.2f}",
                    f"{(tacc - bacc) * 100:+.2f}",
                ]
            )
    print(
        f"small_cnn (filters 32, dense 128) on Fashion-MNIST 28x28x1; baseline {args.epochs} epochs; "
        f"prune_channels fraction {args.fraction} ({args.importance}) + {args.finetune_epochs} fine-tune epochs; "
        f"threads: {args.threads}; batch 1; p50 of {args.runs} invocations per file after 20 warm-up, "
        "each pruned file alternating with the baseline file of its format in 10 rounds; accuracy on 10,000 test images"
    )
    table(
        [
            "format",
            "baseline MMACs",
            "pruned MMACs",
            "MACs ratio",
            "baseline KiB",
            "pruned KiB",
            "baseline p50 (ms)",
            "pruned p50 (ms)",
            "speed-up",
            "baseline acc %",
            "pruned acc %",
            "Δ acc (pp)",
        ],
        rows,
    )
    footer(start)


if __name__ == "__main__":
    main()
