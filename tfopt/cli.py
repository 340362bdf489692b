"""The ``tfopt`` command: thin, every command calls the library function a Python user would."""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import sys
import textwrap
import traceback
from typing import Optional, Sequence

from tfopt.quiet import set_verbose
from tfopt.errors import TfoptError


def _cmd_run(args: argparse.Namespace) -> int:
    from tfopt import config

    cfg = config.load(args.pipeline)
    from tfopt import pipeline  # imports TensorFlow: after the config is known to be valid

    pipeline.run(cfg, root=args.out, force=args.force)
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from tfopt import config

    cfg = config.load(args.pipeline)
    from tfopt.tune import tune  # imports TensorFlow and keras-tuner: after the config is known to be valid

    tune(cfg, root=args.out, force=args.force, max_trials=args.max_trials, time_budget=args.time_budget)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from tfopt.data import DATASETS
    from tfopt.export.tflite import EXPORTERS
    from tfopt.models import MODELS
    from tfopt.transforms import TECHNIQUES

    sections = [
        (title, [(name, describe(obj.__doc__)) for name, obj in reg.items()])
        for title, reg in (("datasets", DATASETS), ("models", MODELS), ("export formats", EXPORTERS))
    ]
    sections.insert(
        2,
        (
            "transforms [Keras backends]",
            [(n, f"{describe(t.summary)} [{', '.join(t.backends)}]") for n, t in TECHNIQUES.items()],
        ),
    )
    print(format_listing(sections, shutil.get_terminal_size((120, 24)).columns))  # 120 when piped
    return 0


def describe(doc: Optional[str]) -> str:
    """A docstring's first paragraph as one line of plain text (reStructuredText roles and backticks removed)."""
    first = re.split(r"\n\s*\n", (doc or "").strip(), maxsplit=1)[0]
    text = " ".join(first.split())
    text = re.sub(r":\w+:`([^`]*)`", r"\1", text)  # :class:`x`
    return re.sub(r"`{1,2}([^`]*)`{1,2}", r"\1", text)


def format_listing(sections: Sequence[tuple[str, Sequence[tuple[str, str]]]], width: int = 100) -> str:
    """Sections of (name, description) rows: one name column for all, descriptions wrapped to ``width``."""
    names = max((len(name) for _, rows in sections for name, _ in rows), default=0)
    indent = " " * (2 + names + 2)
    wrap = max(40, width - len(indent))  # a long name still leaves room for the text
    lines = []
    for title, rows in sections:
        lines.append(f"{title}:")
        for name, text in rows:
            parts = textwrap.wrap(text, wrap) or ["(no description)"]
            lines.append(f"  {name:<{names}}  {parts[0]}")
            lines += [indent + part for part in parts[1:]]
    return "\n".join(lines)


