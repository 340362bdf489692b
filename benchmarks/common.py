"""What the benchmark scripts share: a header naming the machine, and ratio tables.

Absolute times on a shared machine drift from minute to minute, so every script times the things
it compares alternately in one process (``tfopt.evaluate.latency.measure_pair``) and reports the
ratio, which is what the README quotes.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` without installing tfopt
    sys.path.insert(0, str(ROOT))

import tfopt  # noqa: E402,F401  (selects Keras 2 before TensorFlow is imported)


def header(title: str) -> float:
    """Print what ran where; returns the start time."""
    from tfopt._keras import versions

    v = versions()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"# {title}")
    print(f"command: python {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}")
    print(f"machine: {platform.machine()}, {cpus} CPU cores usable, {platform.platform()}")
    print(
        "stack: "
        + ", ".join(
            f"{k} {v[k]}"
            for k in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert")
            if k in v
        )
    )
    return time.perf_counter()


def footer(start: float) -> None:
    print(f"(benchmark took {time.perf_counter() - start:.0f}s)")


def table(headers: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, so the output can be pasted into the README as is."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join(":---" if i == 0 else "---:" for i in range(len(headers))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
