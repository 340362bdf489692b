"""``tfopt tune`` on real data (scikit-learn digits, a tiny CNN, 1 fine-tune epoch): a search killed after its
second trial resumes with those trials kept; run.json, the files and the report say what was chosen and
how; shuffling the test labels changes no choice (no leakage); a fixed seed repeats the search."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tfopt import config
from tfopt.errors import ConfigError
from tfopt.results import load_run

TINY = """\
name: {name}
seed: 0
data: {{name: digits, test_fraction: 0.2, val_fraction: 0.15}}
model: {{name: small_cnn, params: {{filters: 8, dense: 32}}}}
train: {{epochs: 4, batch_size: 64, verbose: 0}}
finetune: {{epochs: 1}}
export: [float32]
evaluate: {{latency_runs: 0}}
search:
  max_accuracy_drop: {drop}
  max_trials: 3
  tuner: random
  sensitivity: {{sparsities: [0.5, 0.9]}}
  space:
    prune: {{use: true, final_sparsity: {sparsity}}}
    export: [int8]
    finetune_epochs: 1
"""


def _cfg(name: str = "tiny_tune", drop: float = 0.02, sparsity: str = "[0.4, 0.9]"):
    return config.loads(TINY.format(name=name, drop=drop, sparsity=sparsity), source="tiny.yaml")


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """One search killed (an exception from the trial-end hook) after its 2nd trial, then started again."""
    from tfopt.tune import tune

    root = tmp_path_factory.mktemp("tune")
    before, lines = [], []

    def kill_after_two(trial):
        before.append(trial)
        if len(before) == 2:
            raise Killed()

    with pytest.raises(Killed):
        tune(_cfg(), root=root, log=lines.append, after_trial=kill_after_two)
    assert not (root / "reports" / "tiny_tune" / "run.json").exists()  # nothing published by the killed run
    run = tune(_cfg(), root=root, log=lines.append)
    return root, run, before, lines


def test_killed_search_resumes_with_its_finished_trials(resumed):
    root, run, before, lines = resumed
    assert any("2 finished trial(s) kept" in line for line in lines)
    assert len(run.trials) == 3
    for old in before:  # the two finished trials are the same records, not run again
        new = next(t for t in run.trials if t.trial_id == old.trial_id)
        assert (new.params, new.val_accuracy, new.objective, new.seconds) == (
            old.params,
            old.val_accuracy,
            old.objective,
            old.seconds,
        )
    assert sum(t.restored for t in run.training if t.variant == "baseline") == 1  # the baseline was not retrained
    assert not (root / "reports" / ".tiny_tune.tune").exists()  # removed once published


def test_recommendation_is_the_best_trial_within_budget_on_validation(resumed):
    root, run, _, _ = resumed
    ref = run.result("baseline", "float32")
    assert run.tune.reference_val_accuracy == ref.val_accuracy
    done = [t for t in run.trials if t.status == "COMPLETED"]
    margin = run.tune.margin
    assert margin == 1.0 and all(t.val_drop_se is not None for t in done)  # the default: one standard error
    within = [t for t in done if t.val_accuracy - margin * t.val_drop_se >= ref.val_accuracy - 0.02 - 1e-12]
    assert [t.met_budget for t in done] == [t in within for t in done]
    rec = run.recommended
    if within:  # the smallest file among the trials within the budget, on validation
        best = min(within, key=lambda t: (t.objective, -t.val_accuracy))
        assert (rec.variant, rec.met) == (best.variant, True)
    else:
        assert not rec.met
    chosen = run.result(rec.variant, rec.format)
    path = Path(chosen.path)
    assert path.parent == root / "models" / "tiny_tune" and path.is_file()
    assert chosen.gzip_bytes == next(t.objective for t in done if t.variant == rec.variant)
    # The test figure is the file's own accuracy on the test split, measured after the choice.
    from tfopt.data import load
    from tfopt.evaluate.litert import TfliteRunner

    splits = load(_cfg().data, seed=0)
    probs = TfliteRunner(path).predict(splits.x_test)
    assert chosen.accuracy == pytest.approx(float(np.mean(probs.argmax(-1) == splits.y_test)), abs=1e-6)
    # The drop's standard error is paired on the validation images: recomputed from the two files.
    from tfopt.report.recommend import paired_drop_se

    ref_path = root / "models" / "tiny_tune" / "baseline_float32.tflite"
    right = [(TfliteRunner(p).predict(splits.x_val).argmax(-1) == splits.y_val).tolist() for p in (ref_path, path)]
    trial = next(t for t in done if t.variant == rec.variant)
    assert trial.val_drop_se == pytest.approx(paired_drop_se(*right), abs=1e-6)
    assert all(f"{t.variant}/{t.format}" in run.pareto or t.path is None for t in done)
    # Only the baseline's rows and the reported trials' test rows are in results.
    assert {r.variant for r in run.results} == {"baseline"} | {p.split("/")[0] for p in run.pareto} | {rec.variant}


def test_int8_trials_that_miss_the_budget_fall_back_to_float_layers(resumed):
    """Intel Neural Compressor's fallback: the most sensitive layers (by the int8 accuracy with each left
    float) are left float, one more at a time, until the file meets the budget or 2 are float."""
    root, run, _, _ = resumed
    order = sorted(run.tune.sensitivity, key=lambda r: (-r.kept_float_val_accuracy, -r.quant_error))
    for t in (t for t in run.trials if t.status == "COMPLETED"):
        floats = t.params.get("int8/float_layers")
        if floats is None:  # full int8 met the budget at once
            assert t.format == "int8" and t.met_budget
        else:
            assert t.format == "int8_mixed" and floats == [r.layer for r in order[: len(floats)]]
            assert t.met_budget or len(floats) == 2
    from tfopt.evaluate.weights import tflite_weight_stats

    rec = run.recommended
    if rec.format == "int8_mixed":
        floats = next(t for t in run.trials if t.variant == rec.variant).params["int8/float_layers"]
        stats = {s.layer: s.dtype for s in tflite_weight_stats(rec.path)}
        assert all(stats[name] == "FLOAT32" for name in floats), stats


def test_run_json_and_report(resumed):
    root, run, _, _ = resumed
    loaded = load_run(root / "reports" / "tiny_tune" / "run.json")
    assert loaded.trials == run.trials and loaded.recommended == run.recommended
    assert [s.layer for s in loaded.tune.sensitivity] == ["conv1", "conv2", "dense1", "classifier"]
    # Pruning a layer alone to 90% costs at least as much as to 50%, within one validation example.
    n_val = loaded.dataset.num_val
    assert all(s.pruned_val_accuracy[1] <= s.pruned_val_accuracy[0] + 1 / n_val + 1e-9 for s in loaded.tune.sensitivity)
    assert all(s.quant_error is not None and s.quant_error >= 0 for s in loaded.tune.sensitivity)
    ref = loaded.result("baseline", "float32").val_accuracy
    # The int8 file with one layer left float (selective quantization) is close to the float model.
    assert all(abs(s.kept_float_val_accuracy - ref) <= 0.05 for s in loaded.tune.sensitivity)
    md = (root / "reports" / "tiny_tune" / "report.md").read_text()
    assert "the test split was used once, for the reported models" in md
    assert "Per-layer sensitivity" in md and "tune_trials.png" in md
    assert (root / "reports" / "tiny_tune" / "tune_trials.png").stat().st_size > 1000


def test_bad_search_values_are_file_line_errors():
    bad = TINY.format(name="x", drop=0.01, sparsity="[0.4, 0.9]")
    cases = {
        bad.replace("max_trials: 3", "max_trials: 0"): ("tiny.yaml:11:", "max_trials"),
        bad.replace("tuner: random", "tuner: grid"): ("tiny.yaml:12:", "tuner"),
        bad.replace("final_sparsity:", "final_sparsty:"): ("tiny.yaml:15:", "final_sparsty"),
        bad.replace("export: [int8]", "export: [int9]"): ("tiny.yaml:16:", "int9"),
        bad.replace("max_accuracy_drop: 0.01", "max_accuracy_drop: 2"): ("tiny.yaml:10:", "max_accuracy_drop"),
        bad.replace("    prune:", "    distill_x:"): ("tiny.yaml:15:", "distill_x"),
    }
    for text, (where, word) in cases.items():
        with pytest.raises(ConfigError) as e:
            config.loads(text, source="tiny.yaml")
        assert str(e.value).startswith(where) and word in str(e.value) and "Fix:" in str(e.value), str(e.value)


@pytest.mark.slow
def test_shuffled_test_labels_change_no_choice_and_the_seed_repeats_the_search(resumed, tmp_path, monkeypatch):
    """The same search with the test split's labels shuffled: same trials, same figures, same choice."""
    from tfopt.tune import search as search_mod
    from tfopt.tune import tune

    _, run, _, _ = resumed
    real = search_mod.load_data

    def shuffled(*args, **kwargs):
        splits = real(*args, **kwargs)
        return dataclasses.replace(splits, y_test=np.random.default_rng(1).permutation(splits.y_test))

    monkeypatch.setattr(search_mod, "load_data", shuffled)
    again = tune(_cfg(), root=tmp_path, log=lambda _: None)
    assert [(t.params, t.val_accuracy, t.objective) for t in again.trials] == [
        (t.params, t.val_accuracy, t.objective) for t in run.trials
    ]
    assert (again.recommended.variant, again.pareto) == (run.recommended.variant, run.pareto)
    ref_before, ref_after = run.result("baseline", "float32"), again.result("baseline", "float32")
    assert ref_after.accuracy < ref_before.accuracy - 0.3  # the labels really were shuffled (about 10% correct)


