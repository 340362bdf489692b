"""The Python API: optimize a Keras model in hand with the same pipeline as ``tfopt run``.

A notebook holds a model object and arrays, not a YAML file and a registered dataset. ``optimize``
turns its arguments into the same validated ``PipelineConfig`` a YAML file gives (``variants``,
``export``, ``finetune`` in the YAML's forms, refused with the same one-line ``TfoptError``) and
runs ``tfopt.pipeline.run`` with the model and data handed in (``tfopt.pipeline.Given``), so the
two routes cannot drift apart: same steps, files, run.json, report, checkpoints and resume.

Example::

    import tfopt
    run = tfopt.optimize(model, train=(x_train, y_train), test=(x_test, y_test),
                         variants={"pruned": [{"prune": {"final_sparsity": 0.8}}], "qat": ["qat"]},
                         export=["float32", "int8"], out="runs/")
    best = run.best(max_accuracy_drop=0.01, by="gzip_bytes")   # a tfopt.results.Result, or None
    run.table()                                                 # a pandas DataFrame (dicts without pandas)
"""

from __future__ import annotations

import dataclasses
import html
import numbers
import re
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import pydantic

from tfopt import config, pipeline
from tfopt._keras import tf
from tfopt.backends import backend_for
from tfopt.data import Splits, stratified_split
from tfopt.errors import ConfigError, DataError, TfoptError
from tfopt.export import EXPORTERS
from tfopt.report.render import build_blocks, to_html
from tfopt.report.recommend import Recommendation, recommend
from tfopt.results import Result, Run
from tfopt.schema import PipelineConfig

SOURCE = "tfopt.optimize"  # where the config's problems are said to be, in place of a YAML file:line
DEFAULT_VAL_FRACTION = 0.1  # as a YAML pipeline's data.val_fraction

Data = Union[tuple, Any, str, dict]  # (x, y) arrays, a tf.data.Dataset, a registered dataset's name or data block


@dataclasses.dataclass(frozen=True, repr=False)
class OptimizeRun:
    """What ``optimize`` returns: the run record, where its files are, and the file to deploy."""

    record: Run  # the same record as reports/<name>/run.json
    report_path: Path  # reports/<name>/report.html
    models_dir: Path  # models/<name>/: the exported .tflite and Keras files

    def __repr__(self) -> str:  # the record's repr runs to pages (every layer of every file)
        files = sum(r.format != "keras" for r in self.record.results)
        return f"OptimizeRun({self.record.pipeline!r}: {files} exported files, report {str(self.report_path)!r})"

    def recommendation(
        self, max_accuracy_drop: float = 0.01, by: str = "gzip_bytes", relative: bool = False
    ) -> Optional[Recommendation]:
        """The report's rule (``tfopt.report.recommend``): chosen on validation accuracy, with its reason."""
        return recommend(self.record, max_accuracy_drop=max_accuracy_drop, objective=by, relative=relative)

    def best(self, max_accuracy_drop: float = 0.01, by: str = "gzip_bytes", relative: bool = False) -> Optional[Result]:
        """The exported file to deploy: the smallest ``by`` within the accuracy budget, or None if none meets it.

        Args:
            max_accuracy_drop: validation accuracy a file may lose against the baseline's float32
                file (0.01 = one point; a fraction of it with ``relative=True``).
            by: gzip_bytes | size_bytes | latency_p50 | macs (smaller is better).
            relative: read ``max_accuracy_drop`` as a fraction of the baseline's accuracy.

        Raises:
            TfoptError: an unknown ``by``.
        """
        rec = self.recommendation(max_accuracy_drop, by, relative)
        return rec.result if rec is not None and rec.met else None

    def table(self) -> Any:
        """One row per (variant, format): a pandas DataFrame when pandas is installed, else a list of dicts."""
        rows = [_row(r) for r in self.record.results]
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows)

    def _repr_html_(self) -> str:
        """Jupyter shows the run as its report, in a frame so the report's styles stay out of the notebook."""
        page = to_html(build_blocks(self.record), f"tfopt report: {self.record.pipeline}")
        rec = self.recommendation()
        if rec is None:
            line = "No exported file has a validation accuracy to recommend on."
        else:
            verdict = "Deploy" if rec.met else "Nothing meets the budget; closest"
            line = f"{verdict}: {rec.result.variant}/{rec.result.format} ({rec.result.path}): {rec.reason()}."
        return (
            f"<p><strong>{html.escape(line)}</strong><br>Report: <code>{html.escape(str(self.report_path))}</code></p>"
            f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:560px;border:1px solid #ddd">'
            "</iframe>"
        )


