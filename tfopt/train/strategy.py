"""Distribution strategy from a name: the model is built, wrapped and compiled inside its scope.

One line of YAML moves a pipeline from one device to several GPUs, several hosts or a TPU::

    train: {strategy: auto}                                  # Mirrored if >1 GPU, else the default strategy
    train: {strategy: mirrored, devices: [/gpu:0, /gpu:1], cross_device_ops: nccl}
    train: {strategy: multi_worker}                          # reads TF_CONFIG; run the same command on every host
    train: {strategy: tpu, tpu: grpc://10.0.0.2:8470}        # or a Cloud TPU name, or local on a TPU VM

Why the checks here: TensorFlow's own failures for these cases are a hang (an unreachable TPU
address), a deep traceback (a bad ``TF_CONFIG``) or a silent single-worker run, so each one is
turned into a one-line ``TfoptError`` that names what was tried and the fix.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import urlparse

from tfopt._keras import tf
from tfopt.schema import TrainConfig
from tfopt.errors import TfoptError

TPU_CONNECT_TIMEOUT_S = 10.0


class StrategyError(TfoptError):
    """A distribution strategy cannot be created as configured (devices, TF_CONFIG, TPU)."""


@dataclass(frozen=True)
class WorkerTask:
    """This process's place in a multi-worker cluster, read from ``TF_CONFIG``."""

    type: str
    index: int
    num_workers: int  # chief + workers: the processes that train
    has_chief: bool = False  # without a "chief" entry, worker 0 is the chief

    @property
    def is_chief(self) -> bool:
        return self.type == "chief" or (self.type == "worker" and self.index == 0 and not self.has_chief)


