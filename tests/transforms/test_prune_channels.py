"""prune_channels: dependencies followed, exact surgery, widths read back from the exported file, chains on digits."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt._keras import keras
from tfopt.errors import TransformError
from tfopt.evaluate.macs import tflite_macs, tflite_op_macs
from tfopt.export import convert
from tfopt.schema import ExportSpec
from tfopt.transforms import TECHNIQUES, Context, DataSpec
from tfopt.transforms.channel_graph import keep_count

STEP = "prune_channels"


def _transform(sample=None, **params):
    tech = TECHNIQUES.get(STEP)
    data = None if sample is None else DataSpec(sample.shape[1:], 5, sample)
    context = Context(steps_per_epoch=1, finetune_epochs=1, data=data)
    return tech.for_backend("tf_keras")(tech.Config.model_validate(params), context)


def branching_model():
    """BatchNormalization, DepthwiseConv2D, a residual Add, a Concatenate and Flatten -> Dense, in 8x8x3 -> 5."""
    k = keras()
    L = k.layers
    k.utils.set_random_seed(0)
    inputs = L.Input((8, 8, 3), name="image")
    x = L.ReLU(name="r1")(L.BatchNormalization(name="bn1")(L.Conv2D(8, 3, padding="same", name="c1")(inputs)))
    d = L.BatchNormalization(name="bn2")(L.DepthwiseConv2D(3, padding="same", name="dw")(x))
    a = L.ReLU(name="r2")(L.Add(name="add")([L.Conv2D(8, 1, name="c2")(d), L.Conv2D(8, 1, name="c3")(x)]))
    c4 = L.Conv2D(4, 3, padding="same", name="c4")(a)
    x = L.Flatten(name="flat")(L.MaxPooling2D(2, name="pool")(L.Concatenate(name="cat")([a, c4])))
    x = L.Dropout(0.2, name="drop")(L.Dense(16, activation="relu", name="dense1")(x))
    model = k.Model(inputs, L.Dense(5, activation="softmax", name="classifier")(x), name="branching")
    rng = np.random.default_rng(1)
    for name in ("bn1", "bn2"):  # statistics of a trained model, so BatchNormalization is not the identity
        bn = model.get_layer(name)
        n = bn.gamma.shape[0]
        bn.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(size=n), rng.normal(size=n), rng.uniform(0.5, 2, n)])
    return model


# The channel groups zeroed (then removed): c1 with bn1/dw/bn2 and c2/c3's inputs; c2 and c3 joined by the Add;
# c4 (its channels sit at offset 8 of the Concatenate); dense1 (its inputs come from Flatten).
ZEROED = {"c1": [0, 2, 5, 7], "add": [1, 3, 4, 6], "c4": [0, 3], "dense1": list(range(0, 16, 2))}
WIDTHS = {"c1": 4, "c2": 4, "c3": 4, "c4": 2, "dense1": 8, "classifier": 5}


def _zero(layer, channels, axis=-1) -> None:
    """Zero the output channels' kernel slice, bias, BatchNormalization beta and mean: those channels output 0."""
    out = []
    for w, value in zip(layer.weights, layer.get_weights()):
        value, short = value.copy(), w.name.split("/")[-1].split(":")[0]
        if short in ("kernel", "depthwise_kernel"):
            index = [slice(None)] * value.ndim
            index[axis] = channels
            value[tuple(index)] = 0
        elif short in ("bias", "beta", "moving_mean"):
            value[channels] = 0
        out.append(value)
    layer.set_weights(out)


def zeroed_model():
    model = branching_model()
    for name in ("c1", "bn1", "bn2"):
        _zero(model.get_layer(name), ZEROED["c1"])
    _zero(model.get_layer("dw"), ZEROED["c1"], axis=-2)
    for name in ("c2", "c3"):
        _zero(model.get_layer(name), ZEROED["add"])
    _zero(model.get_layer("c4"), ZEROED["c4"])
    _zero(model.get_layer("dense1"), ZEROED["dense1"])
    return model


