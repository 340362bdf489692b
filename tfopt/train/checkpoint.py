"""Never lose work: epoch backups of the fit in progress and snapshots of finished stages.

A run killed at any point (even with SIGKILL) and started again with the same command goes on
where it stopped:

- a stage that had finished (the baseline, or one step of a variant, fine-tuned and stripped) is
  reloaded from its snapshot instead of being trained again;
- the fit that was running restarts after its last completed epoch (Keras ``BackupAndRestore``).

Everything lives in ``reports/.<name>.checkpoints/`` and is removed once the run is published.
Each snapshot and backup carries a fingerprint of the configuration that produced it; after an
edit to the pipeline, only the stages that the edit affects are trained again (and it is said so).
The first invocation's resumed stages keep their original training record, marked ``restored``.

Multi-worker runs: every worker takes the same decisions, so the checkpoint folder must be on a
filesystem that all workers see (NFS, GCS, or one machine); only the chief writes there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from tfopt.backends import Backend, backend_for, backend_named
from tfopt.errors import TfoptError
from tfopt.io import atomic_path, atomic_write_text
from tfopt.results import Training, TransformReport, records


class RunExistsError(TfoptError):
    """The run folder already holds a finished run and ``--force`` was not given."""


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts: which configuration produced a checkpoint."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def checkpoint_dir(root: Path, name: str) -> Path:
    """``<root>/reports/.<name>.checkpoints``: beside the run's report folder, outside what gets published."""
    return Path(root) / "reports" / f".{name}.checkpoints"


def check_not_finished(run_json: Path, name: str, force: bool) -> None:
    """Refuse to overwrite a finished run silently.

    Raises:
        RunExistsError: ``run_json`` exists and ``force`` is false.
    """
    if run_json.exists() and not force:
        raise RunExistsError(
            f"{run_json.parent} already holds a finished run ({run_json.name} is there). "
            "Fix: pass --force to overwrite it (pipeline.run(..., force=True)), "
            f"or set a new name: in the pipeline (now {name!r})."
        )


class RunLock:
    """An exclusive lock on one run's folders, so two invocations of the same run cannot interleave.

    ``flock`` is released by the kernel when the process dies, even by SIGKILL, so a killed run
    never leaves a stale lock behind.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: Optional[int] = None

    def acquire(self) -> RunLock:
        """Take the lock, or fail at once if another process holds it.

        Raises:
            TfoptError: another process is running the same pipeline into the same folder.
        """
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        import os

        try:  # the first write under --out: a read-only folder or a file in the way shows up here
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise TfoptError(
                f"Cannot write to output folder {self.path.parent}: {e.strerror or e}. "
                "Fix: choose a writable folder with --out."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise TfoptError(
                f"Another tfopt process is running this pipeline into the same folder (it holds {self.path}). "
                "Fix: wait for it to finish, or give this run another name: or --out."
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import os

            os.close(self._fd)  # closing releases the flock
            self._fd = None


class RunCheckpoints:
    """The checkpoint folder of one run, seen by one process (the chief writes, every worker reads)."""

    def __init__(self, folder: Path, *, enabled: bool = True, chief: bool = True, log: Callable[[str], None] = print):
        self.folder = Path(folder)
        self.enabled = enabled
        self.chief = chief
        self.log = log

    @property
    def exists(self) -> bool:
        return self.folder.is_dir() and any(self.folder.iterdir())

    # ------------------------------------------------------------------ epoch backups of one fit

    def fit_backup(self, key: str, fp: str) -> Optional[Path]:
        """The ``BackupAndRestore`` folder for fit ``key``; one left by another configuration is removed first."""
        if not self.enabled:
            return None
        folder, marker = self.folder / "fits" / key, self.folder / "fits" / f"{key}.json"
        if self.chief:
            stale = folder.exists() and _read_json(marker).get("fingerprint") != fp
            if stale:
                self.log(
                    f"[tfopt]   {key}: the pipeline changed since its epoch checkpoint was written; "
                    "training it from the start"
                )
                shutil.rmtree(folder, ignore_errors=True)
            atomic_write_text(marker, json.dumps({"fingerprint": fp}) + "\n")
        return folder

    # ------------------------------------------------------------------ snapshots of finished stages

    def load_stage(
        self, key: str, fp: str, safe_mode: bool = True
    ) -> Optional[tuple[Any, list[Training], list[TransformReport]]]:
        """The model and records of a finished stage, or None when there is none for this configuration.

        Call inside the strategy scope: the model is loaded there, ready to be trained further.
        """
        if not self.enabled:
            return None
        marker = self.folder / "stages" / f"{key}.json"
        data = _read_json(marker)
        path = self.folder / "stages" / str(data.get("file", ""))
        if not data or not path.is_file():
            return None
        if data.get("fingerprint") != fp:
            self.log(f"[tfopt]   {key}: the pipeline changed since it finished; training it again")
            return None
        try:
            model = backend_named(data.get("keras", "tf_keras")).load(path, safe_mode=safe_mode)
        except Exception as e:  # damaged, or one tfmot cannot reload (CQAT/PCQAT): retrained
            self.log(f"[tfopt]   {key}: cannot reload its snapshot ({str(e).splitlines()[0][:120]}); training it again")
            return None
        try:
            trainings = [dataclasses.replace(t, restored=True) for t in records(Training, data.get("training", []))]
            reports = records(TransformReport, data.get("transforms", []))
        except ValueError as e:  # a damaged record: the stage is trained again
            self.log(f"[tfopt]   {key}: cannot read its record ({e}); training it again")
            return None
        self.log(f"[tfopt]   {key}: finished in an earlier invocation; reloaded from {path}")
        return model, trainings, reports

    def save_stage(
        self,
        key: str,
        fp: str,
        model: Any,
        trainings: list[Training],
        reports: list[TransformReport],
        backend: Optional[Backend] = None,
    ) -> None:
        """Snapshot a finished stage: the model first, then the record that marks it complete.

        Every worker of a multi-worker run calls this (saving may read variables that are reduced
        across workers); only the chief keeps what it wrote.
        """
        if not self.enabled:
            return
        backend = backend or backend_for(model)
        suffix = backend.file_suffix(model)  # .h5 for a QAT model: tfmot cannot reload it from .keras

        def save(path: Path) -> None:
            backend.save(model, path, optimizer=True)

        if not self.chief:
            scratch = Path(tempfile.mkdtemp(prefix="tfopt-worker-"))
            try:
                save(scratch / f"m{suffix}")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return
        stages = self.folder / "stages"
        with atomic_path(stages / f"{key}{suffix}") as tmp:
            save(tmp)
        record = {
            "fingerprint": fp,
            "keras": backend.kind,
            "file": f"{key}{suffix}",
            "training": [dataclasses.asdict(t) for t in trainings],
            "transforms": [dataclasses.asdict(r) for r in reports],
        }
        atomic_write_text(stages / f"{key}.json", json.dumps(record, indent=1) + "\n")

    def remove(self) -> None:
        """Delete the folder: the run is finished and published."""
        if self.chief:
            shutil.rmtree(self.folder, ignore_errors=True)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
