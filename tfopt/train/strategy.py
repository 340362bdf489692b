"""Strategy from a name: the model is built, wrapped and compiled inside its scope."""

from __future__ import annotations

from typing import Any

from tfopt._keras import tf
from tfopt.config import TrainConfig
from tfopt.errors import TfoptError


def resolve_strategy(cfg: TrainConfig, log=print) -> Any:
    """Create the ``tf.distribute`` strategy named in the config and say what was chosen."""
    t = tf()
    if cfg.strategy == "one_device":
        device = cfg.device or ("/gpu:0" if t.config.list_logical_devices("GPU") else "/cpu:0")
        known = {d.name.lower().replace("/device:", "/") for d in t.config.list_logical_devices()}
        if device.lower().replace("/device:", "/") not in known and not any(k.endswith(device.lower().lstrip("/")) for k in known):
            raise TfoptError(f"Device {device!r} not found. Known: {', '.join(sorted(known))}. Fix: set train.device to one of them.")
        log(f"[tfopt] strategy: OneDeviceStrategy on {device}")
        return t.distribute.OneDeviceStrategy(device)
    raise TfoptError(f"Unknown strategy {cfg.strategy!r}.")  # pragma: no cover - schema forbids it