def read_tf_config(environ: Optional[dict] = None) -> WorkerTask:
    """Parse and check the standard ``TF_CONFIG`` variable of a multi-worker run.

    Raises:
        StrategyError: it is missing, not JSON, or does not name this task in its cluster.
    """
    env = os.environ if environ is None else environ
    raw = env.get("TF_CONFIG")
    fix = (
        'Fix: set TF_CONFIG on every host, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}} (index 1 on the second host)'
    )
    if not raw:
        raise StrategyError(
            "strategy multi_worker needs the TF_CONFIG environment variable, which is not set. "
            f"{fix}, or use strategy: auto."
        )
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as e:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({e.msg} at position {e.pos}). {fix}.") from None
    cluster = conf.get("cluster") if isinstance(conf, dict) else None
    task = conf.get("task") if isinstance(conf, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise StrategyError(f"TF_CONFIG needs a 'cluster' and a 'task' mapping. {fix}. Received: TF_CONFIG={raw!r}")
    ttype, index = task.get("type"), task.get("index", 0)
    members = cluster.get(ttype) if isinstance(ttype, str) else None
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise StrategyError(
            f"TF_CONFIG's task {task!r} is not in its cluster "
            f"(types: {', '.join(map(str, cluster)) or 'none'}). {fix}. "
            f"Received: TF_CONFIG={raw!r}"
        )
    workers = len(cluster.get("worker") or []) + len(cluster.get("chief") or [])
    return WorkerTask(ttype, index, workers, has_chief=bool(cluster.get("chief")))


def is_chief(cfg: TrainConfig) -> bool:
    """Whether this process writes the run's artifacts (only the chief does in a multi-worker run)."""
    return cfg.strategy != "multi_worker" or read_tf_config().is_chief


def _norm(device: str) -> str:
    return device.lower().replace("/device:", "/").replace("/job:localhost/replica:0/task:0", "")


def _check_devices(devices: list[str], key: str) -> list[str]:
    t = tf()
    known = {_norm(d.name): d.name for d in t.config.list_logical_devices()}
    out = []
    for device in devices:
        d = _norm(device if device.startswith("/") else "/" + device)
        if d not in known:
            raise StrategyError(
                f"Device {device!r} not found. Known: {', '.join(sorted(known))}. "
                f"Fix: set train.{key} to devices from that list."
            )
        out.append(d)
    return out


def resolve_strategy(cfg: TrainConfig, log: Callable[[str], None] = print) -> Any:
    """Create the ``tf.distribute`` strategy named in the config and say what was chosen.

    Args:
        cfg: the ``train`` section (``strategy`` and its options).
        log: where the one-line choice goes.

    Returns:
        A ``tf.distribute.Strategy``; build, wrap and compile models inside its ``scope()``.

    Raises:
        StrategyError: unknown devices, a bad ``TF_CONFIG``, an unreachable TPU.
    """
    name = cfg.strategy
    if name == "multi_worker":  # before anything else touches TensorFlow's devices
        return _multi_worker(cfg, log)
    if name == "tpu":
        return _tpu(cfg, log)
    t = tf()
    if name == "auto":
        gpus = t.config.list_logical_devices("GPU")
        if cfg.device is None and len(gpus) > 1:
            strategy = t.distribute.MirroredStrategy([g.name for g in gpus])
            log(
                f"[tfopt] strategy: auto chose MirroredStrategy over {len(gpus)} GPUs "
                f"({strategy.num_replicas_in_sync} replicas)"
            )
            return strategy
        if cfg.device:
            return _one_device(cfg, log, prefix="auto chose (a device is set) ")
        # One device and no placement asked for: TensorFlow's default strategy trains the same model
        # without OneDeviceStrategy's per-step distribution machinery, which on CPU costs about
        # 1.5x the CPU time and 2.5x the wall time of the same fit (benchmarks/tfopt_overhead.py).
        where = gpus[0].name.replace("/device:", "/").lower() if gpus else "/cpu:0"
        why = "1 GPU visible" if gpus else "no GPU visible"
        log(f"[tfopt] strategy: auto chose ({why}) the default strategy on {where}")
        return t.distribute.get_strategy()
    if name == "one_device":
        return _one_device(cfg, log)
    if name == "mirrored":
        devices = _check_devices(cfg.devices, "devices") if cfg.devices else None
        ops = {
            None: None,
            "nccl": lambda: t.distribute.NcclAllReduce(),
            "hierarchical_copy": lambda: t.distribute.HierarchicalCopyAllReduce(),
            "reduction_to_one_device": lambda: t.distribute.ReductionToOneDevice(),
        }[cfg.cross_device_ops]
        strategy = t.distribute.MirroredStrategy(devices, cross_device_ops=ops() if ops else None)
        shown = ", ".join(_norm(d) for d in strategy.extended.worker_devices)
        log(
            f"[tfopt] strategy: MirroredStrategy over {shown} ({strategy.num_replicas_in_sync} replicas"
            + (f", {cfg.cross_device_ops}" if cfg.cross_device_ops else "")
            + ")"
        )
        if strategy.num_replicas_in_sync == 1:
            log("[tfopt]   note: one replica only (no GPU visible and no train.devices); this trains like one_device")
        return strategy
    raise StrategyError(f"Unknown strategy {name!r}.")  # pragma: no cover - the schema forbids it


def _one_device(cfg: TrainConfig, log: Callable[[str], None], prefix: str = "") -> Any:
    t = tf()
    device = cfg.device or ("/gpu:0" if t.config.list_logical_devices("GPU") else "/cpu:0")
    _check_devices([device], "device")
    log(f"[tfopt] strategy: {prefix}OneDeviceStrategy on {device}")
    return t.distribute.OneDeviceStrategy(device)


def _multi_worker(cfg: TrainConfig, log: Callable[[str], None]) -> Any:
    t = tf()
    task = read_tf_config()
    impl = t.distribute.experimental.CommunicationImplementation
    options = t.distribute.experimental.CommunicationOptions(
        implementation={None: impl.AUTO, "auto": impl.AUTO, "ring": impl.RING, "nccl": impl.NCCL}[cfg.cross_device_ops]
    )
    try:
        strategy = t.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as e:  # "Collective ops must be configured at program startup"
        raise StrategyError(
            f"Cannot start MultiWorkerMirroredStrategy: {str(e).splitlines()[0]}. "
            "Fix: run each worker as its own fresh process (tfopt run ...), "
            "with nothing else using TensorFlow before it."
        ) from None
    log(
        f"[tfopt] strategy: MultiWorkerMirroredStrategy, {task.type} {task.index} of {task.num_workers} workers, "
        f"{strategy.num_replicas_in_sync} replicas" + (" (chief: writes the artifacts)" if task.is_chief else "")
    )
    return strategy


def _tpu(cfg: TrainConfig, log: Callable[[str], None]) -> Any:
    t = tf()
    address = cfg.tpu
    shown = address if address else "(none: TPU_NAME or the Cloud TPU of this VM)"
    fix = (
        "Fix: set train.tpu to a reachable TPU (a Cloud TPU name, grpc://host:port, or local on a TPU VM) "
        "and check that it is up"
    )
    if address and address.startswith("grpc://"):
        # TensorFlow waits forever on an unreachable gRPC address: try the port first, with a timeout.
        url = urlparse(address)
        try:
            with socket.create_connection((url.hostname, url.port or 8470), timeout=TPU_CONNECT_TIMEOUT_S):
                pass
        except OSError as e:
            raise StrategyError(f"Cannot reach the TPU at {address}: {e.strerror or e}. {fix}.") from None
    try:
        resolver = t.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        t.config.experimental_connect_to_cluster(resolver)
        t.tpu.experimental.initialize_tpu_system(resolver)
        strategy = t.distribute.TPUStrategy(resolver)
    except Exception as e:  # ValueError, URLError, NotFoundError, ...: all mean "no TPU there"
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise StrategyError(f"Cannot reach the TPU {shown}: {msg}. {fix}.") from None
    log(f"[tfopt] strategy: TPUStrategy on {address or 'the default TPU'} ({strategy.num_replicas_in_sync} replicas)")
    return strategy


def global_batch_size(batch_size: int, per: str, strategy: Any) -> int:
    """The batch the input pipeline yields: ``batch_size`` itself, or times the replicas for ``per: replica``.

    A distributed ``fit`` splits each global batch over the replicas, so ``batch_size_per: replica``
    keeps each device's batch (and its memory use) fixed as replicas are added.
    """
    replicas = strategy.num_replicas_in_sync
    if per == "global" and batch_size < replicas:
        raise StrategyError(
            f"batch_size {batch_size} is smaller than the {replicas} replicas, so some would get no examples. "
            f"Fix: set batch_size to at least {replicas}, or batch_size_per: replica."
        )
    return batch_size * replicas if per == "replica" else batch_size


def describe_strategy(strategy: Any) -> str:
    """The public name of a strategy, recorded in run.json, e.g. ``MirroredStrategy``.

    Class names differ from the API names (MultiWorkerMirroredStrategy is a
    ``CollectiveAllReduceStrategy``), so the public classes are checked in turn.
    """
    d = tf().distribute
    for name in ("MultiWorkerMirroredStrategy", "MirroredStrategy", "TPUStrategy", "OneDeviceStrategy"):
        if isinstance(strategy, getattr(d, name)):
            return name
    return "default"  # no strategy: Keras' default, one device
