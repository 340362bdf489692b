"""The channel dependency graph of a tf_keras model: which channels must be removed together.

Structured pruning removes whole output channels of a layer, and every layer that reads those
channels must lose them too (Torch-Pruning's dependency graph is the model). Each channel of each
tensor gets an id; ids joined by a layer's semantics are merged (union-find), so one merged id is
one *group* of coupled channels that is kept or removed as a whole:

- a producer (Conv1D/2D/3D, SeparableConv2D, Conv2DTranspose, Dense) creates new ids for its
  output channels; its input side is sliced to whatever its input keeps;
- BatchNormalization, activations, Dropout, pooling, padding, cropping, upsampling and global
  pooling pass ids through; DepthwiseConv2D too (output channel ``c * m + j`` comes from input ``c``);
- Add, Subtract, Multiply, Average, Maximum, Minimum merge the ids of their inputs position by
  position (every branch loses the same channels);
- Concatenate along channels places its inputs' ids one after another (channel offsets);
- Flatten repeats the ids once per spatial position (channels last: feature ``p * C + c`` is channel ``c``),
  so a Dense after it loses each removed channel's whole block of inputs.

Ids of the model's inputs and outputs are *fixed* (the output layer is never pruned), as are the
outputs of producers left alone (``skip``, ``layers``, ``layer_types``). A layer tfopt cannot follow
(Reshape, LayerNormalization, a custom layer, a shared layer...) is an error when prunable channels
reach it; listed in ``skip``, it becomes a barrier instead: the channels through it stay whole.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import numpy as np

from tfopt.errors import TransformError

# Layers that make new channels: class name -> (config key of the width, axis of output channels in the kernel).
PRODUCERS = {
    "Conv1D": ("filters", -1),
    "Conv2D": ("filters", -1),
    "Conv3D": ("filters", -1),
    "SeparableConv1D": ("filters", -1),
    "SeparableConv2D": ("filters", -1),
    "Conv2DTranspose": ("filters", -2),
    "Dense": ("units", -1),
}
# Weightless layers that act on each channel on its own (ids pass through unchanged).
PASS_THROUGH = {
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "ThresholdedReLU",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
_CHANNEL_MIXING_ACTIVATIONS = {"softmax", "log_softmax"}


@dataclass
class Barrier:
    """A layer the graph cannot follow: the ids reaching it, and why."""

    layer: str
    cls: str
    why: str
    ids: list[int]
    skipped: bool


@dataclass
class Cluster:
    """Producers whose channels are coupled, and their groups (merged ids) in order of first appearance."""

    producers: list[str]
    groups: list[int]  # roots
    prunable: list[int]  # roots that may be removed


@dataclass
class ChannelGraph:
    """Channel ids of every layer's inputs and outputs, merged by the layers' semantics."""

    model: Any
    parent: list[int] = field(default_factory=list)
    fixed: dict[int, str] = field(default_factory=dict)  # id -> why it stays (checked at its root)
    inputs: dict[str, list[list[int]]] = field(default_factory=dict)  # layer -> ids of each input tensor
    outputs: dict[str, list[int]] = field(default_factory=dict)  # layer -> ids of its output
    producers: dict[str, list[int]] = field(default_factory=dict)  # prunable-kind layer -> its output ids
    barriers: list[Barrier] = field(default_factory=list)
    refs: dict[str, list[str]] = field(default_factory=dict)  # layer -> the layers it reads, over all its calls
    layers: dict[str, Any] = field(default_factory=dict)

    # --- union-find -----------------------------------------------------------------------------

    def new_ids(self, n: int, fixed: Optional[str] = None) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        if fixed is not None:
            for i in range(start, start + n):
                self.fixed[i] = fixed
        return list(range(start, start + n))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def fix(self, ids: list[int], why: str, override: bool = False) -> None:
        for i in ids:
            if override:
                self.fixed[i] = why
            else:
                self.fixed.setdefault(i, why)

    def fixed_roots(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for i, why in self.fixed.items():
            out.setdefault(self.find(i), why)
        return out

    def kept(self, ids: list[int], removed: set[int]) -> list[int]:
        """Positions of ``ids`` whose group is not removed."""
        return [p for p, i in enumerate(ids) if self.find(i) not in removed]

    # --- clusters -------------------------------------------------------------------------------

    def clusters(self) -> list[Cluster]:
        """Producers joined by shared groups (an Add of two convs: one cluster), in model order."""
        fixed = self.fixed_roots()
        owner: dict[int, int] = {}  # root -> cluster index
        clusters: list[Cluster] = []
        for name, ids in self.producers.items():
            roots = list(dict.fromkeys(self.find(i) for i in ids))
            joined = sorted({owner[r] for r in roots if r in owner})
            if not joined:
                clusters.append(Cluster([name], [], []))
                target = len(clusters) - 1
            else:
                target = joined[0]
                for other in reversed(joined[1:]):  # merge clusters this producer couples
                    c = clusters[other]
                    clusters[target].producers += c.producers
                    clusters[target].groups += c.groups
                    for r in c.groups:
                        owner[r] = target
                    clusters[other] = Cluster([], [], [])
                clusters[target].producers.append(name)
            for r in roots:
                if r not in owner:
                    owner[r] = target
                    clusters[target].groups.append(r)
        out = [c for c in clusters if c.producers]
        for c in out:
            c.prunable = [r for r in c.groups if r not in fixed]
        return out


def _shape(layer: Any, attr: str) -> Optional[tuple]:
    try:
        shape = getattr(layer, attr)
    except (AttributeError, RuntimeError):
        return None
    return tuple(shape) if isinstance(shape, (tuple, list)) and not isinstance(shape[0], (tuple, list)) else None


def _channels_last(layer: Any) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _last_axis(layer: Any, axis: Any) -> bool:
    shape = _shape(layer, "output_shape")
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and shape is not None and axes[0] in (-1, len(shape) - 1)


def build_graph(model: Any, skipped: Callable[[str], bool], step: str) -> ChannelGraph:
    """Follow ``model``'s channels layer by layer (a functional or Sequential tf_keras model).

    Args:
        skipped: whether a layer name is listed in ``skip`` (a layer the graph cannot follow becomes a barrier).

    Raises:
        TransformError: the model is not a graph of layers (subclassed), or a layer cannot be followed.
    """
    g = ChannelGraph(model)
    for layer in model.layers:
        g.layers[layer.name] = layer
    for layer, ins in _walk(model, g):
        g.inputs[layer.name] = ins or []
        g.outputs[layer.name] = _visit(g, layer, ins, skipped(layer.name))
    for t in _output_layers(model):
        g.fix(
            g.outputs[t],
            f"output layer {t!r} (never pruned)" if t in g.producers else f"reaches the model output through {t!r}",
            override=True,
        )
    _check_barriers(g, step)
    return g


def _walk(model: Any, g: ChannelGraph) -> Iterator[tuple[Any, Optional[list[list[int]]]]]:
    """Each layer with the ids of its inputs (None for a shared layer), inputs first.

    A generator: the ids of a layer's inputs are read once ``build_graph`` has visited them.
    """
    config = model.get_config()
    if "layers" not in config or not isinstance(config["layers"], list):
        raise TransformError(
            f"prune_channels cannot read the layer graph of model {model.name!r} (a subclassed model?). "
            f"Fix: use a Sequential or functional model. Received: model={model.name!r}"
        )
    if type(model).__name__ == "Sequential":
        shape = _shape(model, "input_shape")
        if shape is None:
            raise TransformError(
                f"prune_channels needs a built Sequential model; {model.name!r} has no input shape. "
                f"Fix: start it with an Input layer. Received: model={model.name!r}"
            )
        ids, prev = g.new_ids(int(shape[-1]), "model input"), None
        for layer in model.layers:
            g.refs[layer.name] = [prev] if prev else []
            yield layer, [ids if prev is None else g.outputs[prev]]
            prev = layer.name
        return
    for entry in config["layers"]:
        layer = g.layers[entry["name"]]
        nodes = entry.get("inbound_nodes") or []
        if type(layer).__name__ == "InputLayer":
            g.outputs[layer.name] = g.new_ids(_width(layer), "model input")
            continue
        g.refs[layer.name] = [r[0] for node in nodes for r in (node if isinstance(node, list) else [])]
        if len(nodes) != 1:
            yield layer, None
            continue
        yield layer, [g.outputs[r] for r in g.refs[layer.name]]


def _width(layer: Any) -> int:
    """Channels of ``layer``'s (first) output."""
    shape = _shape(layer, "output_shape")
    if shape is None:
        try:
            shape = tuple(layer.get_output_shape_at(0))
        except (AttributeError, RuntimeError, ValueError, TypeError):
            return 0
        if shape and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
    return int(shape[-1]) if shape and shape[-1] is not None else 0


