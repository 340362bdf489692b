"""The fit loop shared by baseline training and variant fine-tuning."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tfopt._keras import keras, tf
from tfopt.results import Training


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int) -> Any:
    """tf.data pipeline: cache, seeded shuffle, batch, prefetch."""
    t = tf()
    ds = t.data.Dataset.from_tensor_slices((x, y)).cache()
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(t.data.AUTOTUNE)


def _optimizer(name: str, learning_rate: float) -> Any:
    k = keras()
    return {
        "adam": k.optimizers.Adam,
        "adamw": k.optimizers.AdamW,
        "sgd": lambda learning_rate: k.optimizers.SGD(learning_rate=learning_rate, momentum=0.9),
        "rmsprop": k.optimizers.RMSprop,
    }[name](learning_rate=learning_rate)


def _outputs_probabilities(model: Any) -> bool:
    layer = model.layers[-1]
    while hasattr(layer, "layer"):  # tfmot wrappers (pruning, clustering, QAT) hold the real layer
        layer = layer.layer
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") == "softmax"


def compile_model(model: Any, optimizer: str, learning_rate: float) -> None:
    """Compile for integer-label classification; call inside the strategy scope."""
    k = keras()
    model.compile(
        optimizer=_optimizer(optimizer, learning_rate),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=not _outputs_probabilities(model)),
        metrics=["accuracy"],
    )


def fit(
    model: Any,
    splits: Any,
    *,
    variant: str,
    epochs: int,
    batch_size: int,
    seed: int,
    callbacks: list,
    log_dir: Optional[Path],
    early_stopping: Any = None,
    verbose: int = 2,
) -> Training:
    """Train ``model`` on the splits' train part, validating on val; returns what happened."""
    k = keras()
    cbs = list(callbacks)
    if log_dir is not None:
        cbs.append(k.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=0, write_graph=False, profile_batch=0))
    has_val = len(splits.x_val) > 0
    if early_stopping is not None and has_val:
        cbs.append(k.callbacks.EarlyStopping(monitor=early_stopping.monitor, patience=early_stopping.patience, restore_best_weights=True))
    train_ds = make_dataset(splits.x_train, splits.y_train, batch_size, shuffle=True, seed=seed)
    val_ds = make_dataset(splits.x_val, splits.y_val, batch_size, shuffle=False, seed=seed) if has_val else None
    if epochs == 0:
        return Training(variant, 0, 0.0, 0.0, {})
    start = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=cbs, verbose=verbose)
    seconds = time.perf_counter() - start
    epochs_run = len(history.epoch)
    final = {key: float(values[-1]) for key, values in history.history.items()}
    return Training(variant, epochs_run, round(seconds, 3), round(epochs_run * len(splits.x_train) / seconds, 1), final)
