"""Single-sample latency: warm-up invocations, then percentiles over timed runs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tfopt.evaluate.litert import TfliteRunner
from tfopt.results import Latency


def measure_latency(model: str | Path | bytes, sample: np.ndarray, runs: int = 100, warmup: int = 10, threads: int = 1) -> Latency:
    """Time ``invoke()`` on one sample (input already set), the number a deployment sees."""
    runner = TfliteRunner(model, threads=threads)
    runner._resize(1)
    interp = runner.interpreter
    interp.set_tensor(interp.get_input_details()[0]["index"], runner.quantize_input(sample[:1]))
    for _ in range(warmup):
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        interp.invoke()
        times[i] = time.perf_counter_ns() - t0
    ms = times / 1e6
    return Latency(
        p50=round(float(np.percentile(ms, 50)), 4),
        p90=round(float(np.percentile(ms, 90)), 4),
        mean=round(float(ms.mean()), 4),
        runs=runs,
        threads=threads,
    )