def _cmd_report(args: argparse.Namespace) -> int:
    from tfopt.report import render

    paths = render(args.run_json)
    print(f"[tfopt] report: {paths['html']}  (markdown: {paths['markdown']})")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from tfopt.benchmark import benchmark, format_benchmark

    b = benchmark(
        args.model,
        vs=args.vs,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        batch=args.batch,
        data=args.data,
        rounds=args.rounds,
        memory=not args.no_memory,
    )
    print(format_benchmark(b))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from tfopt.report.compare import compare

    paths = compare(args.run_jsons, args.out)
    print(f"[tfopt] comparison: {paths['html']}  (markdown: {paths['markdown']})")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from tfopt.evaluate.inspection import format_inspection, inspect_tflite

    info = inspect_tflite(args.model)
    print(json.dumps(info.to_dict(), indent=2) if args.json else format_inspection(info))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from tfopt.models.bert import predict_texts

    classes, probs = predict_texts(args.model, args.text, preset=args.preset, seq_len=args.seq_len)
    for text, row in zip(args.text, probs):
        if len(args.text) > 1:
            print(text)
        width = max(len(c) for c in classes)
        for name, p in zip(classes, row):
            print(f"  {name:<{width}}  {p:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tfopt", description="Optimize Keras models, export TFLite, report measured results."
    )
    _add_log_flags(p, default=False)
    common = argparse.ArgumentParser(add_help=False)  # the same flags after the command: tfopt run x.yaml --verbose
    _add_log_flags(common, default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, parents=[common])
    r = add("run", help="run a pipeline YAML")
    r.add_argument("pipeline", help="path to a pipeline YAML, e.g. pipelines/quickstart.yaml")
    r.add_argument("--out", default=".", help="root folder for reports/<name>/ and models/<name>/ (default: .)")
    r.add_argument("--force", action="store_true", help="replace a finished run of the same name (default: refuse)")
    r.set_defaults(func=_cmd_run)
    tn = add("tune", help="search for the smallest/fastest file within an accuracy budget (docs/tune.md)")
    tn.add_argument("pipeline", help="a pipeline YAML; its search: section sets budget and space (default: built)")
    tn.add_argument("--max-trials", type=int, help="trials to run (default: search.max_trials)")
    tn.add_argument("--time-budget", help="stop starting trials after this long, e.g. 30m, 1h, 900 (seconds)")
    tn.add_argument("--out", default=".", help="root folder for reports/<name>/ and models/<name>/ (default: .)")
    tn.add_argument("--force", action="store_true", help="replace a finished run of the same name (default: refuse)")
    tn.set_defaults(func=_cmd_tune)
    ls = add("list", help="show registered datasets, models, transforms and export formats")
    ls.set_defaults(func=_cmd_list)
    rep = add("report", help="re-render report.md/report.html from a run.json (no TensorFlow)")
    rep.add_argument("run_json")
    rep.set_defaults(func=_cmd_report)
    bench = add("benchmark", help="latency, throughput and peak memory of a .tflite through LiteRT (no TensorFlow)")
    bench.add_argument("model", help="a .tflite file")
    bench.add_argument(
        "--vs", metavar="OTHER.tflite", help="time a second file alternately in the same process and print the ratio"
    )
    bench.add_argument("--threads", type=int, default=1, help="LiteRT/XNNPACK threads (default: 1)")
    bench.add_argument("--runs", type=int, default=100, help="timed invocations per model (default: 100)")
    bench.add_argument("--warmup", type=int, default=10, help="untimed invocations first (default: 10)")
    bench.add_argument("--batch", type=int, default=1, help="samples per invocation (default: 1)")
    bench.add_argument("--rounds", type=int, default=10, help="alternating blocks with --vs (default: 10)")
    bench.add_argument(
        "--data", help="inputs: an .npz with key x, or a dataset name (default: random inputs, timing only)"
    )
    bench.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory probe (a fresh process per model)"
    )
    bench.set_defaults(func=_cmd_benchmark)
    cmp = add("compare", help="merge several run.json into one comparison report (no TensorFlow)")
    cmp.add_argument(
        "run_jsons", nargs="+", metavar="RUN.json", help="run.json files (or their folders); the first is the reference"
    )
    cmp.add_argument(
        "--out", default="reports/compare", help="folder for report.md/report.html (default: reports/compare)"
    )
    cmp.set_defaults(func=_cmd_compare)
    ins = add(
        "inspect", help="operators, weights (dtype, quantization, sparsity, unique values), MACs, inputs and outputs "
        "of any .tflite, read from the file (no TensorFlow)",
    )  # fmt: skip
    ins.add_argument("model", help="a .tflite file, e.g. models/quickstart/pruned_80_int8.tflite")
    ins.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    ins.set_defaults(func=_cmd_inspect)
    pred = add("predict", help="class probabilities of a text (BERT) .tflite for raw text, tokenized as in training")
    pred.add_argument(
        "model", help="a .tflite exported by a BERT pipeline, e.g. models/bert_rotten_tomatoes/baseline_dynamic.tflite"
    )
    pred.add_argument("--text", action="append", required=True, help="text to classify (repeat for several)")
    pred.add_argument(
        "--preset", help="tokenizer: minilm_l6, tiny or a checkpoint folder (default: inputs.json beside the model)"
    )
    pred.add_argument(
        "--seq-len", type=int, help="tokens per text (default: inputs.json, else the model's input length)"
    )
    pred.set_defaults(func=_cmd_predict)
    return p


def _add_log_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--verbose", action="store_true", default=default,
        help="show TensorFlow's native start-up logs and dependency warnings (hidden by default)",
    )  # fmt: skip
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show full tracebacks (implies --verbose)"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    set_verbose(args.verbose or args.debug)
    try:
        return args.func(args)
    except TfoptError as e:
        if args.debug:
            traceback.print_exc()
        for line in str(e).splitlines() or [type(e).__name__]:  # one prefixed line per problem
            print(f"tfopt: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfopt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (tfopt list | head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1


if __name__ == "__main__":
    sys.exit(main())