def _widths(model) -> dict[str, int]:
    return {n: int(model.get_layer(n).get_weights()[0].shape[-1]) for n in WIDTHS}


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_surgery_removing_zero_channels_keeps_the_outputs(importance) -> None:
    """Zeroed channels have the smallest norms, so exactly they go."""
    model = zeroed_model()
    x = np.random.default_rng(0).random((32, 8, 8, 3), dtype=np.float32)
    before = model.predict(x, verbose=0)
    step = _transform(sample=x, fraction=0.5, importance=importance)
    pruned = step.apply(model)
    assert _widths(pruned) == WIDTHS
    assert pruned.get_layer("dw").get_weights()[0].shape == (3, 3, 4, 1)  # depthwise kept paired with c1
    assert pruned.get_layer("bn2").get_weights()[0].shape == (4,)
    assert pruned.get_layer("dense1").get_weights()[0].shape == (4 * 4 * (4 + 2), 8)  # Flatten: 16 positions
    np.testing.assert_allclose(pruned.predict(x, verbose=0), before, atol=1e-5)
    decisions = {d.layer: d for d in step.describe()}
    assert decisions["c1"].applied and f"8 -> 4 channels (removed 4; {importance})" in decisions["c1"].reason
    assert "coupled with c3" in decisions["c2"].reason
    assert not decisions["classifier"].applied and "output layer" in decisions["classifier"].reason
    assert _widths(model)["c1"] == 8  # the input model is left as it was


def test_taylor_scores_from_the_training_sample() -> None:
    """Taylor scores a channel by (sum of weight x gradient)^2 on the sample: zeroed channels score 0 and go.
    (No ReLU or BatchNormalization here: a dead ReLU also scores 0, yet removing it takes the constant
    output of a BatchNormalization after it along.)"""
    k = keras()
    L = k.layers
    k.utils.set_random_seed(0)
    inputs = L.Input((6, 6, 2))
    x = L.Flatten(name="flat")(L.Conv2D(8, 3, name="c1")(inputs))
    model = k.Model(inputs, L.Dense(3, activation="softmax", name="out")(L.Dense(8, name="d1")(x)))
    _zero(model.get_layer("c1"), [1, 4, 5, 6])
    _zero(model.get_layer("d1"), [0, 2, 4, 6])
    x = np.random.default_rng(0).random((64, 6, 6, 2), dtype=np.float32)
    with pytest.raises(TransformError, match="taylor needs training samples"):
        _transform(fraction=0.5, importance="taylor").apply(model)
    step = _transform(sample=x, fraction=0.5, importance="taylor")
    pruned = step.apply(model)
    assert [pruned.get_layer(n).get_weights()[0].shape[-1] for n in ("c1", "d1", "out")] == [4, 4, 3]
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_widths_and_macs_in_the_exported_file(tmp_path) -> None:
    model = zeroed_model()
    pruned = _transform(fraction=0.5).apply(model)
    x = np.random.default_rng(0).random((16, 8, 8, 3), dtype=np.float32)
    for fmt in ("float32", "int8"):
        path = tmp_path / f"{fmt}.tflite"
        path.write_bytes(convert(pruned, ExportSpec(format=fmt, calibration_samples=16), x))
        ops = tflite_op_macs(path)
        convs = sorted(o.weight_shape for o in ops if o.op == "CONV_2D")
        # c1 3x3x3 -> 4; c2, c3 1x1 4 -> 4; c4 3x3 on the 4 kept Add channels -> 2 (TFLite's OHWI layout)
        assert convs == [(2, 3, 3, 4), (4, 1, 1, 4), (4, 1, 1, 4), (4, 3, 3, 3)], (fmt, convs)
        assert [o.weight_shape for o in ops if o.op == "DEPTHWISE_CONV_2D"] == [(1, 3, 3, 4)]
        assert sorted(o.weight_shape for o in ops if o.op == "FULLY_CONNECTED") == [(5, 8), (8, 96)]
        # by hand: 64 positions x (27x4 + 9x4 + 4x4 + 4x4 + 36x2) + 96x8 + 8x5
        assert tflite_macs(path) == 64 * (108 + 36 + 16 + 16 + 72) + 768 + 40 == 16680


