"""Run a pipeline end to end: data -> model -> baseline -> variants -> export -> evaluate -> report."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from tfopt import data as data_mod
from tfopt import models
from tfopt._keras import keras, keras3, tf, versions
from tfopt.backends import Backend, backend_for
from tfopt.data import Splits, num_examples
from tfopt.errors import TfoptError, ValidationError
from tfopt.io import atomic_write_text
from tfopt.pipeline.evaluation import Evaluation, export_and_evaluate, time_latencies
from tfopt.pipeline.given import Given
from tfopt.pipeline.outputs import Outputs, Stages, storage_failure
from tfopt.pipeline.steps import Recipe, add_controls, apply_steps, check_step_models, check_variants
from tfopt.report import render
from tfopt.results import DatasetInfo, Run, Training, TransformReport
from tfopt.schema import PipelineConfig, VariantConfig
from tfopt.train import fit, global_batch_size, is_chief, resolve_strategy
from tfopt.train.checkpoint import RunCheckpoints, RunLock, check_not_finished, checkpoint_dir, fingerprint
from tfopt.train.precision import apply_precision, export_copy, precision_policy

Log = Callable[[str], None]


def run(
    cfg: PipelineConfig, root: str | Path = ".", log: Log = print, force: bool = False, given: Optional[Given] = None
) -> Optional[Run]:
    """Run the whole pipeline and write run.json, the report and the exported models.

    A run that was killed resumes where it stopped when started again (``tfopt/train/checkpoint.py``).

    Args:
        cfg: a validated pipeline (``tfopt.config.load``).
        root: folder under which ``reports/<name>/`` and ``models/<name>/`` are written.
        log: where progress lines go.
        force: replace a finished run of the same name instead of refusing.
        given: a model and/or data already in memory, used instead of ``cfg.model`` / ``cfg.data``
            (``tfopt.optimize``); the config's entries then only label the run.

    Returns:
        The run record, also saved as ``reports/<name>/run.json``; None on the non-chief workers
        of a multi-worker run, which train in step with the chief but write nothing.

    Raises:
        TfoptError: any user-fixable problem (a finished run without ``force`` included);
            ValidationError after writing the report when an exported file differs from its
            Keras model by more than the tolerance.
    """
    cfg = cfg.model_copy(update={"variants": add_controls(cfg.variants)})  # <variant>_scratch beside each distill
    check_variants(cfg.variants, cfg.train.precision)  # a config problem: refused before anything is touched
    chief = is_chief(cfg.train)
    final = Outputs(Path(root), cfg.name)
    lock = RunLock(final.root / "reports" / f".{cfg.name}.lock").acquire() if chief else RunLock(Path())
    try:
        check_not_finished(final.final(final.report_dir) / "run.json", cfg.name, force)
        ckpt = RunCheckpoints(checkpoint_dir(final.root, cfg.name), enabled=cfg.train.checkpoint, chief=chief, log=log)
        # A multi-worker run's other workers train in step with the chief but keep nothing: they write to scratch.
        out = final if chief else Outputs(Path(tempfile.mkdtemp(prefix="tfopt-worker-")), cfg.name)
        try:
            return _guarded(cfg, out, final.root, log, ckpt, chief, given or Given())
        finally:
            if not chief:
                shutil.rmtree(out.root, ignore_errors=True)
    finally:
        lock.release()


def _guarded(
    cfg: PipelineConfig, out: Outputs, root: Path, log: Log, ckpt: RunCheckpoints, chief: bool, given: Given
) -> Optional[Run]:
    """``_run`` with nothing half-written left behind, and storage failures said in one line."""
    out.start()
    try:
        with precision_policy("float32"):  # whatever the caller had set; training sets its own
            return _run(cfg, out, log, ckpt, chief, given)
    except Exception as e:
        out.discard()  # the previous run is untouched
        reason = storage_failure(e)
        if reason:  # TensorFlow's own writers (checkpoints, TensorBoard) fail with their own error types
            raise TfoptError(
                f"Cannot write under {root}: {reason}. Fix: free disk space or choose a writable folder with --out."
            ) from None
        raise


def _run(cfg: PipelineConfig, out: Outputs, log: Log, ckpt: RunCheckpoints, chief: bool, given: Given) -> Optional[Run]:
    """The data flow of a run."""
    stage = Stages(log)
    keras().utils.set_random_seed(cfg.seed)
    with stage("data"):
        splits = load_data(cfg, out.models_dir, log, given)
        # a student file that does not fit, a feature-loss layer name that does not exist: refused before training
        if check_step_models(cfg.variants, splits, given.model if given.model is not None else cfg.model):
            keras().utils.set_random_seed(cfg.seed)  # models built to read layer names: the baseline starts as without
    tb_root = out.report_dir / "tensorboard"
    reports: list[TransformReport] = []
    with precision_policy(cfg.train.precision):  # export runs in float32, after this block
        with stage("baseline"):
            base = train_baseline(cfg, splits, ckpt, tb_root, log, given)
        baseline, backend, strategy = base.model, base.backend, base.strategy
        base_fp, trainings = base.fingerprint, base.trainings
        keras_models, backends = {"baseline": baseline}, {"baseline": backend}
        for vname, variant in cfg.variants.items():
            with stage(f"variant {vname}"):
                applied = apply_steps(
                    baseline, variant, splits, recipe_for(cfg, variant, strategy), backend=backend, variant=vname,
                    strategy=strategy, log_dir=tb_root / vname, checkpoints=ckpt, fingerprint_base=base_fp,
                    safe_mode=cfg.model.safe_mode, log=log,
                )  # fmt: skip
            keras_models[vname], backends[vname] = applied.model, applied.backend
            trainings += applied.trainings
            reports += applied.reports
    keras_models = {v: export_copy(m, cfg.train.precision, strategy, backends[v]) for v, m in keras_models.items()}
    if not chief:  # every worker made its export copy above (a collective op on multi-worker strategies)
        log("[tfopt] training done on this worker; the chief exports, evaluates and writes the report")
        return None
    evaluation = _export_all(cfg, keras_models, backends, splits, out, stage, log)
    record = build_record(cfg, splits, evaluation, reports, trainings, stage, backend)
    with stage("report"):
        record.save(out.run_json)
        render(out.run_json)
    out.publish()
    ckpt.remove()  # the run is finished: a new invocation starts over (or refuses without --force)
    log(
        f"[tfopt] report: {out.final(out.report_dir) / 'report.html'}  (run.json, report.md beside it); "
        f"models: {out.final(out.models_dir)}"
    )
    if evaluation.failures:
        raise ValidationError("Export validation failed:\n" + "\n".join(evaluation.failures))
    return record


def _export_all(
    cfg: PipelineConfig, keras_models: dict, backends: dict, splits: Splits, out: Outputs, stage: Stages, log: Log
) -> Evaluation:
    """Every variant's files written and measured, then all of them timed together (same load for each)."""
    evaluation = Evaluation()
    for vname, model in keras_models.items():
        with stage(f"export+evaluate {vname}"):
            one = export_and_evaluate(
                model, vname, cfg.export, splits, out.models_dir, backend=backends[vname], evaluate=cfg.evaluate,
                published=out.final, log=log, time_latency=False,
            )  # fmt: skip
        evaluation.merge(one)
    if cfg.evaluate.latency_runs and evaluation.files:
        with stage("latency"):
            time_latencies(evaluation, splits.x_test, cfg.evaluate, log)
    return evaluation