def _output_layers(model: Any) -> list[str]:
    config = model.get_config()
    if "output_layers" in config:
        return [o[0] for o in config["output_layers"]]
    return [model.layers[-1].name]


def _visit(g: ChannelGraph, layer: Any, ins: Optional[list[list[int]]], skipped: bool) -> list[int]:
    """The ids of ``layer``'s output, merging ids as its semantics require."""
    cls = type(layer).__name__
    why = "it is called more than once (a shared layer)" if ins is None else _why_not_followed(layer, ins)
    if why is not None or (skipped and cls not in PRODUCERS):
        g.barriers.append(Barrier(layer.name, cls, why or "listed in skip", [], skipped))
        return g.new_ids(_width(layer), f"after {layer.name!r}, which is left whole")
    x = ins[0] if ins else []
    if cls in PRODUCERS:
        ids = g.new_ids(_width(layer))
        g.producers[layer.name] = ids
        activation = getattr(getattr(layer, "activation", None), "__name__", "")
        if activation in _CHANNEL_MIXING_ACTIVATIONS:
            g.fix(ids, f"its {activation} activation mixes its channels")
        return ids
    if cls in PASS_THROUGH or cls == "BatchNormalization":
        return list(x)
    if cls in ("DepthwiseConv2D", "DepthwiseConv1D"):
        return [i for i in x for _ in range(int(layer.depth_multiplier))]
    if cls == "Flatten":
        shape = _shape(layer, "input_shape")
        positions = math.prod(int(d) for d in shape[1:-1])
        return list(x) * positions
    if cls == "Concatenate" and _last_axis(layer, layer.axis):
        return [i for t in ins for i in t]
    # a merge (or a Concatenate along another axis): inputs' channels pair up position by position
    widest = max(ins, key=len)
    for t in ins:
        if len(t) == len(widest):
            for a, b in zip(widest, t):
                g.union(a, b)
    return list(widest)


