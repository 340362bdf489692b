"""Run a pipeline end to end: data -> model -> baseline -> variants -> export -> evaluate -> report.

This is the library function the CLI calls; a Python user calls it the same way::

    from tfopt import config, pipeline
    run = pipeline.run(config.load("pipelines/quickstart.yaml"))
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from tfopt import data as data_mod
from tfopt import models
from tfopt._keras import keras, keras_kind, tf, versions
from tfopt.config import PipelineConfig, transform_config
from tfopt.errors import TransformError, ValidationError
from tfopt.evaluate.latency import measure_latency
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.sizes import gzip_bytes, path_bytes
from tfopt.evaluate.weights import keras_weight_stats, overall_sparsity, tflite_weight_stats
from tfopt.export import convert
from tfopt.io import atomic_path, atomic_write_bytes
from tfopt.results import DatasetInfo, Result, Run, Stage, Training, TransformReport
from tfopt.train import compile_model, fit, resolve_strategy
from tfopt.transforms import Context, transform_class


@dataclass
class Outputs:
    """Where a run writes: ``reports/<name>/`` and ``models/<name>/`` under ``root``."""

    root: Path
    name: str

    @property
    def report_dir(self) -> Path:
        return self.root / "reports" / self.name

    @property
    def models_dir(self) -> Path:
        return self.root / "models" / self.name

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
    k = keras()
    try:
        copy = k.models.clone_model(model)
    except (ValueError, TypeError, NotImplementedError) as e:
        raise TransformError(
            f"Cannot copy model {model.name!r} to build variants ({str(e).splitlines()[0]}); "
            "subclassed models are not supported. Fix: use a Sequential or functional model."
        ) from None
    copy.set_weights(model.get_weights())
    return copy


def run(cfg: PipelineConfig, root: str | Path = ".", log: Callable[[str], None] = print) -> Run:
    """Run the whole pipeline and write run.json, the report and the exported models.

    Args:
        cfg: a validated pipeline (``tfopt.config.load``).
        root: folder under which ``reports/<name>/`` and ``models/<name>/`` are written.
        log: where progress lines go.

    Returns:
        The run record, also saved as ``reports/<name>/run.json``.

    Raises:
        TfoptError: any user-fixable problem; ValidationError after writing the report when an
            exported file differs from its Keras model by more than the tolerance.
    """
    out = Outputs(Path(root), cfg.name)
    stage = _Stages(log)
    k = keras()
    k.utils.set_random_seed(cfg.seed)

    with stage("data"):
        splits = data_mod.load(cfg.data, seed=cfg.seed)
        log(
            f"[tfopt]   {cfg.data.name}: {len(splits.x_train)} train / {len(splits.x_val)} val / "
            f"{len(splits.x_test)} test, input {splits.input_shape}, {splits.num_classes} classes"
        )

    strategy = resolve_strategy(cfg.train, log=log)
    tb_root = out.report_dir / "tensorboard"
    trainings: list[Training] = []
    keras_models: dict[str, Any] = {}
    transform_reports: list[TransformReport] = []

    with stage("baseline"):
        with strategy.scope():
            baseline = models.build(cfg.model, splits.input_shape, splits.num_classes)
            kind = keras_kind(baseline)
            for variant in cfg.variants.values():  # refuse unsupported combinations before training
                for spec in variant.transforms:
                    transform_class(spec.name, kind)
            compile_model(baseline, cfg.train.optimizer, cfg.train.learning_rate)
        trainings.append(
            fit(
                baseline, splits, variant="baseline", epochs=cfg.train.epochs, batch_size=cfg.train.batch_size,
                seed=cfg.seed, callbacks=[], log_dir=tb_root / "baseline",
                early_stopping=cfg.train.early_stopping, verbose=cfg.train.verbose,
            )
        )
        keras_models["baseline"] = baseline

    for vname, variant in cfg.variants.items():
        with stage(f"variant {vname}"):
            model = _build_variant(vname, variant, baseline, splits, cfg, strategy, tb_root / vname, trainings, transform_reports)
            keras_models[vname] = model

    results: list[Result] = []
    failures: list[str] = []
    calibration = splits.x_train
    for vname, model in keras_models.items():
        with stage(f"export+evaluate {vname}"):
            keras_path = out.models_dir / f"{vname}.keras"
            with atomic_path(keras_path) as tmp:
                _clone(model).save(tmp)  # uncompiled copy: no optimizer state, same size for every variant
            probs = model.predict(splits.x_test, batch_size=256, verbose=0)
            keras_layers = keras_weight_stats(model)
            results.append(
                Result(
                    variant=vname, format="keras", path=str(keras_path),
                    accuracy=_accuracy(probs, splits.y_test), size_bytes=path_bytes(keras_path),
                    gzip_bytes=gzip_bytes(keras_path), sparsity=overall_sparsity(keras_layers),
                    max_abs_diff=None, tolerance=None, latency_ms=None, layers=keras_layers,
                )
            )
            for spec in cfg.export:
                path = out.models_dir / f"{vname}_{spec.format}.tflite"
                atomic_write_bytes(path, convert(model, spec, calibration))
                lite_probs = TfliteRunner(path, threads=cfg.evaluate.threads).predict(splits.x_test)
                diff = float(np.max(np.abs(lite_probs - probs)))
                layers = tflite_weight_stats(path)
                latency = (
                    measure_latency(path, splits.x_test, cfg.evaluate.latency_runs, cfg.evaluate.latency_warmup, cfg.evaluate.threads)
                    if cfg.evaluate.latency_runs else None
                )
                result = Result(
                    variant=vname, format=spec.format, path=str(path), accuracy=_accuracy(lite_probs, splits.y_test),
                    size_bytes=path_bytes(path), gzip_bytes=gzip_bytes(path), sparsity=overall_sparsity(layers),
                    max_abs_diff=round(diff, 6), tolerance=spec.max_abs_diff, latency_ms=latency, layers=layers,
                )
                results.append(result)
                log(
                    f"[tfopt]   {vname:>12} {spec.format:>8}: acc {result.accuracy:.4f}  "
                    f"{result.size_bytes / 1024:8.1f} KiB  gzip {result.gzip_bytes / 1024:8.1f} KiB  "
                    f"sparsity {result.sparsity:.3f}  max|diff| {diff:.2e}"
                    + (f"  p50 {latency.p50:.3f} ms" if latency else "")
                )
                if diff > spec.max_abs_diff:
                    failures.append(
                        f"{vname}/{spec.format}: max |Keras - TFLite| = {diff:.4g} exceeds the tolerance {spec.max_abs_diff:g}. "
                        f"Fix: inspect {path}, or raise the tolerance with export: [{{{spec.format}: {{tolerance: ...}}}}]."
                    )

    run_record = Run(
        pipeline=cfg.name,
        dataset=DatasetInfo(
            name=splits.name, num_train=len(splits.x_train), num_val=len(splits.x_val), num_test=len(splits.x_test),
            num_classes=splits.num_classes, input_shape=list(splits.input_shape), source=splits.source,
        ),
        results=results, transforms=transform_reports, training=trainings, stages=list(stage.done),
        versions=versions(), machine=_machine(), config=cfg.model_dump(mode="json"),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), validation_failures=failures,
    )
    with stage("report"):
        run_record.save(out.run_json)
        from tfopt.report import render

        render(out.run_json)
    log(f"[tfopt] report: {out.report_dir / 'report.html'}  (run.json, report.md beside it); models: {out.models_dir}")
    if failures:
        raise ValidationError("Export validation failed:\n" + "\n".join(failures))
    return run_record


def _build_variant(vname, variant, baseline, splits, cfg, strategy, tb_dir, trainings, transform_reports) -> Any:
    """Apply a variant's transforms one after the other, each fine-tuned and stripped in turn."""
    ft = variant.finetune or cfg.finetune
    batch = ft.batch_size or cfg.train.batch_size
    lr = ft.learning_rate or cfg.train.learning_rate
    with strategy.scope():
        model = _clone(baseline)
    previous: list[str] = []
    for i, spec in enumerate(variant.transforms):
        ctx = Context(
            steps_per_epoch=math.ceil(len(splits.x_train) / batch), finetune_epochs=ft.epochs,
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
            trainings.append(
                fit(model, splits, variant=f"{vname}/{step.name}", epochs=ft.epochs, batch_size=batch, seed=cfg.seed,
                    callbacks=step.callbacks(), log_dir=ctx.log_dir, verbose=cfg.train.verbose)
            )
        model = step.strip(model)
        previous.append(step.name)
        transform_reports.append(TransformReport(vname, step.name, params.model_dump(mode="json"), step.backend, step.describe()))
    return model


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return round(float(np.mean(np.argmax(probs, axis=-1) == labels)), 6)
