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

    pipeline.run(cfg, root=args.out)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from tfopt.data import DATASETS
    from tfopt.export.tflite import EXPORTERS
    from tfopt.models import MODELS
    from tfopt.transforms import TRANSFORMS

    def doc(obj: object) -> str:
        return ((obj.__doc__ or "").strip().splitlines() or [""])[0]

    for title, reg in (("datasets", DATASETS), ("models", MODELS), ("transforms", TRANSFORMS), ("export formats", EXPORTERS)):
        print(f"{title}:")
        for name, obj in reg.items():
            print(f"  {name:<16} {doc(obj)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from tfopt.report import render

    paths = render(args.run_json)
    print(f"[tfopt] report: {paths['html']}  (markdown: {paths['markdown']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfopt", description="Optimize Keras models, export TFLite, report measured results.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a pipeline YAML")
    r.add_argument("pipeline", help="path to a pipeline YAML, e.g. pipelines/quickstart.yaml")
    r.add_argument("--out", default=".", help="root folder for reports/<name>/ and models/<name>/ (default: .)")
    r.set_defaults(func=_cmd_run)
    ls = sub.add_parser("list", help="show registered datasets, models, transforms and export formats")
    ls.set_defaults(func=_cmd_list)
    rep = sub.add_parser("report", help="re-render report.md/report.html from a run.json (no TensorFlow)")
    rep.add_argument("run_json")
    rep.set_defaults(func=_cmd_report)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TfoptError as e:
        if args.debug:
            traceback.print_exc()
        print(f"tfopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfopt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
