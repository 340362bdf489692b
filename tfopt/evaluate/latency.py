"""Latency and throughput of a ``.tflite`` through LiteRT (XNNPACK): warm-up, then percentiles.

One timing loop serves both run.json's latency columns (``measure_interleaved``: all files of a
run timed in turn, so each is measured under the same load) and ``tfopt benchmark``
(``measure_latency``, ``measure_pair`` for ``--vs``), so a report and a benchmark cannot measure
differently. Inputs are set once before timing: the time is that of ``invoke()`` alone, the number
a deployment pays per call.

Example::

    from tfopt.evaluate.latency import measure_latency
    lat = measure_latency("models/quickstart/baseline_int8.tflite", x_test, runs=200)
    print(lat.p50, lat.p99, lat.throughput)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from tfopt.errors import DataError, TfoptError
from tfopt.evaluate.litert import make_interpreter, match_inputs, to_input_dtype
from tfopt.results import Latency


def _shape(shape: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def _check_data_shape(data: np.ndarray, detail: dict, what: str) -> np.ndarray:
    """Return ``data`` shaped for the input (a missing channel axis is added), or raise naming both shapes."""
    want = _shape(detail.get("shape_signature", detail["shape"]))[1:]
    if data.ndim == len(want) and len(want) >= 1 and want[-1] == 1:
        data = data[..., None]  # (N, H, W) images for a (H, W, 1) input
    got = tuple(data.shape[1:])
    if len(got) != len(want) or any(w not in (-1, g) for w, g in zip(want, got)):
        shown = tuple("?" if w == -1 else w for w in want)
        raise DataError(
            f"Input shape mismatch: {what} expects inputs of shape {shown} (batch excluded) but the data's are {got}. "
            "Fix: pass data of that shape, or leave --data out to time on random inputs."
        )
    return data


def _random_input(detail: dict, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Random values of the right shape and dtype: images in [0, 1), quantized if the input is; small ints otherwise."""
    shape = (batch,) + _shape(detail["shape"])[1:]
    dtype = detail["dtype"]
    scale = detail.get("quantization", (0.0, 0))[0]
    if np.issubdtype(dtype, np.floating) or scale:
        return to_input_dtype(rng.random(shape, dtype=np.float32), detail)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 2, shape).astype(dtype)  # ids / masks: 0 and 1 are valid for any vocabulary


def prepare_interpreter(
    model: str | Path | bytes, data: Optional[np.ndarray] = None, threads: int = 1, batch: int = 1, seed: int = 0
) -> Any:
    """A LiteRT interpreter resized to ``batch`` with its inputs set, ready to ``invoke()``.

    Args:
        model: a ``.tflite`` path or its bytes.
        data: float inputs for a single-input model, or a dict of arrays by input name for a
            multi-input one such as BERT (the first ``batch`` rows are used, repeated if
            there are fewer); None sets random values of each input's shape and dtype (timing only).
        threads: interpreter (and XNNPACK) threads.
        batch: samples per invocation.
        seed: for the random inputs.

    Raises:
        TfoptError: unreadable model, data that does not fit the input, or a model that cannot run
            at this batch size.
    """
    interp = make_interpreter(model, threads)
    what = "the model" if isinstance(model, (bytes, bytearray)) else str(model)
    details = interp.get_input_details()
    named = None
    if isinstance(data, dict):  # several named inputs (BERT's token ids and masks), matched by name
        named = {int(d["index"]): np.asarray(v) for d, v in match_inputs(interp, data)}
        data = None
    if data is not None:
        if len(details) != 1:
            raise DataError(
                f"{what} has {len(details)} inputs; data can only feed a single-input model. "
                "Fix: leave --data out to time on random inputs."
            )
        if data.ndim == 0 or len(data) == 0:
            raise DataError(f"The data for {what} is empty. Fix: pass at least one sample.")
        data = _check_data_shape(np.asarray(data), details[0], what)
    try:
        for d in details:
            shape = [batch] + list(_shape(d["shape"])[1:])
            if list(_shape(d["shape"])) != shape:
                interp.resize_tensor_input(d["index"], shape, strict=False)
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as e:
        raise TfoptError(
            f"{what} cannot run with batch {batch} ({str(e).splitlines()[0][:160]}). Fix: use batch 1."
        ) from None
    rng = np.random.default_rng(seed)
    for d in interp.get_input_details():
        if named is not None:
            src = named[int(d["index"])]
            x = to_input_dtype(src[:batch] if len(src) >= batch else np.resize(src, (batch,) + src.shape[1:]), d)
        elif data is None:
            x = _random_input(d, batch, rng)
        else:
            rows = data[:batch] if len(data) >= batch else np.resize(data, (batch,) + data.shape[1:])
            x = to_input_dtype(rows, d)
        interp.set_tensor(d["index"], x)
    try:  # a damaged file can load yet fail on its first run ("Input tensor 1 lacks data")
        interp.invoke()
    except RuntimeError as e:
        raise TfoptError(
            f"{what} loads but cannot run ({str(e).splitlines()[0][:160]}; truncated or corrupt?). "
            "Fix: export it again."
        ) from None
    return interp


