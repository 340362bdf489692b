"""The report's ``tfopt tune`` section: the recommendation, the budget, the per-layer sensitivity, every
trial and a plot of them with the Pareto front and the chosen point. Empty for ``tfopt run`` records.

It builds the same block types as ``render.py``, handed in by ``build_blocks`` (``kinds``), so this
module does not import ``render`` (which imports it: no cycle).
"""

from __future__ import annotations

import io
from typing import Any, Optional

from matplotlib.figure import Figure

from tfopt.report.plots import DPI
from tfopt.results import Run

NO_LEAKAGE = "trials were scored on validation; the test split was used once, for the reported models"


def tune_blocks(run: Run, kinds: dict[str, type]) -> list[Any]:
    """The section's blocks; ``kinds`` maps heading, para, keyvalues, table, image to render's block classes."""
    if run.tune is None:
        return []
    H, P, KV, T, Img = (kinds[k] for k in ("heading", "para", "keyvalues", "table", "image"))
    t, rec = run.tune, run.recommended
    blocks: list[Any] = [H(2, "Search (tfopt tune)")]
    if rec is not None:
        verdict = (
            "" if rec.met else " NO trial met the accuracy budget: this is the closest file, not a recommendation."
        )
        blocks.append(P(f"Deploy {rec.path} ({rec.variant}/{rec.format}): {rec.reason}.{verdict}"))
    blocks.append(P(NO_LEAKAGE[0].upper() + NO_LEAKAGE[1:] + "."))
    done = [x for x in run.trials if x.status == "COMPLETED"]
    budget = f"{t.max_accuracy_drop:.1%} of its accuracy" if t.relative else f"{t.max_accuracy_drop * 100:g} points"
    blocks.append(
        KV(
            [
                ("objective", t.objective),
                ("budget", f"at most {budget} below {t.reference} on validation ({t.reference_val_accuracy:.4f})"),
                ("margin", _margin(t.margin)),
                ("oracle", t.tuner),
                (
                    "trials",
                    f"{len(run.trials)} ({len(done)} completed, {sum(x.met_budget for x in done)} within budget)",
                ),
                ("time", f"{t.seconds:.0f} s from data to the last trial"),
                ("Pareto front", ", ".join(run.pareto) or "-"),
            ]
        )
    )
    png = plot_trials(run)
    if png is not None:
        blocks.append(Img("tune_trials.png", "Trials: validation accuracy vs objective, Pareto front, chosen", png))
    blocks += _tested(run, H, T) + _sensitivity(run, H, T) + _trials(run, H, T)
    return blocks


def _tested(run: Run, H: type, T: type) -> list[Any]:
    names = {p.split("/")[0] for p in run.pareto} | ({run.recommended.variant} if run.recommended else set())
    rows = [r for r in run.results if (r.variant in names and r.format != "keras") or r.variant == "baseline"]
    rows = [r for r in rows if r.format != "keras"]
    chosen = (run.recommended.variant, run.recommended.format) if run.recommended else None
    table = [
        [
            r.variant + (" (recommended)" if (r.variant, r.format) == chosen else ""),
            r.format,
            f"{r.val_accuracy:.4f}" if r.val_accuracy is not None else "-",
            f"{r.accuracy:.4f}",
            f"{r.gzip_bytes / 1024:.1f}",
        ]
        for r in rows
    ]
    return [
        H(3, "Reported files (test split, once)"),
        T(["variant", "format", "val acc", "test acc", "gzip KiB"], table, "llrrr"),
    ]


def _sensitivity(run: Run, H: type, T: type) -> list[Any]:
    t = run.tune
    if not t.sensitivity:
        return []
    headers = ["layer", "weights", *[f"val acc @ {s:g}" for s in t.sparsities], "int8 output RMSE", "int8, it float"]
    rows = [
        [
            s.layer,
            str(s.weights),
            *[f"{a:.4f}" for a in s.pruned_val_accuracy],
            f"{s.quant_error:.3g}" if s.quant_error is not None else "-",
            f"{s.kept_float_val_accuracy:.4f}" if s.kept_float_val_accuracy is not None else "-",
        ]
        for s in t.sensitivity
    ]
    return [
        H(3, "Per-layer sensitivity (each layer alone, no fine-tune)"),
        T(headers, rows, "lr" + "r" * len(t.sparsities) + "rr"),
    ]


def _trials(run: Run, H: type, T: type) -> list[Any]:
    rows = []
    for x in run.trials:
        params = ", ".join(f"{k}={_short(v)}" for k, v in x.params.items() if not k.startswith("tuner/"))
        rows.append(
            [
                x.variant,
                x.format or "-",
                f"{x.val_accuracy:.4f}" if x.val_accuracy is not None else "-",
                f"{x.val_drop_se * 100:.2f}" if x.val_drop_se is not None else "-",
                _short(x.objective) if x.objective is not None else "-",
                "yes" if x.met_budget else "no",
                f"{x.seconds:.1f}",
                params if x.status == "COMPLETED" else f"FAILED: {x.error} ({params})",
            ]
        )
    return [
        H(3, "Trials (validation)"),
        T(
            ["trial", "format", "val acc", "drop SE pts", run.tune.objective, "in budget", "s", "parameters"],
            rows,
            "llrrrlrl",
        ),
    ]


def _margin(margin: float) -> str:
    if not margin:
        return "none: a trial is judged on its validation figure alone"
    return (
        f"{margin:g} paired standard error(s) of each trial's validation drop: the best of many trials is "
        "optimistic on validation (the winner's curse), so the drop plus this margin must fit the budget"
    )


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def plot_trials(run: Run) -> Optional[bytes]:
    """Every completed trial (validation accuracy vs objective), the front, the chosen point, the budget floor."""
    done = [x for x in run.trials if x.status == "COMPLETED" and x.objective is not None]
    if not done or run.tune is None:
        return None
    t = run.tune
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    ax.scatter([x.objective for x in done], [x.val_accuracy for x in done], c="#7f7f7f", s=22, label="trials")
    noisy = [x for x in done if x.val_drop_se]
    if noisy and t.margin:  # what the margin takes off each trial before it is held against the floor
        ax.errorbar(
            [x.objective for x in noisy], [x.val_accuracy for x in noisy],
            yerr=[[t.margin * x.val_drop_se for x in noisy], [0.0] * len(noisy)],
            fmt="none", ecolor="#bbbbbb", lw=1, label=f"margin ({t.margin:g} SE of the drop)",
        )  # fmt: skip
    front = sorted((x for x in done if f"{x.variant}/{x.format}" in run.pareto), key=lambda x: x.objective)
    if front:
        ax.plot([x.objective for x in front], [x.val_accuracy for x in front], "-o", c="#1f77b4", label="Pareto front")
    chosen = next((x for x in done if run.recommended and x.variant == run.recommended.variant), None)
    if chosen is not None:
        ax.scatter([chosen.objective], [chosen.val_accuracy], marker="*", s=220, c="#d62728", label="recommended")
    floor = (
        t.reference_val_accuracy * (1 - t.max_accuracy_drop)
        if t.relative
        else t.reference_val_accuracy - t.max_accuracy_drop
    )
    ax.axhline(floor, ls="--", c="#2ca02c", lw=1, label="budget floor")
    ax.set_xlabel(t.objective + (" (log)" if t.objective.endswith("bytes") else ""))
    if t.objective.endswith("bytes"):
        ax.set_xscale("log")
    ax.set_ylabel("validation accuracy")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