def test_round_to_keeps_widths_a_multiple() -> None:
    k = keras()
    L = k.layers
    inputs = L.Input((6, 6, 2))
    x = L.Conv2D(24, 3, name="c1")(inputs)
    x = L.Conv2D(16, 3, name="c2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = k.Model(inputs, L.Dense(3, name="out")(x))
    pruned = _transform(fraction=0.3, round_to=8).apply(model)
    # 24 x 0.7 = 16.8 -> 16; 16 x 0.7 = 11.2 -> 8 (the nearest multiple of 8)
    assert [pruned.get_layer(n).get_weights()[0].shape[-1] for n in ("c1", "c2", "out")] == [16, 8, 3]
    step = _transform(fraction=0.2, round_to=8)  # 24 x 0.8 = 19.2 -> 16; 16 x 0.8 = 12.8 -> 16: c2 kept, said why
    step.apply(model)
    c2 = next(d for d in step.describe() if d.layer == "c2")
    assert not c2.applied and "all 16 channels kept (round_to=8)" in c2.reason


def test_fractions_skip_and_bn_scale() -> None:
    model = branching_model()
    gamma = model.get_layer("bn1").get_weights()
    gamma[0][[1, 2, 3, 4, 5, 6]] = 0.01  # bn_scale removes the smallest |gamma| (summed over bn1 and bn2)
    model.get_layer("bn1").set_weights(gamma)
    bn2 = model.get_layer("bn2").get_weights()
    model.get_layer("bn2").set_weights([np.ones_like(bn2[0])] + bn2[1:])
    step = _transform(fraction=0.5, fractions={"c1": 0.75}, importance="bn_scale", skip=["c4"])
    pruned = step.apply(model)
    assert _widths(pruned) == {**WIDTHS, "c1": 2, "c4": 4}
    kept_gamma = pruned.get_layer("bn1").get_weights()[0]
    np.testing.assert_allclose(kept_gamma, gamma[0][[0, 7]])
    decisions = {d.layer: d for d in step.describe()}
    assert "skipped by pattern" in decisions["c4"].reason
    assert "no BatchNormalization after it: l1" in decisions["c2"].reason  # the Add group has no BN


def test_unfollowable_layer_is_refused_with_the_skip_fix() -> None:
    k = keras()
    L = k.layers
    inputs = L.Input((6, 6, 2))
    x = L.Conv2D(8, 3, name="c1")(inputs)
    x = L.Reshape((16, 8), name="reshape")(x)
    x = L.Flatten(name="flat")(x)
    model = k.Model(inputs, L.Dense(3, name="out")(L.Dense(8, name="d1")(x)))
    with pytest.raises(
        TransformError,
        match=r"prune_channels cannot follow the channels of 'c1' through layer 'reshape' \(Reshape\).*"
        r"Fix: .*prune_channels: \{skip: \[reshape\]\}\. Received: layer='reshape'",
    ):
        _transform(fraction=0.5).apply(model)
    step = _transform(fraction=0.5, skip=["reshape"])
    pruned = step.apply(model)
    assert [pruned.get_layer(n).get_weights()[0].shape[-1] for n in ("c1", "d1", "out")] == [8, 4, 3]
    c1 = next(d for d in step.describe() if d.layer == "c1")
    assert not c1.applied and "'reshape', listed in skip" in c1.reason


def test_sequential_model_and_bad_fraction_names() -> None:
    k = keras()
    L = k.layers
    model = k.Sequential(
        [L.Input((8, 8, 1)), L.Conv2D(8, 3, name="c1"), L.Flatten(name="f"), L.Dense(4, name="d1"), L.Dense(2)]
    )
    pruned = _transform(fraction=0.5).apply(model)
    assert [w.shape for w in pruned.get_layer("d1").get_weights()] == [(6 * 6 * 4, 2), (2,)]
    with pytest.raises(TransformError, match=r"fractions: 'conv9' names no prunable layer"):
        _transform(fractions={"conv9": 0.5}).apply(model)
    with pytest.raises(ValueError, match="give fraction"):
        TECHNIQUES.get(STEP).Config.model_validate({})


def test_chain_then_qat_exports_int8_smaller_and_accurate(trained_small_cnn, digits, run_chain, export_file, tmp_path):
    reports, model = run_chain(
        trained_small_cnn, digits, [(STEP, {"fraction": 0.5, "importance": "l2"}), ("qat", {})], 1
    )
    assert [r.transform for r in reports] == [STEP, "qat"]
    stats, acc = export_file(model, digits, tmp_path / "thin_int8.tflite")
    assert acc >= 0.85, acc  # real digits test split, after one epoch of fine-tuning per step
    convs = sorted(o.weight_shape[0] for o in tflite_op_macs(tmp_path / "thin_int8.tflite") if o.op == "CONV_2D")
    assert convs == [8, 16]  # small_cnn(filters=16): conv1 16 -> 8, conv2 32 -> 16
    assert all(s.quantized for s in stats), stats


def test_pipeline_refuses_an_unfollowable_layer_before_training() -> None:
    from tfopt.pipeline import check_variants
    from tfopt.schema import VariantConfig

    k = keras()
    L = k.layers
    inputs = L.Input((6, 6, 2))
    x = L.Flatten(name="flat")(L.Reshape((16, 8), name="reshape")(L.Conv2D(8, 3, name="c1")(inputs)))
    model = k.Model(inputs, L.Dense(3, name="out")(x))
    weights = [w.copy() for w in model.get_weights()]
    variants = {"thin": VariantConfig.model_validate([{STEP: {"fraction": 0.5}}, "qat"])}
    with pytest.raises(TransformError, match=r"variant 'thin': prune_channels cannot follow .* layer 'reshape'"):
        check_variants(variants, "float32", "tf_keras", model)
    skipping = {"thin": VariantConfig.model_validate([{STEP: {"fraction": 0.5, "skip": ["reshape"]}}])}
    check_variants(skipping, "float32", "tf_keras", model)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))  # the check changes nothing


