"""``tfopt benchmark``: measured latency, throughput and memory of any ``.tflite`` through LiteRT.

Absolute times on a shared machine move from one minute to the next, so ``--vs`` runs two files
alternately in one process and prints their ratio, which holds up far better than either number.
Memory is the peak resident set size of a fresh process that loads only that model and runs it
(``resource.getrusage``), so the models measured before it and the benchmark's own arrays do not
count. TensorFlow is never imported here: only ``ai_edge_litert``, as on a device.

Example::

    from tfopt.benchmark import benchmark
    b = benchmark("models/quickstart/baseline_int8.tflite", vs="models/quickstart/baseline_float32.tflite")
    print(format_benchmark(b))
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

import numpy as np

from tfopt.errors import DataError
from tfopt.evaluate.latency import check_counts, measure_pair, prepare_interpreter, summarize, time_invocations
from tfopt.results import Latency


@dataclass(frozen=True)
class ModelBenchmark:
    """What was measured for one file."""

    path: str
    size_bytes: int
    latency: Latency
    peak_rss_bytes: Optional[int]  # fresh process running only this model; None if not measured
    runtime_rss_bytes: Optional[int]  # the same process before it loaded the model


@dataclass(frozen=True)
class Benchmark:
    """One ``tfopt benchmark`` call: one model, or two timed alternately (``--vs``)."""

    models: list[ModelBenchmark]
    inputs: str  # where the inputs came from
    random_inputs: bool
    threads: int
    batch: int
    runs: int
    warmup: int
    rounds: int
    litert_version: str

    @property
    def p50_ratio(self) -> Optional[float]:
        """p50 of the first model over p50 of the second (below 1: the first is faster)."""
        if len(self.models) < 2 or not self.models[1].latency.p50:
            return None
        return self.models[0].latency.p50 / self.models[1].latency.p50


def load_data(spec: str) -> tuple[np.ndarray, str]:
    """Inputs from an ``.npz`` file (key ``x``, else ``x_test``) or a registered dataset's test split.

    Raises:
        DataError: neither a readable .npz nor a known dataset name.
    """
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".npz" or path.is_file():
        if not path.is_file():
            raise DataError(f"Data file not found: {path}. Fix: check the path, or give a dataset name (tfopt list).")
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.files)
                key = next((k for k in ("x", "x_test") if k in keys), None)
                if key is None:
                    raise DataError(
                        f"{path} has keys {keys}; need 'x' (or 'x_test'). "
                        "Fix: save inputs with numpy.savez(path, x=...)."
                    )
                x = z[key]
        except DataError:
            raise
        except Exception as e:  # np.load raises OSError, ValueError, BadZipFile, EOFError... on bad files
            raise DataError(
                f"Cannot read {path} as .npz ({type(e).__name__}: {str(e)[:120]}). "
                "Fix: save it with numpy.savez(path, x=...)."
            ) from None
        if x.dtype == np.uint8:  # 8-bit pixels, scaled as tfopt's datasets are
            x = x.astype("float32") / 255.0
        return x, f"{path} [{key}], {len(x)} samples"
    from tfopt import data as data_mod
    from tfopt.schema import DataConfig

    if spec not in data_mod.DATASETS:
        raise DataError(
            f"--data {spec!r} is neither an .npz file nor a registered dataset. "
            f"Fix: pass a file saved with numpy.savez(path, x=...) or one of: {', '.join(data_mod.DATASETS)}."
        )
    splits = data_mod.load(DataConfig(name=spec), seed=0)
    return splits.x_test, f"{spec} test split, {len(splits.x_test)} samples"


# Linux keeps ru_maxrss across fork+exec, so a child spawned by a large parent would report the
# parent's size: read the child's own high-water mark (VmHWM) where /proc has it.
_RSS_PROBE = """
import json, resource, sys
def peak():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
from tfopt.evaluate.latency import prepare_interpreter, time_invocations
before = peak()
interp = prepare_interpreter(sys.argv[1], None, int(sys.argv[2]), int(sys.argv[3]))
time_invocations(interp, int(sys.argv[4]))
print(json.dumps([before, peak()]))
"""


def peak_rss(
    model: str | Path, threads: int = 1, batch: int = 1, runs: int = 20
) -> tuple[Optional[int], Optional[int]]:
    """Peak RSS in bytes of a fresh process running only ``model``, and its peak before loading it.

    Returns (None, None) where the probe cannot run (e.g. no ``resource`` module on Windows).
    """
    try:
        package_root = str(Path(__file__).resolve().parents[1])  # the child imports this same tfopt
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        proc = subprocess.run(
            [sys.executable, "-c", _RSS_PROBE, str(model), str(threads), str(batch), str(runs)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        before, after = json.loads(proc.stdout.strip().splitlines()[-1])
        return int(after), int(before)
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None, None


def _litert_version() -> str:
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "unknown"


def benchmark(
    model: str | Path,
    *,
    vs: Optional[str | Path] = None,
    threads: int = 1,
    runs: int = 100,
    warmup: int = 10,
    batch: int = 1,
    data: Optional[str] = None,
    rounds: int = 10,
    memory: bool = True,
) -> Benchmark:
    """Measure one ``.tflite`` file, or two alternately in one process.

    Args:
        model: the ``.tflite`` file.
        vs: a second file, timed alternately with the first (see ``measure_pair``).
        threads: LiteRT/XNNPACK threads.
        runs: timed invocations per model.
        warmup: untimed invocations first.
        batch: samples per invocation.
        data: an ``.npz`` path or a dataset name; None uses random inputs (timing only).
        rounds: alternating blocks when ``vs`` is given.
        memory: measure peak RSS in a fresh process per model (about a second each).

    Raises:
        TfoptError: missing, truncated or corrupt files; data that does not fit; bad counts.
    """
    check_counts(runs, warmup, threads, batch)
    paths = [Path(model)] + ([Path(vs)] if vs is not None else [])
    x, inputs = (None, "random values of each input's shape and dtype") if data is None else load_data(data)
    interps = [prepare_interpreter(p, x, threads, batch) for p in paths]  # fail on a bad file before timing anything
    if len(interps) == 2:
        lats = list(measure_pair(interps[0], interps[1], runs, warmup, threads, batch, rounds))
    else:
        time_invocations(interps[0], warmup)
        lats = [summarize(time_invocations(interps[0], runs), threads, batch, warmup)]
    results = []
    for p, lat in zip(paths, lats):
        peak, before = peak_rss(p, threads, batch) if memory else (None, None)
        results.append(ModelBenchmark(str(p), p.stat().st_size, lat, peak, before))
    return Benchmark(
        results, inputs, data is None, threads, batch, runs, warmup, rounds if vs is not None else 1, _litert_version()
    )


def _mib(n: Optional[int]) -> str:
    return "–" if n is None else f"{n / 2**20:.1f}"


def format_benchmark(b: Benchmark) -> str:
    """Human-readable lines: settings, one column per model, and the ratio for ``--vs``."""
    threads = f"{b.threads} thread{'s' if b.threads != 1 else ''}"
    lines = [
        f"tfopt benchmark: LiteRT {b.litert_version} (XNNPACK), {threads}, batch {b.batch}, "
        f"{b.warmup} warm-up + {b.runs} timed invocations per model"
        + (f", alternating in {b.rounds} rounds" if len(b.models) > 1 else ""),
        f"inputs: {b.inputs}" + (" (valid for timing only; no accuracy is measured)" if b.random_inputs else ""),
    ]
    names = [Path(m.path).name for m in b.models]
    if len(names) > 1:
        names = [f"{tag}: {n}" for tag, n in zip("AB", names)]
    width = max(14, *(len(n) for n in names))
    rows: list[tuple[str, list[str]]] = [
        ("", names),
        ("size (KiB)", [f"{m.size_bytes / 1024:,.1f}" for m in b.models]),
        ("p50 (ms)", [f"{m.latency.p50:.4f}" for m in b.models]),
        ("p90 (ms)", [f"{m.latency.p90:.4f}" for m in b.models]),
        ("p99 (ms)", [f"{m.latency.p99:.4f}" for m in b.models]),
        ("mean (ms)", [f"{m.latency.mean:.4f}" for m in b.models]),
        ("samples/s", [f"{m.latency.throughput:,.0f}" for m in b.models]),
        ("peak RSS (MiB)", [_mib(m.peak_rss_bytes) for m in b.models]),
        ("  runtime only", [_mib(m.runtime_rss_bytes) for m in b.models]),
    ]
    for label, cells in rows:
        lines.append(f"  {label:<16}" + "".join(f"{c:>{width + 2}}" for c in cells))
    lines.append(
        "peak RSS: a fresh process that loads only that model and runs it; "
        "'runtime only' is its peak before loading the model."
    )
    if b.p50_ratio is not None:
        r = b.p50_ratio
        faster = f"A is {1 / r:.2f}x faster" if r < 1 else f"B is {r:.2f}x faster"
        lines.append(
            f"ratio p50 A/B = {r:.3f} ({faster}); "
            "measured alternately in one process, so it is steadier than either time."
        )
    return "\n".join(lines)
