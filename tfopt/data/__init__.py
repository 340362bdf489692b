"""Registered datasets: each returns real data as numpy arrays, split into train/val/test.

A loader is a function ``(options) -> Arrays`` registered with
``@DATASETS.register(name, options=Options)``: ``Options`` is the dataset's own pydantic class
(``path``, ``image_size`` ... where it uses them), so a key another dataset takes is refused for
this one, at load with ``file:line``. The split keys (``test_fraction``, ``val_fraction``,
``subset``) are common to all and applied here. A loader returns either the whole set (``x``,
``y``: split here with the config's fractions and the pipeline seed, stratified) or the
publisher's own train/test split. Nothing is downloaded.

Example::

    class Options(Strict):
        path: Optional[str] = Field(None, description="a folder holding the files")

    @DATASETS.register("my_data", options=Options)
    def load_my_data(options: Options) -> Arrays: ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from pydantic import BaseModel

from tfopt.errors import DataError
from tfopt.options import parse_options
from tfopt.registry import Registry
from tfopt.schema import DataConfig


@dataclass(frozen=True)
class Arrays:
    """What a loader returns. Either ``x``/``y`` or both train and test parts are set."""

    source: str
    x: Optional[np.ndarray] = None
    y: Optional[np.ndarray] = None
    x_train: Optional[np.ndarray] = None
    y_train: Optional[np.ndarray] = None
    x_test: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None
    class_names: Optional[list[str]] = None


@dataclass(frozen=True)
class Splits:
    """Inputs and int labels, plus metadata.

    Inputs are float32 images in [0, 1] shaped (N, H, W, C); for text, 1-D arrays of strings from
    the loader, then dicts of (N, L) int32 arrays (token_ids, padding_mask, segment_ids) once the
    model family has tokenized them (``tfopt.models.prepare_inputs``).
    """

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] = field(default_factory=list)
    encoding: dict = field(default_factory=dict)  # text: how it was tokenized (recorded for tfopt predict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if isinstance(self.x_train, dict):  # tokenized text: (sequence length,)
            return tuple(next(iter(self.x_train.values())).shape[1:])
        return tuple(self.x_train.shape[1:])

    @property
    def is_text(self) -> bool:
        """Raw strings, not yet tokenized."""
        return not isinstance(self.x_train, dict) and self.x_train.dtype.kind in "OUS"


def num_examples(x: np.ndarray | dict[str, np.ndarray]) -> int:
    """Number of examples in an array or in a dict of arrays (multi-input models)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def take(x: np.ndarray | dict[str, np.ndarray], index: slice | np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
    """Rows ``index`` of an array or of every array in a dict."""
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


DATASETS: Registry = Registry("dataset")


def stratified_split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """Split off ``fraction`` of each class; returns (x_rest, y_rest, x_part, y_part).

    Every split of tfopt goes through here (test and validation of the registered datasets, the
    validation part ``tfopt.optimize`` carves from in-memory arrays), so the same seed gives the same split.
    """
    rng = np.random.default_rng(seed)
    part = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        part.extend(idx[: int(round(fraction * len(idx)))])
    mask = np.zeros(len(y), bool)
    mask[np.asarray(part, int)] = True
    rest_idx, part_idx = np.flatnonzero(~mask), np.flatnonzero(mask)
    rng.shuffle(rest_idx)
    rng.shuffle(part_idx)
    return x[rest_idx], y[rest_idx], x[part_idx], y[part_idx]


def _as_images(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"Dataset {name!r}: images must be shaped (N, H, W) or (N, H, W, C), got {x.shape}.")
    if x.dtype == np.uint8:  # 8-bit pixels; float arrays are taken as already scaled
        return x.astype("float32") / 255.0
    return x.astype("float32")


def _as_inputs(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind in "OUS":  # text: kept as strings for the model's tokenizer
        if x.ndim != 1:
            raise DataError(f"Dataset {name!r}: texts must be a 1-D array of strings, got shape {x.shape}.")
        return x.astype(object)
    return _as_images(x, name)


def options(cfg: DataConfig) -> BaseModel:
    """The named dataset's typed options, from the keys of ``cfg`` beyond name and the split keys.

    Raises:
        DataError: unknown dataset, or a key it does not take, or a bad value (one line each).
    """
    if cfg.name not in DATASETS:
        raise DataError(DATASETS.unknown_message(cfg.name))
    return parse_options(
        DATASETS.entry(cfg.name),
        cfg.options,
        prefix=("data",),
        owner=f"dataset {cfg.name!r}",
        error=DataError,
        common=tuple(DataConfig.model_fields),
    )


def load(cfg: DataConfig, seed: int = 0) -> Splits:
    """Load a registered dataset with its typed options and split it reproducibly.

    Raises:
        DataError: unknown name, bad options, missing files, or inconsistent arrays.
    """
    typed = options(cfg)  # first: it words an unknown name as a DataError
    arrays: Arrays = DATASETS.get(cfg.name)(typed)
    if arrays.x is not None:
        x, y = _as_inputs(arrays.x, cfg.name), np.asarray(arrays.y).astype("int64")
        _check_pairs(x, y, cfg.name, "x/y")
        x_train, y_train, x_test, y_test = stratified_split(x, y, cfg.test_fraction, seed)
    else:
        x_train, y_train = _as_inputs(arrays.x_train, cfg.name), np.asarray(arrays.y_train).astype("int64")
        x_test, y_test = _as_inputs(arrays.x_test, cfg.name), np.asarray(arrays.y_test).astype("int64")
        _check_pairs(x_train, y_train, cfg.name, "train")
        _check_pairs(x_test, y_test, cfg.name, "test")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(
                f"Dataset {cfg.name!r}: train images {x_train.shape[1:]} "
                f"and test images {x_test.shape[1:]} differ in shape."
            )
    if cfg.subset is not None:
        x_train, y_train = x_train[: cfg.subset], y_train[: cfg.subset]
    if cfg.val_fraction > 0:
        x_train, y_train, x_val, y_val = stratified_split(x_train, y_train, cfg.val_fraction, seed + 1)
    else:
        x_val, y_val = x_train[:0], y_train[:0]
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    names = arrays.class_names or [str(i) for i in range(num_classes)]
    if len(names) < num_classes:
        raise DataError(
            f"Dataset {cfg.name!r}: labels go up to {num_classes - 1} but only {len(names)} class names are given."
        )
    return Splits(cfg.name, arrays.source, x_train, y_train, x_val, y_val, x_test, y_test, list(names))


def _check_pairs(x: np.ndarray, y: np.ndarray, name: str, part: str) -> None:
    if len(x) != len(y):
        raise DataError(
            f"Dataset {name!r} ({part}): {len(x)} images but {len(y)} labels. Fix: give one label per image."
        )
    if len(x) == 0:
        raise DataError(f"Dataset {name!r} ({part}) is empty.")
    if y.ndim != 1 or (y < 0).any():
        raise DataError(
            f"Dataset {name!r} ({part}): labels must be non-negative integers in a 1-D array, got shape {y.shape}."
        )


def _register_builtins() -> None:
    from tfopt.data import digits, fashion_mnist, files, mnist_5k, text  # noqa: F401


_register_builtins()