def test_separable_and_transposed_convs_slice_both_sides() -> None:
    """SeparableConv2D (depthwise on the input side, pointwise to its filters) and Conv2DTranspose
    (kernel laid out (h, w, out, in)): zeroed filters removed, the same outputs."""
    k = keras()
    L = k.layers
    k.utils.set_random_seed(0)
    inputs = L.Input((6, 6, 2))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, name="sep")(x)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same", name="up")(x)
    model = k.Model(inputs, L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="gap")(x)))
    _zero(model.get_layer("c1"), [0, 1, 2, 3])
    sep = model.get_layer("sep")
    dw, pw, b = sep.get_weights()
    pw[..., 4:], b[4:] = 0, 0
    sep.set_weights([dw, pw, b])
    _zero(model.get_layer("up"), [1, 3, 5, 7], axis=-2)
    x = np.random.default_rng(0).random((8, 6, 6, 2), dtype=np.float32)
    pruned = _transform(fraction=0.5).apply(model)
    assert pruned.get_layer("sep").get_weights()[0].shape == (3, 3, 4, 2)  # 4 kept inputs x depth multiplier 2
    assert pruned.get_layer("sep").get_weights()[1].shape == (1, 1, 8, 4)
    assert pruned.get_layer("up").get_weights()[0].shape == (3, 3, 4, 4)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def _trained_statistics(model) -> None:
    """Give every BatchNormalization a trained model's kind of statistics, so none is the identity."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.2, n), rng.uniform(0.5, 2, n)]
            )


def _expected_ops(model, keep) -> list[tuple[str, tuple[int, ...], int]]:
    """(TFLite op, weight shape, MACs) of each Conv2D, DepthwiseConv2D and Dense of ``model`` when every
    tensor of width ``w`` keeps ``keep(w)`` channels: derived from the unpruned model's geometry alone."""
    out = []
    for layer in model.layers:
        cls, shape = type(layer).__name__, layer.output_shape
        if cls not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        cin, cout = keep(int(layer.input_shape[-1])), keep(int(shape[-1]))
        positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        if cls == "Dense":
            out.append(("FULLY_CONNECTED", (cout, cin), cout * cin))
            continue
        kh, kw = layer.kernel_size
        if cls == "DepthwiseConv2D":
            out.append(("DEPTHWISE_CONV_2D", (1, kh, kw, cout), positions * cout * kh * kw))
        else:
            out.append(("CONV_2D", (cout, kh, kw, cin), positions * cout * kh * kw * cin))
    return sorted(out)


