"""``tfopt tune``: the smallest (or fastest) file within an accuracy budget, found by a keras-tuner search.

The flow: data -> the pipeline's baseline (trained once, as ``tfopt run`` trains it, and exported)
-> per-layer sensitivity (``sensitivity.py``) -> the search (``tuner.py``: each trial a variant
built from the oracle's values by ``space.py``, applied with ``apply_steps``, exported and measured
with ``export_and_evaluate`` on the **validation** split) -> the recommendation
(``tfopt.report.recommend``, on validation) -> the test split, once, for the recommended file and
the Pareto front -> run.json, the report, the files in ``models/<name>/``.

Every finished trial is a JSON file in the search's project folder (``reports/.<name>.tune/``), so a
killed search continues from them; the folder is removed once the run is published.

Example::

    from tfopt import config
    from tfopt.tune import tune
    run = tune(config.load("pipelines/quickstart.yaml"), max_trials=8)
    print(run.recommended.path, run.recommended.reason)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from tfopt._keras import keras
from tfopt.errors import TfoptError
from tfopt.evaluate.litert import TfliteRunner
from tfopt.io import atomic_write_text
from tfopt.pipeline import (
    Evaluation,
    Outputs,
    Stages,
    apply_steps,
    build_record,
    export_and_evaluate,
    load_data,
    recipe_for,
    time_latencies,
    train_baseline,
)
from tfopt.pipeline.evaluation import accuracy
from tfopt.report import render
from tfopt.report.tune_section import NO_LEAKAGE
from tfopt.report.recommend import OBJECTIVES, Budget, cautious_accuracy, meets, paired_drop_se, recommend
from tfopt.results import (
    Recommended,
    Result,
    Run,
    Trial,
    TransformReport,
    TuneSummary,
    records,
)
from tfopt.schema import EvaluateConfig, ExportSpec, PipelineConfig, SearchConfig
from tfopt.train.checkpoint import RunCheckpoints, RunLock, check_not_finished, checkpoint_dir
from tfopt.train.precision import export_copy, precision_policy
from tfopt.tune import sensitivity as sens_mod
from tfopt.tune.baseline import search_baseline
from tfopt.tune import space as space_mod
from tfopt.tune import tuner as tuner_mod

Log = Callable[[str], None]


def project_dir(root: str | Path, name: str) -> Path:
    """The search's keras-tuner project folder: beside the report, outside what gets published."""
    return Path(root) / "reports" / f".{name}.tune"


def tune(
    cfg: PipelineConfig,
    root: str | Path = ".",
    log: Log = print,
    force: bool = False,
    max_trials: Optional[int] = None,
    time_budget: Optional[str | float] = None,
    after_trial: Optional[Callable[[Trial], None]] = None,
) -> Optional[Run]:
    """Search for the best file within ``search.max_accuracy_drop`` and write it as a tfopt run.

    Args:
        cfg: a validated pipeline; its ``search:`` section (or the defaults) sets budget and space.
        max_trials, time_budget: override ``search.max_trials`` / ``search.time_budget`` (e.g. "30m").
        after_trial: called with each finished trial's record (after it is saved in the project folder).

    Returns:
        The run record (``trials``, ``pareto``, ``recommended``), also ``reports/<name>/run.json``;
        None on a worker of a distributed search (the chief writes).

    Raises:
        TfoptError: a user-fixable problem (a finished run without ``force`` included).
    """
    search = cfg.search or SearchConfig()
    update = {k: v for k, v in (("max_trials", max_trials), ("time_budget", time_budget)) if v is not None}
    search = SearchConfig.model_validate({**search.model_dump(), **update}) if update else search
    chief = tuner_mod.role() != "worker"
    if search.baseline and tuner_mod.role() != "single":
        raise TfoptError(
            "search.baseline runs in one process, not in keras-tuner's distributed mode. "
            "Fix: search the baseline alone first (without KERASTUNER_* set), then distribute the compression search."
        )
    final = Outputs(Path(root), cfg.name)
    lock = RunLock(final.root / "reports" / f".{cfg.name}.lock").acquire() if chief else RunLock(Path())
    try:
        run_json = final.final(final.report_dir) / "run.json"
        if force and run_json.exists():  # start the search over
            shutil.rmtree(project_dir(root, cfg.name), ignore_errors=True)
            shutil.rmtree(_baseline_project(project_dir(root, cfg.name)), ignore_errors=True)
        check_not_finished(run_json, cfg.name, force)
        ckpt = RunCheckpoints(checkpoint_dir(final.root, cfg.name), enabled=cfg.train.checkpoint, chief=chief, log=log)
        out = final if chief else Outputs(Path(tempfile.mkdtemp(prefix="tfopt-worker-")), cfg.name)
        out.start()
        try:
            with precision_policy("float32"):
                return _Search(cfg, search, out, ckpt, project_dir(root, cfg.name), chief, log, after_trial).run()
        except BaseException:
            out.discard()  # the previous run is untouched; the project folder keeps the finished trials
            raise
        finally:
            if not chief:
                shutil.rmtree(out.root, ignore_errors=True)
    finally:
        lock.release()


