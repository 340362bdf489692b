"""Weight clustering for Keras 3 models (keras-hub BERT), with tfmot's semantics and options.

The same ``ClusterConfig`` as the tfmot transform (``number_of_clusters``, ``init``,
``per_channel``, ``preserve_sparsity``, ``layers``, ``layer_types``, ``skip``) and the same
mathematics as tfmot's ``ClusterWeights``:

- centroids start from tfmot's own initialisers (kmeans++, linear, density-based, random; with
  sparsity preservation one centroid is exactly zero and the others split between the negative
  and positive weights), so both backends start from the same centroids;
- in every forward pass each weight takes the value of its nearest centroid; the centroids are
  trainable variables (their gradient is the sum of their weights' gradients, tfmot's default
  ``SUM`` aggregation) and the original weights keep training through a straight-through
  estimator, so weights can move between clusters during the fine-tune;
- after a ``prune`` step (or with ``preserve_sparsity``) the zero centroid is pinned at zero and
  weights that start in it stay zero, so sparsity survives clustering.

Mechanism: keras-hub nests its layers, so instead of wrapping them, each selected layer's
``kernel`` / ``embeddings`` / ``pointwise_kernel`` attribute (which its ``call`` reads: a property
in Dense, EinsumDense, Conv1D/2D and Embedding, a plain variable in DepthwiseConv2D,
Conv2DTranspose, SeparableConv2D and users' own layers) is shadowed by a property of a subclass
that returns the clustered weight, and the centroids are added to the layer as trainable weights.
``strip`` writes the clustered values into a fresh copy of the model built from its config: a plain
Keras 3 model with at most ``number_of_clusters`` values per matrix.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import numpy as np

from tfopt._keras import keras3, tf, tfmot
from tfopt.backends.keras3 import (
    check_layer_types,
    layer_path,
    matrix_layers,
    select,
    stored_variable,
    weight_attribute,
)
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.transforms.cluster import CLUSTER, INITS, Cluster
from tfopt.transforms.common import require_some_applied


def initial_centroids(values: np.ndarray, number_of_clusters: int, init: str, preserve_sparsity: bool) -> np.ndarray:
    """tfmot's centroid initialisation for one weight matrix (same algorithms, same seed)."""
    from tensorflow_model_optimization.python.core.clustering.keras import (
        clustering_centroids,
    )  # not re-exported by tfmot

    method = tfmot().clustering.keras.CentroidInitialization[INITS[init]]
    factory = clustering_centroids.CentroidsInitializerFactory.get_centroid_initializer(method)
    weights = tf().constant(values.astype(np.float32))
    return np.array(
        factory(weights, number_of_clusters, False, "channels_last", preserve_sparsity).get_cluster_centroids(),
        np.float32,
    )  # a writable copy


class _Clusters:
    """The clustering state of one weight: centroids (trainable), and the zeros it must keep."""

    def __init__(self, centroids: Any, keep_mask: Optional[Any], zero_keep: Optional[Any]):
        self.centroids, self.keep_mask, self.zero_keep = centroids, keep_mask, zero_keep

    def clustered(self, weight: Any) -> Any:
        """Nearest-centroid values with tfmot's gradients: centroids by gather, weights straight through."""
        ops = keras3().ops
        c = self.centroids if self.zero_keep is None else self.centroids * self.zero_keep  # zero centroid pinned
        w = weight if self.keep_mask is None else weight * self.keep_mask  # pruned weights stay pruned
        order = ops.argsort(ops.stop_gradient(c))
        ordered = ops.take(ops.stop_gradient(c), order)
        bounds = (ordered[1:] + ordered[:-1]) / 2.0  # nearest centroid = position among the midpoints
        idx = ops.take(order, ops.searchsorted(bounds, ops.reshape(ops.stop_gradient(w), (-1,)), side="left"))
        values = ops.reshape(ops.take(c, idx), ops.shape(w))
        return values + (w - ops.stop_gradient(w))


_CLASSES: dict[tuple[type, str], type] = {}


def _clustered_class(cls: type, attr: str) -> type:
    """``cls`` with its ``attr`` property returning the clustered weight when the layer has clusters."""
    key = (cls, attr)
    if key not in _CLASSES:
        own = inspect.getattr_static(cls, attr, None)
        if isinstance(own, property):  # Dense, Conv2D, Embedding: a property over ``_kernel``

            def read(self: Any) -> Any:
                return own.fget(self)

            def write(self: Any, value: Any) -> None:
                raise AttributeError(attr)
        else:  # a plain attribute (DepthwiseConv2D, Conv2DTranspose, custom layers): a class property shadows it

            def read(self: Any) -> Any:
                return self.__dict__[attr]

            def write(self: Any, value: Any) -> None:
                self.__dict__[attr] = value

        def getter(self: Any) -> Any:
            value = read(self)
            state = self.__dict__.get("_tfopt_clusters")
            return value if state is None else state.clustered(value)

        _CLASSES[key] = type(
            cls.__name__,
            (cls,),
            {attr: property(getter, write), "__module__": cls.__module__, "_tfopt_plain_class": cls},
        )
    return _CLASSES[key]