def _why_not_followed(layer: Any, ins: list[list[int]]) -> Optional[str]:
    """Why the graph cannot follow channels through ``layer``, or None when it can."""
    cls = type(layer).__name__
    if not _channels_last(layer):
        return f"data_format={layer.data_format!r} (channels last only)"
    if cls in PRODUCERS:
        if int(getattr(layer, "groups", 1) or 1) != 1:
            return f"grouped convolution (groups={layer.groups})"
        return None if _shape(layer, "output_shape") else "its output shape is unknown"
    if cls == "Activation":
        name = getattr(layer.activation, "__name__", "")
        return f"its {name} activation mixes channels" if name in _CHANNEL_MIXING_ACTIVATIONS else None
    if cls in PASS_THROUGH:
        return None
    if cls == "BatchNormalization":
        return None if _last_axis(layer, layer.axis) else f"it normalises axis {layer.axis} (channels last only)"
    if cls in ("DepthwiseConv2D", "DepthwiseConv1D"):
        return None
    if cls == "Flatten":
        shape = _shape(layer, "input_shape")
        ok = shape is not None and all(d is not None for d in shape[1:])
        return None if ok else "its input shape is not fully known"
    if cls in MERGES or cls == "Concatenate":
        widths = {len(t) for t in ins}
        if cls == "Concatenate" and _last_axis(layer, layer.axis):
            return None
        if len(widths) == 1 or (len(widths) == 2 and 1 in widths):
            return None
        return f"its inputs have {sorted(widths)} channels"
    return "tfopt does not know how it uses its channels"


def _check_barriers(g: ChannelGraph, step: str) -> None:
    """Refuse a layer the graph cannot follow when prunable channels reach it (unless it is in skip)."""
    for b in g.barriers:  # every channel it reads, over all its calls
        b.ids = [i for ref in g.refs.get(b.layer, []) for i in g.outputs.get(ref, [])]
    for b in g.barriers:
        if b.skipped:
            g.fix(b.ids, f"they reach {b.layer!r}, listed in skip")
    base = g.fixed_roots()
    for b in g.barriers:
        if b.skipped:
            continue
        prunable = [i for i in b.ids if g.find(i) not in base]
        if prunable:
            source = next((p for p, ids in g.producers.items() if g.find(prunable[0]) in {g.find(i) for i in ids}), "?")
            raise TransformError(
                f"{step} cannot follow the channels of {source!r} through layer {b.layer!r} ({b.cls}): {b.why}. "
                f"Fix: leave the channels that reach it whole with {step}: {{skip: [{b.layer}]}}. "
                f"Received: layer={b.layer!r}"
            )
        g.fix(b.ids, f"they reach {b.layer!r} ({b.cls}), which tfopt cannot follow")