def optimize(
    model: Any,
    train: Data,
    test: Optional[Data] = None,
    val: Union[None, float, Data] = None,
    *,
    variants: Optional[dict[str, Any]] = None,
    export: Sequence[Any] = ("float32", "int8"),
    out: Union[str, Path] = "runs",
    name: Optional[str] = None,
    seed: int = 0,
    finetune: Optional[dict[str, Any]] = None,
    train_baseline: Union[None, int, dict[str, Any]] = None,
    evaluate: Optional[dict[str, Any]] = None,
    report: Optional[dict[str, Any]] = None,
    force: bool = False,
    log: Optional[Callable[[str], None]] = print,
) -> Optional[OptimizeRun]:
    """Optimize ``model`` as ``tfopt run`` would, with the model and data in memory.

    Args:
        model: a tf_keras or Keras 3 classifier (Sequential or functional). It is copied: the object
            passed in is neither recompiled nor trained.
        train: ``(x, y)`` arrays (y: integer labels), a ``tf.data.Dataset`` of ``(x, y)`` batches or
            unbatched pairs, or a registered dataset's name (``"digits"``) or YAML ``data:`` block
            (``{"name": "digits", "test_fraction": 0.2}``), which then gives test and validation too.
        test: the test split, in the forms of ``train`` (not with a registered dataset).
        val: the validation split in those forms, or the fraction of ``train`` to carve it from,
            stratified as the registered datasets do (default 0.1). Recommendations use it.
        variants: the YAML's ``variants:`` mapping, e.g. ``{"pruned": [{"prune": {"final_sparsity": 0.8}}]}``.
        export: the YAML's ``export:`` list, e.g. ``["float32", {"int8": {"integer_io": True}}]``.
        out: folder under which ``reports/<name>/`` and ``models/<name>/`` are written.
        name: the run's name (default: the model's name).
        seed: the pipeline seed (splits, fine-tuning).
        finetune: the YAML's ``finetune:`` block, e.g. ``{"epochs": 2}``.
        train_baseline: None keeps the model's weights (an already trained model); a number of
            epochs, or the YAML's ``train:`` block (``{"epochs": 3, "learning_rate": 1e-3}``), trains
            it first. Its other keys (``batch_size``, ``strategy`` ...) apply to fine-tuning too.
        evaluate: the YAML's ``evaluate:`` block (latency runs, threads).
        report: the YAML's ``report:`` block, where this version's schema has one.
        force: replace a finished run of the same name instead of refusing.
        log: where progress lines go (None: nowhere).

    Returns:
        The run: ``.record``, ``.best()``, ``.table()``, ``.report_path``; shown as the report in Jupyter.
        None on the non-chief workers of a multi-worker run (``strategy: multi_worker``), which write nothing.

    Raises:
        TfoptError: bad arguments (one line each: problem, place, fix), or anything ``tfopt run`` refuses.
    """
    backend_for(model)  # not a Keras model: refused before anything else
    by_name = isinstance(train, (str, dict))
    data = (train if isinstance(train, dict) else {"name": train}) if by_name else _data_block(train, val)
    cfg = _config(model, data, by_name, name, seed, variants, export, finetune, train_baseline, evaluate, report)
    splits = None if by_name else in_memory_splits(model, train, test, val, seed)
    if by_name and (test is not None or val is not None):
        raise DataError(
            f"{SOURCE}: test= and val= do not apply to a registered dataset, which gives its own splits. "
            f"Fix: set test_fraction / val_fraction in its data block, e.g. train={{'name': {cfg.data.name!r}, "
            "'val_fraction': 0.1}."
        )
    record = pipeline.run(
        cfg, root=out, log=log or (lambda _: None), force=force, given=pipeline.Given(model=model, splits=splits)
    )
    if record is None:
        return None
    return OptimizeRun(record, Path(out) / "reports" / cfg.name / "report.html", Path(out) / "models" / cfg.name)


