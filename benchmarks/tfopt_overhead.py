"""tfopt's own overhead: ``tfopt run pipelines/quickstart.yaml`` against the same work written by hand.

Both run as fresh processes (each pays Python and TensorFlow start-up), in an order that rotates
every round so machine load drifts onto all. Two ratios of medians are printed: wall time, and CPU
time (user + system over all threads), which other processes on a shared machine disturb far less
than wall time, so it is the steadier measure of how much work tfopt adds. Target:
tfopt within 5% of the hand-written script (benchmarks/plain_quickstart.py). A third contender runs
the same pipeline with ``train.checkpoint: false`` to show what the per-epoch backups (kill-safe
resume) cost; tfopt's stage timings from run.json show where the rest goes, and a last in-process
measurement times the same 10-epoch fit under ``OneDeviceStrategy`` (what ``train.strategy:
one_device`` builds) and under TensorFlow's default strategy.

    python benchmarks/tfopt_overhead.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, footer, header, table


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of one child process."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _strategy_cost(rounds: int = 2) -> list[list[str]]:
    """CPU and wall seconds of one 10-epoch quickstart fit under the default strategy and OneDeviceStrategy."""
    import tempfile as _tempfile

    from tfopt._keras import keras, tf
    from tfopt.config import DataConfig
    from tfopt.data import load
    from tfopt.models.small_cnn import small_cnn
    from tfopt.train import compile_model, fit

    digits = load(DataConfig(name="digits"), seed=0)
    results: dict[str, list[tuple[float, float]]] = {"default strategy": [], "OneDeviceStrategy(/cpu:0)": []}
    for r in range(rounds):
        for name in list(results) if r % 2 == 0 else list(results)[::-1]:
            strategy = (
                tf().distribute.get_strategy()
                if name == "default strategy"
                else tf().distribute.OneDeviceStrategy("/cpu:0")
            )
            keras().utils.set_random_seed(0)
            with strategy.scope():
                model = small_cnn(digits.input_shape, 10)
                compile_model(model, "adam", 1e-3)
            c, w = time.process_time(), time.perf_counter()
            fit(
                model,
                digits,
                variant="b",
                epochs=10,
                batch_size=32,
                seed=0,
                callbacks=[],
                log_dir=Path(_tempfile.mkdtemp()),
                verbose=0,
                log=lambda line: None,
            )
            results[name].append((time.process_time() - c, time.perf_counter() - w))
    return [
        [n, f"{statistics.median(c for c, _ in v):.1f}", f"{statistics.median(w for _, w in v):.1f}"]
        for n, v in results.items()
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="runs of each; the order rotates every round")
    args = p.parse_args()
    start = header("tfopt overhead: quickstart pipeline vs the same work by hand (wall time, fresh processes)")
    names = ["tfopt", "tfopt, checkpoint: false", "script"]
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    stages: dict[str, dict[str, float]] = {n: {} for n in names[:2]}
    with tempfile.TemporaryDirectory() as tmp:
        quick = (ROOT / "pipelines" / "quickstart.yaml").read_text()
        assert "learning_rate: 1.0e-3}" in quick
        no_ckpt = Path(tmp) / "quickstart.yaml"
        no_ckpt.write_text(quick.replace("learning_rate: 1.0e-3}", "learning_rate: 1.0e-3, checkpoint: false}"))
        for r in range(args.rounds):
            for which in names[r % 3 :] + names[: r % 3]:
                out = Path(tmp) / f"run{r}_{names.index(which)}"
                if which == "script":
                    cmd = [sys.executable, str(ROOT / "benchmarks" / "plain_quickstart.py"), str(out)]
                else:
                    pipeline = "pipelines/quickstart.yaml" if which == "tfopt" else str(no_ckpt)
                    cmd = [sys.executable, "-m", "tfopt", "run", pipeline, "--out", str(out)]
                wall, used = _timed(cmd)
                times[which].append(wall)
                cpu[which].append(used)
                print(f"  round {r + 1}: {which:<26} wall {wall:6.1f} s  CPU {used:6.1f} s", flush=True)
                if which != "script":
                    for s in json.loads((out / "reports" / "quickstart" / "run.json").read_text())["stages"]:
                        stages[which][s["name"]] = stages[which].get(s["name"], 0.0) + s["seconds"] / args.rounds
    med = {k: statistics.median(v) for k, v in times.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    table(
        ["", "wall, median (s)", "wall runs (s)", "CPU, median (s)", "CPU runs (s)"],
        [
            [
                k,
                f"{med[k]:.1f}",
                ", ".join(f"{t:.1f}" for t in times[k]),
                f"{cmed[k]:.1f}",
                ", ".join(f"{t:.1f}" for t in cpu[k]),
            ]
            for k in names
        ],
    )
    for which in names[:2]:
        ratio, cratio = med[which] / med["script"], cmed[which] / cmed["script"]
        print(
            f"{which} / script: wall {ratio:.3f} ({(ratio - 1) * 100:+.1f}%), "
            f"CPU {cratio:.3f} ({(cratio - 1) * 100:+.1f}%); target: within +5%"
        )
        print("  stages (mean s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages[which].items()))
    print("where the training time goes: the same 10-epoch fit (tfopt.train.fit) in this process, median of 2")
    table(["strategy", "CPU (s)", "wall (s)"], _strategy_cost())
    footer(start)


if __name__ == "__main__":
    main()
