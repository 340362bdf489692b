"""Structured pruning: whole channels (conv filters, dense units) removed, giving a smaller dense model.

Example::

    variants:
      thin: [{prune_channels: {fraction: 0.5}}]
      thin_int8: [{prune_channels: {fraction: 0.5, importance: l2, round_to: 8}}, qat]
      thin_head: [{prune_channels: {fraction: 0.3, fractions: {conv2: 0.7}, skip: [conv1]}}]

Magnitude pruning (``prune``) zeroes weights: the file compresses but runs at the same speed.
Here the removed channels are gone from the model, so the exported file does fewer
multiply-accumulates (MACs, read back from the file into run.json) and runs faster.

Channels are removed in coupled groups that follow the model's dependencies
(``tfopt.transforms.channel_graph``): a conv's BatchNormalization, the activations after it and the
next layer's input lose the same channels; every branch of an Add loses the same channels; a
Flatten into a Dense loses each channel's block of inputs. A group is scored by the sum of its
members' importance and the lowest-scored groups go:

- ``l1`` / ``l2``: norm of each producer's filter (kernel slice of one output channel);
- ``bn_scale``: ``|gamma|`` of the BatchNormalization layers in the group (network slimming);
  groups of a coupled set with no BatchNormalization fall back to ``l1`` (the report says so);
- ``taylor``: first-order Taylor score ``(sum over the filter of weight x gradient)^2``, summed over a few
  batches of the training sample (``Context.data``), with the model's own predictions as labels.

Scores come from the producers (or their BatchNormalization) only: removing a group also removes
what later layers of the group add to it (a BatchNormalization's offset after a dead ReLU, which
Taylor scores 0), which the fine-tune then absorbs.

``fraction`` is the share of each coupled set's channels removed; ``fractions`` overrides it per
layer (name or glob; a set of coupled layers takes the largest fraction among its members).
``round_to: 8`` keeps every set's width a multiple of 8 (the nearest one, at least 8), which
XNNPACK's kernels prefer. The output layer is never pruned. The new model is rebuilt from the
model's config with the widths changed and the sliced weights set, then fine-tuned like any step;
any step can follow it (prune, cluster, qat).

A keras-hub BERT classifier loses attention heads and feed-forward units instead (``head_fraction``,
``prune_heads.py``) and stays a Keras 3 model. Any other Keras 3 functional or Sequential model of built-in
layers is pruned through its exact tf_keras
twin (``tfopt.backends.translate``, outputs checked equal on the training sample): the variant is
a tf_keras model from this step on, and later steps, fine-tunes and exports use tf_keras.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from tfopt._keras import keras
from tfopt.backends import backend_named, bert_surgery
from tfopt.backends.translate import TOLERANCE, to_tf_keras
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.transforms import Transform, layer_selected, prune_heads, sample_of, technique
from tfopt.transforms.channel_graph import (
    PRODUCERS,
    ChannelGraph,
    Cluster,
    build_graph,
    keep_count,
    matching,
    slice_weights,
    weight_gradient_products,
)
from tfopt.transforms.common import LayerSelection, refuse_after_qat, require_some_applied, require_tf_keras

NAME = "prune_channels"


class PruneChannelsConfig(LayerSelection):
    fraction: Optional[float] = Field(None, gt=0, lt=1, description="share of each layer's channels removed")
    head_fraction: Optional[float] = Field(
        None, gt=0, lt=1, description="BERT: share of each encoder layer's attention heads removed (default: fraction)"
    )
    fractions: dict[str, float] = Field(
        default_factory=dict, description="per-layer fraction by name or glob pattern, e.g. {conv2: 0.7}"
    )
    importance: Literal["l1", "l2", "bn_scale", "taylor"] = Field(
        "l1", description="how channels are scored: filter norm, BatchNormalization scale, or Taylor"
    )
    round_to: int = Field(1, ge=1, description="keep widths a multiple of this (8 suits XNNPACK)")
    taylor_batches: int = Field(4, ge=1, description="batches of the training sample for importance: taylor")

    @model_validator(mode="after")
    def _fractions(self) -> PruneChannelsConfig:
        if self.fraction is None and not self.fractions:
            raise ValueError("give fraction (e.g. 0.5) or fractions per layer (e.g. {conv2: 0.7})")
        bad = {k: v for k, v in self.fractions.items() if not 0 < v < 1}
        if bad:
            raise ValueError(f"fractions must lie in (0, 1); received {bad}")
        return self


def _order(previous: tuple[str, ...]) -> None:
    refuse_after_qat(NAME, previous)


PRUNE_CHANNELS = technique(
    NAME,
    PruneChannelsConfig,
    summary="Remove whole channels and units (dependencies followed): a smaller, faster dense model.",
    order=_order,
    changes_architecture=True,
    example={"fraction": 0.5},
)


@PRUNE_CHANNELS.implementation("tf_keras")
class PruneChannels(Transform):
    """Remove the least important channel groups of a tf_keras functional or Sequential model."""

    backend = "tf_keras: channel surgery"

    @classmethod
    def check_model(cls, config: PruneChannelsConfig, model: Any) -> None:
        """Follow the model's channels without touching weights: a layer that cannot be followed, a
        ``layer_types`` or ``fractions`` entry naming no layer, is refused before any training."""
        cls._graph(config, model)

    @classmethod
    def _graph(cls, c: PruneChannelsConfig, model: Any) -> tuple[ChannelGraph, dict[str, float]]:
        require_tf_keras(model, NAME)
        c.check_types(NAME, model)
        graph = build_graph(model, lambda n: not layer_selected(n, None, c.skip)[0], NAME)
        return graph, matching(c.fractions, list(graph.producers), NAME)

    def apply(self, model: Any) -> Any:
        graph, fractions = self._graph(self.config, model)
        self._fix_unselected(graph)
        scores, notes = self._scores(model, graph)
        removed: set[int] = set()
        self.decisions = []
        for cluster in graph.clusters():
            removed |= self._plan(graph, cluster, fractions, scores, notes.get(cluster.producers[0], ""))
        require_some_applied(self.name, model, self.decisions, "lower round_to, or check fractions / skip.")
        return rebuild(model, graph, removed)

    def _fix_unselected(self, graph: ChannelGraph) -> None:
        for name, ids in graph.producers.items():
            selected, reason = self.config.select(graph.layers[name])
            if not selected:
                graph.fix(ids, reason)

    def _plan(
        self, graph: ChannelGraph, cluster: Cluster, fractions: dict[str, float], scores: dict[int, float], note: str
    ) -> set[int]:
        """The groups of one coupled set to remove; records a decision per producer."""
        named = [fractions[p] for p in cluster.producers if p in fractions]
        fraction = max(named) if named else self.config.fraction
        fixed = graph.fixed_roots()

        def coupled(p: str) -> str:
            others = [o for o in cluster.producers if o != p]
            return f"; coupled with {', '.join(others)}" if others else ""

        if fraction is None or not cluster.prunable:
            why = (
                "no fraction given for it"
                if cluster.prunable
                else (fixed.get(cluster.groups[0], "no channels") if cluster.groups else "no channels")
            )
            self.decisions += [LayerDecision(p, False, why + coupled(p)) for p in cluster.producers]
            return set()
        n_fixed = len(cluster.groups) - len(cluster.prunable)
        keep = max(keep_count(len(cluster.groups), fraction, self.config.round_to), n_fixed)
        order = sorted(cluster.prunable, key=lambda r: (scores.get(r, 0.0), r))
        removed = set(order[: len(cluster.groups) - keep])
        how = f"{self.config.importance}{note}"
        for p in cluster.producers:
            ids = graph.producers[p]
            kept = len(graph.kept(ids, removed))
            if kept == len(ids):
                self.decisions.append(
                    LayerDecision(
                        p, False, f"all {len(ids)} channels kept (round_to={self.config.round_to}){coupled(p)}"
                    )
                )
            else:
                self.decisions.append(
                    LayerDecision(
                        p, True, f"{len(ids)} -> {kept} channels (removed {len(ids) - kept}; {how}){coupled(p)}"
                    )
                )
        return removed

    def _scores(self, model: Any, graph: ChannelGraph) -> tuple[dict[int, float], dict[str, str]]:
        """Importance per group root, and a note per coupled set (by its first producer) that fell back to l1."""
        kind = self.config.importance
        per_producer = (
            _taylor(model, graph, self.context, self.config.taylor_batches)
            if kind == "taylor"
            else {p: _norms(graph.layers[p], "l2" if kind == "l2" else "l1") for p in graph.producers}
        )
        scores = _sum_by_root(graph, {p: (graph.producers[p], s) for p, s in per_producer.items()})
        notes: dict[str, str] = {}
        if kind == "bn_scale":
            bn = _sum_by_root(graph, _bn_gammas(graph))
            for cluster in graph.clusters():
                if cluster.prunable and all(r in bn for r in cluster.prunable):
                    scores.update({r: bn[r] for r in cluster.prunable})
                else:
                    notes[cluster.producers[0]] = " (no BatchNormalization after it: l1)"
        return scores, notes

    def describe(self) -> list[LayerDecision]:
        return list(self.decisions)


@PRUNE_CHANNELS.implementation("keras3")
class PruneChannelsKeras3(PruneChannels):
    """prune_channels of a Keras 3 model, by the same surgery on its tf_keras twin.

    Why a twin: the graph and the rebuild read tf_keras' layer configs and ``clone_model``; the twin
    has the same graph, configs and weights, so the surgery is the tested one, and the result is a
    plain tf_keras model that every other technique (and the converter) takes.
    """

    backend = "keras3 -> tf_keras twin: channel surgery"

    @classmethod
    def check_model(cls, config: PruneChannelsConfig, model: Any) -> None:
        """A model without a tf_keras twin, or with a layer the graph cannot follow, is refused before training."""
        if bert_surgery.is_bert(model):
            return prune_heads.check(config, model)
        super().check_model(config, to_tf_keras(model, purpose=NAME))

    def apply(self, model: Any) -> Any:
        if bert_surgery.is_bert(model):  # heads and feed-forward units (prune_heads.py); stays Keras 3
            heads, units, self.decisions, used = prune_heads.plan(self.config, model, self.context)
            self.backend = f"keras3: BERT heads and feed-forward units removed ({used}), rebuilt by bert_surgery"
            require_some_applied(self.name, model, self.decisions, "raise fraction, or check fractions / skip.")
            return bert_surgery.rebuild(model, heads=heads, units=units)
        sample = sample_of(self.context)
        twin = to_tf_keras(model, sample=sample, purpose=NAME)
        if self.context is not None:  # from here on the model is tf_keras: fine-tune, snapshots and exports follow
            self.context = dataclasses.replace(self.context, backend=backend_named("tf_keras"))
        if sample is not None:
            self.backend = (
                f"keras3 -> tf_keras twin (weights copied, outputs equal within {TOLERANCE:g}); channel surgery"
            )
        return super().apply(twin)


def _norms(layer: Any, kind: str) -> np.ndarray:
    """L1 or L2 norm of each output channel's filter."""
    kernel = _kernel(layer)
    axis = PRODUCERS[type(layer).__name__][1] % kernel.ndim
    flat = np.moveaxis(kernel, axis, 0).reshape(kernel.shape[axis], -1)
    return np.abs(flat).sum(1) if kind == "l1" else np.sqrt((flat**2).sum(1))