@dataclasses.dataclass
class _Search:
    cfg: PipelineConfig
    search: SearchConfig
    out: Outputs
    ckpt: RunCheckpoints
    project: Path
    chief: bool
    log: Log
    after_trial: Optional[Callable[[Trial], None]]

    def run(self) -> Optional[Run]:
        cfg, stage, started = self.cfg, Stages(self.log), time.monotonic()
        keras().utils.set_random_seed(cfg.seed)
        with stage("data"):
            self.splits = load_data(cfg, self.out.models_dir, self.log)
        if not len(self.splits.y_val):  # refused before anything trains
            raise TfoptError(
                f"tfopt tune chooses on the validation split, and pipeline {cfg.name!r} has none. "
                f"Fix: set data.val_fraction above 0 (e.g. 0.1). Received: val_fraction={cfg.data.val_fraction}"
            )
        self.baseline_trials: list[Trial] = []
        if self.search.baseline:
            with stage("baseline search"):
                folder = _baseline_project(self.project)
                cfg, self.baseline_trials = search_baseline(cfg, self.search, self.splits, folder, self.log)
            self.cfg = cfg
        with precision_policy(cfg.train.precision):
            with stage("baseline"):
                self.base = train_baseline(cfg, self.splits, self.ckpt, self.out.report_dir / "tensorboard", self.log)
        model = export_copy(self.base.model, cfg.train.precision, self.base.strategy, self.base.backend)
        with stage("export+evaluate baseline"):
            self.baseline_eval = export_and_evaluate(
                model, "baseline", _with_float32(cfg.export), self.splits, self.out.models_dir,
                backend=self.base.backend, evaluate=cfg.evaluate, published=self.out.final, log=self.log,
                time_latency=False,  # timed at the end, in turn with the files chosen (same load)
            )  # fmt: skip
        self.reference = self.baseline_eval.results[1]  # float32 first (_with_float32): the budget's reference
        self.reference_correct = self._correct(self.baseline_eval.files[("baseline", "float32")])
        with stage("sensitivity"):
            s = self.search.sensitivity
            self.sensitivity = sens_mod.measure(model, self.splits, s.sparsities, s.quantization, self.log)
        self.started = started
        with stage("search"):
            self._search()
        if not self.chief:
            self.log("[tfopt] this worker's trials are done; the chief writes the report")
            return None
        return self._finish(stage)

    # --- the search --------------------------------------------------------------------------

    def _search(self) -> None:
        kt = tuner_mod.keras_tuner()
        self.space = self.search.space or space_mod.default_space(self.cfg, self.base.backend.kind)
        hp = space_mod.declare(kt.HyperParameters(), self.space, epochs=self.search.tuner != "hyperband")
        seed = self.search.seed if self.search.seed is not None else self.cfg.seed
        max_epochs = space_mod.budget_of(self.space, self.cfg)
        oracle = tuner_mod.make_oracle(self.search.tuner, hp, self.search.max_trials, max_epochs, seed)
        budget = self.search.seconds
        self.deadline = None if budget is None else self.started + budget
        tuner = tuner_mod.tuner_class()(
            oracle, self._trial, str(self.project.parent), self.project.name, after_trial=self._after_trial,
            deadline=self.deadline, max_trials=self.search.max_trials,
        )  # fmt: skip
        done = len(self._records())
        if done:
            self.log(f"[tfopt] resuming the search in {self.project}: {done} finished trial(s) kept")
        try:
            tuner.search(verbose=0)  # one tfopt line per trial instead of keras-tuner's table
        except tuner_mod.SearchStopped as e:
            self.log(f"[tfopt] search stopped: {e}")

    def _trial(self, trial: Any) -> dict:
        """One trial: the variant of the oracle's values, fine-tuned, exported, measured on validation."""
        start, name = time.monotonic(), f"trial_{trial.trial_id}"
        values = dict(trial.hyperparameters.values)
        folder = self.project / name
        try:
            result, reports = self._measure(values, name, folder / "files")
            error = None
        except TfoptError as e:  # a combination the model cannot take: recorded, the search goes on
            result, reports, error = None, [], str(e).splitlines()[0]
        record = self._record_of(trial.trial_id, name, values, result, error, time.monotonic() - start)
        payload = {
            "trial": dataclasses.asdict(record),
            "result": dataclasses.asdict(result) if result else None,
            "reports": [dataclasses.asdict(r) for r in reports],
        }
        atomic_write_text(folder / "tfopt_trial.json", json.dumps(payload, indent=1) + "\n")

        return {"score": record.score}

    def _measure(self, values: dict, name: str, folder: Path) -> tuple[Result, list[TransformReport]]:
        cfg, base = self.cfg, self.base
        variant, spec, epochs = space_mod.to_variant(
            values, self.sensitivity, self.search.sensitivity.sparsities, self.reference.val_accuracy
        )
        recipe = dataclasses.replace(recipe_for(cfg, variant, base.strategy), epochs=epochs, verbose=0)
        keras().utils.set_random_seed(cfg.seed)  # every trial starts from the same seed: repeatable
        with precision_policy(cfg.train.precision):
            applied = apply_steps(
                base.model, variant, self.splits, recipe, backend=base.backend, variant=name,
                strategy=base.strategy, safe_mode=cfg.model.safe_mode, log=lambda _: None,
            )  # fmt: skip
        model = export_copy(applied.model, cfg.train.precision, base.strategy, applied.backend)
        on_val = dataclasses.replace(self.splits, x_test=self.splits.x_val, y_test=self.splits.y_val)  # no test here
        result = self._export(model, applied.backend, name, spec, on_val, folder)
        steps = [s.name for s in variant.transforms]
        if spec.format == "int8" and "qat" not in steps and "distill" not in steps:  # the order is the teacher's
            for k in range(1, self.search.fallback + 1):  # Intel Neural Compressor's fallback, most sensitive first
                if meets(result, self.reference, self._budget(), self.search.margin):
                    break
                layers = self._fallback_order()[:k]
                if len(layers) < k:
                    break
                mixed = ExportSpec(format="int8", float_layers=layers)
                result = self._export(model, applied.backend, name, mixed, on_val, folder)
                values["int8/float_layers"] = layers
        return result, applied.reports

    def _export(self, model: Any, backend: Any, name: str, spec: ExportSpec, on_val: Any, folder: Path) -> Result:
        """The trial's file in ``spec``, measured on the validation split (handed in as the test split)."""
        latency = self.cfg.evaluate.latency_runs if self.search.objective == "latency_p50" else 0
        ev = export_and_evaluate(
            model, name, [spec], on_val, folder, backend=backend,
            evaluate=EvaluateConfig(latency_runs=latency, threads=self.cfg.evaluate.threads), log=lambda _: None,
        )  # fmt: skip
        files = [r for r in ev.results if r.format != "keras"]
        if not files:
            raise TfoptError(ev.not_exported[0].reason if ev.not_exported else f"{name}: no file was exported")
        if ev.failures:
            raise TfoptError(ev.failures[0])
        se = paired_drop_se(self.reference_correct, self._correct(Path(files[0].path)))
        return dataclasses.replace(files[0], val_drop_se=round(se, 6))

    def _correct(self, path: Path) -> Any:
        """Which validation images a file gets right (the paired standard error compares two such lists)."""
        probs = TfliteRunner(path, threads=self.cfg.evaluate.threads).predict(self.splits.x_val)
        return (probs.argmax(axis=-1) == self.splits.y_val).tolist()

    def _fallback_order(self) -> list[str]:
        """Layers by how much leaving them float recovers of the int8 file's validation accuracy, then by error."""
        rows = [r for r in self.sensitivity if r.kept_float_val_accuracy is not None]
        rows.sort(key=lambda r: (-r.kept_float_val_accuracy, -(r.quant_error or 0.0)))
        return [r.layer for r in rows]

    def _record_of(
        self, trial_id: str, name: str, values: dict, result: Optional[Result], error: Optional[str], seconds: float
    ) -> Trial:
        worker = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
        if result is None:
            return Trial(trial_id, name, values, "FAILED", round(seconds, 3), error=error, score=1e9, tuner_id=worker)
        value = OBJECTIVES[self.search.objective](result)
        ref_value = OBJECTIVES[self.search.objective](self.reference) or 1
        floor = self._budget().floor(self.reference.val_accuracy)
        met = meets(result, self.reference, self._budget(), self.search.margin)
        ratio = value / ref_value if value is not None else 1e3
        # Met: in (0, 1), smaller files lower. Missed: above 1 whatever the size, worse the further below the floor.
        score = (
            ratio / (1 + ratio) if met else 1 + max(floor - cautious_accuracy(result, self.search.margin), 0.0) * 100
        )
        return Trial(
            trial_id, name, values, "COMPLETED", round(seconds, 3), result.format, result.val_accuracy,
            value, round(score, 6), met, result.path, tuner_id=worker, val_drop_se=result.val_drop_se,
        )  # fmt: skip

    def _budget(self) -> Budget:
        drop, relative = self.search.drop
        return Budget(drop, relative)

    def _records(self) -> list[dict]:
        """The finished trials' files in the project folder, in trial order (every worker's included)."""
        found = sorted(self.project.glob("trial_*/tfopt_trial.json"))
        return [json.loads(p.read_text(encoding="utf-8")) for p in found]

    def _after_trial(self, trial: Any) -> None:
        path = self.project / f"trial_{trial.trial_id}" / "tfopt_trial.json"
        if not path.exists():  # keras-tuner caught an unexpected error in the trial: it said why
            return
        rec = records(Trial, [json.loads(path.read_text(encoding="utf-8"))["trial"]])[0]
        self.log(progress_line(rec, self._records(), self.search, self.deadline))
        if self.after_trial is not None:
            self.after_trial(rec)

    # --- the result --------------------------------------------------------------------------

    def _finish(self, stage: Stages) -> Run:
        payloads = self._records()
        trials = records(Trial, [p["trial"] for p in payloads])
        by_name = {p["trial"]["variant"]: p for p in payloads}
        rows = [records(Result, [p["result"]])[0] for p in payloads if p["result"]]
        drop, relative = self.search.drop
        baseline_rows = self.baseline_eval.results
        # Candidates are the trials' files: the baseline's float32 file would always "meet" the budget it defines.
        rec = recommend(rows, drop, self.search.objective, relative, self.reference, self.search.margin)
        if rec is None:
            raise TfoptError(
                f"tfopt tune: no trial produced a file (see the trial lines above: {_first_error(trials)}). "
                "Fix: widen search.space or raise search.max_trials."
            )
        chosen = [rec.result] + [r for r in rec.front if r is not rec.result]
        with stage("test: recommended and Pareto front"):
            tested = {r.variant: self._on_test(r) for r in chosen if r.variant != "baseline"}
        evaluation = Evaluation(
            baseline_rows + [r for r, _ in tested.values()], self.baseline_eval.not_exported,
            files={**self.baseline_eval.files, **{(r.variant, r.format): dest for r, dest in tested.values()}},
        )  # fmt: skip
        with stage("latency"):  # the baseline's and the chosen files, in turn: their ratios are same-load figures
            time_latencies(evaluation, self.splits.x_test, self.cfg.evaluate, self.log)
        tested = {r.variant: r for r in evaluation.results if r.variant in tested}
        reports = [x for v in tested for x in records(TransformReport, by_name[v]["reports"])]
        kept = {t.variant: t for t in trials}
        trials = [
            dataclasses.replace(t, path=tested[t.variant].path if t.variant in tested else None) for t in kept.values()
        ]
        chosen_row = tested.get(rec.result.variant, rec.result)
        summary = TuneSummary(
            self.search.objective, drop, relative, self.search.tuner,
            f"{self.reference.variant}/{self.reference.format}", self.reference.val_accuracy,
            list(self.search.sensitivity.sparsities), self.sensitivity, round(time.monotonic() - self.started, 3),
            self.search.margin,
        )  # fmt: skip
        record = build_record(
            self.cfg, self.splits, evaluation, reports,
            self.base.trainings, stage, self.base.backend,
        )  # fmt: skip
        record = dataclasses.replace(
            record, tune=summary, trials=self.baseline_trials + trials,
            pareto=[r.variant + "/" + r.format for r in rec.front],
            recommended=Recommended(chosen_row.variant, chosen_row.format, chosen_row.path, rec.met, rec.reason()),
        )  # fmt: skip
        with stage("report"):
            record.save(self.out.run_json)
            render(self.out.run_json)
        self.out.publish()
        self.ckpt.remove()
        shutil.rmtree(self.project, ignore_errors=True)  # the run is published: a new tune starts over
        shutil.rmtree(_baseline_project(self.project), ignore_errors=True)
        self.log(headline(record))
        self.log(f"[tfopt] {NO_LEAKAGE}")
        return record

    def _on_test(self, r: Result) -> tuple[Result, Path]:
        """A chosen trial's file copied to models/<name>/ and its accuracy measured on the test split (once).

        Its latency is timed afterwards with the baseline's files (``time_latencies``).
        """
        dest = self.out.models_dir / Path(r.path).name
        shutil.copyfile(r.path, dest)
        probs = TfliteRunner(dest, threads=self.cfg.evaluate.threads).predict(self.splits.x_test)
        tested = dataclasses.replace(
            r, accuracy=accuracy(probs, self.splits.y_test), path=str(self.out.final(dest)), latency_ms=None
        )
        return tested, dest


