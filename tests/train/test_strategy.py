"""Strategy from a name: choices, devices, batch scaling, TF_CONFIG and TPU errors that name the fix."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tfopt import config
from tfopt.config import TrainConfig
from tfopt.errors import ConfigError
from tfopt.train.strategy import (
    StrategyError,
    describe_strategy,
    global_batch_size,
    is_chief,
    read_tf_config,
    resolve_strategy,
)


def _resolve(**train):
    lines: list[str] = []
    return resolve_strategy(TrainConfig(**train), log=lines.append), lines


def test_mirrored_over_two_logical_cpus_has_two_replicas() -> None:
    strategy, lines = _resolve(strategy="mirrored", devices=["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2 and describe_strategy(strategy) == "MirroredStrategy"
    assert lines == ["[tfopt] strategy: MirroredStrategy over /cpu:0, /cpu:1 (2 replicas)"]


def test_auto_without_gpus_chooses_the_default_strategy_and_says_so() -> None:
    strategy, lines = _resolve(strategy="auto")
    assert describe_strategy(strategy) == "default" and strategy.num_replicas_in_sync == 1
    assert lines == ["[tfopt] strategy: auto chose (no GPU visible) the default strategy on /cpu:0"]
    assert TrainConfig().strategy == "auto"


def test_auto_with_a_device_set_places_on_it() -> None:
    strategy, lines = _resolve(strategy="auto", device="/cpu:1")
    assert describe_strategy(strategy) == "OneDeviceStrategy" and strategy.extended.worker_devices[0].endswith("CPU:1")
    assert lines == ["[tfopt] strategy: auto chose (a device is set) OneDeviceStrategy on /cpu:1"]


def test_one_device_on_the_second_logical_cpu() -> None:
    strategy, lines = _resolve(strategy="one_device", device="/cpu:1")
    assert strategy.extended.worker_devices[0].endswith("CPU:1")


@pytest.mark.parametrize(
    "train", [{"strategy": "mirrored", "devices": ["/cpu:0", "/gpu:7"]}, {"strategy": "one_device", "device": "/gpu:7"}]
)
def test_unknown_device_names_the_known_ones(train) -> None:
    with pytest.raises(
        StrategyError, match=r"Device '/gpu:7' not found\. Known: .*/cpu:0, .*/cpu:1.*Fix: set train\.devices?"
    ):
        _resolve(**train)


def test_batch_size_per_replica_scales_the_global_batch() -> None:
    strategy, _ = _resolve(strategy="mirrored", devices=["/cpu:0", "/cpu:1"])
    assert global_batch_size(16, "replica", strategy) == 32
    assert global_batch_size(16, "global", strategy) == 16
    with pytest.raises(StrategyError, match="batch_size 1 is smaller than the 2 replicas"):
        global_batch_size(1, "global", strategy)


CLUSTER = {"worker": ["localhost:1111", "localhost:2222"]}


def test_tf_config_chief_and_workers(monkeypatch) -> None:
    def task(t: str, i: int, cluster=CLUSTER):
        return read_tf_config({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": t, "index": i}})})

    assert task("worker", 0).is_chief and not task("worker", 1).is_chief
    with_chief = dict(CLUSTER, chief=["localhost:3333"])
    assert task("chief", 0, with_chief).is_chief and not task("worker", 0, with_chief).is_chief
    assert task("worker", 1, with_chief).num_workers == 3
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 1}}))
    assert not is_chief(TrainConfig(strategy="multi_worker")) and is_chief(TrainConfig(strategy="auto"))


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, "needs the TF_CONFIG environment variable, which is not set"),
        ("{cluster: }", "TF_CONFIG is not valid JSON"),
        (json.dumps({"cluster": CLUSTER}), "needs a 'cluster' and a 'task' mapping"),
        (
            json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}}),
            "is not in its cluster (types: worker)",
        ),
    ],
)
def test_bad_tf_config_is_a_clear_error(monkeypatch, value, expected) -> None:
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(StrategyError, match="Fix: set TF_CONFIG on every host") as e:
        _resolve(strategy="multi_worker")
    assert expected in str(e.value)


def test_unreachable_tpu_names_the_address_quickly() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(StrategyError, match=rf"Cannot reach the TPU at grpc://localhost:{port}: .*Fix: set train\.tpu"):
        _resolve(strategy="tpu", tpu=f"grpc://localhost:{port}")
    assert time.monotonic() - start < 15  # TensorFlow itself would wait forever on this address


@pytest.mark.parametrize(
    "train,expected",
    [
        ("{strategy: mirrored, device: /gpu:0}", "'device' applies to strategy one_device; for mirrored use 'devices'"),
        ("{strategy: one_device, devices: [/gpu:0]}", "'devices' applies to strategy mirrored, not one_device"),
        (
            "{strategy: mirrored, cross_device_ops: ring}",
            "cross_device_ops 'ring' does not apply to strategy mirrored; known for it: nccl",
        ),
        (
            "{strategy: tpu, precision: mixed_float16}",
            "TPUs compute in bfloat16, not float16. Fix: use precision: mixed_bfloat16",
        ),
        (
            "{strategy: tpus}",
            "train.strategy: Input should be 'auto', 'one_device', 'mirrored', 'multi_worker' or 'tpu'",
        ),
        ("{precision: float16}", "train.precision: Input should be 'float32', 'mixed_float16' or 'mixed_bfloat16'"),
    ],
)
def test_strategy_options_are_checked_when_the_pipeline_loads(train, expected) -> None:
    with pytest.raises(ConfigError) as e:
        config.loads(f"data: {{name: digits}}\nmodel: {{name: small_cnn}}\ntrain: {train}\n", source="p.yaml")
    assert expected in str(e.value) and "p.yaml:3" in str(e.value)