def test_a_pipeline_without_a_validation_split_is_refused_before_anything_trains(tmp_path):
    from tfopt.errors import TfoptError
    from tfopt.tune import tune

    lines: list[str] = []
    cfg = config.loads(
        TINY.format(name="noval", drop=0.02, sparsity="0.5").replace("val_fraction: 0.15", "val_fraction: 0")
    )
    with pytest.raises(TfoptError, match=r"chooses on the validation split.*Fix: set data.val_fraction above 0"):
        tune(cfg, root=tmp_path, log=lines.append)
    assert not any("baseline" in line for line in lines), lines


@pytest.mark.slow
def test_a_budget_no_trial_meets_still_exports_the_closest_file(tmp_path):
    from tfopt.tune import tune

    lines: list[str] = []
    run = tune(_cfg("hard", drop=0.0, sparsity="0.97"), root=tmp_path, log=lines.append, max_trials=1)
    ref = run.result("baseline", "float32")
    (trial,) = run.trials
    assert trial.val_accuracy < ref.val_accuracy and not trial.met_budget  # 97% sparsity, one epoch: below it
    assert trial.format == "int8_mixed" and len(trial.params["int8/float_layers"]) == 2  # the fallback was tried
    assert not run.recommended.met and run.recommended.variant == trial.variant
    assert Path(run.recommended.path).is_file()
    assert any("NO trial met the budget" in line for line in lines)
    assert "NO trial met the accuracy budget" in (tmp_path / "reports" / "hard" / "report.md").read_text()
    assert json.loads((tmp_path / "reports" / "hard" / "run.json").read_text())["recommended"]["met"] is False