def _baseline_project(project: Path) -> Path:
    """The baseline search's keras-tuner project, beside the compression search's."""
    return project.with_name(project.name + "-baseline")


def _first_error(trials: list[Trial]) -> str:
    return next((t.error for t in trials if t.error), "no trial ran")


def _with_float32(formats: list[ExportSpec]) -> list[ExportSpec]:
    """The pipeline's formats with float32 first: the budget is measured against the baseline's float32 file."""
    return [ExportSpec(format="float32")] + [f for f in formats if f.label != "float32"]


def progress_line(rec: Trial, done: list[dict], search: SearchConfig, deadline: Optional[float]) -> str:
    """One line per finished trial: parameters, validation accuracy, objective, best so far, time left."""
    met = [d["trial"] for d in done if d["trial"]["met_budget"]]
    best = min(met, key=lambda t: t["objective"]) if met else None
    left = "" if deadline is None else f"  time left {max(deadline - time.monotonic(), 0) / 60:.1f} min"
    params = " ".join(f"{k}={_short(v)}" for k, v in rec.params.items() if not k.startswith("tuner/"))
    if rec.status != "COMPLETED":
        return f"[tfopt] {rec.variant} ({len(done)}/{search.max_trials}) failed: {rec.error}  [{params}]"
    return (
        f"[tfopt] {rec.variant} ({len(done)}/{search.max_trials}) {rec.format}: val acc {rec.val_accuracy:.4f}"
        f"{'' if rec.val_drop_se is None else f' (drop SE {rec.val_drop_se * 100:.2f} pts)'}  "
        f"{search.objective} {_value(rec.objective, search.objective)}  score {rec.score:.4f}"
        f"{'' if rec.met_budget else ' (misses the budget)'}  best {_best(best, search.objective)}  "
        f"{rec.seconds:.1f}s{left}  [{params}]"
    )


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _value(v: Optional[float], objective: str) -> str:
    if v is None:
        return "-"
    return f"{v / 1024:.1f} KiB" if objective.endswith("bytes") else f"{v:.4g}"


def _best(best: Optional[dict], objective: str) -> str:
    return (
        "none within the budget yet" if best is None else f"{_value(best['objective'], objective)} ({best['variant']})"
    )


def headline(run: Run) -> str:
    """The one line a user reads: deploy this file, how much smaller and faster, what it costs on test."""
    rec = run.recommended
    if rec is None:
        return "[tfopt] no recommendation"
    ref = run.result("baseline", "float32")
    chosen = run.result(rec.variant, rec.format)
    size = ref.gzip_bytes / chosen.gzip_bytes if chosen.gzip_bytes else float("nan")
    fast = (
        f", {ref.latency_ms.p50 / chosen.latency_ms.p50:.1f}x faster"
        if ref.latency_ms and chosen.latency_ms and chosen.latency_ms.p50
        else ""
    )
    drop = (chosen.accuracy - ref.accuracy) * 100
    verdict = "" if rec.met else " (NO trial met the budget: this is the closest one)"
    return f"[tfopt] deploy {rec.path}: {size:.1f}x smaller gzip{fast}, {drop:+.1f} points on test{verdict}"
