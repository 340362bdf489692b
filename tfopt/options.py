"""Typed options of registered components, and the one-line wording of every validation error.

Datasets and models declare a pydantic ``Options`` class and register it with their name
(``tfopt.registry.Entry.options``). Two callers validate raw options against it: the loader
(``tfopt.config``), which knows the YAML lines and prefixes each problem with ``file:line``, and
``tfopt.data.load`` / ``tfopt.models.build`` for Python users who build a config by hand. Both word
the problems here, so a bad value reads the same from a file and from Python: the key, the problem,
the fix, and ``Received: key=value``.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping, Optional, Sequence

from pydantic import BaseModel, ValidationError

from tfopt.errors import TfoptError
from tfopt.registry import Entry
from tfopt.schema import Strict


class NoOptions(Strict):
    """The options of a component registered without any: every key is refused."""


# Fixes for pydantic's generic error types; the components' own ValueErrors carry their own.
_FIXES = {
    "dict_type": "write a mapping (key: value), as in the pipeline reference.",
    "model_type": "write a mapping (key: value), as in the pipeline reference.",
    "list_type": "write a list, e.g. [a, b].",
    "tuple_type": "write a list, e.g. [64, 64].",
    "int_parsing": "use a whole number.",
    "int_type": "use a whole number.",
    "int_from_float": "use a whole number.",
    "float_parsing": "use a number.",
    "float_type": "use a number.",
    "finite_number": "use a finite number.",
    "bool_parsing": "use true or false.",
    "bool_type": "use true or false.",
    "string_type": "use a text value (quote it if it looks like a number).",
    "greater_than": "use a value in that range.",
    "greater_than_equal": "use a value in that range.",
    "less_than": "use a value in that range.",
    "less_than_equal": "use a value in that range.",
    "literal_error": "use one of those values.",
    "string_too_short": "give a non-empty value.",
    "too_short": "give at least one item (a variant lists its transforms, e.g. [{prune: {final_sparsity: 0.5}}]).",
}


def options_class(entry: Entry) -> type[BaseModel]:
    """The typed options class of a registered dataset or model (``NoOptions`` when it has none)."""
    return entry.options or NoOptions


def parse_options(
    entry: Entry,
    raw: Mapping[str, Any],
    *,
    prefix: tuple,
    owner: str,
    error: type[TfoptError],
    common: Sequence[str] = (),
) -> BaseModel:
    """Validate a component's raw options; the typed object, or ``error`` with one line per problem.

    Args:
        entry: the component's registration (its ``options`` class).
        raw: the keys as the user gave them.
        prefix: where they sit in a pipeline, e.g. ``("model", "params")``, to name each key.
        owner: the component in words, e.g. ``"model 'small_cnn'"``.
        error: the TfoptError subclass to raise (DataError, ModelError).
        common: keys valid beside the options (the split keys of ``data``), for "did you mean".

    Example::

        parse_options(MODELS.entry("small_cnn"), {"filters": 0}, prefix=("model", "params"),
                      owner="model 'small_cnn'", error=ModelError)
        # ModelError: model.params.filters: Input should be greater than 0. Fix: use a value
        # in that range. Received: filters=0
    """
    cls = options_class(entry)
    try:
        return cls.model_validate(dict(raw))
    except ValidationError as e:
        known = [*common, *cls.model_fields]
        raise error("\n".join(text for _, text in describe_errors(e, cls, prefix, owner=owner, known=known))) from None


def describe_errors(
    err: ValidationError,
    model: type[BaseModel],
    prefix: tuple = (),
    *,
    owner: Optional[str] = None,
    known: Optional[Sequence[str]] = None,
) -> list[tuple[tuple, str]]:
    """Word pydantic's errors as (location, one-line text) pairs: key, problem, fix, received value.

    Args:
        err: what ``model.model_validate`` raised.
        model: the class that was validated (to list the valid keys of an unknown one).
        prefix: the location of ``model`` inside the pipeline.
        owner: for a component's options, the component in words: an unknown key then reads
            "dataset 'digits' has no option 'color_mode'".
        known: the valid keys to list for an unknown key, instead of the fields of ``model``.
    """
    out = []
    for e in err.errors():
        loc = prefix + tuple(e["loc"])
        key = _dotted(loc)
        received = e.get("input")
        if e["type"] == "extra_forbidden":
            bad = str(loc[-1])
            valid = list(known) if known is not None else _known_fields(model, tuple(e["loc"]))
            close = difflib.get_close_matches(bad, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            listed = ", ".join(valid) or "(none)"
            if owner:
                rec = "" if isinstance(received, (dict, list)) else f" Received: {bad}={received!r}"
                problem = f"{owner} has no option {bad!r}.{hint} Known keys here: {listed}.{rec}"
                out.append((loc, f"unknown key {key!r}: {problem}"))
            else:
                out.append((loc, f"unknown key {key!r}.{hint} Known keys here: {listed}."))
        elif e["type"] == "missing":
            what = _description(model, tuple(e["loc"]))
            out.append((loc, f"missing required key {key!r}{f' ({what})' if what else ''}. Fix: add it."))
        else:
            rec = "" if isinstance(received, (dict, list)) else f" Received: {key.split('.')[-1]}={received!r}"
            msg = e["msg"].removeprefix("Value error, ")
            fix = _FIXES.get(e["type"], "")
            out.append((loc, f"{key}: {msg}.{' Fix: ' + fix if fix and 'Fix:' not in msg else ''}{rec}"))
    return out


def _dotted(loc: tuple) -> str:
    # Under 'variants', 'transforms' and 'params' are synthetic (the YAML shorthand hides them);
    # elsewhere ('model.params') they are what the user wrote.
    synthetic = ("transforms", "params") if loc[:1] == ("variants",) else ()
    out = ""
    for part in loc:
        if part in synthetic or (isinstance(part, str) and ("[" in part or part.startswith("function-"))):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _model_at(model: Any, loc: tuple) -> Any:
    """The config class reached by following ``loc`` from ``model`` (lists and Optional peeled)."""
    cur: Any = model
    for part in loc:
        if isinstance(cur, type) and issubclass(cur, BaseModel) and part in cur.model_fields:
            cur = _unwrap(cur.model_fields[part].annotation)
        elif not isinstance(cur, type):
            cur = _unwrap(cur)
    return cur


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at the parent of ``loc`` (for 'did you mean')."""
    cur = _model_at(model, loc[:-1])
    return list(cur.model_fields) if isinstance(cur, type) and issubclass(cur, BaseModel) else []


def _description(model: type[BaseModel], loc: tuple) -> str:
    """The ``description`` of the field at ``loc``, to say what a missing key should hold."""
    cur = _model_at(model, loc[:-1])
    if isinstance(cur, type) and issubclass(cur, BaseModel) and loc and loc[-1] in cur.model_fields:
        return cur.model_fields[loc[-1]].description or ""
    return ""


def _unwrap(ann: Any) -> Any:
    """Peel Optional/list/dict to the inner BaseModel class, if any."""
    for arg in getattr(ann, "__args__", ()) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return ann
