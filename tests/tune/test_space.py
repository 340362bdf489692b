"""The search space and the per-layer allocation, without training: pure functions on hand-made inputs."""

from __future__ import annotations

import pytest

from tfopt import config
from tfopt.results import LayerSensitivity
from tfopt.tune.sensitivity import allocate, weighted_sparsity
from tfopt.tune.space import declare, default_space, to_variant

SPARSITIES = [0.5, 0.75, 0.9]


def test_allocation_prunes_robust_layers_harder_and_meets_the_overall_target():
    # "robust" loses nothing until 90%; "fragile" loses 5 points at 50% already. Same weight counts.
    rows = [
        LayerSensitivity("robust", 1000, [0.95, 0.95, 0.94]),
        LayerSensitivity("fragile", 1000, [0.90, 0.80, 0.60]),
    ]
    for target in (0.4, 0.6, 0.75):
        alloc = allocate(rows, SPARSITIES, target, reference=0.95)
        assert alloc["robust"] > alloc["fragile"]
        assert weighted_sparsity(alloc, rows) == pytest.approx(target, abs=0.01)


def test_allocation_equalises_the_drop_of_equal_layers():
    rows = [LayerSensitivity(n, w, [0.9, 0.8, 0.5]) for n, w in (("a", 100), ("b", 5000))]
    alloc = allocate(rows, SPARSITIES, 0.7, reference=0.9)
    assert alloc["a"] == pytest.approx(alloc["b"], abs=1e-3) == pytest.approx(0.7, abs=0.01)


def test_a_trial_becomes_the_variant_a_yaml_would_write():
    rows = [LayerSensitivity("dense1", 1000, [0.95, 0.95, 0.94]), LayerSensitivity("conv1", 100, [0.9, 0.7, 0.5])]
    values = {
        "use_prune": True,
        "prune/allocation": "sensitivity",
        "prune/final_sparsity": 0.8,
        "use_cluster": True,
        "cluster/number_of_clusters": 16,
        "use_qat": True,
        "export": "int8",
        "finetune_epochs": 2,
    }
    variant, spec, epochs = to_variant(values, rows, SPARSITIES, reference=0.95)
    assert [s.name for s in variant.transforms] == ["prune", "cluster", "qat"]
    prune = variant.transforms[0].params
    assert prune["final_sparsity"] == 0.8 and prune["sparsities"]["dense1"] > prune["sparsities"]["conv1"]
    assert variant.transforms[1].params == {"number_of_clusters": 16}
    assert (spec.format, epochs) == ("int8", 2)
    cfg = config.loads("name: x\ndata: {name: digits}\nmodel: {name: small_cnn}\n")
    config.check_references(cfg.model_copy(update={"variants": {"t": variant}}))  # valid as a YAML variant
    values.update({"use_cluster": False, "use_qat": False, "prune/allocation": "uniform"})
    variant, _, _ = to_variant(values, rows, SPARSITIES, reference=0.95)
    assert variant.transforms[0].params == {"final_sparsity": 0.8}


def test_default_space_declares_each_technique_as_an_optional_step():
    import keras_tuner

    cfg = config.loads("name: x\ndata: {name: digits}\nmodel: {name: small_cnn}\nfinetune: {epochs: 10}\n")
    hp = declare(keras_tuner.HyperParameters(), default_space(cfg, "tf_keras"))
    names = {p.name: type(p).__name__ for p in hp.space}
    assert names["use_cluster"] == "Boolean" and names["use_qat"] == "Boolean"
    assert names["prune/final_sparsity"] == "Float" and names["cluster/number_of_clusters"] == "Int"
    assert hp.values["finetune_epochs"] == 4  # min(finetune.epochs, 4): the default keeps trials short


def test_list_valued_parameters_are_searchable_choices():
    import keras_tuner

    space = {"prune": {"use": True, "final_sparsity": 0.8, "skip": [[], ["classifier"]]}, "export": ["int8"]}
    hp = declare(keras_tuner.HyperParameters(), space)
    choice = next(p for p in hp.space if p.name == "prune/skip")
    values = dict(hp.values)
    for option in choice.values:
        values["prune/skip"] = option
        variant, _, _ = to_variant(values)
        assert variant.transforms[0].params["skip"] in ([], ["classifier"])
    assert len(choice.values) == 2


def test_float_layers_apply_to_int8_with_float_io_only():
    from tfopt.schema import ExportSpec

    assert ExportSpec(format="int8", float_layers=["classifier"]).label == "int8_mixed"
    for bad in ({"format": "dynamic"}, {"format": "int8", "integer_io": True}):
        with pytest.raises(ValueError, match="float_layers"):
            ExportSpec(float_layers=["classifier"], **bad)


def test_distillation_is_a_step_of_the_chain_with_its_student_searched():
    import keras_tuner

    students = [{"name": "small_cnn", "params": {"filters": 4, "dense": 16}}, {"name": "small_cnn"}]
    space = {
        "distill": {"use": [True, False], "student": students, "temperature": [1.0, 8.0], "alpha": 0.3},
        "prune": {"use": True, "final_sparsity": [0.5, 0.9]},
        "export": ["int8"],
    }
    cfg = config.loads(
        "name: x\ndata: {name: digits}\nmodel: {name: small_cnn}\nsearch: {space: "
        + __import__("json").dumps(space)
        + "}\n"
    )
    hp = declare(keras_tuner.HyperParameters(), cfg.search.space)
    assert {"use_distill", "distill/student", "distill/temperature", "distill/alpha"} <= set(hp.values)
    values = dict(hp.values, use_distill=True, **{"distill/student": hp.get("distill/student")})
    values["prune/allocation"] = "sensitivity"
    rows = [LayerSensitivity("dense1", 1000, [0.95, 0.95, 0.94]), LayerSensitivity("conv1", 100, [0.9, 0.7, 0.5])]
    variant, _, _ = to_variant(values, rows, SPARSITIES, reference=0.95)
    assert [s.name for s in variant.transforms] == ["distill", "prune"]
    distill = variant.transforms[0].params
    assert distill["student"] in students and distill["alpha"] == 0.3 and 1.0 <= distill["temperature"] <= 8.0
    assert "sparsities" not in variant.transforms[1].params  # the teacher's sensitivity says nothing of the student
    config.check_references(cfg.model_copy(update={"variants": {"t": variant}}))  # valid as a YAML variant
