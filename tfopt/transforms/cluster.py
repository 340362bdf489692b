"""Weight clustering through tfmot (``cluster_weights`` / ``strip_clustering``).

Clustering replaces each kernel's values by ``number_of_clusters`` shared centroids, fine-tuned
during training; the file then compresses well (few distinct values) and keeps its accuracy.

Example::

    variants:
      clustered_16: [{cluster: {number_of_clusters: 16, init: kmeans_plus_plus, skip: [classifier]}}]
      pruned_clustered: [{prune: {final_sparsity: 0.5}}, {cluster: {number_of_clusters: 16}}]

``per_channel: true`` clusters each output channel of a Conv2D kernel separately (N values per
channel), which matches the converter's per-channel int8 quantization of convolutions. After a
``prune`` step the zeros are kept as their own cluster (sparsity-preserving clustering), chosen by
the pipeline from the variant's earlier steps.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tfopt._keras import keras, tfmot
from tfopt.errors import TransformError
from tfopt.results import LayerDecision
from tfopt.transforms import Transform, technique
from tfopt.transforms.common import (
    LayerSelection,
    clone_wrapping,
    fresh_copy,
    has_weights_to_change,
    refuse_after_qat,
    require_some_applied,
    require_tf_keras,
    tfmot_leaves,
    unsupported_layer,
)

INITS = {
    "kmeans_plus_plus": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density_based": "DENSITY_BASED",
    "random": "RANDOM",
}


class ClusterConfig(LayerSelection):
    number_of_clusters: int = Field(gt=1, description="distinct values per kernel (per channel with per_channel)")
    init: Literal["kmeans_plus_plus", "linear", "density_based", "random"] = Field(
        "kmeans_plus_plus", description="how the centroids start"
    )
    per_channel: bool = Field(False, description="cluster each output channel of Conv2D kernels separately")
    preserve_sparsity: bool = Field(
        False, description="keep zeros as zeros; turned on automatically after a prune step"
    )


def _order(previous: tuple[str, ...]) -> None:
    refuse_after_qat("cluster", previous)


# float32 only, measured with tfmot 0.8.1 on TF 2.21: its centroid ops fail under mixed policies
# ("cannot compute Sub ... half tensor"; k-means++ has no float16 kernel).
CLUSTER = technique(
    "cluster",
    ClusterConfig,
    summary="Share number_of_clusters values per kernel, fine-tuning the centroids.",
    order=_order,
    example={"number_of_clusters": 8},
)


@CLUSTER.implementation("tf_keras")
class Cluster(Transform):
    """Share ``number_of_clusters`` values per kernel, fine-tuning the centroids."""

    @property
    def preserve_sparsity(self) -> bool:
        return self.config.preserve_sparsity or "prune" in self.context.previous

    def apply(self, model: Any) -> Any:
        require_tf_keras(model, self.name)
        clustering = tfmot().clustering.keras
        c = self.config
        c.check_types(self.name, model)
        model = fresh_copy(model)
        preserve = self.preserve_sparsity
        if preserve and c.number_of_clusters < 3:
            raise TransformError(
                "Sparsity-preserving clustering keeps zero as its own cluster, so it needs number_of_clusters >= 3. "
                f"Fix: raise cluster.number_of_clusters. Received: number_of_clusters={c.number_of_clusters}"
            )
        self.backend = (
            "tf_keras: tfmot "
            + ("sparsity-preserving clustering" if preserve else "clustering")
            + (" (after prune)" if "prune" in self.context.previous else "")
        )
        init = clustering.CentroidInitialization[INITS[c.init]]
        self.decisions = []

        def wrap(layer: Any) -> Any:
            selected, reason = c.select(layer)
            if selected and not has_weights_to_change(layer, clustering.ClusterableLayer):
                selected, reason = False, f"no kernel to cluster ({type(layer).__name__})"
            if selected and (why := tfmot_leaves(layer)):
                selected, reason = False, why
            if selected:
                try:
                    # cluster_weights forwards these two to the wrapper (tfmot's per-channel and
                    # sparsity-preserving options are not separate public functions in 0.8.1).
                    wrapped = clustering.cluster_weights(
                        layer,
                        number_of_clusters=c.number_of_clusters,
                        cluster_centroids_init=init,
                        preserve_sparsity=preserve,
                        cluster_per_channel=c.per_channel,
                    )
                except (ValueError, TypeError) as e:
                    raise unsupported_layer(
                        self.name,
                        layer,
                        f"tfmot clustering does not support it ({str(e).splitlines()[0][:160]})",
                        "tfmot.clustering.keras.ClusterableLayer",
                    ) from None
                if wrapped is not layer:
                    self.decisions.append(LayerDecision(layer.name, True, self._note(layer)))
                    return wrapped
                unit = (
                    "per channel" if c.per_channel else "in its kernel"
                )  # tfmot leaves a Conv2D with too few weights as it is
                reason = f"too few weights {unit} for {c.number_of_clusters} clusters"
            if preserve and "prune" in self.context.previous:
                reason += "; fine-tuned unmasked, so its zeros are not kept"
            self.decisions.append(LayerDecision(layer.name, False, reason))
            return layer

        clustered = clone_wrapping(model, self.name, wrap)
        require_some_applied(
            "cluster", model, self.decisions, "check cluster.layers / cluster.layer_types / cluster.skip."
        )
        return clustered

    def _note(self, layer: Any) -> str:
        c = self.config
        if c.per_channel and isinstance(layer, keras().layers.Conv2D):
            where = f"{c.number_of_clusters} clusters per output channel"
        elif c.per_channel:
            where = f"{c.number_of_clusters} clusters per kernel (per_channel applies to Conv2D only)"
        else:
            where = f"{c.number_of_clusters} clusters per kernel"
        return where + (", zeros kept" if self.preserve_sparsity else "")

    def callbacks(self) -> list:
        if self.context.log_dir is None:
            return []
        return [tfmot().clustering.keras.ClusteringSummaries(log_dir=str(self.context.log_dir))]

    def strip(self, model: Any) -> Any:
        return tfmot().clustering.keras.strip_clustering(model)
