"""TensorFlow's native start-up noise hidden by default, everything else still on stderr (tfopt/quiet.py)."""

from __future__ import annotations

import os
import sys
import warnings

import pytest

from tfopt import quiet

NOISE = b"I0000 00:00:1796136475.162130    3747 cudart_stub.cc:31] Could not find cuda drivers on your machine\n"


def native_lines(text: str) -> list[str]:
    """Lines of TensorFlow's or LiteRT's native loggers (the patterns the issue names)."""
    return [line for line in text.splitlines() if quiet.NOISE.match(line) or "cuda" in line.lower()]


@pytest.fixture
def hiding(monkeypatch):
    monkeypatch.setattr(quiet, "USER_LOG_LEVEL", None)
    monkeypatch.setitem(quiet._state, "verbose", False)


def test_noise_is_hidden_and_other_lines_written_back(hiding, capfd) -> None:
    with quiet.native_logs_hidden():
        os.write(2, NOISE + b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"a real problem from native code\n")
        print("tfopt: error: from Python", file=sys.stderr)
    err = capfd.readouterr().err
    assert "a real problem from native code" in err and "tfopt: error: from Python" in err
    assert native_lines(err) == []
    os.write(2, b"F0000 00:00:1.5 1 check.cc:1] a crash after the import\n")  # outside the window: as written
    assert "a crash after the import" in capfd.readouterr().err


def test_an_exception_writes_back_everything(hiding, capfd) -> None:
    with pytest.raises(ImportError), quiet.native_logs_hidden():
        os.write(2, NOISE)
        raise ImportError("broken install")
    assert "cudart_stub.cc:31]" in capfd.readouterr().err


@pytest.mark.parametrize("user_level,verbose", [("2", False), (None, True)])
def test_verbose_or_the_users_level_hides_nothing(monkeypatch, capfd, user_level, verbose) -> None:
    monkeypatch.setattr(quiet, "USER_LOG_LEVEL", user_level)
    monkeypatch.setitem(quiet._state, "verbose", verbose)
    with quiet.native_logs_hidden():
        os.write(2, NOISE)
    assert "cudart_stub.cc:31]" in capfd.readouterr().err


def test_known_dependency_warnings_only_are_filtered(monkeypatch) -> None:
    monkeypatch.setitem(quiet._state, "verbose", False)
    with warnings.catch_warnings(record=True) as seen:  # the filters added below end with this block
        warnings.simplefilter("always")
        monkeypatch.setitem(quiet._state, "filtered", False)
        quiet.filter_known_warnings()
        for module, message in (
            ("tensorflow_model_optimization", "distutils Version classes are deprecated. Use packaging.version"),
            ("tensorflow_model_optimization", "Layer conv does not have enough weights to implement clustering."),
        ):
            warnings.warn_explicit(message, DeprecationWarning, "tfmot/__init__.py", 65, module=module)
    assert [str(w.message)[:5] for w in seen] == ["Layer"]  # the actionable one is still shown


def test_known_tensorflow_log_lines_dropped_the_others_printed_once(monkeypatch) -> None:
    import logging

    logger = logging.getLogger("tensorflow")
    monkeypatch.setattr(logger, "filters", list(logger.filters))
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setitem(quiet._state, "verbose", False)
    monkeypatch.setitem(quiet._state, "logger", False)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    try:
        quiet.quiet_tensorflow_logger()
        logger.warning("5 out of the last 13 calls to <function f at 0x1> triggered tf.function retracing. Tracing...")
        logger.warning("Compiled the loaded model, but the compiled metrics have yet to be built.")
        logger.warning("a warning worth reading")
    finally:
        logger.removeHandler(handler)
    assert seen == ["a warning worth reading"]
    assert logger.propagate is False  # not a second copy through the root logger's handler
