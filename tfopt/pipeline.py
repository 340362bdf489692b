"""Run a pipeline end to end: data -> model -> baseline -> variants -> export -> evaluate -> report.

This is the library function the CLI calls; a Python user calls it the same way::

    from tfopt import config, pipeline
    run = pipeline.run(config.load("pipelines/quickstart.yaml"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import json
import math
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from tfopt import data as data_mod
from tfopt.data import num_examples
from tfopt import backend_keras3, models
from tfopt._keras import keras, keras3, keras_kind, tf, versions
from tfopt.config import PipelineConfig, transform_config
from tfopt.errors import ExportError, TfoptError, TransformError, ValidationError
from tfopt.evaluate.latency import measure_latency
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.sizes import gzip_bytes, path_bytes
from tfopt.evaluate.weights import keras_weight_stats, overall_sparsity, tflite_weight_stats
from tfopt.export import export_tflite
from tfopt.export.keras3 import shared_saved_model
from tfopt.io import atomic_path, atomic_write_bytes, atomic_write_text, check_writable, publish_dir
from tfopt.results import DatasetInfo, NotExported, Result, Run, Stage, Training, TransformReport
from tfopt.train import compile_model, fit, global_batch_size, is_chief, resolve_strategy
from tfopt.train.checkpoint import RunCheckpoints, RunLock, check_not_finished, checkpoint_dir, fingerprint
from tfopt.train.precision import apply_precision, check_precision, export_copy, precision_policy
from tfopt.transforms import Context, transform_class
from tfopt.transforms.qat import is_quantized, model_file_suffix, save_qat_model


@dataclass
class Outputs:
    """Where a run writes: ``reports/<name>/`` and ``models/<name>/`` under ``root``.

    A run writes into hidden ``.<name>.partial`` folders beside those (``report_dir``,
    ``models_dir``) and ``publish()`` swaps them in once everything is written, so a run that fails
    half-way (disk full, a bad export, a crash) leaves the previous finished run as it was.
    """

    root: Path
    name: str

    @property
    def report_dir(self) -> Path:
        return self.root / "reports" / f".{self.name}.partial"

    @property
    def models_dir(self) -> Path:
        return self.root / "models" / f".{self.name}.partial"

    def final(self, path: Path) -> Path:
        """Where ``path``, written under a partial folder, lives once the run is published."""
        for part in (self.report_dir, self.models_dir):
            if path == part or part in path.parents:
                return part.with_name(self.name) / path.relative_to(part)
        return path

    def start(self) -> None:
        """Clear what an interrupted run left, and fail now, before any training, if nothing can be written."""
        self.discard()
        for folder in (self.report_dir, self.models_dir):
            check_writable(folder)

    def publish(self) -> None:
        for folder in (self.models_dir, self.report_dir):  # report last: run.json marks a finished run
            publish_dir(folder, self.final(folder))

    def discard(self) -> None:
        for folder in (self.report_dir, self.models_dir):
            shutil.rmtree(folder, ignore_errors=True)

    @property
    def run_json(self) -> Path:
        return self.report_dir / "run.json"


@dataclass
class _Stages:
    log: Callable[[str], None]
    done: list[Stage] = field(default_factory=list)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.log(f"[tfopt] > {name}")
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.done.append(Stage(name, round(seconds, 3)))
        self.log(f"[tfopt] done {name} ({seconds:.1f}s)")


def _machine() -> dict[str, Any]:
    gpus = [d.name for d in tf().config.list_physical_devices("GPU")]
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(), "gpus": gpus}


def _clone(model: Any) -> Any:
    from tfopt.transforms.qat import clone_scope  # a QAT model clones only inside tfmot's scope

    if keras_kind(model) == "keras3":  # keras-hub models: from_config + weights
        return backend_keras3.clone(model)
    from tfopt.transforms.common import fresh_copy

    with clone_scope(model):
        return fresh_copy(model)


def run(cfg: PipelineConfig, root: str | Path = ".", log: Callable[[str], None] = print, force: bool = False) -> Optional[Run]:
    """Run the whole pipeline and write run.json, the report and the exported models.

    A run that was killed resumes where it stopped when started again (``tfopt/train/checkpoint.py``).

    Args:
        cfg: a validated pipeline (``tfopt.config.load``).
        root: folder under which ``reports/<name>/`` and ``models/<name>/`` are written.
        log: where progress lines go.
        force: replace a finished run of the same name instead of refusing.

    Returns:
        The run record, also saved as ``reports/<name>/run.json``; None on the non-chief workers
        of a multi-worker run, which train in step with the chief but write nothing.

    Raises:
        TfoptError: any user-fixable problem (a finished run without ``force`` included);
            ValidationError after writing the report when an exported file differs from its
            Keras model by more than the tolerance.
    """
    check_precision(cfg)  # a config problem: refused before anything is touched
    chief = is_chief(cfg.train)
    final = Outputs(Path(root), cfg.name)
    lock = RunLock(final.root / "reports" / f".{cfg.name}.lock").acquire() if chief else RunLock(Path())
    try:
        return _run_locked(cfg, final, log, force, chief)
    finally:
        lock.release()


def _run_locked(cfg: PipelineConfig, final: Outputs, log: Callable[[str], None], force: bool, chief: bool) -> Optional[Run]:
    check_not_finished(final.final(final.report_dir) / "run.json", cfg.name, force)
    ckpt = RunCheckpoints(checkpoint_dir(final.root, cfg.name), enabled=cfg.train.checkpoint, chief=chief, log=log)
    # A multi-worker run's other workers train in step with the chief but keep nothing: they write to scratch.
    out = final if chief else Outputs(Path(tempfile.mkdtemp(prefix="tfopt-worker-")), cfg.name)
    out.start()
    try:
        with precision_policy("float32"):  # whatever the caller had set; training sets its own below
            return _run(cfg, out, log, ckpt, chief)
    except Exception as e:
        out.discard()  # the previous run is untouched; nothing half-written stays behind
        reason = _storage_failure(e)
        if reason:  # TensorFlow's own writers (checkpoints, TensorBoard) fail with their own error types
            raise TfoptError(f"Cannot write under {final.root}: {reason}. Fix: free disk space or choose a writable folder with --out.") from None
        raise
    finally:
        if not chief:
            shutil.rmtree(out.root, ignore_errors=True)


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _storage_failure(e: BaseException) -> Optional[str]:
    """The OS reason when ``e`` is a failed write (full disk, read-only or forbidden folder), else None."""
    if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
        return e.strerror
    if type(e).__module__.startswith("tensorflow"):  # tf.errors.*: the OS reason is only in the text
        for code in _STORAGE_ERRNOS:
            if os.strerror(code) in str(e):
                return os.strerror(code)
    return None


def _run(cfg: PipelineConfig, out: Outputs, log: Callable[[str], None], ckpt: RunCheckpoints, chief: bool = True) -> Optional[Run]:
    stage = _Stages(log)
    k = keras()
    k.utils.set_random_seed(cfg.seed)

    with stage("data"):
        splits = models.prepare_inputs(cfg.model, data_mod.load(cfg.data, seed=cfg.seed))  # text -> token ids
        if splits.encoding:  # a text model: Keras 3 (keras-hub), seeded before it is built
            keras3().utils.set_random_seed(cfg.seed)
            atomic_write_text(out.models_dir / "inputs.json", json.dumps(splits.encoding, indent=2) + "\n")  # for tfopt predict
        log(
            f"[tfopt]   {cfg.data.name}: {num_examples(splits.x_train)} train / {num_examples(splits.x_val)} val / "
            f"{num_examples(splits.x_test)} test, input {splits.input_shape}, {splits.num_classes} classes"
        )

    strategy = resolve_strategy(cfg.train, log=log)
    batch = global_batch_size(cfg.train.batch_size, cfg.train.batch_size_per, strategy)
    if ckpt.exists:
        log(f"[tfopt] resuming from the checkpoints in {ckpt.folder}")
    train_policy = contextlib.ExitStack()  # closed after the last fine-tune: export runs in float32
    train_policy.enter_context(precision_policy(cfg.train.precision))
    base_fp = fingerprint(cfg.seed, cfg.data.model_dump(mode="json"), cfg.model.model_dump(mode="json"), _training_fp(cfg.train), batch)
    tb_root = out.report_dir / "tensorboard"
    trainings: list[Training] = []
    keras_models: dict[str, Any] = {}
    transform_reports: list[TransformReport] = []

    with stage("baseline"):
        with strategy.scope():
            restored = ckpt.load_stage("baseline", base_fp, cfg.model.safe_mode)  # finished before a kill: not retrained
            baseline = restored[0] if restored else models.build(cfg.model, splits.input_shape, splits.num_classes)
            kind = keras_kind(baseline)
            for variant in cfg.variants.values():  # refuse unsupported combinations before training
                for spec in variant.transforms:
                    transform_class(spec.name, kind)
            if not restored:
                baseline = apply_precision(baseline, cfg.train.precision)
            compile_model(baseline, cfg.train.optimizer, cfg.train.learning_rate)
        if restored:
            trainings.extend(restored[1])
        else:
            trainings.append(
                fit(
                    baseline, splits, variant="baseline", epochs=cfg.train.epochs, batch_size=batch,
                    seed=cfg.seed, callbacks=[], log_dir=tb_root / "baseline",
                    early_stopping=cfg.train.early_stopping, verbose=cfg.train.verbose,
                    backup_dir=ckpt.fit_backup("baseline", base_fp), log=log,
                )
            )
            ckpt.save_stage("baseline", base_fp, baseline, trainings[-1:], [])
        keras_models["baseline"] = baseline

    for vname, variant in cfg.variants.items():
        with stage(f"variant {vname}"):
            model = _build_variant(vname, variant, baseline, splits, cfg, strategy, tb_root / vname, trainings, transform_reports,
                                   ckpt=ckpt, base_fp=base_fp, log=log)
            keras_models[vname] = model

    train_policy.close()
    keras_models = {v: export_copy(m, cfg.train.precision, strategy) for v, m in keras_models.items()}  # on every worker
    if not chief:
        log("[tfopt] training done on this worker; the chief exports, evaluates and writes the report")
        return None

    results: list[Result] = []
    failures: list[str] = []
    not_exported: list[NotExported] = []
    calibration = splits.x_train
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tfopt-gzip") as sizes_pool:
        for vname, model in keras_models.items():
            with stage(f"export+evaluate {vname}"):
                keras_path = out.models_dir / f"{vname}{model_file_suffix(model)}"  # .h5 for QAT models (see there)
                with atomic_path(keras_path) as tmp:
                    if is_quantized(model):  # tfmot QAT: saved as is, without optimizer state (see save_qat_model)
                        save_qat_model(model, tmp)
                    else:
                        (_clone(model) if keras_kind(model) == "tf_keras" else backend_keras3.saveable(model)).save(tmp)  # uncompiled copy: no optimizer state
                probs = model.predict(splits.x_test, batch_size=256, verbose=0)
                keras_layers = keras_weight_stats(model)
                results.append(
                    Result(
                        variant=vname, format="keras", path=str(out.final(keras_path)),
                        accuracy=_accuracy(probs, splits.y_test), size_bytes=path_bytes(keras_path),
                        gzip_bytes=-1, sparsity=overall_sparsity(keras_layers),
                        max_abs_diff=None, tolerance=None, latency_ms=None, layers=keras_layers,
                    )
                )
                # gzip -9 sizes are computed on a second thread (zlib releases the GIL) while the next
                # format converts: about a second of the quickstart's wall time otherwise.
                # (index in results, its gzip size to come, max |Keras - TFLite| to log; None: the Keras row, not logged)
                pending: list[tuple[int, Future, Optional[float]]] = [(len(results) - 1, sizes_pool.submit(gzip_bytes, keras_path), None)]
                with shared_saved_model(model):  # every format converts from one SavedModel
                    for spec in cfg.export:
                        path = out.models_dir / f"{vname}_{spec.label}.tflite"
                        try:
                            exported = export_tflite(model, spec, calibration)
                        except ExportError as e:  # e.g. a Keras 3 natively quantized model: reported, the run goes on
                            not_exported.append(NotExported(vname, spec.label, str(e)))
                            log(f"[tfopt]   {vname:>12} {spec.label:>8}: not exportable: {e}")
                            continue
                        atomic_write_bytes(path, exported.data)
                        lite_probs = TfliteRunner(path, threads=cfg.evaluate.threads).predict(splits.x_test)
                        diff = float(np.max(np.abs(lite_probs - probs)))
                        layers = tflite_weight_stats(path)
                        latency = (
                            measure_latency(path, splits.x_test, cfg.evaluate.latency_runs, cfg.evaluate.latency_warmup, cfg.evaluate.threads)
                            if cfg.evaluate.latency_runs else None
                        )
                        result = Result(
                            variant=vname, format=spec.label, path=str(out.final(path)), accuracy=_accuracy(lite_probs, splits.y_test),
                            size_bytes=path_bytes(path), gzip_bytes=-1, sparsity=overall_sparsity(layers),
                            max_abs_diff=round(diff, 6), tolerance=spec.max_abs_diff, latency_ms=latency, layers=layers,
                            details=exported.details,
                        )
                        pending.append((len(results), sizes_pool.submit(gzip_bytes, path), diff))
                        results.append(result)
                        if diff > spec.max_abs_diff:
                            failures.append(
                                f"{vname}/{spec.label}: max |Keras - TFLite| = {diff:.4g} exceeds the tolerance {spec.max_abs_diff:g}. "
                                f"Fix: inspect {path}, or raise the tolerance with export: [{{{spec.format}: {{tolerance: ...}}}}]."
                            )
                for i, future, diff in pending:
                    results[i] = dataclasses.replace(results[i], gzip_bytes=future.result())
                    if diff is not None:
                        log(_format_line(results[i], diff))

    run_record = Run(
        pipeline=cfg.name,
        dataset=DatasetInfo(
            name=splits.name, num_train=num_examples(splits.x_train), num_val=num_examples(splits.x_val), num_test=num_examples(splits.x_test),
            num_classes=splits.num_classes, input_shape=list(splits.input_shape), source=splits.source,
        ),
        results=results, transforms=transform_reports, training=trainings, stages=list(stage.done),
        versions=versions(), machine=_machine(), config=cfg.model_dump(mode="json"),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), validation_failures=failures,
        not_exported=not_exported,
    )
    with stage("report"):
        run_record.save(out.run_json)
        from tfopt.report import render

        render(out.run_json)
    out.publish()
    ckpt.remove()  # the run is finished: a new invocation starts over (or refuses without --force)
    log(f"[tfopt] report: {out.final(out.report_dir) / 'report.html'}  (run.json, report.md beside it); models: {out.final(out.models_dir)}")
    if failures:
        raise ValidationError("Export validation failed:\n" + "\n".join(failures))
    return run_record


def _training_fp(train: Any) -> dict:
    """What of ``train`` changes the trained weights (not where or how verbosely it runs)."""
    return train.model_dump(mode="json", include={"epochs", "optimizer", "learning_rate", "early_stopping", "precision"})


def _format_line(r: Result, diff: float) -> str:
    """One exported file's progress line (``diff`` unrounded: run.json keeps 6 decimals)."""
    return (
        f"[tfopt]   {r.variant:>12} {r.format:>8}: acc {r.accuracy:.4f}  "
        f"{r.size_bytes / 1024:8.1f} KiB  gzip {r.gzip_bytes / 1024:8.1f} KiB  "
        f"sparsity {r.sparsity:.3f}  max|diff| {diff:.2e}"
        + (f"  p50 {r.latency_ms.p50:.3f} ms" if r.latency_ms else "")
    )


