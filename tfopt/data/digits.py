"""scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes)."""

from __future__ import annotations

from tfopt.config import DataConfig
from tfopt.data import DATASETS, Arrays


@DATASETS.register("digits")
def load_digits(cfg: DataConfig) -> Arrays:
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    x = d.images.astype("float32") / 16.0
    return Arrays(source="scikit-learn load_digits (bundled)", x=x, y=d.target, class_names=[str(c) for c in d.target_names])