def _check_pruned_file(model, images, fraction: float, round_to: int, tmp_path) -> tuple[float, dict]:
    """Prune ``model``, export it and its baseline to float32 and check, on real ``images``: the pruned file
    matches the pruned Keras model within float32's tolerance, holds exactly the configured widths and does
    the MACs those widths imply, computed from the unpruned model's layer shapes (every tensor of ``w``
    channels keeps ``keep_count(w)``; the image's 3 channels and the classes stay).
    Returns the ratio of the files' MACs and the step's decisions by layer."""
    from tfopt.evaluate.litert import TfliteRunner

    step = _transform(fraction=fraction, round_to=round_to)
    pruned = step.apply(model)
    classes = int(model.output_shape[-1])

    def keep(w: int) -> int:
        return w if w in (3, classes) else keep_count(w, fraction, round_to)

    expected = _expected_ops(model, keep)
    paths = {}
    for name, m in (("base", model), ("thin", pruned)):
        paths[name] = tmp_path / f"{name}.tflite"
        paths[name].write_bytes(convert(m, ExportSpec(format="float32"), images[:16]))
    ops = sorted((o.op, o.weight_shape, o.macs) for o in tflite_op_macs(paths["thin"]))
    assert ops == expected  # widths in the file = the configured ones, op by op, and their MACs
    base_macs = sum(m for *_, m in _expected_ops(model, lambda w: w))
    assert tflite_macs(paths["base"]) == base_macs
    ratio = tflite_macs(paths["thin"]) / tflite_macs(paths["base"])
    assert ratio == sum(m for *_, m in expected) / base_macs
    diff = np.abs(TfliteRunner(paths["thin"]).predict(images) - pruned.predict(images, verbose=0)).max()
    assert diff <= ExportSpec(format="float32").max_abs_diff, diff
    return ratio, {d.layer: d for d in step.describe()}


def _check_inverted_residuals(decisions: dict) -> None:
    """The projections joined by residual Adds were pruned as one set."""
    assert "coupled with block_4_project, block_5_project" in decisions["block_3_project"].reason
    assert "coupled with block_2_project" in decisions["block_1_project"].reason


@pytest.mark.slow  # about 16 s: the default suite's budget; the residual test model covers the same paths
def test_mobilenet_v2_tiny_pruned_on_digits_matches_its_file(digits, tmp_path) -> None:
    """The registered mobilenet_v2's tiny variant (alpha 0.35, 32x32, blocks expanded_conv .. block_5: two
    residual Adds join three projections) with half of every channel set removed, checked on the 360 real
    digits test images (``_check_pruned_file``). Untrained but for its BatchNormalization statistics:
    training would double the test's time, and the surgery is exact either way."""
    from tfopt.models import MODELS

    keras().utils.set_random_seed(0)
    entry = MODELS.entry("mobilenet_v2")
    model = entry.obj(digits.input_shape, digits.num_classes, **entry.tiny)
    names = [layer.name for layer in model.layers]
    assert names[names.index("pool") - 1] == "block_5_add" and "block_6_expand" not in names  # blocks: 6
    _trained_statistics(model)
    ratio, decisions = _check_pruned_file(model, digits.x_test, 0.5, 1, tmp_path)
    _check_inverted_residuals(decisions)
    assert 0.25 < ratio < 0.5  # 1x1 convs do a quarter of their MACs, the depthwise and first convs a half


@pytest.mark.slow  # ~80 s on 2 busy cores: two conversions of the whole base at 96x96
def test_mobilenet_v2_alpha_035_at_96_pruned_consistently(tmp_path) -> None:
    """The whole registered mobilenet_v2 (alpha 0.35, Fashion-MNIST resized to 96x96 inside the model, all 17
    blocks and Conv_1), half of every channel set removed with widths kept a multiple of 8."""
    from tfopt.config import DataConfig
    from tfopt.data import load
    from tfopt.models.mobilenet_v2 import mobilenet_v2

    data = load(DataConfig(name="fashion_mnist", subset=200), seed=0)
    keras().utils.set_random_seed(0)
    model = mobilenet_v2(data.input_shape, data.num_classes, alpha=0.35, image_size=96)
    _trained_statistics(model)
    ratio, decisions = _check_pruned_file(model, data.x_test[:64], 0.5, 8, tmp_path)
    _check_inverted_residuals(decisions)
    assert ratio < 0.45


