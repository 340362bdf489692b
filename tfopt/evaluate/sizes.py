"""File size and gzip size (the size that matters for download and storage)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path


def path_bytes(path: str | Path) -> int:
    """Size of a file, or of all files under a folder (SavedModel)."""
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return os.path.getsize(path)


def gzip_bytes(path: str | Path) -> int:
    """gzip -9 size: pruned and clustered weights only pay off once compressed."""
    path = Path(path)
    if path.is_dir():
        return sum(len(gzip.compress(f.read_bytes(), 9, mtime=0)) for f in sorted(path.rglob("*")) if f.is_file())
    return len(gzip.compress(path.read_bytes(), 9, mtime=0))
