"""The fit loop shared by baseline training and variant fine-tuning.

Every fit reads its data through tf.data (cache, seeded shuffle, batch, prefetch; sharded by
example when several workers train), can back itself up each epoch and resume after a kill, and
records its throughput with the strategy, replicas, global batch and precision it ran under.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tfopt._keras import tf
from tfopt.backends import Backend, backend_for
from tfopt.data import num_examples
from tfopt.results import Training
from tfopt.train.strategy import describe_strategy


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int) -> Any:
    """tf.data pipeline: cache, seeded shuffle, batch (the global batch), prefetch.

    Auto-sharding is set to DATA: arrays in memory have no files to shard by, so each worker of a
    multi-worker run takes its share of every global batch (the policy Keras would otherwise fall
    back to, with a warning). It changes nothing on one machine.
    """
    t = tf()
    ds = t.data.Dataset.from_tensor_slices((x, y)).cache()
    if shuffle:
        ds = ds.shuffle(num_examples(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).prefetch(t.data.AUTOTUNE)
    options = t.data.Options()
    options.experimental_distribute.auto_shard_policy = t.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def compile_model(model: Any, optimizer: str, learning_rate: float, backend: Optional[Backend] = None) -> None:
    """Compile for integer-label classification; call inside the strategy scope.

    The model's backend picks its Keras' optimizer and loss; under a ``mixed_float16`` policy a
    tf_keras optimizer is wrapped in a ``LossScaleOptimizer`` (dynamic loss scaling).
    """
    (backend or backend_for(model)).compile(model, optimizer, learning_rate)


def backup_callback(model: Any, backup_dir: Path, backend: Optional[Backend] = None) -> Any:
    """Keras ``BackupAndRestore`` writing to ``backup_dir`` every epoch, restoring at the next start.

    tf_keras refuses ``OneDeviceStrategy`` here only because it is missing from the callback's list
    of strategies; its checkpoint (``tf.train.Checkpoint`` of model, optimizer and epoch) works the
    same on one device, which ``tests/train/test_resume.py`` checks by killing a real run.
    """
    k = (backend or backend_for(model)).keras()
    cb = k.callbacks.BackupAndRestore(backup_dir=str(backup_dir), save_freq="epoch", delete_checkpoint=True)
    if hasattr(cb, "_supported_strategies"):
        cb._supported_strategies = tuple(cb._supported_strategies) + (tf().distribute.OneDeviceStrategy,)
    return cb


class _Progress:
    """Records the first epoch a fit runs (later than 0 after a resume) and says so once."""

    def __init__(self, variant: str, epochs: int, log: Callable[[str], None]):
        self.variant, self.epochs, self.log = variant, epochs, log
        self.first_epoch: Optional[int] = None

    def callback(self, k: Any) -> Any:
        outer = self

        class Cb(k.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if outer.first_epoch is None:
                    outer.first_epoch = epoch
                    if epoch > 0:
                        outer.log(
                            f"[tfopt]   {outer.variant}: resumed from the checkpoint of epoch {epoch}; "
                            f"continuing at epoch {epoch + 1}/{outer.epochs}"
                        )

        return Cb()


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
    backup_dir: Optional[Path] = None,
    log: Callable[[str], None] = print,
    backend: Optional[Backend] = None,
) -> Training:
    """Train ``model`` on the splits' train part, validating on val; returns what happened.

    Args:
        batch_size: the global batch (all replicas together); see ``strategy.global_batch_size``.
        backup_dir: back up every epoch there and resume from it if a backup exists (a previous
            invocation was killed); the backup is deleted when the fit completes.
        log: where the resume notice goes.
    """
    backend = backend or backend_for(model)
    k = backend.keras()  # callbacks must come from the model's own Keras
    progress = _Progress(variant, epochs, log)
    # The backup restores first, so later callbacks (e.g. tfmot's UpdatePruningStep) see the restored state.
    cbs = (
        ([backup_callback(model, backup_dir, backend)] if backup_dir is not None else [])
        + [progress.callback(k)]
        + list(callbacks)
    )
    if log_dir is not None:
        cbs.append(k.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=0, write_graph=False, profile_batch=0))
    has_val = num_examples(splits.x_val) > 0
    if early_stopping is not None and has_val:
        cbs.append(
            k.callbacks.EarlyStopping(
                monitor=early_stopping.monitor, patience=early_stopping.patience, restore_best_weights=True
            )
        )
    strategy = getattr(model, "distribute_strategy", None) or tf().distribute.get_strategy()
    policy = getattr(getattr(model, "dtype_policy", None), "name", None) or "float32"
    info = dict(
        strategy=describe_strategy(strategy),
        replicas=strategy.num_replicas_in_sync,
        global_batch_size=batch_size,
        precision=policy,
    )
    if epochs == 0:
        return Training(variant, 0, 0.0, 0.0, {}, **info)
    train_ds = make_dataset(splits.x_train, splits.y_train, batch_size, shuffle=True, seed=seed)
    val_ds = make_dataset(splits.x_val, splits.y_val, batch_size, shuffle=False, seed=seed) if has_val else None
    start = time.perf_counter()
    # shuffle=False: train_ds shuffles itself (seeded); Keras 3 warns that fit's own shuffle=True is ignored otherwise.
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=epochs, callbacks=cbs, verbose=verbose, shuffle=False
    )  # fmt: skip
    seconds = time.perf_counter() - start
    epochs_run = len(history.epoch)
    first = history.epoch[0] if history.epoch else (progress.first_epoch or epochs)
    final = {key: float(values[-1]) for key, values in history.history.items() if len(values)}
    speed = round(epochs_run * num_examples(splits.x_train) / seconds, 1) if epochs_run and seconds > 0 else 0.0
    return Training(variant, epochs_run, round(seconds, 3), speed, final, initial_epoch=first, **info)
