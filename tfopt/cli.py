"""The ``tfopt`` command: thin, every command calls the library function a Python user would."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Optional, Sequence

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

    def doc(obj: object) -> str:
        return ((obj.__doc__ or "").strip().splitlines() or [""])[0].replace("``", "")

    sections = [
        (title, [(name, doc(obj)) for name, obj in reg.items()])
        for title, reg in (("datasets", DATASETS), ("models", MODELS), ("export formats", EXPORTERS))
    ]
    sections.insert(
        2,
        ("transforms [Keras backends]", [(n, f"{t.summary} [{', '.join(t.backends)}]") for n, t in TECHNIQUES.items()]),
    )
    width = max(len(name) for _, rows in sections for name, _ in rows)  # one column for every section
    for title, rows in sections:
        print(f"{title}:")
        for name, text in rows:
            print(f"  {name:<{width}}  {text}")
    return 0


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
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a pipeline YAML")
    r.add_argument("pipeline", help="path to a pipeline YAML, e.g. pipelines/quickstart.yaml")
    r.add_argument("--out", default=".", help="root folder for reports/<name>/ and models/<name>/ (default: .)")
    r.add_argument("--force", action="store_true", help="replace a finished run of the same name (default: refuse)")
    r.set_defaults(func=_cmd_run)
    tn = sub.add_parser("tune", help="search for the smallest/fastest file within an accuracy budget (docs/tune.md)")
    tn.add_argument("pipeline", help="a pipeline YAML; its search: section sets budget and space (default: built)")
    tn.add_argument("--max-trials", type=int, help="trials to run (default: search.max_trials)")
    tn.add_argument("--time-budget", help="stop starting trials after this long, e.g. 30m, 1h, 900 (seconds)")
    tn.add_argument("--out", default=".", help="root folder for reports/<name>/ and models/<name>/ (default: .)")
    tn.add_argument("--force", action="store_true", help="replace a finished run of the same name (default: refuse)")
    tn.set_defaults(func=_cmd_tune)
    ls = sub.add_parser("list", help="show registered datasets, models, transforms and export formats")
    ls.set_defaults(func=_cmd_list)
    rep = sub.add_parser("report", help="re-render report.md/report.html from a run.json (no TensorFlow)")
    rep.add_argument("run_json")
    rep.set_defaults(func=_cmd_report)
    bench = sub.add_parser(
        "benchmark", help="latency, throughput and peak memory of a .tflite through LiteRT (no TensorFlow)"
    )
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
    cmp = sub.add_parser("compare", help="merge several run.json into one comparison report (no TensorFlow)")
    cmp.add_argument(
        "run_jsons", nargs="+", metavar="RUN.json", help="run.json files (or their folders); the first is the reference"
    )
    cmp.add_argument(
        "--out", default="reports/compare", help="folder for report.md/report.html (default: reports/compare)"
    )
    cmp.set_defaults(func=_cmd_compare)
    pred = sub.add_parser(
        "predict", help="class probabilities of a text (BERT) .tflite for raw text, tokenized as in training"
    )
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
