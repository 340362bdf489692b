"""TensorFlow's native start-up noise, hidden unless asked for (``--verbose``, ``--debug``).

TensorFlow 2.21 writes about ten lines to file descriptor 2 on every start, and
``TF_CPP_MIN_LOG_LEVEL`` no longer silences them: absl's "All log messages before
absl::InitializeLog() is called are written to STDERR" comes before any level is read. They
come twice because ``import tensorflow`` loads two native libraries that each carry their own
copy of absl and of the CUDA stub (the core ``_pywrap_tensorflow_internal`` and the profiler's
``_pywrap_profiler_plugin``); not from a second process. "failed call to cuInit" follows at the
first device query, and LiteRT's "Created TensorFlow Lite XNNPACK delegate" at the first
interpreter.

So file descriptor 2 is pointed at a temporary file for those moments only (``native_logs_hidden``);
afterwards every line that is not one of TensorFlow's known start-up lines is written back to
stderr, so a real error still shows, and an exception inside the window writes back everything.
A crash after import is not affected: stderr is restored by then. Nothing is hidden when the user
set ``TF_CPP_MIN_LOG_LEVEL`` themselves (their setting wins) or asked for ``--verbose``.

Python warnings and TensorFlow log lines that a user cannot act on (raised inside dependencies
about their own code, or about tfopt's calls) are filtered by module and message, one known
message at a time (``KNOWN_WARNINGS``, ``KNOWN_LOGS``); every other one is shown as usual.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from typing import Iterator

# Read before tfopt sets its default (tfopt/__init__ imports this module first).
USER_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")

# Lines of TensorFlow's and LiteRT's native loggers seen at start-up (absl's "I0000 00:00:1796136475.162130
# 3747 cudart_stub.cc:31] ..." format, absl's pre-init notice, the CPU-feature and oneDNN notes, TF-TRT, XNNPACK).
NOISE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w./-]+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions:"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|.*oneDNN custom operations are on"
    r"|.*TF-TRT Warning)"
)

# (module regex, message regex, category), each seen in a tfopt run: tfmot's import on Python 3.11, and the
# converter on a QAT model's export (its ranges were learned in training: no statistics are needed).
KNOWN_WARNINGS = (
    (r"tensorflow_model_optimization", r"distutils Version classes are deprecated", DeprecationWarning),
    (r"tensorflow\.lite\.python\.convert", r"Statistics for quantized inputs were expected", UserWarning),
    # TensorFlow's quantization debugger (selective int8, tfopt tune's sensitivity) runs tf.lite.Interpreter itself.
    (r"tensorflow\.lite\.python\.interpreter", r"\s*Warning: tf\.lite\.Interpreter is deprecated", UserWarning),
)

# TensorFlow's Python logger (``WARNING:tensorflow:...``), each seen in tfopt runs and about tfopt's own calls.
KNOWN_LOGS = re.compile(
    r"Gradients do not exist for variables .* when minimizing the loss"  # cluster-preserving QAT trains centroids
    r"|Compiled the loaded model, but the compiled metrics have yet to be built"  # a model tfopt reloads
    r"|\d+ out of the last \d+ calls to .* triggered tf\.function retracing"  # predicting with each variant's model
)

_state = {"verbose": False, "depth": 0, "filtered": False, "logger": False}
_lock = threading.Lock()


def set_verbose(verbose: bool) -> None:
    """Show TensorFlow's native logs and every dependency warning (the CLI's ``--verbose``/``--debug``)."""
    _state["verbose"] = bool(verbose)


def verbose() -> bool:
    """Whether the user asked for every log line (``--verbose``/``--debug``)."""
    return _state["verbose"]


def hiding() -> bool:
    """Whether start-up noise is hidden now: not when verbose, not when the user set TF_CPP_MIN_LOG_LEVEL."""
    return not _state["verbose"] and USER_LOG_LEVEL is None


def filter_known_warnings() -> None:
    """Ignore the dependency warnings in ``KNOWN_WARNINGS`` (once per process; not when verbose)."""
    if _state["filtered"] or _state["verbose"]:
        return
    _state["filtered"] = True
    for module, message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


class _KnownLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not KNOWN_LOGS.search(record.getMessage())


def quiet_tensorflow_logger() -> None:
    """Drop ``KNOWN_LOGS`` from TensorFlow's Python logger, and print its other lines once (not when verbose).

    absl calls ``logging.basicConfig()`` at TensorFlow's first SavedModel log line (every export), so
    the root logger gets a handler and each ``WARNING:tensorflow:`` line printed twice: once by
    TensorFlow's own handler, once by the root's. Kept to TensorFlow's handler, it prints once.
    """
    if _state["logger"] or _state["verbose"]:
        return
    _state["logger"] = True
    logger = logging.getLogger("tensorflow")
    logger.addFilter(_KnownLogs())
    if logger.handlers:
        logger.propagate = False


@contextlib.contextmanager
def native_logs_hidden(discard: bool = False) -> Iterator[None]:
    """Catch what native code writes to file descriptor 2 inside the block; write back all but the noise.

    Re-entrant (an inner block is part of the outer one). On an exception everything caught is
    written back, noise included, so the context of a failed import is not lost.

    ``discard``: the block's output is all noise whatever it says (the MLIR converter logs dozens of
    lines per model, and its errors reach the caller as exceptions), dropped even on an exception;
    hidden unless ``--verbose`` or ``TFOPT_VERBOSE_CONVERTER`` (not the user's TF_CPP_MIN_LOG_LEVEL).
    """
    if discard:  # its own capture, nested or not: nothing of it is written back
        if _state["verbose"] or os.environ.get("TFOPT_VERBOSE_CONVERTER"):
            yield
            return
        with tempfile.TemporaryFile() as tmp, _fd2_to(tmp.fileno()):
            yield
        return
    with _lock:
        outer = _state["depth"] == 0 and hiding()
        _state["depth"] += 1
    if not outer:
        try:
            yield
        finally:
            _state["depth"] -= 1
        return
    failed = True
    with tempfile.TemporaryFile() as tmp:
        try:
            with _fd2_to(tmp.fileno()):
                yield
            failed = False
        finally:
            _state["depth"] -= 1
            tmp.seek(0)
            _write_back(tmp.read().decode("utf-8", "replace"), everything=failed)


@contextlib.contextmanager
def _fd2_to(fd: int) -> Iterator[None]:
    """File descriptor 2 points at ``fd`` inside the block (native code writes there, not to sys.stderr)."""
    _flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        _flush()
        os.dup2(saved, 2)
        os.close(saved)


def _flush() -> None:
    with contextlib.suppress(Exception):  # a closed or replaced sys.stderr
        sys.stderr.flush()


def _write_back(text: str, everything: bool) -> None:
    kept = [line for line in text.splitlines(keepends=True) if everything or not NOISE.match(line)]
    if kept:
        with contextlib.suppress(Exception):
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