def load_data(cfg: PipelineConfig, models_dir: Path, log: Log, given: Optional[Given] = None) -> Splits:
    """The dataset's splits, as the model takes them (text tokenized by the model family; the tokenizer's
    settings written to ``models_dir/inputs.json`` for ``tfopt predict``), or the given ones."""
    given = given or Given()
    splits = (
        given.splits
        if given.splits is not None
        else models.prepare_inputs(cfg.model, data_mod.load(cfg.data, seed=cfg.seed))
    )
    if splits.encoding:  # a text model: Keras 3 (keras-hub), seeded before it is built
        keras3().utils.set_random_seed(cfg.seed)
        atomic_write_text(models_dir / "inputs.json", json.dumps(splits.encoding, indent=2) + "\n")  # for tfopt predict
    log(
        f"[tfopt]   {splits.name}: {num_examples(splits.x_train)} train / {num_examples(splits.x_val)} val / "
        f"{num_examples(splits.x_test)} test, input {splits.input_shape}, {splits.num_classes} classes"
    )
    return splits


@dataclass
class Baseline:
    """The trained baseline and what the variants built from it need."""

    model: Any
    backend: Backend
    strategy: Any
    fingerprint: str  # keys the checkpoints of everything trained from it
    trainings: list[Training]


def train_baseline(
    cfg: PipelineConfig, splits: Splits, ckpt: RunCheckpoints, tb_root: Path, log: Log, given: Optional[Given] = None
) -> Baseline:
    """Build and train the pipeline's baseline once (``train:``), or reload it when a killed run had finished it.

    ``tfopt run`` and ``tfopt tune`` both call it, under ``precision_policy(cfg.train.precision)``.
    """
    given = given or Given()
    strategy = resolve_strategy(cfg.train, log=log)
    batch = global_batch_size(cfg.train.batch_size, cfg.train.batch_size_per, strategy)
    if ckpt.exists:
        log(f"[tfopt] resuming from the checkpoints in {ckpt.folder}")
    base_fp = fingerprint(
        cfg.seed, cfg.data.model_dump(mode="json"), cfg.model.model_dump(mode="json"), _training_fp(cfg.train), batch,
        *given.fingerprint_parts(),
    )  # fmt: skip
    trainings: list[Training] = []
    model, backend = _baseline(cfg, splits, strategy, batch, ckpt, base_fp, tb_root, trainings, log, given)
    return Baseline(model, backend, strategy, base_fp, trainings)