def _build_variant(vname, variant, baseline, splits, cfg, strategy, tb_dir, trainings, transform_reports,
                   ckpt: Optional[RunCheckpoints] = None, base_fp: str = "", log: Callable[[str], None] = print) -> Any:
    """Apply a variant's transforms one after the other, each fine-tuned and stripped in turn.

    Each finished step is snapshotted; after a kill, the variant restarts after its last finished step.
    """
    ft = variant.finetune or cfg.finetune
    batch = global_batch_size(ft.batch_size or cfg.train.batch_size, cfg.train.batch_size_per, strategy)
    lr = ft.learning_rate or cfg.train.learning_rate
    ckpt = ckpt or RunCheckpoints(Path("."), enabled=False)
    steps = variant.transforms
    fps = [fingerprint(base_fp, [s.model_dump(mode="json") for s in steps[: i + 1]], ft.model_dump(mode="json"), batch, lr,
                       cfg.train.optimizer) for i in range(len(steps))]
    keys = [f"{vname}.{i + 1}_{s.name}" for i, s in enumerate(steps)]
    mine_t: list[Training] = []  # this variant's records, snapshotted with each step
    mine_r: list[TransformReport] = []
    model, start = None, 0
    with strategy.scope():
        for i in reversed(range(len(steps))):  # the last step that finished before a kill
            restored = ckpt.load_stage(keys[i], fps[i], cfg.model.safe_mode)
            if restored:
                model, mine_t, mine_r = restored
                start = i + 1
                break
        if model is None:
            model = _clone(baseline)
    trainings.extend(mine_t)
    transform_reports.extend(mine_r)
    previous: list[str] = [s.name for s in steps[:start]]
    for i, spec in enumerate(variant.transforms):
        if i < start:
            continue
        ctx = Context(
            steps_per_epoch=math.ceil(num_examples(splits.x_train) / batch), finetune_epochs=ft.epochs,
            log_dir=tb_dir / f"{i + 1}_{spec.name}", previous=tuple(previous),
        )
        params = transform_config(spec)
        step = transform_class(spec.name, keras_kind(model))(params, ctx)
        if ft.epochs == 0 and step.needs_finetune:
            raise TransformError(f"Variant {vname!r}: {step.name} needs fine-tuning. Fix: set finetune.epochs to at least 1.")
        with strategy.scope():
            model = step.apply(model)
            compile_model(model, cfg.train.optimizer, lr)
        if ft.epochs:
            mine_t.append(
                fit(model, splits, variant=f"{vname}/{step.name}", epochs=ft.epochs, batch_size=batch, seed=cfg.seed,
                    callbacks=step.callbacks(), log_dir=ctx.log_dir, verbose=cfg.train.verbose,
                    backup_dir=ckpt.fit_backup(keys[i], fps[i]), log=log)
            )
            trainings.append(mine_t[-1])
        model = step.strip(model)
        previous.append(step.name)
        mine_r.append(TransformReport(vname, step.name, params.model_dump(mode="json"), step.backend, step.describe()))
        transform_reports.append(mine_r[-1])
        ckpt.save_stage(keys[i], fps[i], model, mine_t, mine_r)
    return model


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return round(float(np.mean(np.argmax(probs, axis=-1) == labels)), 6)
