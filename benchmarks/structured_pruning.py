"""Structured pruning (prune_channels) against the baseline: MACs read from the files, size, latency and accuracy.

A model is trained on real Fashion-MNIST, then a ``--fraction`` of its channels and units removed
(``prune_channels: {fraction: 0.5}``) and fine-tuned with the pipeline's own step loop. Both models
are exported to float32 and int8 (calibrated on training images); MACs are read from each file
(``tfopt.evaluate.macs``), accuracy is measured through LiteRT on the test images, and each pruned
file is timed alternately with the baseline's file of the same format in one process
(``measure_pair``), so the speed-up is a same-load ratio.

- ``small_cnn`` (default; filters 32, dense 128, 28x28x1): 60,000 training images, 10,000 test images.
- ``vgg16``: Keras' VGG16 from scratch, images padded to 32x32 inside the model (``--image-size``).
- ``mobilenet_v2``: Keras' MobileNetV2 from scratch (``--alpha``, images resized to ``--image-size``).
- ``minilm``: all-MiniLM-L6-v2 (keras-hub BERT, 64 tokens) on Rotten Tomatoes snippets; every encoder
  layer loses ``--fraction`` of its feed-forward units and ``--head-fraction`` of its heads; formats
  float32 and dynamic; 1 epoch on 2,000 snippets and 1 fine-tune epoch by default (the step loop needs
  one), accuracy on 500 test snippets; ``pipelines/structured_bert_rotten_tomatoes.yaml`` is the full run.

The two large models train on ``--subset`` images for ``--epochs`` (CPU-sized: their accuracy is that of
a short training, printed as such); the work a file does, hence its speed-up, does not depend on the weights.

    python benchmarks/structured_pruning.py [--epochs 4] [--finetune-epochs 3] [--fraction 0.5] [--runs 300]
    python benchmarks/structured_pruning.py --model vgg16 --subset 3000 --epochs 2 --finetune-epochs 1
    python benchmarks/structured_pruning.py --model mobilenet_v2 --alpha 0.35 --image-size 96 --round-to 8
    python benchmarks/structured_pruning.py --model minilm --head-fraction 0.34 --round-to 8
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import footer, header, table

# Per model: (training images by default, test images by default, learning rate, latency runs by default).
DEFAULTS = {
    "small_cnn": (None, None, 1e-3, 300),
    "vgg16": (3000, 2000, 1e-4, 100),
    "mobilenet_v2": (3000, 2000, 1e-3, 200),
    "minilm": (2000, 500, 5e-5, 50),
}


def build(args: argparse.Namespace, data) -> tuple:
    """The untrained model and the words that describe it."""
    if args.model == "vgg16":
        from tfopt.models.vgg16 import vgg16

        size = args.image_size or 32
        return vgg16(data.input_shape, data.num_classes, image_size=size, fit="pad" if size >= 28 else "resize"), (
            f"VGG16 (Keras applications, from scratch, dense 256) at {size}x{size}x3"
        )
    if args.model == "mobilenet_v2":
        from tfopt.models.mobilenet_v2 import mobilenet_v2

        size = args.image_size or 96
        model = mobilenet_v2(data.input_shape, data.num_classes, alpha=args.alpha, image_size=size)
        return model, f"MobileNetV2 (Keras applications, from scratch) alpha {args.alpha} at {size}x{size}x3"
    if args.model == "minilm":
        from tfopt.models.bert import bert

        return bert(data.input_shape, data.num_classes, preset="minilm_l6", seq_len=64), (
            "all-MiniLM-L6-v2 (6 layers, 12 heads, feed-forward 1,536) at 64 tokens"
        )
    from tfopt.models.small_cnn import small_cnn

    return small_cnn(data.input_shape, data.num_classes), "small_cnn (filters 32, dense 128) on 28x28x1"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(DEFAULTS), default="small_cnn")
    p.add_argument("--alpha", type=float, default=0.35, help="mobilenet_v2 width multiplier")
    p.add_argument("--image-size", type=int, default=None, help="side the network sees (vgg16: 32, mobilenet_v2: 96)")
    p.add_argument("--subset", type=int, default=None, help="training images (default: all for small_cnn, else 3000)")
    p.add_argument("--test-images", type=int, default=None, help="test images (default: all for small_cnn, else 2000)")
    p.add_argument("--epochs", type=int, default=None, help="baseline training epochs (4; minilm 1)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="3; minilm 1")
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument(
        "--head-fraction", type=float, default=None, help="minilm: share of heads removed (default fraction)"
    )
    p.add_argument("--importance", default="l1")
    p.add_argument("--round-to", type=int, default=1)
    p.add_argument("--runs", type=int, default=None, help="timed invocations per file (small_cnn 300, vgg16 100)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    subset, n_test, lr, runs = DEFAULTS[args.model]
    subset, n_test, runs = args.subset or subset, args.test_images or n_test, args.runs or runs
    text = args.model == "minilm"
    if args.epochs is None:
        args.epochs = 1 if text else 4
    if args.finetune_epochs is None:
        args.finetune_epochs = 1 if text else 3
    start = header("structured pruning (prune_channels) vs baseline: MACs, size, latency, accuracy (LiteRT, XNNPACK)")
    import numpy as np

    from tfopt._keras import keras
    from tfopt.config import DataConfig, ExportSpec
    from tfopt.data import load, take
    from tfopt.evaluate.latency import measure_pair, prepare_interpreter
    from tfopt.evaluate.litert import TfliteRunner
    from tfopt.evaluate.macs import tflite_macs
    from tfopt.export import convert
    from tfopt.models import prepare_inputs
    from tfopt.schema import ModelConfig
    from tfopt.pipeline import Recipe, apply_steps
    from tfopt.train import compile_model

    k = keras()
    k.utils.set_random_seed(0)
    data = load(DataConfig(name="rotten_tomatoes" if text else "fashion_mnist", subset=subset), seed=0)
    if text:  # tokenized as the pipeline does (model.params: {preset: minilm_l6, seq_len: 64})
        data = prepare_inputs(ModelConfig(name="bert", params={"preset": "minilm_l6", "seq_len": 64}), data)
    x_test, y_test = take(data.x_test, slice(0, n_test)), data.y_test[:n_test]
    baseline, what = build(args, data)
    compile_model(baseline, "adamw" if text else "adam", lr)
    if args.epochs:
        baseline.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32 if text else 64, verbose=2)
    params = {"fraction": args.fraction, "importance": args.importance, "round_to": args.round_to}
    if args.head_fraction is not None:
        params["head_fraction"] = args.head_fraction
    step = {"prune_channels": params}
    recipe = Recipe(
        epochs=args.finetune_epochs if args.epochs else 0,
        batch_size=32 if text else 64,
        learning_rate=lr / 2,
        optimizer="adamw" if text else "adam",
        verbose=2,
    )
    applied = apply_steps(baseline, [step], data, recipe)
    for d in applied.reports[0].layers:
        print(f"  {d.layer}: {'pruned' if d.applied else 'kept'} ({d.reason})")
    thin = applied.model
    calibration = take(data.x_train, slice(0, 500))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("float32", "dynamic" if text else "int8"):
            files = {}
            for name, model in (("baseline", baseline), ("thin", thin)):
                path = Path(folder) / f"{name}_{fmt}.tflite"
                path.write_bytes(convert(model, ExportSpec(format=fmt, calibration_samples=500), calibration))
                probs = TfliteRunner(path).predict(x_test)
                files[name] = (path, tflite_macs(path), float(np.mean(np.argmax(probs, -1) == y_test)))
            (bp, bmacs, bacc), (tp, tmacs, tacc) = files["baseline"], files["thin"]
            a = prepare_interpreter(tp.read_bytes(), x_test, args.threads)
            b = prepare_interpreter(bp.read_bytes(), x_test, args.threads)
            lat_t, lat_b = measure_pair(a, b, runs=runs, warmup=20, threads=args.threads, rounds=10)
            rows.append(
                [
                    fmt,
                    f"{bmacs / 1e6:.3f}",
                    f"{tmacs / 1e6:.3f}",
                    f"{tmacs / bmacs:.3f}x",
                    f"{bp.stat().st_size / 1024:,.0f}",
                    f"{tp.stat().st_size / 1024:,.0f}",
                    f"{tp.stat().st_size / bp.stat().st_size:.3f}x",
                    f"{lat_b.p50:.4f}",
                    f"{lat_t.p50:.4f}",
                    f"{lat_b.p50 / lat_t.p50:.2f}x",
                    f"{bacc * 100:.2f}",
                    f"{tacc * 100:.2f}",
                    f"{(tacc - bacc) * 100:+.2f}",
                ]
            )
    untrained = "" if args.epochs else " (accuracy NOT a result: not fine-tuned)"
    print(
        f"{what}, {'Rotten Tomatoes' if text else 'Fashion-MNIST'}; baseline {args.epochs} epochs on "
        f"{len(data.y_train):,} training examples; prune_channels {params} + "
        f"{recipe.epochs} fine-tune epochs{untrained}; threads: {args.threads}; batch 1; p50 of {runs} invocations "
        "per file after 20 warm-up, each pruned file alternating with the baseline file of its format in 10 rounds; "
        f"accuracy on {len(y_test):,} test examples"
    )
    table(
        [
            "format",
            "baseline MMACs",
            "pruned MMACs",
            "MACs ratio",
            "baseline KiB",
            "pruned KiB",
            "size ratio",
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
