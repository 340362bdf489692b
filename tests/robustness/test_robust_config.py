"""Bad pipeline YAML, through the CLI and the Python API: one line naming the problem and the fix.

Config errors are found before TensorFlow is imported, so each CLI case costs a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfopt import config
from tfopt.errors import ConfigError, TfoptError

from robust_helpers import assert_one_line_error, files_under, run_cli

BASE = "data: {name: digits}\nmodel: {name: small_cnn}\n"

CASES = {
    # id: (yaml text, needles in the single error line)
    "not_yaml": ("data: [unclosed\n", ["p.yaml:2:", "not valid YAML", "Fix"]),
    "tab_indent": ("data:\n\t- x\n", ["p.yaml:2:", "not valid YAML"]),
    "binary": ("\x00\x01garbage", ["not valid YAML"]),
    "not_a_mapping": ("- data\n- model\n", ["p.yaml:1:", "must be a mapping"]),
    "empty_file": ("", ["empty", "Fix: give at least 'data' and 'model'"]),
    "self_referencing_alias": ("a: &x [*x]\n" + BASE, ["unknown key 'a'"]),
    "epochs_not_a_number": (
        BASE + "train: {epochs: ten}\n",
        ["p.yaml:3:", "train.epochs", "Fix: use a whole number", "Received: epochs='ten'"],
    ),
    "data_not_a_mapping": ("data: digits\nmodel: {name: small_cnn}\n", ["p.yaml:1:", "data:", "Fix: write a mapping"]),
    "variants_a_list": (BASE + "variants: [a, b]\n", ["p.yaml:3:", "variants:", "Fix: write a mapping"]),
    "export_not_a_list": (BASE + "export: float32\n", ["export:", "Fix: write a list"]),
    "export_options_not_a_mapping": (BASE + "export: [{int8: 3}]\n", ["'int8' must be a mapping", "Fix:"]),
    "two_transforms_in_one_item": (
        BASE + "variants: {v: [{prune: {final_sparsity: 0.5}, prun: {}}]}\n",
        ["one transform per list item", "Fix:"],
    ),
    "misspelt_top_key": (
        BASE + "variant: {v: [prune]}\n",
        ["p.yaml:3:", "unknown key 'variant'", "Did you mean 'variants'?"],
    ),
    "misspelt_nested_key": (
        "data: {name: digits, test_fration: 0.2}\nmodel: {name: small_cnn}\n",
        ["'data.test_fration'", "Did you mean 'test_fraction'?"],
    ),
    "misspelt_transform_param": (
        BASE + "variants: {v: [{prune: {final_sparsty: 0.5}}]}\n",
        ["p.yaml:3:", "Did you mean 'final_sparsity'?"],
    ),
    "misspelt_transform": (
        BASE + "variants: {v: [{prun: {final_sparsity: 0.5}}]}\n",
        ["Unknown transform 'prun'", "Did you mean 'prune'?"],
    ),
    "misspelt_format": (BASE + "export: [flaot32]\n", ["Unknown export format 'flaot32'", "Did you mean 'float32'?"]),
    "sparsity_1_5": (
        BASE + "variants: {v: [{prune: {final_sparsity: 1.5}}]}\n",
        ["final_sparsity", "Fix: use a value in that range", "Received: final_sparsity=1.5"],
    ),
    "negative_epochs": (
        BASE + "train: {epochs: -3}\n",
        ["train.epochs", "greater than or equal to 0", "Received: epochs=-3"],
    ),
    "negative_finetune_epochs": (BASE + "finetune: {epochs: -1}\n", ["finetune.epochs", "Received: epochs=-1"]),
    "infinite_learning_rate": (
        BASE + "train: {learning_rate: .inf}\n",
        ["learning_rate", "finite number", "Received: learning_rate=inf"],
    ),
    "nan_tolerance": (BASE + "export: [{float32: {tolerance: .nan}}]\n", ["tolerance", "finite"]),
    "nan_model_param": (
        BASE.replace("{name: small_cnn}", "{name: small_cnn, params: {filters: .nan}}"),
        ["p.yaml:2:", "model.params.filters", "not a finite number", "Received: filters=nan"],
    ),
    "seed_too_large": (BASE + "seed: 99999999999999999999999\n", ["seed", "less than 4294967296"]),
    "empty_variant": (
        BASE + "variants: {v: []}\n",
        ["p.yaml:3:", "variants.v", "at least 1 item", "Fix: give at least one item"],
    ),
    "empty_variant_long_form": (BASE + "variants: {v: {transforms: []}}\n", ["variants.v", "at least 1 item"]),
    "null_variant": (BASE + "variants: {v: }\n", ["variants.v", "Fix: write a mapping"]),
    "bad_optimizer": (
        BASE + "train: {optimizer: adamm}\n",
        ["train.optimizer", "'adam'", "Fix: use one of those values"],
    ),
    "bad_run_name": ("name: 'a b'\n" + BASE, ["name:", "letters, digits"]),
    "reserved_variant": (BASE + "variants: {baseline: [{prune: {final_sparsity: 0.5}}]}\n", ["reserved"]),
    "unknown_dataset": (
        "data: {name: digitz}\nmodel: {name: small_cnn}\n",
        ["Unknown dataset 'digitz'", "Did you mean 'digits'?"],
    ),
}


# Every case goes through the API below; these also go through a real `python -m tfopt` process.
CLI_CASES = [
    "not_yaml",
    "binary",
    "empty_file",
    "epochs_not_a_number",
    "variants_a_list",
    "two_transforms_in_one_item",
    "misspelt_nested_key",
    "misspelt_format",
    "sparsity_1_5",
    "negative_epochs",
    "infinite_learning_rate",
    "empty_variant",
]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_bad_yaml(tmp_path: Path, case: str) -> None:
    text, needles = CASES[case]
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert_one_line_error(run_cli("run", str(tmp_path / "p.yaml"), "--out", str(out)), *needles)
    assert files_under(out) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_bad_yaml_raises_config_error(case: str) -> None:
    text, needles = CASES[case]
    with pytest.raises(ConfigError) as e:
        config.loads(text, source="p.yaml", default_name="p")
    assert "\n" not in str(e.value)
    for needle in needles:
        assert needle in str(e.value)


def test_zero_clusters_if_clustering_exists() -> None:
    from tfopt.transforms import TECHNIQUES

    if "cluster" not in TECHNIQUES:
        pytest.skip("no cluster transform registered yet")
    with pytest.raises(ConfigError, match=r"number_of_clusters.*Received: number_of_clusters=0"):
        config.loads(BASE + "variants: {v: [{cluster: {number_of_clusters: 0}}]}\n", source="p.yaml")


def test_pipeline_file_errors(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("run", str(tmp_path / "nope.yaml")), "Pipeline file not found", "Fix:")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    assert_one_line_error(run_cli("run", str(tmp_path / "bin.yaml")), "Cannot read pipeline file")
    assert_one_line_error(run_cli("run", str(tmp_path)), "Cannot read pipeline file")


# --- property-based: structurally plausible pipelines ---------------------------------------------

# Mostly in-range values, so generated pipelines get past the first field and exercise the deeper checks.
_num = st.one_of(
    st.integers(1, 300),
    st.integers(1, 300),
    st.integers(-2, 300),
    st.floats(-2, 300),
    st.sampled_from([float("nan"), float("inf"), "1", "x", None, True]),
)
_frac = st.one_of(
    st.floats(0, 0.99), st.floats(0, 0.99), st.floats(-0.5, 1.5), st.sampled_from([0, 1, "0.5", None, float("nan")])
)
_patterns = st.one_of(
    st.none(), st.lists(st.sampled_from(["conv*", "dense1", "classifier", "", "*"]), max_size=3), st.just("conv1")
)
_prune = st.fixed_dictionaries(
    {},
    optional={
        "final_sparsity": _frac,
        "initial_sparsity": _frac,
        "schedule": st.sampled_from(["polynomial", "constant", "cubic", 3]),
        "begin_step": _num,
        "end_step": _num,
        "frequency": _num,
        "power": _num,
        "layers": _patterns,
        "skip": _patterns,
        "sparsity_m_by_n": st.sampled_from(["2:4", "4:2", "x", 3]),
        "final_sparsty": _frac,
    },
)
_cluster = st.fixed_dictionaries(
    {},
    optional={
        "number_of_clusters": _num,
        "layers": _patterns,
        "skip": _patterns,
        "init": st.sampled_from(["kmeans_plus_plus", "linear", "x"]),
    },
)
_transform = st.one_of(
    st.sampled_from(["prune", "cluster", "qat", "prun"]),
    st.builds(lambda p: {"prune": p}, _prune),
    st.builds(lambda p: {"cluster": p}, _cluster),
    st.builds(lambda p: {"qat": p}, st.fixed_dictionaries({}, optional={"skip": _patterns})),
    st.builds(lambda a, b: {"prune": a, "cluster": b}, _prune, _cluster),
)
_finetune = st.fixed_dictionaries(
    {}, optional={"epochs": _num, "learning_rate": _num, "batch_size": _num, "epoch": _num}
)
_variant = st.one_of(
    st.lists(_transform, max_size=3),
    st.fixed_dictionaries({"transforms": st.lists(_transform, max_size=3)}, optional={"finetune": _finetune}),
    st.none(),
    st.just("prune"),
)
_format = st.sampled_from(["float32", "dynamic", "float16", "int8", "int4", "flaot32"])
_export_item = st.one_of(
    _format,
    st.builds(
        lambda f, o: {f: o},
        _format,
        st.fixed_dictionaries(
            {},
            optional={
                "tolerance": _num,
                "integer_io": st.sampled_from([True, False, "yes"]),
                "calibration_samples": _num,
                "sparse": st.booleans(),
            },
        ),
    ),
    st.builds(lambda f: {f: 3}, _format),
)
_pipeline = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {"name": st.sampled_from(["digits", "mnist_5k", "npz", "digitz", 3])},
            optional={
                "test_fraction": _frac,
                "val_fraction": _frac,
                "subset": _num,
                "image_size": st.sampled_from([[8, 8], [8], "8x8"]),
            },
        ),
        "model": st.one_of(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["small_cnn", "small_cn"])},
                optional={"params": st.fixed_dictionaries({}, optional={"filters": _num})},
            ),
            st.fixed_dictionaries(
                {"path": st.sampled_from(["m.keras", ""])},
                optional={"safe_mode": st.sampled_from([True, False, "no"]), "name": st.just("small_cnn")},
            ),
        ),
    },
    optional={
        "name": st.sampled_from(["ok", "run_2", "x.y-z", "a b", ""]),
        "seed": _num,
        "train": st.fixed_dictionaries(
            {},
            optional={
                "epochs": _num,
                "batch_size": _num,
                "optimizer": st.sampled_from(["adam", "sgd", "adamm"]),
                "learning_rate": _num,
                "early_stopping": st.sampled_from([None, {"patience": 2}, {"patience": 0}]),
                "epoch": _num,
            },
        ),
        "finetune": _finetune,
        "variants": st.one_of(
            st.dictionaries(st.sampled_from(["v1", "v2", "baseline", "bad name"]), _variant, max_size=3),
            st.lists(st.just("v"), max_size=1),
        ),
        "export": st.one_of(st.lists(_export_item, max_size=4), _format),
        "evaluate": st.fixed_dictionaries({}, optional={"latency_runs": _num, "latency_warmup": _num, "threads": _num}),
        "evalute": st.just({}),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pipeline)
def test_plausible_pipelines_load_or_fail_cleanly(data: dict) -> None:
    """Any plausible pipeline either loads into a consistent config or raises ConfigError, one line per problem."""
    text = yaml.safe_dump(data, sort_keys=False)
    try:
        cfg = config.loads(text, source="p.yaml", default_name="p")
    except ConfigError as e:
        msg = str(e)
        assert msg and "Traceback" not in msg and "Value error," not in msg
        assert all(line.startswith("p.yaml") for line in msg.splitlines()), msg
        return
    except TfoptError as e:  # any other tfopt error from loading a config is a bug: it should be a ConfigError
        raise AssertionError(f"{type(e).__name__} instead of ConfigError: {e}") from None
    # Loaded: every step's parameters validate, and the config survives a dump/load round trip.
    for variant in cfg.variants.values():
        for spec in variant.transforms:
            config.transform_config(spec)
    again = config.loads(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), source="again.yaml")
    assert again == cfg


_valid_prune = st.fixed_dictionaries(
    {"final_sparsity": st.floats(0, 0.99)},
    optional={
        "schedule": st.sampled_from(["polynomial", "constant"]),
        "begin_step": st.integers(0, 5),
        "power": st.floats(0.5, 5),
        "skip": st.lists(st.sampled_from(["conv1", "classifier"]), max_size=2),
    },
)
_valid = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {"name": st.sampled_from(["digits", "mnist_5k"])},
            optional={"test_fraction": st.floats(0.05, 0.5), "val_fraction": st.floats(0, 0.5)},
        ),
        "model": st.just({"name": "small_cnn"}),
    },
    optional={
        "seed": st.integers(0, 2**32 - 1),
        "train": st.fixed_dictionaries(
            {},
            optional={
                "epochs": st.integers(0, 100),
                "batch_size": st.integers(1, 512),
                "learning_rate": st.floats(1e-6, 1.0),
            },
        ),
        "variants": st.dictionaries(
            st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda s: s != "baseline"),
            st.lists(st.builds(lambda p: {"prune": p}, _valid_prune), min_size=1, max_size=1),
            max_size=3,
        ),
        "export": st.lists(
            st.sampled_from(["float32", "dynamic", "float16", "int8"]), min_size=1, max_size=4, unique=True
        ),
    },
)


@settings(max_examples=100, deadline=None)
@given(_valid)
def test_valid_pipelines_always_load(data: dict) -> None:
    """The other direction: a pipeline with every value in range is never refused."""
    cfg = config.loads(yaml.safe_dump(data), source="p.yaml", default_name="p")
    assert set(cfg.variants) == set(data.get("variants", {}))
    assert [e.format for e in cfg.export] == data.get("export", ["float32"])
