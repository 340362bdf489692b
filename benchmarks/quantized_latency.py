"""int8 and dynamic-range against float32: single-sample LiteRT latency ratios, quickstart CNN and VGG16.

Each quantized file is timed alternately with its float32 twin in one process (``measure_pair``),
so the ratio is measured under the same machine load. Weights do not change the amount of work,
so both models are untrained; int8 is calibrated on real digits for the quickstart CNN and on
random inputs for VGG16 (fine for latency, meaningless for accuracy).

    python benchmarks/quantized_latency.py [--runs 300] [--threads 1] [--skip-vgg]
"""

from __future__ import annotations

import argparse

import numpy as np

from common import footer, header, table


def _files(model, calibration: np.ndarray) -> dict[str, bytes]:
    from tfopt.config import ExportSpec
    from tfopt.export import convert

    return {
        fmt: convert(model, ExportSpec(format=fmt, calibration_samples=len(calibration)), calibration)
        for fmt in ("float32", "dynamic", "int8")
    }


def _measure(name: str, files: dict[str, bytes], sample: np.ndarray, runs: int, threads: int) -> list[list[str]]:
    from tfopt.evaluate.latency import measure_pair, prepare_interpreter

    rows = []
    for fmt in ("dynamic", "int8"):
        a = prepare_interpreter(files[fmt], sample, threads)
        b = prepare_interpreter(files["float32"], sample, threads)
        lat, ref = measure_pair(a, b, runs=runs, warmup=20, threads=threads, rounds=10)
        rows.append(
            [
                name,
                fmt,
                f"{len(files[fmt]) / 1024:,.0f}",
                f"{len(files['float32']) / 1024:,.0f}",
                f"{lat.p50:.4f}",
                f"{ref.p50:.4f}",
                f"{ref.p50 / lat.p50:.2f}x",
            ]
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-vgg", action="store_true")
    args = p.parse_args()
    start = header("int8 / dynamic-range vs float32 latency (LiteRT, XNNPACK)")
    from tfopt._keras import keras
    from tfopt.config import DataConfig
    from tfopt.data import load
    from tfopt.models.small_cnn import small_cnn

    k = keras()
    k.utils.set_random_seed(0)
    digits = load(DataConfig(name="digits"), seed=0)
    rows = _measure(
        "quickstart small_cnn (8x8x1)",
        _files(small_cnn(digits.input_shape, 10), digits.x_train[:200]),
        digits.x_test,
        args.runs,
        args.threads,
    )
    if not args.skip_vgg:
        vgg = k.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10)
        rng = np.random.default_rng(0)
        calib = rng.random((32, 32, 32, 3), dtype=np.float32)
        rows += _measure("VGG16 (32x32x3, untrained)", _files(vgg, calib), calib, max(30, args.runs // 5), args.threads)
    print(
        f"threads: {args.threads}; batch 1; p50 of {args.runs} (VGG16: {max(30, args.runs // 5)}) "
        "invocations per file after 20 warm-up, "
        "each quantized file alternating with its float32 twin in 10 rounds"
    )
    table(
        ["model", "format", "size (KiB)", "float32 size (KiB)", "p50 (ms)", "float32 p50 (ms)", "speed-up vs float32"],
        rows,
    )
    footer(start)


if __name__ == "__main__":
    main()