@pytest.mark.slow
def test_two_localhost_workers_share_one_search(tmp_path):
    """keras-tuner's chief/worker mode: a chief process serves the oracle, two workers run its trials."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yaml_path = tmp_path / "shared.yaml"
    yaml_path.write_text(
        TINY.format(name="shared", drop=0.02, sparsity="[0.4, 0.9]").replace("max_trials: 3", "max_trials: 4")
    )
    repo = Path(__file__).resolve().parents[2]
    procs = []
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(port), PYTHONPATH=str(repo), CUDA_VISIBLE_DEVICES="")  # fmt: skip
        cmd = [sys.executable, "-m", "tfopt", "tune", str(yaml_path), "--out", str(tmp_path)]
        procs.append(
            subprocess.Popen(cmd, env=env, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(o[-3000:] for o in outs)
    run = load_run(tmp_path / "reports" / "shared" / "run.json")
    assert len(run.trials) == 4 and len({t.trial_id for t in run.trials}) == 4
    assert {t.tuner_id for t in run.trials} == {"tuner0", "tuner1"}  # both workers ran trials of the one search
    assert Path(run.recommended.path).is_file()


@pytest.mark.slow
def test_search_baseline_trains_the_best_training_values_found_on_validation(tmp_path):
    from tfopt.tune import tune

    text = TINY.format(name="hpo", drop=0.02, sparsity="0.5").replace(
        "  tuner: random\n", "  tuner: random\n  baseline: {max_trials: 2, epochs: [2, 5], model: {dense: [16, 48]}}\n"
    )
    run = tune(config.loads(text, source="hpo.yaml"), root=tmp_path, log=lambda _: None, max_trials=1)
    searched = [t for t in run.trials if t.variant.startswith("baseline_trial_")]
    assert len(searched) == 2 and len({json.dumps(t.params, sort_keys=True) for t in searched}) == 2
    best = max(searched, key=lambda t: (t.val_accuracy, -int(t.trial_id)))
    assert run.config["train"]["epochs"] == best.params["train/epochs"]
    assert run.config["model"]["params"]["dense"] == best.params["model/dense"]
    # The baseline trained once more with those values reaches the validation accuracy its trial had.
    assert run.result("baseline", "keras").val_accuracy == pytest.approx(best.val_accuracy, abs=0.03)
    assert len([t for t in run.trials if t.variant.startswith("trial_")]) == 1


def test_bad_search_baseline_keys_are_file_line_errors():
    text = TINY.format(name="x", drop=0.01, sparsity="0.5").replace(
        "  tuner: random\n", "  tuner: random\n  baseline: {model: {dens: [16, 48]}}\n"
    )
    with pytest.raises(ConfigError, match=r"^tiny.yaml:13: search.baseline.model: 'dens' .* Fix:"):
        config.loads(text, source="tiny.yaml")


@pytest.mark.slow
def test_a_distilled_student_is_searched_like_any_step(tmp_path):
    """``distill`` in the space: the trial's file is the student's architecture, pruned after it, read from the file."""
    from tfopt.evaluate.inspection import inspect_tflite
    from tfopt.tune import tune

    text = TINY.format(name="student", drop=0.5, sparsity="0.5").replace(
        "    prune:",
        "    distill: {use: true, student: {name: small_cnn, params: {filters: 4, dense: 16}}}\n    prune:",
    )
    run = tune(config.loads(text, source="student.yaml"), root=tmp_path, log=lambda _: None, max_trials=1)
    (trial,) = run.trials
    assert trial.status == "COMPLETED" and trial.params["use_distill"] and trial.format == "int8"
    chosen = run.result(run.recommended.variant, run.recommended.format)
    from tfopt.models.small_cnn import small_cnn

    student = small_cnn((8, 8, 1), 10, filters=4, dense=16)
    kernels = sum(w.numpy().size for w in student.weights if "kernel" in w.name)  # the file's weights: no biases
    assert chosen.weights == kernels < run.result("baseline", "float32").weights / 3
    facts = inspect_tflite(chosen.path)
    assert facts.weights == chosen.weights and facts.sparsity == pytest.approx(0.5, abs=0.02)