@pytest.mark.slow  # 16-40 s on 2 busy cores (two VGG16 conversions): above the default run's share
def test_vgg16_half_channels_on_fashion_mnist(tmp_path) -> None:
    """Smoke test of the VGG16 target: the registered vgg16 (32x32, Fashion-MNIST padded inside the model) with
    half of its channels removed; its file does the MACs of exactly half the widths (a quarter of the 3x3
    convs' work, half of the first conv's) and matches the pruned Keras model on 64 real test images."""
    from tfopt.config import DataConfig
    from tfopt.data import load
    from tfopt.models.vgg16 import vgg16

    data = load(DataConfig(name="fashion_mnist", subset=64), seed=0)
    keras().utils.set_random_seed(0)
    model = vgg16(data.input_shape, data.num_classes, image_size=32, fit="pad", dense=16)
    ratio, decisions = _check_pruned_file(model, data.x_test[:64], 0.5, 1, tmp_path)
    assert "64 -> 32 channels" in decisions["block1_conv1"].reason
    assert 0.25 < ratio < 0.26, ratio


def test_keras3_model_pruned_through_its_tf_keras_twin(digits) -> None:
    """A Keras 3 model goes through its tf_keras twin: zeroed channels removed, the same outputs on real digits
    as the Keras 3 model, and from this step on the variant is tf_keras (its fine-tune and exports use it)."""
    from tfopt._keras import keras3
    from tfopt.backends import backend_for

    k = keras3()
    k.utils.set_random_seed(0)
    inputs = k.Input(digits.input_shape)
    x = k.layers.Conv2D(8, 3, name="c1")(inputs)
    x = k.layers.ReLU(name="r1")(k.layers.BatchNormalization(name="bn1")(x))
    x = k.layers.Dense(8, activation="relu", name="d1")(k.layers.Flatten(name="flat")(x))
    model = k.Model(inputs, k.layers.Dense(10, activation="softmax", name="out")(x))
    for name in ("c1", "bn1"):
        _zero(model.get_layer(name), [1, 2, 5, 6])
    _zero(model.get_layer("d1"), [0, 3, 4, 7])
    tech = TECHNIQUES.get(STEP)
    sample = digits.x_train[:64]
    context = Context(steps_per_epoch=1, finetune_epochs=1, data=DataSpec(sample.shape[1:], 10, sample))
    step = tech.for_backend("keras3")(tech.Config.model_validate({"fraction": 0.5}), context)
    pruned = step.apply(model)
    assert backend_for(pruned).kind == "tf_keras" and step.context.backend.kind == "tf_keras"
    assert step.backend.startswith("keras3 -> tf_keras twin")
    assert [pruned.get_layer(n).get_weights()[0].shape[-1] for n in ("c1", "d1", "out")] == [4, 4, 10]
    x = digits.x_test
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.slow  # ~6 min on 2 busy cores: VGG16 trained and fine-tuned one epoch on 288 images, 4 files
def test_structured_vgg16_pipeline_on_a_fashion_mnist_slice(tmp_path) -> None:
    """pipelines/structured_vgg16_fashion_mnist.yaml as written, on 320 real training and 200 test images with one
    epoch per stage: the thin variant trains, exports to float32 and int8 and its files do the MACs of half the
    widths (0.2514x the baseline's: a quarter for every layer but the first conv and the classifier, a half there)."""
    from pathlib import Path

    from tfopt import config, pipeline
    from tfopt.data import load
    from tfopt.schema import DataConfig

    full = load(DataConfig(name="fashion_mnist", val_fraction=0), seed=0)
    npz = tmp_path / "fmnist_slice.npz"
    np.savez(
        npz, x_train=full.x_train[:320], y_train=full.y_train[:320], x_test=full.x_test[:200], y_test=full.y_test[:200]
    )
    cfg = config.load(Path(__file__).resolve().parents[2] / "pipelines" / "structured_vgg16_fashion_mnist.yaml")
    cfg = cfg.model_copy(
        update={
            "data": DataConfig(name="npz", path=str(npz), val_fraction=0.1),
            "train": cfg.train.model_copy(update={"epochs": 1, "batch_size": 32}),
            "finetune": cfg.finetune.model_copy(update={"epochs": 1}),
            "evaluate": cfg.evaluate.model_copy(update={"latency_runs": 5}),
        }
    )
    run = pipeline.run(cfg, root=tmp_path, log=print)
    assert [t.variant for t in run.training] == ["baseline", "thin/prune_channels"]
    assert run.validation_failures == []
    for fmt in ("float32", "int8"):
        base, thin = run.result("baseline", fmt), run.result("thin", fmt)
        assert 0.2510 < thin.macs / base.macs < 0.2520, (fmt, thin.macs, base.macs)
        assert thin.weights < 0.26 * base.weights, (fmt, thin.weights, base.weights)
