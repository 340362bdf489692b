"""Sparse TFLite storage of a pruned model: same weights read back, smaller file, same outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfopt.backends import backend_for
from tfopt.config import ExportSpec, loads
from tfopt.errors import ConfigError
from tfopt.evaluate.litert import TfliteRunner
from tfopt.evaluate.weights import tflite_weight_stats
from tfopt.export import convert
from tfopt.train import compile_model
from tfopt.transforms import Context
from tfopt.transforms.prune import Prune, PruneConfig


@pytest.fixture(scope="module")
def pruned(trained_small_cnn, digits):
    t = Prune(PruneConfig(final_sparsity=0.8), Context(math.ceil(len(digits.x_train) / 32), 2))
    model = t.apply(backend_for(trained_small_cnn).clone(trained_small_cnn))
    compile_model(model, "adam", 5e-4)
    model.fit(digits.x_train, digits.y_train, epochs=2, batch_size=32, verbose=0, callbacks=t.callbacks())
    return t.strip(model)


@pytest.mark.parametrize("fmt,max_ratio", [("float32", 0.45), ("float16", 0.6)])
def test_sparse_file_reads_back_the_same_weights(pruned, digits, tmp_path, fmt, max_ratio) -> None:
    dense, sparse = tmp_path / "dense.tflite", tmp_path / "sparse.tflite"
    dense.write_bytes(convert(pruned, ExportSpec(format=fmt), digits.x_train))
    sparse.write_bytes(convert(pruned, ExportSpec(format=fmt, sparse=True), digits.x_train))
    a, b = tflite_weight_stats(dense), tflite_weight_stats(sparse)
    assert len(a) == len(b) == 4
    for x, y in zip(
        sorted(a, key=lambda s: s.size), sorted(b, key=lambda s: s.size)
    ):  # expanded from the sparse format
        assert (x.size, x.sparsity, x.unique_values, x.unique_per_channel, x.dtype) == (
            y.size,
            y.sparsity,
            y.unique_values,
            y.unique_per_channel,
            y.dtype,
        )
        assert abs(y.sparsity - 0.8) <= 0.02
    assert sparse.stat().st_size <= max_ratio * dense.stat().st_size  # 80% zeros not stored
    np.testing.assert_allclose(
        TfliteRunner(sparse).predict(digits.x_test), TfliteRunner(dense).predict(digits.x_test), atol=1e-5
    )


@pytest.mark.parametrize("fmt", ["int8", "dynamic", "lq_dynamic_int8"])
def test_sparse_refused_where_litert_cannot_run_it(fmt) -> None:
    with pytest.raises(ConfigError, match="'sparse' applies to float32 and float16 only"):
        loads(f"data: {{name: digits}}\nmodel: {{name: small_cnn}}\nexport: [{{{fmt}: {{sparse: true}}}}]\n")


def test_dense_and_sparse_exports_side_by_side() -> None:
    cfg = loads("data: {name: digits}\nmodel: {name: small_cnn}\nexport: [float32, {float32: {sparse: true}}]\n")
    assert [e.label for e in cfg.export] == ["float32", "float32_sparse"]