def _config(
    model: Any,
    data: dict,
    registered: bool,
    name: Optional[str],
    seed: int,
    variants: Optional[dict],
    export: Sequence[Any],
    finetune: Optional[dict],
    train_baseline: Union[None, int, dict],
    evaluate: Optional[dict],
    report: Optional[dict],
) -> PipelineConfig:
    """The validated pipeline, as a YAML file with these keys would give it."""
    if isinstance(train_baseline, bool) or not isinstance(train_baseline, (type(None), int, dict)):
        raise ConfigError(
            f"{SOURCE}: train_baseline must be None (keep the weights), a number of epochs or a train: block. "
            f"Fix: e.g. train_baseline={{'epochs': 3}}. Received: train_baseline={train_baseline!r}"
        )
    raw = {
        "name": name or _slug(model.name),
        "seed": seed,
        "data": data,
        "model": {"name": f"{model.name} (in memory)"},
        "train": {"epochs": 0} if train_baseline is None else _train_block(train_baseline),
        "variants": {} if variants is None else variants,
        "export": list(export) if isinstance(export, (list, tuple)) else export,
        **{k: v for k, v in (("finetune", finetune), ("evaluate", evaluate), ("report", report)) if v is not None},
    }
    try:
        cfg = PipelineConfig.model_validate(raw, context={"export_formats": list(EXPORTERS)})
    except pydantic.ValidationError as e:
        raise ConfigError(config.format_validation_error(e, SOURCE, {}, PipelineConfig)) from None
    config.check_references(cfg, SOURCE, data=registered, model=False)
    return cfg


def _data_block(train: Any, val: Any) -> dict:
    """How in-memory data is recorded in the config: its kind, and the fraction of ``train`` carved for validation."""
    fraction = DEFAULT_VAL_FRACTION if val is None else val if _is_fraction(val) else 0.0
    return {"name": _data_name(train), "val_fraction": fraction}


def _is_fraction(val: Any) -> bool:
    return isinstance(val, numbers.Real) and not isinstance(val, bool)


def _train_block(train_baseline: Union[int, dict]) -> dict:
    return {"epochs": train_baseline} if isinstance(train_baseline, int) else dict(train_baseline)


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_.-")
    return slug or "optimize"


def _data_name(train: Any) -> str:
    return "tf.data" if _is_dataset(train) else "arrays"


def _is_dataset(obj: Any) -> bool:
    return isinstance(obj, tf().data.Dataset)


