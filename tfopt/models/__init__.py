"""Model registry and the entry point that builds or loads the pipeline's model.

A builder is ``(input_shape, num_classes, **options) -> Keras model`` registered with
``@MODELS.register(name, options=Options, tiny={...})``: ``Options`` is the family's pydantic
class for ``model.params`` (types and ranges, checked at load with ``file:line``), and ``tiny`` a
few values that make it small for tests. The builder is called with every validated option, so
its keyword defaults must equal those of ``Options`` (tests/models checks it for every model).
Adding a model family means adding one file here.

Example::

    class Options(Strict):
        units: int = Field(64, gt=0)

    @MODELS.register("mlp", options=Options, tiny={"units": 4})
    def mlp(input_shape, num_classes, *, units: int = 64): ...
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tfopt.errors import ModelError
from tfopt.options import parse_options
from tfopt.registry import Registry
from tfopt.schema import ModelConfig

MODELS: Registry = Registry("model")


def _register_builtins() -> None:
    from tfopt.models import bert, mobilenet_v2, small_cnn, vgg16  # noqa: F401


_register_builtins()


def build(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """Build a registered model or load the user's file; call inside ``strategy.scope()``.

    Raises:
        ModelError: unknown name, bad params, missing/corrupt/unsafe file, or a model whose
            input or output does not fit the data.
    """
    if cfg.path is not None:
        from tfopt.models.user_file import load_model_file

        model = load_model_file(cfg.path, safe_mode=cfg.safe_mode)
    else:
        typed = options(cfg)  # first: it words an unknown name as a ModelError
        model = MODELS.get(cfg.name)(tuple(input_shape), num_classes, **dict(typed))
    check_fits(model, input_shape, num_classes, cfg.path or cfg.name)
    return model


def options(cfg: ModelConfig) -> BaseModel:
    """The named model's typed options, validated from ``cfg.params``.

    Raises:
        ModelError: unknown model, or a key it does not take, or a bad value (one line each).
    """
    if cfg.name not in MODELS:
        raise ModelError(MODELS.unknown_message(cfg.name))
    return parse_options(
        MODELS.entry(cfg.name), cfg.params, prefix=("model", "params"), owner=f"model {cfg.name!r}", error=ModelError
    )


def prepare_inputs(cfg: ModelConfig, splits: Any) -> Any:
    """Turn a text dataset's strings into the model's inputs with the model family's tokenizer.

    The vocabulary belongs to the checkpoint, so a builder that takes text carries a
    ``prepare_inputs(splits, **params)`` function (see ``models/bert.py``). Image data passes through.

    Raises:
        ModelError: text data for a model that has no tokenizer.
    """
    if not getattr(splits, "is_text", False):
        return splits
    builder = MODELS.get(cfg.name) if cfg.name in MODELS else None
    prepare = getattr(builder, "prepare_inputs", None)
    if prepare is None:
        raise ModelError(
            f"Dataset {splits.name!r} is text, but model {cfg.name or cfg.path!r} has no tokenizer. "
            "Fix: use model: {name: bert, params: {preset: minilm_l6}}."
        )
    return prepare(splits, **dict(options(cfg)))


def check_fits(model: Any, input_shape: tuple[int, ...], num_classes: int, what: str) -> None:
    """Refuse a model whose input shape or class count does not match the dataset."""
    model_in = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, (list, dict)) else None
    if model_in is None and not _takes_tokens(model):
        raise ModelError(f"Model {what!r} has several inputs; tfopt's image pipelines need one image input.")
    if model_in is None:
        pass  # a text model: its builder checked the sequence length against the tokenized data
    elif any(m is not None and m != d for m, d in zip(model_in, input_shape)) or len(model_in) != len(input_shape):
        raise ModelError(
            f"Model {what!r} expects inputs of shape {model_in} but the dataset's images are {tuple(input_shape)}. "
            "Fix: use a dataset of that shape or a model built for it."
        )
    out = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if out != num_classes:
        raise ModelError(
            f"Model {what!r} outputs {out} classes but the dataset has {num_classes}. "
            "Fix: give the model a final layer with that many units."
        )


def _takes_tokens(model: Any) -> bool:
    names = {getattr(t, "name", "").split(":")[0] for t in getattr(model, "inputs", None) or []}
    return {"token_ids", "padding_mask"} <= names
