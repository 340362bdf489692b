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
    assert (
        msg.startswith("p.yaml:6:") and "final_sparsity" in msg and f"Received: final_sparsity={float(value)!r}" in msg
    )


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
    assert "'integer_io' applies to the int8 format only" in _error(
        GOOD.replace("export: [float32,", "export: [{float16: {integer_io: true}},")
    )
    assert "reserved" in _error(GOOD.replace("  pruned:", "  baseline:"))
    assert "initial_sparsity must not exceed final_sparsity" in _error(
        GOOD.replace("final_sparsity: 0.5", "final_sparsity: 0.5, initial_sparsity: 0.6")
    )
    assert "exactly one of 'name'" in _error(
        GOOD.replace("model: {name: small_cnn}", "model: {name: small_cnn, path: x.keras}")
    )


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        config.load("no/such/pipeline.yaml")


_keys = st.sampled_from(
    ["name", "data", "model", "train", "variants", "export", "seed", "epochs", "nme", "finetune", "evaluate"]
)
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["digits", "small_cnn", "prune", "int8"]),
)
_values = st.recursive(
    _leaf, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(_keys, c, max_size=4)), max_leaves=12
)


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


# ---------------------------------------------------------------- each dataset's and model's own options

DATA_MODEL = "name: t\ndata: {data}\nmodel:\n  name: {model}\n  params: {params}\n"


def _options_error(data: str = "{name: digits}", model: str = "small_cnn", params: str = "{}") -> str:
    return _error(DATA_MODEL.format(data=data, model=model, params=params))


def test_option_of_another_dataset_is_refused_with_its_known_keys() -> None:
    msg = _options_error(data="{name: digits, color_mode: rgb}")
    assert msg.startswith("p.yaml:2: unknown key 'data.color_mode': dataset 'digits' has no option 'color_mode'.")
    assert "Known keys here: name, test_fraction, val_fraction, subset." in msg and "Received: color_mode='rgb'" in msg
    msg = _options_error(data="{name: image_folder, path: imgs, colour_mode: rgb}")
    assert "dataset 'image_folder' has no option 'colour_mode'. Did you mean 'color_mode'?" in msg
    assert "Known keys here: name, test_fraction, val_fraction, subset, path, image_size, color_mode." in msg


@pytest.mark.parametrize(
    "data,needles",
    [
        (
            "{name: image_folder, path: imgs, image_size: [32, x]}",
            ["data.image_size[1]", "Fix: use a whole number", "Received: image_size[1]='x'"],
        ),
        (
            "{name: image_folder, path: imgs, image_size: [0, 8]}",
            ["data.image_size[0]", "greater than 0", "Received: image_size[0]=0"],
        ),
        (
            "{name: image_folder, path: imgs, color_mode: cmyk}",
            ["data.color_mode", "'grayscale' or 'rgb'", "Received: color_mode='cmyk'"],
        ),
        ("{name: npz}", ["missing required key 'data.path' (an .npz file with", "Fix: add it."]),
        ("{name: text_csv, path: ''}", ["data.path", "at least 1 character", "Fix: give a non-empty value"]),
    ],
)
def test_bad_dataset_option_names_line_key_and_fix(data: str, needles: list[str]) -> None:
    msg = _options_error(data=data)
    assert msg.startswith("p.yaml:2: ") and "\n" not in msg, msg
    assert all(n in msg for n in needles), msg


@pytest.mark.parametrize(
    "model,params,needles",
    [
        ("small_cnn", "{filters: x}", ["model.params.filters", "Fix: use a whole number", "Received: filters='x'"]),
        ("small_cnn", "{filters: 0}", ["model.params.filters", "greater than 0", "Received: filters=0"]),
        ("small_cnn", "{dropout: 1}", ["model.params.dropout", "less than 1", "Received: dropout=1"]),
        (
            "small_cnn",
            "{alpha: 0.5}",
            [
                "unknown key 'model.params.alpha': model 'small_cnn' has no option 'alpha'",
                "Known keys here: filters, dense, dropout.",
            ],
        ),
        ("small_cnn", "{filter: 8}", ["Did you mean 'filters'?"]),
        (
            "vgg16",
            "{image_size: 16}",
            ["model.params.image_size", "at least 32x32", "image_size is 16x16", "Received: image_size=16"],
        ),
        ("vgg16", "{image_size: [32, big]}", ["model.params.image_size[1]", "whole number"]),
        ("vgg16", "{fit: crop}", ["model.params.fit", "'pad' or 'resize'", "Received: fit='crop'"]),
        ("vgg16", "{dense: -1}", ["model.params.dense", "greater than or equal to 0"]),
        (
            "bert",
            "{seq_len: 1000}",
            ["model.params.seq_len", "seq_len must be an integer in 3..512", "Received: seq_len=1000"],
        ),
        ("bert", "{preset: tiny, seqlen: 32}", ["model 'bert' has no option 'seqlen'", "Did you mean 'seq_len'?"]),
    ],
)
def test_bad_model_param_names_line_key_and_fix(model: str, params: str, needles: list[str]) -> None:
    msg = _options_error(model=model, params=params)
    assert msg.startswith("p.yaml:5: ") and "\n" not in msg, msg
    assert all(n in msg for n in needles), msg


def test_several_bad_params_give_one_line_each() -> None:
    lines = _options_error(params="{filters: 0, dense: x}").splitlines()
    assert len(lines) == 2 and all(line.startswith("p.yaml:5: model.params.") for line in lines)


def test_good_options_load_as_written() -> None:
    cfg = config.loads(
        DATA_MODEL.format(
            data="{name: image_folder, path: imgs, image_size: [32, 32], test_fraction: 0.3}",
            model="vgg16",
            params="{image_size: 32, fit: pad}",
        ),
        source="p.yaml",
    )
    assert cfg.data.options == {"path": "imgs", "image_size": [32, 32]} and cfg.data.test_fraction == 0.3
    assert cfg.model.params == {"image_size": 32, "fit": "pad"}


def test_empty_export_lists_the_registered_formats() -> None:
    from tfopt.export import EXPORTERS

    msg = _error(GOOD.replace("export: [float32, {int8: {integer_io: true, tolerance: 0.3}}]", "export: []"))
    assert msg.startswith("p.yaml:7: export: list at least one format out of: ")
    assert all(name in msg for name in EXPORTERS) and "lq_weight_only_int4" in msg


def test_loading_never_imports_tensorflow() -> None:
    """The CLI reports config errors before TensorFlow loads, though the loader imports every registry."""
    import subprocess
    import sys

    code = (
        "import sys; from tfopt import config; config.load('pipelines/quickstart.yaml'); "
        "bad = sorted(m for m in ('tensorflow', 'tf_keras', 'keras', 'keras_hub') if m in sys.modules); "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_readme_pipeline_example_is_valid(tmp_path) -> None:
    """The ten-line YAML the README shows is a pipeline tfopt accepts (docs cannot rot)."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "readme.yaml").write_text(example)
    cfg = config.load(tmp_path / "readme.yaml")
    assert list(cfg.variants) == ["pruned_80", "pcqat"] and len(example.strip().splitlines()) <= 10
