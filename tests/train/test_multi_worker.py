"""MultiWorkerMirroredStrategy: two `tfopt run` worker processes on localhost, as on two hosts.

Each worker is a fresh process (the strategy must be created before TensorFlow starts) with its
own TF_CONFIG and its own output folder, so what each one wrote can be told apart.
"""

from __future__ import annotations

import json
import re
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.results import load_run

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300  # per worker; measured ~40 s each on 2 shared CPU cores

PIPELINE = """
name: mw
seed: 0
data: {name: digits}
model: {name: small_cnn, params: {filters: 4, dense: 16}}
train: {epochs: 3, batch_size: 32, learning_rate: 3.0e-3, strategy: multi_worker, cross_device_ops: ring, verbose: 0}
finetune: {epochs: 2}
variants:
  pruned: [{prune: {final_sparsity: 0.5}}]
export: [float32]
evaluate: {latency_runs: 0}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_workers(yaml: Path, outs: list[Path], logs: list[Path], cluster: dict) -> list[subprocess.Popen]:
    """``tfopt run`` as worker 0 and 1 of ``cluster``, each with its --out folder and its log file."""
    procs = []
    for index, (out, log) in enumerate(zip(outs, logs)):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            CUDA_VISIBLE_DEVICES="",
        )
        with open(log, "w") as f:  # files, not pipes: a full pipe would stall a worker
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tfopt", "run", str(yaml), "--out", str(out)],
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env=env,
                )
            )
    return procs


def _wait(procs: list[subprocess.Popen]) -> list[int]:
    """Exit codes of all workers; any still running after TIMEOUT_S is killed."""
    try:
        return [p.wait(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_workers_train_together_and_only_the_chief_writes(tmp_path: Path) -> None:
    (tmp_path / "mw.yaml").write_text(PIPELINE)
    cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    codes = _wait(_start_workers(tmp_path / "mw.yaml", [tmp_path / "out0", tmp_path / "out1"], logs, cluster))
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n\n".join(t[-3000:] for t in texts)

    assert "MultiWorkerMirroredStrategy, worker 0 of 2 workers, 2 replicas (chief: writes the artifacts)" in texts[0]
    assert "MultiWorkerMirroredStrategy, worker 1 of 2 workers, 2 replicas" in texts[1]
    assert "the chief exports, evaluates and writes the report" in texts[1]

    run = load_run(tmp_path / "out0" / "reports" / "mw" / "run.json")
    assert [(t.variant, t.strategy, t.replicas, t.global_batch_size) for t in run.training] == [
        ("baseline", "MultiWorkerMirroredStrategy", 2, 32),
        ("pruned/prune", "MultiWorkerMirroredStrategy", 2, 32),
    ]
    layers = tflite_weight_stats(run.result("pruned", "float32").path)
    assert all(abs(layer.sparsity - 0.5) <= 0.02 for layer in layers), layers
    assert run.result("baseline", "keras").accuracy >= 0.5  # 3 epochs of a 4-filter CNN: measured ~0.8
    assert not (tmp_path / "out0" / "reports" / ".mw.checkpoints").exists()

    written_by_worker = [p for p in (tmp_path / "out1").rglob("*") if p.is_file()]
    assert written_by_worker == []


RESUME = PIPELINE.replace("name: mw", "name: mwr").replace("epochs: 3, batch_size: 32", "epochs: 8, batch_size: 8")


@pytest.mark.slow  # about 75 s on 2 cores: out of the 15-minute default run (one-process resume: test_resume.py)
def test_two_killed_workers_resume_from_the_chiefs_last_epoch(tmp_path: Path) -> None:
    """Both workers SIGKILLed after the chief's first epoch backup, then started again with the same
    command: both restore the chief's backup (one --out, a folder both see) and go on from there."""
    import time

    yaml, out = tmp_path / "mwr.yaml", tmp_path / "out"
    yaml.write_text(RESUME)
    marker = out / "reports" / ".mwr.checkpoints" / "fits" / "baseline" / "chief" / "checkpoint"
    cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
    first = _start_workers(yaml, [out, out], [tmp_path / "a0.log", tmp_path / "a1.log"], cluster)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not marker.exists():
            assert all(p.poll() is None for p in first), (
                "a worker ended before the first backup:\n" + (tmp_path / "a0.log").read_text()[-3000:]
            )
            assert time.monotonic() < deadline, f"no {marker} after {TIMEOUT_S} s"
            time.sleep(0.05)
    finally:
        for p in first:
            p.kill()
            p.wait(timeout=30)
    assert not (out / "reports" / "mwr" / "run.json").exists()

    cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
    logs = [tmp_path / "b0.log", tmp_path / "b1.log"]
    codes = _wait(_start_workers(yaml, [out, out], logs, cluster))
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n\n".join(t[-3000:] for t in texts)
    for text in texts:
        assert re.search(r"baseline: resumed from the checkpoint of epoch [1-7]; continuing at epoch \d/8", text), text[
            -3000:
        ]
    run = load_run(out / "reports" / "mwr" / "run.json")
    assert [(t.variant, t.replicas) for t in run.training] == [("baseline", 2), ("pruned/prune", 2)]
    assert not (out / "reports" / ".mwr.checkpoints").exists()
