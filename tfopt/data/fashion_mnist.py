"""Fashion-MNIST from its standard idx files (60,000 train + 10,000 test, 28x28 grey).

Looked up, in order: ``data.path``, Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``), and Keras' cache (``~/.keras/datasets/fashion-mnist``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from typing import Optional

import numpy as np
from pydantic import Field

from tfopt.data import DATASETS, Arrays
from tfopt.errors import DataError
from tfopt.schema import Strict

SEARCH_DIRS = (Path("/usr/share/datasets/fashion-mnist"), Path.home() / ".keras" / "datasets" / "fashion-mnist")
FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(
            f"Cannot read idx file {path} (truncated or corrupt?): {e}. Fix: reinstall the dataset files."
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(
            f"{path} is not an idx file of unsigned bytes. Fix: point data.path at the Fashion-MNIST idx files."
        )
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(
            f"{path} is truncated: its header needs {offset} bytes, found {len(raw)}. Fix: reinstall the dataset files."
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=offset)
    expected = int(np.prod(dims))
    if data.size != expected:
        problem = "is truncated" if data.size < expected else "has more data than its header says"
        raise DataError(
            f"{path} {problem}: expected {expected} values, found {data.size}. Fix: reinstall the dataset files."
        )
    return data.reshape(dims)


def _find(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for candidate in (d / name, d / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


class Options(Strict):
    path: Optional[str] = Field(
        None, description="the folder holding the four idx files; default: the Debian package, then Keras' cache"
    )


@DATASETS.register("fashion_mnist", options=Options)
def load_fashion_mnist(options: Options) -> Arrays:
    """Fashion-MNIST: 70,000 real 28x28 grey clothing images, 10 classes (Debian dataset-fashion-mnist)."""
    dirs = [Path(options.path).expanduser()] if options.path else list(SEARCH_DIRS)
    found = {k: _find(v, dirs) for k, v in FILES.items()}
    missing = [FILES[k] for k, p in found.items() if p is None]
    if missing:
        where = ", ".join(str(d) for d in dirs)
        raise DataError(
            f"Fashion-MNIST files not found ({', '.join(missing)}[.gz]) in {where}. "
            "Fix: 'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or copy the four idx files "
            "into ~/.keras/datasets/fashion-mnist/, or set data.path to the folder holding them."
        )
    arrays = {k: read_idx(p) for k, p in found.items()}
    return Arrays(source=f"idx files in {found['x_train'].parent}", class_names=CLASS_NAMES, **arrays)
