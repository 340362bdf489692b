"""Which file to ship: the best exported file on an objective within an accuracy budget.

One rule serves the report's recommendation, ``tfopt tune`` and the Python API's ``best()``, so
they cannot disagree. The choice is made on each file's **validation** accuracy
(``Result.val_accuracy``) against the baseline's float32 file on the same split; the test split
only reports the chosen file's figures (no leakage). Candidates are the ``.tflite`` files (what is
deployed); Keras rows are references, never recommended.

Example::

    from tfopt.report.recommend import recommend
    from tfopt.results import load_run
    rec = recommend(load_run("reports/quickstart/run.json"), max_accuracy_drop=0.01, objective="gzip_bytes")
    print(rec.result.path if rec.met else "nothing meets the budget; closest:", rec.result.path)

This module never imports TensorFlow (``tfopt report`` renders without it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

from tfopt.errors import TfoptError
from tfopt.results import Result, Run

OBJECTIVES: dict[str, Callable[[Result], Optional[float]]] = {
    "gzip_bytes": lambda r: r.gzip_bytes,
    "size_bytes": lambda r: r.size_bytes,
    "latency_p50": lambda r: r.latency_ms.p50 if r.latency_ms else None,
    "macs": lambda r: r.macs,
}
"""What "best" can mean: smaller is better for every one of them."""


@dataclass(frozen=True)
class Budget:
    """How much validation accuracy a file may lose against the reference (absolute, or relative to it)."""

    max_drop: float = 0.01
    relative: bool = False

    def floor(self, reference: float) -> float:
        """The lowest validation accuracy that meets the budget."""
        return reference * (1 - self.max_drop) if self.relative else reference - self.max_drop

    def describe(self) -> str:
        points = self.max_drop * 100
        return (
            f"at most {self.max_drop:.1%} of its accuracy"
            if self.relative
            else f"at most {points:g} point{'' if points == 1 else 's'}"
        )


@dataclass(frozen=True)
class Recommendation:
    """The chosen file; ``met`` False means no file met the budget and ``result`` is the closest one."""

    result: Result
    reference: Result  # the baseline's float32 file the budget is measured against
    objective: str
    budget: Budget
    met: bool
    front: list[Result]  # files no other file beats on both validation accuracy and the objective
    margin: float = 0.0  # standard errors of the validation drop a file had to clear the budget by

    def reason(self) -> str:
        """One sentence saying why this file (or that none met the budget)."""
        r, ref = self.result, self.reference
        drop = (ref.val_accuracy - r.val_accuracy) * 100
        against = f"{self.budget.describe()} of validation accuracy below {ref.variant}/{ref.format}"
        if self.margin and r.val_drop_se is not None:
            se = "standard error" + ("" if self.margin == 1 else "s")
            against += f", with a margin of {self.margin:g} {se} ({self.margin * r.val_drop_se * 100:.2f} points)"
        if not self.met:
            return (
                f"no file meets the budget ({against}); this is the closest one, {drop:.2f} points below on validation"
            )
        cost, ref_cost = OBJECTIVES[self.objective](r), OBJECTIVES[self.objective](ref)
        ratio = (
            f"{ref_cost / cost:.1f}x {_BETTER[self.objective]} than {ref.variant}/{ref.format}, "
            if cost and ref_cost
            else ""
        )
        return (
            f"the {_BEST[self.objective]} of the files within the budget ({against}): "
            f"{ratio}{max(drop, 0):.2f} points lost on validation"
        )


_BEST = {"gzip_bytes": "smallest gzip size", "size_bytes": "smallest file", "latency_p50": "lowest p50 latency",
         "macs": "fewest MACs"}  # fmt: skip
_BETTER = {"gzip_bytes": "smaller (gzip)", "size_bytes": "smaller", "latency_p50": "faster (p50)", "macs": "fewer MACs"}


def paired_drop_se(reference_correct: Sequence[bool], correct: Sequence[bool]) -> float:
    """Standard error of the accuracy drop between two files measured on the same images.

    Paired: only the images the two files disagree on add noise, so this is far smaller than the
    two accuracies' own errors when the files mostly agree (a pruned model and its baseline). It is
    the standard error of the mean of d = reference_correct - correct (each -1, 0 or 1).
    """
    n = len(correct)
    if n != len(reference_correct) or n < 2:
        raise ValueError(
            f"paired_drop_se: need two equal-length lists of >= 2 images, got {len(reference_correct)} and {n}"
        )
    d = [int(bool(a)) - int(bool(b)) for a, b in zip(reference_correct, correct)]
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    return (var / n) ** 0.5


def meets(r: Result, reference: Result, budget: Budget, margin: float = 0.0) -> bool:
    """Whether ``r`` is within ``budget`` of ``reference`` on validation, ``margin`` standard errors to spare.

    A file picked at the edge of the budget out of many is optimistic on validation (the winner's
    curse); requiring the drop plus ``margin`` paired standard errors (``Result.val_drop_se``) to fit
    makes the choice hold on new data. A file without a standard error is judged on its figure alone.
    """
    return cautious_accuracy(r, margin) >= budget.floor(reference.val_accuracy) - 1e-12


def cautious_accuracy(r: Result, margin: float) -> float:
    """``r``'s validation accuracy less ``margin`` standard errors of its drop: what is held against the floor."""
    return r.val_accuracy - margin * (r.val_drop_se or 0.0)


