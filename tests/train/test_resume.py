"""Never lose work: a real run killed with SIGKILL resumes where it stopped; finished runs are protected."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfopt import config, pipeline
from tfopt.errors import TransformError
from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.results import load_run
from tfopt.train.checkpoint import RunExistsError

ROOT = Path(__file__).resolve().parents[2]

# Small batches make epochs long enough (~0.5 s) to kill the run in the middle of a fit.
KILLED = """
name: resume
seed: 0
data: {name: digits}
model: {name: small_cnn, params: {filters: 4, dense: 16}}
train: {epochs: 12, batch_size: 8, learning_rate: 2.0e-3, verbose: 2}
finetune: {epochs: 6, batch_size: 8, learning_rate: 1.0e-3}
variants:
  pruned: [{prune: {final_sparsity: 0.5}}]
export: [float32]
evaluate: {latency_runs: 0}
"""


def _start(yaml: Path, out: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "tfopt", "run", str(yaml), "--out", str(out)],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _kill_after(proc: subprocess.Popen, marker: Path, timeout: float = 240) -> None:
    """SIGKILL ``proc`` as soon as ``marker`` (an epoch backup) exists."""
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            assert proc.poll() is None, f"the run ended (code {proc.returncode}) before writing {marker}"
            assert time.monotonic() < deadline, f"no {marker} after {timeout} s"
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup, like a lost machine
        proc.wait(timeout=30)


def test_killed_run_resumes_from_its_last_epoch(tmp_path: Path) -> None:
    yaml, out = tmp_path / "resume.yaml", tmp_path / "out"
    yaml.write_text(KILLED)
    ckpt = out / "reports" / ".resume.checkpoints"

    # 1. Killed during the baseline, right after its first epoch backup.
    first = _start(yaml, out, tmp_path / "1.log")
    _kill_after(first, ckpt / "fits" / "baseline" / "chief" / "checkpoint")
    assert first.returncode == -9
    assert not (out / "reports" / "resume" / "run.json").exists()

    # 2. Same command: the baseline goes on after its last backed-up epoch; killed again in the fine-tune.
    second = _start(yaml, out, tmp_path / "2.log")
    _kill_after(second, ckpt / "fits" / "pruned.1_prune" / "chief" / "checkpoint")
    log2 = (tmp_path / "2.log").read_text()
    m = re.search(r"baseline: resumed from the checkpoint of epoch (\d+); continuing at epoch (\d+)/12", log2)
    assert m, log2[-2000:]
    base_start = int(m.group(1))
    assert 1 <= base_start < 12 and "Epoch 1/12" not in log2

    # 3. Same command again: the finished baseline is reloaded, not retrained; the fine-tune resumes.
    third = subprocess.run(
        [sys.executable, "-m", "tfopt", "run", str(yaml), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    log3 = third.stdout + third.stderr
    assert third.returncode == 0, log3[-3000:]
    assert "baseline: finished in an earlier invocation; reloaded" in log3
    m = re.search(r"pruned/prune: resumed from the checkpoint of epoch (\d+); continuing at epoch \d+/6", log3)
    assert m, log3[-2000:]
    ft_start = int(m.group(1))
    assert 1 <= ft_start < 6

    run = load_run(out / "reports" / "resume" / "run.json")
    base, ft = run.training
    assert (base.restored, base.initial_epoch, base.epochs_run) == (True, base_start, 12 - base_start)
    assert (ft.restored, ft.initial_epoch, ft.epochs_run) == (False, ft_start, 6 - ft_start)
    assert run.result("baseline", "keras").accuracy >= 0.90  # measured 0.947 for the same run uninterrupted
    layers = tflite_weight_stats(run.result("pruned", "float32").path)
    assert all(abs(layer.sparsity - 0.5) <= 0.02 for layer in layers), layers
    assert not ckpt.exists(), "checkpoints are removed once the run is published"

    # 4. A finished run is not overwritten silently.
    again = subprocess.run(
        [sys.executable, "-m", "tfopt", "run", str(yaml), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert again.returncode == 2
    assert "already holds a finished run" in again.stderr and "--force" in again.stderr


QUICK = """
name: quick
seed: 0
data: {name: digits}
model: {name: small_cnn, params: {filters: 4, dense: 16}}
train: {epochs: 2, batch_size: 32, learning_rate: LR, verbose: 0}
finetune: {epochs: 1}
variants:
  pruned: [{prune: {final_sparsity: 0.5, layers: [LAYERS]}}]
export: [float32]
evaluate: {latency_runs: 0}
"""


def _quick(lr: str = "1.0e-3", layers: str = "'*'"):
    return config.loads(QUICK.replace("LR", lr).replace("LAYERS", layers), default_name="quick")


@pytest.mark.slow  # 18-27 s (suite budget); resume stays in test_killed_run_resumes_from_its_last_epoch
def test_a_fixed_config_reuses_the_finished_baseline_and_force_replaces_a_run(tmp_path: Path) -> None:
    def run(cfg, **kw) -> list[str]:
        lines: list[str] = []
        try:
            pipeline.run(cfg, root=tmp_path, log=lines.append, **kw)
        finally:
            run.lines = lines
        return lines

    # A variant that fails after the baseline finished: the baseline snapshot stays.
    with pytest.raises(TransformError, match="matched no layer"):
        run(_quick(layers="nothing*"))
    assert (tmp_path / "reports" / ".quick.checkpoints" / "stages" / "baseline.json").exists()

    # A change that affects the baseline retrains it, and says why.
    with pytest.raises(TransformError):
        run(_quick(lr="2.0e-3", layers="nothing*"))
    assert any("baseline: the pipeline changed since it finished; training it again" in x for x in run.lines)

    # Fixing only the variant: the baseline is reloaded, not retrained.
    lines = run(_quick(lr="2.0e-3"))
    assert any("baseline: finished in an earlier invocation; reloaded" in x for x in lines)
    record = load_run(tmp_path / "reports" / "quick" / "run.json")
    assert [(t.variant, t.restored) for t in record.training] == [("baseline", True), ("pruned/prune", False)]
    assert not (tmp_path / "reports" / ".quick.checkpoints").exists()

    with pytest.raises(RunExistsError, match="already holds a finished run.*--force"):
        run(_quick(lr="2.0e-3"))
    lines = run(_quick(lr="2.0e-3"), force=True)
    assert not any("resuming" in x or "reloaded" in x for x in lines)
    assert load_run(tmp_path / "reports" / "quick" / "run.json").training[0].restored is False


def test_a_second_invocation_of_a_running_pipeline_is_refused(tmp_path: Path) -> None:
    from tfopt.errors import TfoptError
    from tfopt.train.checkpoint import RunLock

    held = RunLock(tmp_path / "reports" / ".quick.lock").acquire()  # as a running `tfopt run` holds it
    try:
        with pytest.raises(TfoptError, match="Another tfopt process is running this pipeline into the same folder"):
            pipeline.run(_quick(), root=tmp_path, log=lambda _: None)
    finally:
        held.release()
    assert not (tmp_path / "reports" / ".quick.checkpoints").exists()
