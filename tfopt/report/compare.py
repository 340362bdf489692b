"""``tfopt compare``: several run.json files merged into one comparison report.

Each run's variants are prefixed with its name (``quickstart/pruned_80``), so the results table
and plots of ``tfopt.report.render`` serve unchanged; speed-up and compression are relative to
the first run's baseline float32. Only run.json files are read: no TensorFlow, so comparing runs
from different machines or old versions takes seconds.

Example::

    from tfopt.report.compare import compare
    compare(["reports/a/run.json", "reports/b/run.json"], out_dir="reports/compare")
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Sequence, Union

from tfopt.errors import TfoptError
from tfopt.io import atomic_write_bytes, atomic_write_text
from tfopt.results import Run, load_run

_render = importlib.import_module("tfopt.report.render")  # tfopt.report re-exports a function of that name


def _read(path: Union[str, Path]) -> Run:
    path = Path(path)
    if path.is_dir():
        path = path / "run.json"
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(8)
        if head[4:8] == b"TFL3" or path.suffix.lower() == ".tflite":
            raise TfoptError(
                f"{path} is a .tflite model, not a run record. "
                "Fix: give reports/<run>/run.json here; time .tflite files with 'tfopt benchmark'."
            )
    return load_run(path)


def _unique_names(runs: Sequence[Run]) -> list[str]:
    names: list[str] = []
    for run in runs:
        name, i = run.pipeline, 2
        while name in names:
            name, i = f"{run.pipeline}-{i}", i + 1
        names.append(name)
    return names


def merge_runs(runs: Sequence[Run], names: Sequence[str]) -> Run:
    """One run record whose variants, trainings, stages and transforms carry their run's name."""
    if not runs:
        raise TfoptError("Nothing to compare. Fix: give at least one run.json.")

    def tag(obj, name, attr="variant"):
        return dataclasses.replace(obj, **{attr: f"{name}/{getattr(obj, attr)}"})

    first = runs[0]
    return dataclasses.replace(
        first,
        pipeline=" vs ".join(names),
        results=[tag(r, n) for run, n in zip(runs, names) for r in run.results],
        transforms=[tag(t, n) for run, n in zip(runs, names) for t in run.transforms],
        training=[tag(t, n) for run, n in zip(runs, names) for t in run.training],
        stages=[tag(s, n, "name") for run, n in zip(runs, names) for s in run.stages],
        validation_failures=[f"{n}: {v}" for run, n in zip(runs, names) for v in run.validation_failures],
        not_exported=[tag(x, n) for run, n in zip(runs, names) for x in run.not_exported],
    )


def _overview(runs: Sequence[Run], names: Sequence[str], paths: Sequence[str]) -> list:
    rows = []
    for run, name, path in zip(runs, names, paths):
        d = run.dataset
        m = run.machine or {}
        rows.append(
            [
                name,
                f"{d.name} ({d.num_test} test)",
                run.created or _render.MISSING,
                f"{m.get('platform', '?')}, {m.get('cpus', '?')} CPUs"
                + (f", GPUs: {', '.join(m['gpus'])}" if m.get("gpus") else ""),
                run.versions.get("tfopt", _render.MISSING),
                path,
            ]
        )
    notes = [
        f"Variants are prefixed by run name. Compression and speed-up are relative to {names[0]}'s baseline float32."
    ]
    if len({(r.dataset.name, r.dataset.num_test, tuple(r.dataset.input_shape)) for r in runs}) > 1:
        notes.append("The runs use different test sets: their accuracies are not directly comparable.")
    if len({((r.machine or {}).get("platform"), (r.machine or {}).get("cpus")) for r in runs}) > 1:
        notes.append("The runs were measured on different machines: compare latencies within a run, not across runs.")
    return [
        _render._Heading(1, f"tfopt comparison: {', '.join(names)}"),
        _render._Heading(2, "Runs"),
        _render._Table(
            ["run", "dataset", "created", "machine", "tfopt", "run.json"], [list(map(str, r)) for r in rows], "llllll"
        ),
        _render._Para(" ".join(notes)),
    ]


def compare(run_jsons: Sequence[Union[str, Path]], out_dir: Union[str, Path]) -> dict[str, Path]:
    """Merge runs and write ``report.md``, a self-contained ``report.html`` and PNG plots to ``out_dir``.

    Args:
        run_jsons: ``run.json`` paths (or the folders holding them), the first one is the reference.
        out_dir: folder for the comparison report; created if needed.

    Returns:
        Paths written, keyed as ``tfopt.report.render`` keys them.

    Raises:
        TfoptError: a file is missing, not JSON, not a run record, or a .tflite model.
    """
    runs = [_read(p) for p in run_jsons]  # all read before anything is written
    names = _unique_names(runs)
    merged = merge_runs(runs, names)
    # The single-run report's sections but its title, recommendation and header, so new sections show up here too.
    own = (_render._title, _render._recommendation, _render._header)
    blocks = _overview(runs, names, [str(p) for p in run_jsons]) + _render.build_blocks(
        merged, [s for s in _render.SECTIONS if s not in own]
    )
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for b in blocks:
        if isinstance(b, _render._Image):
            written[Path(b.filename).stem] = atomic_write_bytes(out_dir / b.filename, b.png)
    written["markdown"] = atomic_write_text(out_dir / "report.md", _render.to_markdown(blocks))
    written["html"] = atomic_write_text(
        out_dir / "report.html", _render.to_html(blocks, f"tfopt comparison: {', '.join(names)}")
    )
    return written