@CLUSTER.implementation("keras3")
class ClusterKeras3(Cluster):
    """Share ``number_of_clusters`` values per matrix of a Keras 3 model, fine-tuning the centroids."""

    backend = "keras3: tfopt clustering (trainable centroids, tfmot centroid initialisation)"

    def apply(self, model: Any) -> Any:
        c = self.config
        check_layer_types(self.name, c, model)
        preserve = self.preserve_sparsity
        if preserve and c.number_of_clusters < 3:
            raise TransformError(
                "Sparsity-preserving clustering keeps zero as its own cluster, so it needs number_of_clusters >= 3. "
                f"Fix: raise cluster.number_of_clusters. Received: number_of_clusters={c.number_of_clusters}"
            )
        self.backend = type(self).backend + (
            ", sparsity-preserving (after prune)"
            if "prune" in self.context.previous
            else ", sparsity-preserving"
            if preserve
            else ""
        )
        k3 = keras3()
        self.decisions, self._layers, self._added = [], [], set()
        for layer in matrix_layers(model):
            path, attr = layer_path(layer), weight_attribute(layer)
            selected, reason = select(c, layer)
            if selected and attr is None:
                selected, reason = (
                    False,
                    f"no kernel to cluster ({type(layer).__name__}: "
                    "no weight matrix in a kernel, pointwise_kernel or embeddings attribute)",
                )
            if selected:
                var = stored_variable(layer, attr)
                values = np.asarray(var.numpy())
                if values.size <= c.number_of_clusters:
                    selected, reason = False, f"too few weights in its kernel for {c.number_of_clusters} clusters"
            if not selected:
                self.decisions.append(LayerDecision(path, False, reason))
                continue
            centroids = initial_centroids(values, c.number_of_clusters, c.init, preserve)
            keep_mask = zero_keep = None
            if preserve:
                zero = int(np.argmin(np.abs(centroids)))
                centroids[zero] = 0.0
                zero_keep = tf().constant(np.arange(len(centroids)) != zero, dtype=var.dtype)
            # a built Keras 3 layer locks its state; Keras' own LoRA and quantize unlock it the same way
            layer._tracker.unlock()
            try:
                cvar = layer.add_weight(
                    name=f"cluster_centroids_{attr}",
                    shape=centroids.shape,
                    dtype=var.dtype,
                    initializer=k3.initializers.Constant(centroids),
                    trainable=True,
                )
            finally:
                layer._tracker.lock()
            self._added.add(id(cvar))
            state = _Clusters(cvar, None, zero_keep)
            if preserve:  # tfmot: the zeros of the first clustered weight stay zero for good
                keep_mask = tf().cast(tf().not_equal(state.clustered(var.value), 0), var.dtype)
                state.keep_mask = keep_mask
            object.__setattr__(layer, "_tfopt_clusters", state)  # plain attribute: not tracked as Keras state
            object.__setattr__(layer, "__class__", _clustered_class(type(layer), attr))
            self._layers.append(layer)
            self.decisions.append(LayerDecision(path, True, self._note(layer)))
        require_some_applied(
            "cluster", model, self.decisions, "check cluster.layers / cluster.layer_types / cluster.skip."
        )
        return model

    def _note(self, layer: Any) -> str:
        c = self.config
        where = f"{c.number_of_clusters} clusters per kernel" + (
            " (per_channel applies to Conv2D only)" if c.per_channel else ""
        )
        return where + (", zeros kept" if self.preserve_sparsity else "")

    def callbacks(self) -> list:
        return []

    def strip(self, model: Any) -> Any:
        """A fresh plain model whose clustered matrices hold their final centroid values."""
        final = {}
        for layer in self._layers:
            attr = weight_attribute(layer)
            final[id(stored_variable(layer, attr))] = np.asarray(getattr(layer, attr))
        values = [
            final.get(id(v), None) if id(v) in final else np.asarray(v.numpy())
            for v in model.weights
            if id(v) not in self._added
        ]
        for layer in self._layers:  # leave the transformed model as it was, minus the centroids' effect
            object.__setattr__(layer, "__class__", type(layer)._tfopt_plain_class)
            object.__delattr__(layer, "_tfopt_clusters")
        plain = type(model).from_config(model.get_config())
        if len(plain.weights) != len(values):
            raise TransformError(
                f"Cannot strip clustering from {model.name!r}: "
                f"its copy has {len(plain.weights)} weights, expected {len(values)}."
            )
        plain.set_weights(values)
        return plain


__all__ = ["ClusterKeras3", "initial_centroids"]
