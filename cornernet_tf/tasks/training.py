"""The training job of a `Config`: its optimizer, loop settings and the `Trainer` over its input.

Shared by `python -m cornernet_tf.train`, the training tests and `benchmarks/train_step.py`, so
the benchmark times the step the command runs.
"""

from __future__ import annotations

import functools
import os

import keras
import tensorflow as tf

from cornernet_tf.config import Config, TrainConfig
from cornernet_tf.tasks import data
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.loop import BatchFinisher, DatasetFn, LoopSettings, Trainer
from cornernet_tf.training.schedule import WarmupSchedule
from cornernet_tf.training.strategy import finishes_in_step


def use_mixed_precision(train: TrainConfig) -> None:
    """Set Keras' global dtype policy to train.mixed_precision (the train command, before it builds
    anything); float32 leaves the process's policy as it is."""
    if train.mixed_precision != "float32":
        keras.mixed_precision.set_global_policy(train.mixed_precision)


def build_optimizer(train: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam (the paper) or AdamW, with the configured schedule and optional global-norm clipping;
    under mixed_float16 wrapped for loss scaling."""
    schedule = WarmupSchedule(
        train.learning_rate,
        kind=train.lr_schedule,
        total_steps=train.steps,
        decay_steps=train.lr_decay_steps,
        decay_factor=train.lr_decay_factor,
        warmup_steps=train.warmup_steps,
    )
    common = {"learning_rate": schedule, "global_clipnorm": train.clip_norm}
    if train.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(weight_decay=train.weight_decay, **common)
    else:
        optimizer = keras.optimizers.Adam(**common)
    if train.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def loop_settings(config: Config) -> LoopSettings:
    """The training loop's view of the config."""
    train = config.train
    return LoopSettings(
        global_batch=train.batch_size,
        input_size=tuple(config.data.input_size),
        steps=train.steps,
        checkpoint_every=train.checkpoint_every,
        keep_checkpoints=train.keep_checkpoints,
        eval_every=train.eval_every,
        sync_batchnorm=train.sync_batchnorm,
        pull_weight=train.pull_weight,
        push_weight=train.push_weight,
        offset_weight=train.offset_weight,
    )


def build_trainer(
    config: Config,
    strategy: tf.distribute.Strategy,
    model_dir: str | os.PathLike,
    dataset_fn: DatasetFn | None = None,
    finish_batch: BatchFinisher | None = None,
) -> Trainer:
    """A Trainer of the config's model and optimizer, resumable from any step.

    Args:
        config: The run's config (model, train and data settings).
        strategy: The tf.distribute strategy to train under.
        model_dir: The run's folder (checkpoints go into its checkpoints folder).
        dataset_fn: Replaces the default input, the config's training split with its batches
            finished where train.finish_batches says (`training.strategy.finishes_in_step`);
            e.g. a fixed batch. See `Trainer`.
        finish_batch: With `dataset_fn`, what turns its batches into (images, targets) inside
            the step; None: they already are.

    Returns:
        The Trainer (model and optimizer built, not yet restored from a checkpoint).

    Raises:
        ValueError: train.batch_size does not divide by the strategy's replicas, or
            train.finish_batches is "step" on TPUs.
    """
    if dataset_fn is None:
        in_step = finishes_in_step(strategy, config.train.finish_batches)
        dataset_fn = functools.partial(_train_input, config, in_step)
        finish_batch = data.batch_finisher(config) if in_step else None
    return Trainer(
        loop_settings(config),
        strategy,
        model_dir,
        build_model=lambda: build_model(config.model),
        build_optimizer=lambda: build_optimizer(config.train),
        dataset_fn=dataset_fn,
        finish_batch=finish_batch,
    )


def _train_input(
    config: Config, finish_on_device: bool, ctx: tf.distribute.InputContext, start: int, skipped: int
) -> tf.data.Dataset:
    return data.train_dataset(
        config, input_context=ctx, start_step=start, finish_on_device=finish_on_device, skipped_samples=skipped
    )