def time_invocations(interp: Any, runs: int) -> np.ndarray:
    invoke, clock = interp.invoke, time.perf_counter_ns
    out = np.empty(runs)
    for i in range(runs):
        t0 = clock()
        invoke()
        out[i] = clock() - t0
    return out / 1e6


def summarize(
    ms: np.ndarray,
    threads: int,
    batch: int = 1,
    warmup: Optional[int] = None,
    rounds: Optional[int] = None,
    interleaved: Optional[int] = None,
) -> Latency:
    """Percentiles, mean and throughput of per-invocation times in milliseconds (and how they were taken)."""
    mean = float(ms.mean())
    return Latency(
        p50=round(float(np.percentile(ms, 50)), 4),
        p90=round(float(np.percentile(ms, 90)), 4),
        mean=round(mean, 4),
        runs=int(ms.size),
        threads=threads,
        p99=round(float(np.percentile(ms, 99)), 4),
        batch=batch,
        warmup=warmup,
        throughput=round(batch * 1000.0 / mean, 1) if mean > 0 else None,
        rounds=rounds,
        interleaved=interleaved,
    )


def check_counts(runs: int, warmup: int, threads: int, batch: int) -> None:
    for name, value, low in (("runs", runs, 1), ("warmup", warmup, 0), ("threads", threads, 1), ("batch", batch, 1)):
        if value < low:
            raise TfoptError(f"{name} must be at least {low}. Received: {name}={value}")


def measure_latency(
    model: str | Path | bytes,
    sample: Optional[np.ndarray],
    runs: int = 100,
    warmup: int = 10,
    threads: int = 1,
    batch: int = 1,
) -> Latency:
    """Time ``invoke()`` on ``batch`` samples after ``warmup`` untimed calls.

    Args:
        model: a ``.tflite`` path or its bytes.
        sample: real inputs (the first ``batch`` are used), or None for random ones (timing only).
        runs: timed invocations.
        warmup: untimed invocations first (XNNPACK packs weights and caches on the first calls).
        threads: interpreter threads.
        batch: samples per invocation; 1 is the single-sample latency a deployment sees.

    Returns:
        p50/p90/p99/mean in milliseconds per invocation and throughput in samples per second.
    """
    check_counts(runs, warmup, threads, batch)
    interp = prepare_interpreter(model, sample, threads, batch)
    time_invocations(interp, warmup)
    return summarize(time_invocations(interp, runs), threads, batch, warmup, rounds=1, interleaved=1)


def measure_interleaved(
    models: Sequence[str | Path | bytes],
    data: Optional[np.ndarray],
    runs: int = 100,
    warmup: int = 10,
    threads: int = 1,
    batch: int = 1,
    rounds: int = 10,
) -> list[Latency]:
    """Time several files in turn in one process, so that load from other work falls on all of them alike.

    A run's files timed one after the other can differ by more than any optimization changes them
    (measured under load: a 50%-pruned float32 file at 8.99 ms against its baseline's 5.31 ms,
    though pruning leaves the work unchanged). Timed in rounds, each file's runs are spread over
    the whole measurement instead (see ``time_interleaved``).

    Args:
        models: ``.tflite`` paths or their bytes.
        data: real inputs for every file (the first ``batch`` rows), or None for random ones.
        runs: timed invocations per file; warmup: untimed ones per file first.
        rounds: blocks the timed runs are split into (at most ``runs``).

    Returns:
        One Latency per file, in the order given.
    """
    check_counts(runs, warmup, threads, batch)
    interps = [prepare_interpreter(m, data, threads, batch) for m in models]
    return time_interleaved(interps, runs, warmup, threads, batch, rounds)


def time_interleaved(
    interps: Sequence[Any], runs: int = 100, warmup: int = 10, threads: int = 1, batch: int = 1, rounds: int = 10
) -> list[Latency]:
    """Time prepared interpreters in ``rounds`` blocks; round r starts with the r-th one (a rotation).

    Every interpreter is warmed up first; then each round times a block of every interpreter in
    turn, the starting one moving by one each round, so no file is always first (after a pause) or
    last. Two interpreters alternate A B, B A, ... as ``tfopt benchmark --vs`` does.

    Returns:
        One Latency per interpreter, recording ``rounds`` and how many were ``interleaved``.
    """
    check_counts(runs, warmup, threads, batch)
    rounds = max(1, min(rounds, runs))
    for interp in interps:
        time_invocations(interp, warmup)
    times: list[list[np.ndarray]] = [[] for _ in interps]
    n = len(interps)
    for r in range(rounds):
        block = runs // rounds + (1 if r < runs % rounds else 0)
        for k in range(n):
            which = (r + k) % n
            times[which].append(time_invocations(interps[which], block))
    return [summarize(np.concatenate(t), threads, batch, warmup, rounds, n) for t in times]


def measure_pair(
    a: Any, b: Any, runs: int = 100, warmup: int = 10, threads: int = 1, batch: int = 1, rounds: int = 10
) -> tuple[Latency, Latency]:
    """Time two prepared interpreters alternately in one process (``time_interleaved`` of two).

    Returns:
        The latency of ``a`` and of ``b``.
    """
    lat_a, lat_b = time_interleaved([a, b], runs, warmup, threads, batch, rounds)
    return lat_a, lat_b
