"""Full disks and unwritable output folders: a clear error, the previous finished run left intact.

Root ignores file permissions, so "permission denied" is simulated with a read-only bind mount and
"disk full" with a tiny tmpfs where mounting is allowed; the same failures are also injected
in-process (``OSError(ENOSPC)`` from the real write path), which runs everywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tfopt import io
from tfopt.errors import TfoptError

from robust_helpers import TINY, assert_one_line_error, run_cli, snapshot


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _visible(files: dict[str, bytes]) -> dict[str, bytes]:
    """The finished run's files, leaving out checkpoints a failed run keeps on purpose to resume from."""
    return {k: v for k, v in files.items() if ".checkpoints" not in k}


def _leftovers(folder: Path) -> list[str]:
    """Temporary or partial names tfopt may create: none may survive a failure."""
    return [
        p.name
        for p in folder.rglob("*")
        if ".tmp" in p.name or p.name.endswith((".partial", ".old")) or "write-check" in p.name
    ]


# --- tfopt.io, in-process --------------------------------------------------------------------------


def test_disk_full_while_writing_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = io.atomic_write_text(tmp_path / "run.json", "previous")
    monkeypatch.setattr(io.os, "fsync", _enospc)
    with pytest.raises(TfoptError, match=r"Cannot write .*run\.json: No space left on device\. Fix: free disk space"):
        io.atomic_write_text(target, "new and longer")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_failed_folder_swap_puts_the_previous_folder_back(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "saved_model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"previous")
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # 1: old folder aside, 2: new folder into place -> fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(TfoptError, match="No space left"):
        with io.atomic_path(folder) as tmp:
            tmp.mkdir()
            (tmp / "weights.bin").write_bytes(b"new")
    assert (folder / "weights.bin").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]


def test_unwritable_folder_is_a_tfopt_error(tmp_path: Path, monkeypatch) -> None:
    def erofs(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(io.tempfile, "mkstemp", erofs)
    with pytest.raises(TfoptError, match="Read-only file system. Fix:"):
        io.atomic_write_bytes(tmp_path / "x.bin", b"x")
    monkeypatch.setattr(io.tempfile, "NamedTemporaryFile", erofs)
    with pytest.raises(TfoptError, match="Cannot write to output folder .*Read-only file system"):
        io.check_writable(tmp_path)


def test_output_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TfoptError, match="Cannot create output folder .*Fix: choose a writable folder with --out"):
        io.check_writable(tmp_path / "file" / "sub")


def test_publish_failure_keeps_the_previous_folder(tmp_path: Path, monkeypatch) -> None:
    final, staged = tmp_path / "run", tmp_path / ".run.partial"
    final.mkdir()
    staged.mkdir()
    (final / "run.json").write_text("previous")
    (staged / "run.json").write_text("new")
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(TfoptError, match="Input/output error"):
        io.publish_dir(staged, final)
    assert (final / "run.json").read_text() == "previous"


# --- whole runs -------------------------------------------------------------------------------------


def test_run_failing_mid_export_leaves_the_previous_run_intact(finished_run: Path, tmp_path: Path, monkeypatch) -> None:
    """Disk full on the second exported file: the new run fails, the finished one is byte-identical."""
    from tfopt import config, pipeline

    root = tmp_path / "root"
    shutil.copytree(finished_run, root)
    before = snapshot(root)
    assert "reports/tiny/run.json" in before and "models/tiny/baseline_int8.tflite" in before
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            _enospc()
        return real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", fsync)
    with pytest.raises(TfoptError, match="No space left on device"):
        pipeline.run(config.loads(TINY.replace("epochs: 1", "epochs: 0")), root=root, log=lambda line: None, force=True)
    assert len(calls) == 2
    assert _visible(snapshot(root)) == before
    assert _leftovers(root) == []


def test_cli_out_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(TINY)
    (tmp_path / "blocker").write_text("a file, not a folder")
    proc = run_cli("run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "blocker" / "out"))
    assert_one_line_error(proc, "output folder", "Not a directory", "Fix: choose a writable folder with --out")
    assert "> baseline" not in proc.stdout  # refused before any training


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def mounted(tmp_path: Path):
    """Mount helper; skips where mounting is not allowed (not root, or no CAP_SYS_ADMIN)."""
    points: list[Path] = []

    def mount(point: Path, *args: str) -> None:
        point.mkdir(parents=True, exist_ok=True)
        if not shutil.which("mount") or not _mount(*args, str(point)):
            pytest.skip("cannot mount here (needs root with CAP_SYS_ADMIN); the in-process tests cover the same paths")
        points.append(point)

    yield mount
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_cli_read_only_output_keeps_previous_run(finished_run: Path, tmp_path: Path, mounted) -> None:
    root = tmp_path / "root"
    shutil.copytree(finished_run, root)
    before = snapshot(root)
    mounted(root, "--bind", str(root))
    if not _mount("-o", "remount,ro,bind", str(root)):
        pytest.skip("cannot remount read-only here")
    (tmp_path / "p.yaml").write_text(TINY)
    proc = run_cli("run", str(tmp_path / "p.yaml"), "--out", str(root), "--force")
    assert_one_line_error(proc, "Read-only file system", "Fix:")
    assert snapshot(root) == before


def test_cli_disk_full_keeps_previous_run(finished_run: Path, tmp_path: Path, mounted) -> None:
    """A real full disk: 48 KiB left after the previous run, less than one new model file needs."""
    root = tmp_path / "tmpfs"
    mounted(root, "-t", "tmpfs", "-o", "size=8m", "tmpfs")
    shutil.copytree(finished_run, root, dirs_exist_ok=True)
    before = snapshot(root)
    with open(root / "filler", "wb") as f:  # fill the disk to leave a little room
        free = shutil.disk_usage(root).free - 48 * 1024
        f.write(b"\0" * max(0, free))
    before["filler"] = (root / "filler").read_bytes()
    (tmp_path / "p.yaml").write_text(TINY)
    proc = run_cli("run", str(tmp_path / "p.yaml"), "--out", str(root), "--force")
    assert_one_line_error(proc, "No space left on device", "Fix: free disk space")
    assert _visible(snapshot(root)) == before
    assert _leftovers(root) == []
