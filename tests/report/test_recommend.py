"""The recommendation rule: chosen on validation accuracy within the budget, test figures never used."""

from __future__ import annotations

import dataclasses

import pytest

from tfopt.errors import TfoptError
from tfopt.report.recommend import paired_drop_se, pareto_front, recommend
from tfopt.results import Latency, Result


def _r(variant: str, fmt: str, val: float, gzip: int, test: float = 0.5, p50: float = 1.0) -> Result:
    return Result(
        variant=variant, format=fmt, path=f"{variant}_{fmt}.tflite", accuracy=test, size_bytes=gzip * 3,
        gzip_bytes=gzip, sparsity=0.0, max_abs_diff=0.0, tolerance=1.0,
        latency_ms=Latency(p50=p50, p90=p50, mean=p50, runs=10, threads=1), val_accuracy=val,
    )  # fmt: skip


ROWS = [
    dataclasses.replace(_r("baseline", "float32", 0.950, 1000), format="keras", latency_ms=None),
    _r("baseline", "float32", 0.950, 1000, p50=2.0),
    _r("baseline", "int8", 0.948, 300, p50=1.0),
    _r("pruned", "int8", 0.942, 100, p50=1.1),  # within 1 point: the smallest that meets the budget
    _r("pruned95", "int8", 0.900, 40, p50=1.2),  # smaller still, but 5 points lost
]


def test_smallest_file_within_the_budget_is_chosen() -> None:
    rec = recommend(ROWS, max_accuracy_drop=0.01, objective="gzip_bytes")
    assert rec.met and (rec.result.variant, rec.result.format) == ("pruned", "int8")
    assert rec.reference.format == "float32" and "10.0x smaller" in rec.reason()
    assert recommend(ROWS, max_accuracy_drop=0.06).result.variant == "pruned95"
    assert recommend(ROWS, objective="latency_p50").result.format == "int8"  # 1.0 ms, within budget


def test_relative_budget() -> None:
    assert recommend(ROWS, max_accuracy_drop=0.005, relative=True).result.variant == "baseline"  # 0.9% floor 0.94525
    assert recommend(ROWS, max_accuracy_drop=0.009, relative=True).result.variant == "pruned"


def test_test_accuracy_never_changes_the_choice() -> None:
    """Any test figures (here: the opposite ranking) leave the choice alone: it is made on validation."""
    flipped = [dataclasses.replace(r, accuracy=1.0 - r.val_accuracy) for r in ROWS]
    assert recommend(flipped).result.path == recommend(ROWS).result.path == "pruned_int8.tflite"


def test_no_file_meets_the_budget_gives_the_closest_and_says_so() -> None:
    rows = [ROWS[1], dataclasses.replace(ROWS[3], variant="a", val_accuracy=0.90),
            dataclasses.replace(ROWS[4], variant="b", val_accuracy=0.93)]  # fmt: skip
    rec = recommend(rows[1:], reference=ROWS[1])
    assert not rec.met and rec.result.variant == "b" and "no file meets the budget" in rec.reason()


def test_pareto_front_drops_dominated_files() -> None:
    front = pareto_front(ROWS + [_r("worse", "int8", 0.90, 200)])
    assert [(r.variant, r.format) for r in front] == [
        ("pruned95", "int8"), ("pruned", "int8"), ("baseline", "int8"), ("baseline", "float32"),
    ]  # fmt: skip


def test_nothing_to_choose_on_and_unknown_objective() -> None:
    assert recommend([dataclasses.replace(r, val_accuracy=None) for r in ROWS]) is None  # files older than schema 4
    with pytest.raises(TfoptError, match="Unknown objective 'gzip'.*gzip_bytes"):
        recommend(ROWS, objective="gzip")


def test_paired_standard_error_matches_a_hand_computation() -> None:
    # d = ref - file per image = [0, 1, 0, -1]: mean 0, sample variance 2/3, SE sqrt(2/3 / 4)
    assert paired_drop_se([1, 1, 1, 0], [1, 0, 1, 1]) == pytest.approx((2 / 3 / 4) ** 0.5, abs=1e-12)
    assert paired_drop_se([1, 0, 1, 1], [1, 0, 1, 1]) == 0.0  # identical answers: no noise in the drop
    with pytest.raises(ValueError):
        paired_drop_se([1, 0], [1, 0, 1])


def test_margin_keeps_a_file_whose_drop_is_within_noise_of_the_edge_out() -> None:
    noisy = [dataclasses.replace(r, val_drop_se=se) for r, se in zip(ROWS, [None, 0.0, 0.001, 0.003, 0.01])]
    assert recommend(noisy, max_accuracy_drop=0.01).result.variant == "pruned"  # 0.8 points: within on its figure
    rec = recommend(noisy, max_accuracy_drop=0.01, margin=1.0)  # 0.8 + 0.3 > 1 point: the next smallest
    assert rec.met and (rec.result.variant, rec.result.format) == ("baseline", "int8")
    assert "with a margin of 1 standard error (0.10 points)" in rec.reason()
    assert recommend(noisy, max_accuracy_drop=0.01, margin=0.5).result.variant == "pruned"  # 0.8 + 0.15 fits
