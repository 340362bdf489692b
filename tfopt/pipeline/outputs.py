"""Where a run writes, how it publishes atomically, and its per-stage progress lines."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from tfopt.io import check_writable, publish_dir
from tfopt.results import Stage


@dataclass
class Outputs:
    """Where a run writes: ``reports/<name>/`` and ``models/<name>/`` under ``root``.

    A run writes into hidden ``.<name>.partial`` folders beside those (``report_dir``,
    ``models_dir``) and ``publish()`` swaps them in once everything is written, so a run that fails
    half-way (disk full, a bad export, a crash) leaves the previous finished run as it was.
    """

    root: Path
    name: str

    @property
    def report_dir(self) -> Path:
        return self.root / "reports" / f".{self.name}.partial"

    @property
    def models_dir(self) -> Path:
        return self.root / "models" / f".{self.name}.partial"

    def final(self, path: Path) -> Path:
        """Where ``path``, written under a partial folder, lives once the run is published."""
        for part in (self.report_dir, self.models_dir):
            if path == part or part in path.parents:
                return part.with_name(self.name) / path.relative_to(part)
        return path

    def start(self) -> None:
        """Clear what an interrupted run left, and fail now, before any training, if nothing can be written."""
        self.discard()
        for folder in (self.report_dir, self.models_dir):
            check_writable(folder)

    def publish(self) -> None:
        for folder in (self.models_dir, self.report_dir):  # report last: run.json marks a finished run
            publish_dir(folder, self.final(folder))

    def discard(self) -> None:
        for folder in (self.report_dir, self.models_dir):
            shutil.rmtree(folder, ignore_errors=True)

    @property
    def run_json(self) -> Path:
        return self.report_dir / "run.json"


@dataclass
class Stages:
    """Times each stage of a run: a line when it starts, one with its seconds when it ends."""

    log: Callable[[str], None]
    done: list[Stage] = field(default_factory=list)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.log(f"[tfopt] > {name}")
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.done.append(Stage(name, round(seconds, 3)))
        self.log(f"[tfopt] done {name} ({seconds:.1f}s)")


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def storage_failure(e: BaseException) -> Optional[str]:
    """The OS reason when ``e`` is a failed write (full disk, read-only or forbidden folder), else None."""
    if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
        return e.strerror
    if type(e).__module__.startswith("tensorflow"):  # tf.errors.*: the OS reason is only in the text
        for code in _STORAGE_ERRNOS:
            if os.strerror(code) in str(e):
                return os.strerror(code)
    return None
