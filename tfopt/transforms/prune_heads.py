"""Structured pruning of keras-hub BERT encoders: whole attention heads and feed-forward units removed.

Example::

    variants:
      thin: [{prune_channels: {fraction: 0.5, head_fraction: 0.34, importance: taylor}}]

``prune_channels`` on a BERT classifier removes, in every ``TransformerEncoder``:

- a ``fraction`` of the feed-forward units (the intermediate Dense's outputs with the matching input rows of
  the output Dense; ``round_to`` keeps the width a multiple of it);
- a ``head_fraction`` of the attention heads (default: ``fraction``): each head's query, key and value
  columns and its rows of the attention output projection. The head size stays (MiniLM: 12 heads of 32 ->
  8 heads of 32), so the attention width shrinks with the heads.

The residual stream (hidden size), the embeddings, the pooler and the classifier head keep their width:
every layer adds into the same stream, and the output layer is never pruned. ``fractions: {transformer_layer_0:
0.25}`` sets one layer's share of units and heads both (name or glob), ``skip`` leaves layers whole.

Importance per head and per unit, within each layer:

- ``l1`` / ``l2``: norm of the weights that only that head (query, key, value columns and output rows) or
  unit (intermediate column and output row) uses;
- ``taylor``: ``(sum over those weights of weight x gradient)^2`` summed over a few batches of the training
  sample with the model's own predictions as labels (Molchanov et al. 2019; Michel et al. 2019 score heads
  the same way);
- ``bn_scale``: a transformer has no BatchNormalization; it falls back to ``l1`` and the report says so.

The model is rebuilt by ``tfopt.backends.bert_surgery`` with the kept slices: a plain, smaller keras-hub
classifier, fine-tuned like any step and exported like the baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfopt._keras import keras3
from tfopt.backends import bert_surgery
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.transforms import sample_of
from tfopt.transforms.channel_graph import keep_count, matching, weight_gradient_products

NAME = "prune_channels"


def check(config: Any, model: Any) -> None:
    """``fractions`` patterns must name encoder layers (refused before any training otherwise)."""
    names = [layer.name for layer in bert_surgery.encoder_layers(model)]
    matching(config.fractions, names, NAME)
    if config.layer_types:
        raise TransformError(
            f"{NAME}.layer_types does not apply to BERT: heads and feed-forward units of every TransformerEncoder are "
            f"pruned. Fix: select layers by name (layers / skip: {names[0]}, ...). "
            f"Received: layer_types={config.layer_types!r}"
        )


def plan(config: Any, model: Any, context: Any) -> tuple[dict, dict, list[LayerDecision], str]:
    """(heads kept per layer index, units kept per layer index, a decision per layer, the importance used)."""
    check(config, model)
    layers = bert_surgery.encoder_layers(model)
    fractions = matching(config.fractions, [layer.name for layer in layers], NAME)
    kind = "l1" if config.importance == "bn_scale" else config.importance
    used = kind + (" (no BatchNormalization in a transformer: l1)" if config.importance == "bn_scale" else "")
    scores = _taylor(model, layers, context, config.taylor_batches) if kind == "taylor" else None
    heads, units, decisions = {}, {}, []
    for i, layer in enumerate(layers):
        selected, reason = config.select(layer)
        fraction = fractions.get(layer.name, config.fraction)
        if not selected or fraction is None:
            decisions.append(LayerDecision(layer.name, False, reason if not selected else "no fraction given for it"))
            continue
        own = layer.name in fractions  # a layer's own fraction sets its heads too
        head_fraction = config.head_fraction if config.head_fraction is not None and not own else fraction
        h_score, u_score = scores[i] if scores is not None else _norms(layer, kind)
        n_heads, n_units = len(h_score), len(u_score)
        keep_h = keep_count(n_heads, head_fraction, 1)
        keep_u = keep_count(n_units, fraction, config.round_to)
        heads[i] = sorted(np.argsort(-h_score, kind="stable")[:keep_h].tolist())
        units[i] = sorted(np.argsort(-u_score, kind="stable")[:keep_u].tolist())
        decisions.append(
            LayerDecision(
                layer.name,
                keep_h < n_heads or keep_u < n_units,
                f"heads {n_heads} -> {keep_h}, feed-forward {n_units} -> {keep_u} units ({used})",
            )
        )
    return heads, units, decisions, used


def _parts(layer: Any) -> tuple[list[Any], Any, Any, Any]:
    """(query/key/value kernels (hidden, heads, size), attention output kernel (heads, size, hidden),
    intermediate kernel (hidden, units), output kernel (units, hidden)) of one encoder layer."""
    att = layer._self_attention_layer
    qkv = [att._query_dense.kernel, att._key_dense.kernel, att._value_dense.kernel]
    return (
        qkv,
        att._output_dense.kernel,
        layer._feedforward_intermediate_dense.kernel,
        layer._feedforward_output_dense.kernel,
    )


def _norms(layer: Any, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-head and per-unit L1 or L2 norms of the weights only that head or unit uses."""
    qkv, out, inter, ffn_out = (
        [np.asarray(v.numpy()) for v in p] if isinstance(p, list) else np.asarray(p.numpy()) for p in _parts(layer)
    )
    power = 1 if kind == "l1" else 2
    head = sum(np.sum(np.abs(np.moveaxis(w, 1, 0)) ** power, axis=(1, 2)) for w in qkv)
    head = head + np.sum(np.abs(out) ** power, axis=(1, 2))
    unit = np.sum(np.abs(inter) ** power, axis=0) + np.sum(np.abs(ffn_out) ** power, axis=1)
    return (head, unit) if kind == "l1" else (np.sqrt(head), np.sqrt(unit))


def _taylor(model: Any, layers: list[Any], context: Any, batches: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, (sum over each head's / unit's weights of weight x gradient)^2, summed over batches."""
    flat = [v for qkv, out, inter, ffn_out in map(_parts, layers) for v in (*qkv, out, inter, ffn_out)]
    loss_fn = keras3().losses.SparseCategoricalCrossentropy()
    totals = [(0.0, 0.0) for _ in layers]
    for products in weight_gradient_products(model, sample_of(context), batches, flat, loss_fn, NAME):
        for i in range(len(layers)):
            q, kk, v, out, inter, ffn_out = products[6 * i : 6 * i + 6]
            head = sum(np.moveaxis(w, 1, 0).sum(axis=(1, 2)) for w in (q, kk, v)) + out.sum(axis=(1, 2))
            unit = inter.sum(axis=0) + ffn_out.sum(axis=1)
            totals[i] = (totals[i][0] + head**2, totals[i][1] + unit**2)
    return [(np.asarray(h, float), np.asarray(u, float)) for h, u in totals]