def candidates(results: Iterable[Result], objective: str) -> list[Result]:
    """The exported files that have a validation accuracy and a value for ``objective``."""
    fn = _objective(objective)
    return [r for r in results if r.format != "keras" and r.val_accuracy is not None and fn(r) is not None]


def closest(rows: Iterable[Result], objective: str) -> Result:
    """The file nearest a budget none of ``rows`` meets: the most accurate on validation, ties to the objective."""
    fn = _objective(objective)
    return max(rows, key=lambda r: (r.val_accuracy, -fn(r)))


def pareto_front(results: Iterable[Result], objective: str = "gzip_bytes") -> list[Result]:
    """Files not dominated on (validation accuracy up, objective down), sorted by the objective."""
    fn, rows = _objective(objective), candidates(results, objective)
    front = [
        r
        for r in rows
        if not any(
            o.val_accuracy >= r.val_accuracy and fn(o) <= fn(r) and (o.val_accuracy > r.val_accuracy or fn(o) < fn(r))
            for o in rows
        )
    ]
    return sorted(front, key=lambda r: (fn(r), -r.val_accuracy))


def recommend(
    run: Run | Iterable[Result],
    max_accuracy_drop: float = 0.01,
    objective: str = "gzip_bytes",
    relative: bool = False,
    reference: Optional[Result] = None,
    margin: float = 0.0,
) -> Optional[Recommendation]:
    """The file to deploy: best ``objective`` among files whose validation accuracy meets the budget.

    Args:
        run: a run record or its results.
        max_accuracy_drop: validation accuracy a file may lose against ``reference`` (0.01 = 1 point).
        objective: one of ``OBJECTIVES``; ties go to the more accurate file.
        relative: the drop is a fraction of the reference's accuracy instead of points.
        reference: default the baseline's float32 file.
        margin: standard errors of the validation drop (``Result.val_drop_se``) a file must clear
            the budget by (``meets``); 0 judges the validation figure alone.

    Returns:
        The recommendation, or None when the results hold no exported file with a validation
        accuracy (a run without a validation split, or written before schema version 4).

    Raises:
        TfoptError: an unknown objective.
    """
    results = list(run.results if isinstance(run, Run) else run)
    fn, rows = _objective(objective), candidates(results, objective)
    reference = reference or next(
        (r for r in results if r.variant == "baseline" and r.format == "float32" and r.val_accuracy is not None), None
    )
    if not rows or reference is None:
        return None
    budget = Budget(max_accuracy_drop, relative)
    within = [r for r in rows if meets(r, reference, budget, margin)]
    if within:
        best, met = min(within, key=lambda r: (fn(r), -r.val_accuracy)), True
    else:
        best, met = closest(rows, objective), False
    return Recommendation(best, reference, objective, budget, met, pareto_front(rows, objective), margin)


def unavailable_reason(run: Run, objective: str = "gzip_bytes") -> str:
    """Why ``recommend`` found nothing to choose, in words a user can act on (for the report).

    Called when ``recommend`` returned None: no validation split, a run.json older than schema
    version 4, no baseline float32 file to measure against, or no file with a value for ``objective``.
    """
    fn, exported = _objective(objective), [r for r in run.results if r.format != "keras"]
    data = run.config.get("data", {}) if isinstance(run.config, dict) else {}
    if not exported:
        return "the run exported no file."
    if all(r.val_accuracy is None for r in run.results):
        if isinstance(data, dict) and data.get("val_fraction") == 0:
            return (
                "the run has no validation split (data.val_fraction: 0), and a file is never chosen on the test "
                "split. Fix: set data.val_fraction (e.g. 0.1) and run the pipeline again."
            )
        return (
            "this run.json records no validation accuracy (it was written before run.json schema version 4, or "
            "without a validation split), and a file is never chosen on the test split. Fix: run the pipeline "
            "again with this tfopt."
        )
    if not any(fn(r) is not None for r in exported):
        known = ", ".join(OBJECTIVES)
        return f"no exported file has a {objective} figure. Fix: choose another report.objective ({known})."
    return (
        "there is no baseline float32 file with a validation accuracy to measure the accuracy budget against. "
        "Fix: keep float32 in the pipeline's export list."
    )


def _objective(name: str) -> Callable[[Result], Optional[float]]:
    if name not in OBJECTIVES:
        raise TfoptError(
            f"Unknown objective {name!r}. Fix: use one of {', '.join(OBJECTIVES)}. Received: objective={name!r}"
        )
    return OBJECTIVES[name]
