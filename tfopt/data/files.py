"""A user's own data: ``.npz`` arrays or a folder of images, one sub-folder per class."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field, PositiveInt

from tfopt.data import DATASETS, Arrays
from tfopt.errors import DataError
from tfopt.schema import Strict

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
_NPZ_PATH = "an .npz file with x_train/y_train/x_test/y_test (or x/y)"
_FOLDER_PATH = "a folder with one sub-folder of images per class"


class NpzOptions(Strict):
    path: str = Field(min_length=1, description=_NPZ_PATH)


class ImageFolderOptions(Strict):
    path: str = Field(min_length=1, description=_FOLDER_PATH)
    image_size: Optional[tuple[PositiveInt, PositiveInt]] = Field(
        None, description="[height, width]; default: the first image's"
    )
    color_mode: Literal["grayscale", "rgb"] = "grayscale"


def _existing(name: str, path: str, what: str) -> Path:
    found = Path(path).expanduser()
    if not found.exists():
        raise DataError(f"Dataset {name!r}: {found} does not exist. Fix: set data.path to {what}.")
    return found


@DATASETS.register("npz", options=NpzOptions)
def load_npz(options: NpzOptions) -> Arrays:
    """Your arrays in a NumPy .npz (``data.path``): ``x_train, y_train, x_test, y_test``, or ``x, y`` to split."""
    path = _existing("npz", options.path, _NPZ_PATH)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a single .npy array, not an archive
            raise ValueError("it holds one array, not named arrays")
        with loaded as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"Cannot read {path} as .npz: {e}. Fix: save it with numpy.savez.") from None
    names = [str(n) for n in arrays.pop("class_names")] if "class_names" in arrays else None
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        return Arrays(
            source=str(path), class_names=names, **{k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        )
    if {"x", "y"} <= arrays.keys():
        return Arrays(source=str(path), x=arrays["x"], y=arrays["y"], class_names=names)
    raise DataError(f"{path} has keys {sorted(arrays)}; need x_train, y_train, x_test, y_test (or x, y).")


@DATASETS.register("image_folder", options=ImageFolderOptions)
def load_image_folder(options: ImageFolderOptions) -> Arrays:
    """Your images, one folder per class (``data.path``/<class>/<image>), resized to ``data.image_size``."""
    from PIL import Image, UnidentifiedImageError

    root = _existing("image_folder", options.path, _FOLDER_PATH)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{root} needs at least two class sub-folders, found {classes}.")
    mode = "L" if options.color_mode == "grayscale" else "RGB"
    size = tuple(options.image_size) if options.image_size else None
    xs, ys = [], []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                img = Image.open(f).convert(mode)
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"Cannot read image {f}: {e}. Fix: remove or replace the file.") from None
            if size is None:
                size = (img.height, img.width)
            if (img.height, img.width) != size:
                img = img.resize((size[1], size[0]))
            xs.append(np.asarray(img, dtype="float32") / 255.0)
            ys.append(label)
    if not xs:
        raise DataError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}.")
    return Arrays(source=str(root), x=np.stack(xs), y=np.asarray(ys), class_names=classes)