def _kernel(layer: Any) -> np.ndarray:
    for w in layer.weights:
        if w.name.split("/")[-1].split(":")[0] in ("kernel", "pointwise_kernel"):
            return np.asarray(w.numpy())
    raise TransformError(f"{NAME}: layer {layer.name!r} has no kernel. Received: layer={layer.name!r}")


def _bn_gammas(graph: ChannelGraph) -> dict[str, tuple[list[int], np.ndarray]]:
    out = {}
    for name, layer in graph.layers.items():
        if type(layer).__name__ == "BatchNormalization" and getattr(layer, "scale", False):
            if not any(b.layer == name for b in graph.barriers):
                out[name] = (graph.outputs[name], np.abs(np.asarray(layer.gamma.numpy())))
    return out


def _sum_by_root(graph: ChannelGraph, members: dict[str, tuple[list[int], np.ndarray]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for ids, values in members.values():
        for i, v in zip(ids, values):
            r = graph.find(i)
            out[r] = out.get(r, 0.0) + float(v)
    return out


def _taylor(model: Any, graph: ChannelGraph, context: Any, batches: int) -> dict[str, np.ndarray]:
    """(sum over each filter of weight x gradient)^2 per output channel, summed over batches."""
    sample = sample_of(context)
    tracked = {p: [w for w in graph.layers[p].trainable_weights] for p in graph.producers}
    flat = [w for ws in tracked.values() for w in ws]
    loss_fn = keras().losses.SparseCategoricalCrossentropy()
    out = {p: 0.0 for p in graph.producers}
    x = None if sample is None else np.asarray(sample)
    for products in weight_gradient_products(model, x, batches, flat, loss_fn, NAME):
        k = 0
        for p, ws in tracked.items():
            axis = PRODUCERS[type(graph.layers[p]).__name__][1]
            score = 0.0
            for w, prod in zip(ws, products[k : k + len(ws)]):
                name = w.name.split("/")[-1].split(":")[0]
                if prod is None or name not in ("kernel", "pointwise_kernel", "bias"):
                    continue
                a = 0 if prod.ndim == 1 else axis % prod.ndim
                score = score + np.moveaxis(prod, a, 0).reshape(prod.shape[a], -1).sum(1)
            k += len(ws)
            out[p] = out[p] + np.asarray(score) ** 2
    return out


def rebuild(model: Any, graph: ChannelGraph, removed: set[int]) -> Any:
    """A new model from ``model``'s config with producers' widths changed, holding the sliced weights."""
    k = keras()
    sliced = {layer.name: slice_weights(graph, layer, removed) for layer in model.layers}

    def clone_function(layer: Any) -> Any:
        config = layer.get_config()
        width = sliced[layer.name][1]
        if width is not None:
            config[PRODUCERS[type(layer).__name__][0]] = width
        return type(layer).from_config(config)

    try:
        new = k.models.clone_model(model, clone_function=clone_function)
    except (ValueError, TypeError) as e:
        raise TransformError(f"{NAME} cannot rebuild model {model.name!r}: {str(e).splitlines()[0][:300]}") from None
    for layer in new.layers:
        weights = sliced.get(layer.name, ([], None))[0]
        if weights:
            layer.set_weights(weights)
    return new