def in_memory_splits(model: Any, train: Data, test: Optional[Data], val: Any = None, seed: int = 0) -> Splits:
    """The splits ``optimize`` runs on: inputs as float32, labels as int64, tf.data datasets read out.

    Validation is carved from ``train`` as ``tfopt.data.load`` carves it (stratified, seed + 1)
    unless ``val`` gives it; the class count is the model's output width (or the labels', if larger).

    Raises:
        DataError: a split that is not (x, y) arrays or a dataset of them, one-hot or negative labels,
            inputs and labels of different lengths, or splits of different input shapes.
    """
    if test is None:
        raise DataError(
            f"{SOURCE}: test= is missing: the test split gives the reported accuracy. "
            "Fix: pass test=(x_test, y_test), or train='digits' for a registered dataset."
        )
    x_train, y_train = _pairs(train, "train")
    x_test, y_test = _pairs(test, "test")
    if val is None or _is_fraction(val):
        fraction = DEFAULT_VAL_FRACTION if val is None else val
        x_train, y_train, x_val, y_val = stratified_split(x_train, y_train, fraction, seed + 1)
    else:
        x_val, y_val = _pairs(val, "val")
    for part, x in (("test", x_test), ("val", x_val)):
        if x.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{SOURCE}: {part} inputs are shaped {x.shape[1:]} but train inputs {x_train.shape[1:]}. "
                "Fix: give every split the same input shape."
            )
    outputs = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    num_classes = max(int(max(y_train.max(), y_test.max(), y_val.max(initial=0))) + 1, outputs or 0)
    source = "tf.data.Dataset given to tfopt.optimize" if _is_dataset(train) else "arrays given to tfopt.optimize"
    names = [str(i) for i in range(num_classes)]
    return Splits(_data_name(train), source, x_train, y_train, x_val, y_val, x_test, y_test, names)


def _pairs(data: Data, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as float32 inputs and int64 labels, from arrays or a tf.data.Dataset."""
    if _is_dataset(data):
        x, y = _from_dataset(data, part)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
    else:
        raise DataError(
            f"{SOURCE}: {part}= must be (x, y) arrays or a tf.data.Dataset of (x, y). "
            f"Fix: pass {part}=(x_{part}, y_{part}). Received: {part}={type(data).__name__}"
        )
    if x.dtype.kind not in "fiub":
        raise DataError(
            f"{SOURCE}: {part} inputs must be numbers (images or features), got dtype {x.dtype}. "
            "Fix: tokenize text first, or use a registered text dataset with a model: block in a pipeline YAML."
        )
    if len(x) != len(y) or len(x) == 0:
        raise DataError(
            f"{SOURCE}: {part} has {len(x)} inputs and {len(y)} labels. Fix: give one label per input, at least one."
        )
    if y.ndim != 1 or y.dtype.kind not in "iub" or (y < 0).any():
        raise DataError(
            f"{SOURCE}: {part} labels must be non-negative integers in a 1-D array (not one-hot), got "
            f"dtype {y.dtype} shape {y.shape}. Fix: pass y.argmax(axis=-1) for one-hot labels."
        )
    return x.astype("float32"), y.astype("int64")


def _from_dataset(ds: Any, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Every (x, y) of a dataset of batches or of single pairs, concatenated."""
    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise DataError(
            f"{SOURCE}: {part}= is a tf.data.Dataset of {spec}, not of (x, y) pairs. "
            f"Fix: map it to pairs, e.g. ds.map(lambda d: (d['image'], d['label']))."
        )
    rank = spec[1].shape.rank  # labels: () for single pairs, (batch,) for batches
    if rank not in (0, 1):
        raise DataError(
            f"{SOURCE}: {part} labels must be integers (one per example), got label shape {spec[1].shape}. "
            "Fix: map one-hot labels to integers with tf.argmax(y, axis=-1)."
        )
    xs, ys = zip(*ds.as_numpy_iterator()) if ds.cardinality() != 0 else ((), ())
    if not xs:
        raise DataError(f"{SOURCE}: {part}= is an empty tf.data.Dataset. Fix: pass one with examples.")
    join = np.stack if rank == 0 else np.concatenate
    return join(xs), join(ys)


def _row(r: Result) -> dict[str, Any]:
    """The table's columns: a file's figures, without its per-layer detail."""
    return {
        "variant": r.variant,
        "format": r.format,
        "accuracy": r.accuracy,
        "val_accuracy": r.val_accuracy,
        "size_bytes": r.size_bytes,
        "gzip_bytes": r.gzip_bytes,
        "sparsity": r.sparsity,
        "max_abs_diff": r.max_abs_diff,
        "latency_p50_ms": r.latency_ms.p50 if r.latency_ms else None,
        "macs": r.macs,
        "path": r.path,
    }


__all__ = ["OptimizeRun", "TfoptError", "in_memory_splits", "optimize"]