def matching(patterns: dict[str, float], names: list[str], step: str) -> dict[str, float]:
    """Per-layer fractions by exact name or glob pattern; a pattern matching no producer is refused."""
    out: dict[str, float] = {}
    for pattern, value in patterns.items():
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise TransformError(
                f"{step}.fractions: {pattern!r} names no prunable layer (Conv/Dense layers: {', '.join(names)}). "
                f"Fix: use a layer name as written there. Received: fractions={patterns!r}"
            )
        for n in hits:
            out.setdefault(n, value)
    return out


def weight_gradient_products(
    model: Any, sample: Any, batches: int, variables: list[Any], loss_fn: Any, step: str
) -> Iterator[list[Optional[np.ndarray]]]:
    """Per batch of ``sample`` (array or dict of arrays), weight x gradient for each of ``variables`` (None where
    it has no gradient), the loss taken against the model's own predictions: the first-order Taylor term of
    the Taylor importance (Molchanov et al. 2019), shared by channel and head pruning. One forward pass per
    batch gives both the labels and the taped loss."""
    from tfopt._keras import tf

    if sample is None:
        raise TransformError(f"{step}: importance: taylor needs training samples. Fix: use importance: l1.")
    rows = len(next(iter(sample.values()))) if isinstance(sample, dict) else len(sample)
    for idx in np.array_split(np.arange(rows), min(batches, rows)):
        x = {n: np.asarray(v)[idx] for n, v in sample.items()} if isinstance(sample, dict) else np.asarray(sample)[idx]
        with tf().GradientTape() as tape:
            probs = model(x, training=False)
            loss = loss_fn(np.argmax(np.asarray(probs), axis=-1), probs)
        grads = tape.gradient(loss, variables)
        yield [None if g is None else np.asarray(v.numpy()) * np.asarray(g) for v, g in zip(variables, grads)]


def keep_count(n: int, fraction: float, round_to: int) -> int:
    """How many of ``n`` groups stay when ``fraction`` is removed: the nearest multiple of ``round_to``,
    at least ``round_to`` (and 1), at most ``n``."""
    keep = n * (1.0 - fraction)
    keep = max(round_to, int(round(keep / round_to)) * round_to, 1)
    return min(n, keep)


def slice_weights(g: ChannelGraph, layer: Any, removed: set[int]) -> tuple[list[np.ndarray], Optional[int]]:
    """``layer``'s weights without the removed channels, and its new width (producers) or None."""
    cls = type(layer).__name__
    weights = [np.asarray(w) for w in layer.get_weights()]
    names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
    if not weights or any(b.layer == layer.name for b in g.barriers):
        return weights, None
    ins = g.inputs[layer.name]
    in_keep = g.kept(ins[0], removed) if ins else []
    out_ids = g.outputs[layer.name]
    out_keep = g.kept(out_ids, removed)
    out = []
    for name, w in zip(names, weights):
        if cls in PRODUCERS:
            if name in ("kernel", "pointwise_kernel"):
                in_axis, out_axis = (-1, -2) if cls == "Conv2DTranspose" else (-2, -1)
                in_idx = in_keep
                if name == "pointwise_kernel":
                    dm = int(layer.depth_multiplier)
                    in_idx = [c * dm + j for c in in_keep for j in range(dm)]
                w = np.take(np.take(w, in_idx, axis=in_axis), out_keep, axis=out_axis)
            elif name == "depthwise_kernel":
                w = np.take(w, in_keep, axis=-2)
            elif name == "bias":
                w = w[out_keep]
        elif cls in ("DepthwiseConv2D", "DepthwiseConv1D"):
            w = np.take(w, in_keep, axis=-2) if name == "depthwise_kernel" else w[out_keep]
        elif cls == "BatchNormalization":
            w = w[out_keep]
        out.append(w)
    width = len(out_keep) if cls in PRODUCERS else None
    return out, width
