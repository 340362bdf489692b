"""Atomic file writes: an interrupted run never leaves a truncated file that looks complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from tfopt.errors import TfoptError


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TfoptError(
            f"Cannot create output folder {path}: {e.strerror}. Fix: choose a writable folder with --out."
        ) from None


def _write_error(path: Path, e: OSError) -> TfoptError:
    return TfoptError(
        f"Cannot write {path}: {e.strerror or e}. Fix: free disk space or choose a writable folder with --out."
    )


def check_writable(folder: str | Path) -> None:
    """Create ``folder`` and write a scratch file there, so a run fails before training, not after.

    Raises:
        TfoptError: the folder cannot be created or written (read-only, a file in the way, disk full).
    """
    folder = Path(folder)
    _ensure_dir(folder)
    try:
        with tempfile.NamedTemporaryFile(prefix=".tfopt-write-check.", dir=folder) as f:
            f.write(b"x")
            f.flush()
    except OSError as e:
        raise TfoptError(
            f"Cannot write to output folder {folder}: {e.strerror or e}. "
            "Fix: free disk space or choose a writable folder with --out."
        ) from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``path`` (file or folder).

    On any failure the previous ``path`` is left as it was and the temporary is removed. A folder
    being replaced is first renamed aside, so a failed rename can put it back.
    """
    path = Path(path)
    _ensure_dir(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent
        )
    except OSError as e:  # read-only folder, no space for even an empty file
        raise _write_error(path, e) from None
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers such as Keras' save() want to create the file themselves
    aside = None
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            aside = tmp.with_name(tmp.name + ".old")
            os.replace(path, aside)
        try:
            os.replace(tmp, path)
        except OSError:
            if aside is not None:
                os.replace(aside, path)
                aside = None
            raise
    except OSError as e:
        raise _write_error(path, e) from None
    finally:
        for leftover in (tmp, aside):
            if leftover is None:
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.exists() or leftover.is_symlink():
                leftover.unlink()


def publish_dir(staged: str | Path, final: str | Path) -> Path:
    """Move a fully written folder onto ``final``, replacing what was there only once it is complete.

    The old folder is renamed aside first and put back if the swap fails, so ``final`` holds one
    complete version, the old or the new; only a process killed between the two renames leaves
    the old one as ``.<name>.old`` beside it.
    """
    staged, final = Path(staged), Path(final)
    aside = final.with_name(f".{final.name}.old")
    try:
        if aside.exists():
            shutil.rmtree(aside)
        if final.exists():
            os.replace(final, aside)
        try:
            os.replace(staged, final)
        except OSError:
            if aside.exists():
                os.replace(aside, final)
            raise
    except OSError as e:
        raise _write_error(final, e) from None
    shutil.rmtree(aside, ignore_errors=True)
    return final


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
