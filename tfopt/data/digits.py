"""scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes)."""

from __future__ import annotations

from tfopt.data import DATASETS, Arrays
from tfopt.schema import Strict


class Options(Strict):
    """digits takes no options: the images ship inside scikit-learn (only the split keys apply)."""


@DATASETS.register("digits", options=Options)
def load_digits(options: Options) -> Arrays:
    """scikit-learn's handwritten digits: 1,797 real 8x8 grey images, 10 classes (bundled, no download)."""
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    x = d.images.astype("float32") / 16.0
    return Arrays(
        source="scikit-learn load_digits (bundled)", x=x, y=d.target, class_names=[str(c) for c in d.target_names]
    )
