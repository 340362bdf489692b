"""The pipeline schema: strict keys with line numbers, ranges, shorthands, and shipped pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfopt import config
from tfopt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
name: t
data: {name: digits}
model: {name: small_cnn}
train: {epochs: 2}
variants:
  pruned: [{prune: {final_sparsity: 0.5}}]
export: [float32, {int8: {integer_io: true, tolerance: 0.3}}]
"""


@pytest.mark.parametrize("path", sorted((ROOT / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pipelines_load(path: Path) -> None:
    cfg = config.load(path)
    assert cfg.name == path.stem


def test_shorthands_expand() -> None:
    cfg = config.loads(GOOD)
    assert [s.name for s in cfg.variants["pruned"].transforms] == ["prune"]
    assert config.transform_config(cfg.variants["pruned"].transforms[0]).final_sparsity == 0.5
    assert [e.format for e in cfg.export] == ["float32", "int8"]
    assert cfg.export[1].integer_io and cfg.export[1].max_abs_diff == 0.3
    assert cfg.export[0].max_abs_diff == config.DEFAULT_TOLERANCE["float32"]


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        config.loads(text, source="p.yaml")
    return str(e.value)


def test_misspelt_key_names_line_and_suggests() -> None:
    msg = _error(GOOD.replace("train: {epochs: 2}", "train: {epoch: 2}"))
    assert msg.startswith("p.yaml:4:")
    assert "'train.epoch'" in msg and "Did you mean 'epochs'?" in msg


def test_misspelt_transform_param_names_line() -> None:
    msg = _error(GOOD.replace("final_sparsity: 0.5", "final_sparsty: 0.5"))
    assert msg.startswith("p.yaml:6:") and "Did you mean 'final_sparsity'?" in msg


@pytest.mark.parametrize("value", ["1.5", "1.0", "-0.1"])
def test_sparsity_out_of_range(value: str) -> None:
    msg = _error(GOOD.replace("final_sparsity: 0.5", f"final_sparsity: {value}"))
    assert msg.startswith("p.yaml:6:") and "final_sparsity" in msg and f"Received: final_sparsity={float(value)!r}" in msg


def test_negative_epochs() -> None:
    msg = _error(GOOD.replace("epochs: 2", "epochs: -1"))
    assert msg.startswith("p.yaml:4:") and "greater than or equal to 0" in msg


@pytest.mark.parametrize(
    "old,new,needle,known",
    [
        ("name: digits", "name: digitz", "Unknown dataset 'digitz'. Did you mean 'digits'?", "mnist_5k"),
        ("name: small_cnn", "name: small_cn", "Unknown model 'small_cn'", "small_cnn"),
        ("{prune:", "{prun:", "Unknown transform 'prun'", "prune"),
    ],
)
def test_unknown_registry_names(old: str, new: str, needle: str, known: str) -> None:
    msg = _error(GOOD.replace(old, new))
    assert needle in msg and "Known:" in msg and known in msg
    assert msg.startswith("p.yaml:")


def test_not_yaml_and_empty_and_duplicates() -> None:
    assert _error("data: [unclosed\n").startswith("p.yaml:")
    assert "empty" in _error("")
    assert "appears twice" in _error(GOOD + "seed: 1\nseed: 2\n")
    assert "mapping" in _error("- a\n- b\n")


def test_export_and_variant_rules() -> None:
    assert "listed twice" in _error(GOOD.replace("export: [float32,", "export: [float32, float32,"))
    assert "'integer_io' applies to the int8 format only" in _error(GOOD.replace("export: [float32,", "export: [{float16: {integer_io: true}},"))
    assert "reserved" in _error(GOOD.replace("  pruned:", "  baseline:"))
    assert "initial_sparsity must not exceed final_sparsity" in _error(GOOD.replace("final_sparsity: 0.5", "final_sparsity: 0.5, initial_sparsity: 0.6"))
    assert "exactly one of 'name'" in _error(GOOD.replace("model: {name: small_cnn}", "model: {name: small_cnn, path: x.keras}"))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        config.load("no/such/pipeline.yaml")


_keys = st.sampled_from(["name", "data", "model", "train", "variants", "export", "seed", "epochs", "nme", "finetune", "evaluate"])
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=8), st.sampled_from(["digits", "small_cnn", "prune", "int8"]))
_values = st.recursive(_leaf, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(_keys, c, max_size=4)), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_any_mapping_loads_or_raises_config_error(data: dict) -> None:
    """Property: the loader never leaks a non-tfopt exception, whatever the mapping."""
    import yaml

    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    try:
        cfg = config.loads(text)
    except ConfigError:
        return
    assert isinstance(cfg, config.PipelineConfig)