def _baseline(
    cfg: PipelineConfig,
    splits: Splits,
    strategy: Any,
    batch: int,
    ckpt: RunCheckpoints,
    base_fp: str,
    tb_root: Path,
    trainings: list[Training],
    log: Log,
    given: Given,
) -> tuple[Any, Backend]:
    """The trained baseline and its backend: built (or reloaded after a kill) and trained once."""
    with strategy.scope():
        restored = ckpt.load_stage("baseline", base_fp, cfg.model.safe_mode)  # finished before a kill: not retrained
        source = given.baseline if given.model is not None else functools.partial(models.build, cfg.model)
        baseline = restored[0] if restored else source(splits.input_shape, splits.num_classes)
        backend = backend_for(baseline)  # chosen once, here, and passed on
        check_variants(
            cfg.variants, cfg.train.precision, backend.kind, baseline
        )  # unsupported combinations, layers a step cannot handle: refused before training
        if not restored:
            baseline = apply_precision(baseline, cfg.train.precision, backend)
        backend.compile(baseline, cfg.train.optimizer, cfg.train.learning_rate)
    if restored:
        trainings.extend(restored[1])
        return baseline, backend
    trainings.append(
        fit(
            baseline,
            splits,
            variant="baseline",
            epochs=cfg.train.epochs,
            batch_size=batch,
            seed=cfg.seed,
            callbacks=[],
            log_dir=tb_root / "baseline",
            early_stopping=cfg.train.early_stopping,
            verbose=cfg.train.verbose,
            backup_dir=ckpt.fit_backup("baseline", base_fp),
            log=log,
            backend=backend,
        )
    )
    ckpt.save_stage("baseline", base_fp, baseline, trainings[-1:], [], backend)
    return baseline, backend


def recipe_for(cfg: PipelineConfig, variant: VariantConfig, strategy: Any) -> Recipe:
    """A variant's fine-tune: its own ``finetune`` block, else the pipeline's, falling back to ``train``."""
    ft = variant.finetune or cfg.finetune
    return Recipe(
        epochs=ft.epochs,
        batch_size=global_batch_size(ft.batch_size or cfg.train.batch_size, cfg.train.batch_size_per, strategy),
        learning_rate=ft.learning_rate or cfg.train.learning_rate,
        optimizer=cfg.train.optimizer,
        seed=cfg.seed,
        verbose=cfg.train.verbose,
    )


def build_record(
    cfg: PipelineConfig,
    splits: Splits,
    evaluation: Evaluation,
    reports: list[TransformReport],
    trainings: list[Training],
    stage: Stages,
    backend: Backend,
) -> Run:
    """The run record of a finished run (``tfopt tune`` adds its trials with ``dataclasses.replace``)."""
    dataset = DatasetInfo(
        name=splits.name,
        num_train=num_examples(splits.x_train),
        num_val=num_examples(splits.x_val),
        num_test=num_examples(splits.x_test),
        num_classes=splits.num_classes,
        input_shape=list(splits.input_shape),
        source=splits.source,
    )
    return Run(
        pipeline=cfg.name,
        dataset=dataset,
        results=evaluation.results,
        transforms=reports,
        training=trainings,
        stages=list(stage.done),
        versions=versions(),
        machine=_machine(),
        config=cfg.model_dump(mode="json"),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        validation_failures=evaluation.failures,
        not_exported=evaluation.not_exported,
        model_backend=backend.kind,
    )


def _training_fp(train: Any) -> dict:
    """What of ``train`` changes the trained weights (not where or how verbosely it runs)."""
    return train.model_dump(
        mode="json", include={"epochs", "optimizer", "learning_rate", "early_stopping", "precision"}
    )


def _machine() -> dict[str, Any]:
    gpus = [d.name for d in tf().config.list_physical_devices("GPU")]
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(), "gpus": gpus}
