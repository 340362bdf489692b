"""Single-sample latency: Keras (``predict``, a direct call, a ``tf.function``) against LiteRT.

All ways of running the model are timed in one process, in rounds whose order rotates, so they
share the machine's load; the table gives each one's p50 and its ratio to LiteRT float32. The
model is the quickstart CNN (untrained: weights do not change the work); int8 is calibrated on
real digits.

    python benchmarks/keras_vs_litert.py [--runs 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from common import footer, header, table


def _rounds(calls: dict[str, Callable[[], object]], runs: int, rounds: int = 10) -> dict[str, np.ndarray]:
    names = list(calls)
    for fn in calls.values():  # warm-up: tracing, XNNPACK weight packing
        for _ in range(5):
            fn()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = calls[name]
            for _ in range(runs // rounds):
                t0 = time.perf_counter_ns()
                fn()
                out[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {n: np.asarray(v) for n, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    start = header("Keras vs LiteRT, single-sample latency")
    from tfopt._keras import keras, tf
    from tfopt.config import DataConfig, ExportSpec
    from tfopt.data import load
    from tfopt.evaluate.latency import prepare_interpreter
    from tfopt.export import convert
    from tfopt.models.small_cnn import small_cnn

    k, t = keras(), tf()
    k.utils.set_random_seed(0)
    digits = load(DataConfig(name="digits"), seed=0)
    model = small_cnn(digits.input_shape, 10)
    x1 = digits.x_test[:1]
    graph = t.function(
        lambda x: model(x, training=False), input_signature=[t.TensorSpec((1,) + digits.input_shape, t.float32)]
    )
    lite = {
        fmt: prepare_interpreter(convert(model, ExportSpec(format=fmt), digits.x_train), x1, args.threads)
        for fmt in ("float32", "int8")
    }
    f32 = lite["float32"]
    i_idx, o_idx = f32.get_input_details()[0]["index"], f32.get_output_details()[0]["index"]

    def lite_with_copies():  # what an application pays: copy the input in, run, copy the output out
        f32.set_tensor(i_idx, x1)
        f32.invoke()
        return f32.get_tensor(o_idx)

    calls = {
        "Keras model.predict(x)": lambda: model.predict(x1, verbose=0),
        "Keras model(x) (eager)": lambda: model(x1, training=False),
        "Keras tf.function": lambda: graph(x1),
        "LiteRT float32 invoke()": lite["float32"].invoke,
        "LiteRT float32 set_tensor + invoke + get_tensor": lite_with_copies,
        "LiteRT int8 invoke()": lite["int8"].invoke,
    }
    times = _rounds(calls, args.runs)
    ref = float(np.percentile(times["LiteRT float32 invoke()"], 50))
    rows = [
        [n, f"{np.percentile(v, 50):.4f}", f"{np.percentile(v, 90):.4f}", f"{np.percentile(v, 50) / ref:.1f}x"]
        for n, v in times.items()
    ]
    print(
        f"quickstart small_cnn (8x8x1), batch 1; p50 of {args.runs} calls each in 10 rotating rounds; "
        f"LiteRT threads: {args.threads}, "
        "TensorFlow with its default thread pools"
    )
    table(["how", "p50 (ms)", "p90 (ms)", "p50 vs LiteRT float32"], rows)
    footer(start)


if __name__ == "__main__":
    main()
