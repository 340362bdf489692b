"""The import contracts of pyproject.toml ([tool.importlinter]): layers, no cycles, a report without TensorFlow.

lint-imports reads the imports statically (none of tfopt is run), so this costs under a second.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.is_file(), f"{lint_imports} is missing. Fix: pip install -r requirements.txt (import-linter)."
    # --no-cache: nothing written into the checkout.
    proc = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"lint-imports exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert " 0 broken" in proc.stdout, proc.stdout


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_no_module_imports_a_private_name_of_another() -> None:
    """``from x import _name`` couples a caller to another module's internals; the public API is what tests use."""
    import ast

    found = []
    for path in _python_files("tfopt", "tests", "benchmarks"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                private += [p for p in node.module.split(".") if p.startswith("_") and p != "_keras"]
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.module} {name}" for name in private]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_pipeline_functions_stay_short() -> None:
    """The pipeline reads as its data flow: no function in tfopt/pipeline/ past 60 lines (docstring included)."""
    import ast

    long = []
    for path in _python_files("tfopt/pipeline"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} ({node.end_lineno - node.lineno + 1} lines)"
                )
    assert not long, "\n".join(long)


def test_only_the_backend_layer_asks_which_keras_a_model_is() -> None:
    """Which Keras a model belongs to is decided once, by ``tfopt.backends.backend_for``; elsewhere the
    backend object is passed on. A model's class module (``__mro__``) is read nowhere else."""
    offenders = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in _python_files("tfopt")
        if "backends" not in path.parts
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "__mro__" in line or "keras_kind" in line
    ]
    assert not offenders, offenders
