"""The training job: a config and a strategy -> a `Trainer` over the configured input pipeline.

Shared by `python -m cornernet_tf.train` and `benchmarks/train_step.py`, so the benchmark times
the step the command runs.
"""

from __future__ import annotations

import functools
import os

import tensorflow as tf

from cornernet_tf.config import Config
from cornernet_tf.data.pipeline import finish_batch, train_dataset
from cornernet_tf.training.loop import Trainer


def finishes_in_step(strategy: tf.distribute.Strategy, finish_batches: str = "auto") -> bool:
    """Whether batches are resampled and their targets drawn inside the training step.

    "auto": on GPUs, yes, since the accelerator does that work faster than the host and the
    batches it receives are a third of the size. On a CPU-only host the step and tf.data share
    the same cores, and a parallel map in tf.data measured no faster (slower in two of three
    rounds, see docs/benchmarks.md, "Training step"), so yes there too. TPUs, never: their input batches
    need static shapes, and a batch of views holds images padded to the batch's largest.
    """
    if isinstance(strategy, tf.distribute.TPUStrategy):
        if finish_batches == "step":
            raise ValueError("train.finish_batches: step is not possible on TPUs (static input shapes); "
                             "use auto or pipeline")
        return False
    return finish_batches != "pipeline"


def build_trainer(config: Config, strategy: tf.distribute.Strategy, model_dir: str | os.PathLike) -> Trainer:
    """A Trainer that reads the config's training split, resumable from any step."""
    in_step = finishes_in_step(strategy, config.train.finish_batches)
    return Trainer(
        config,
        strategy,
        model_dir,
        dataset_fn=lambda ctx, start, skipped: train_dataset(
            config, input_context=ctx, start_step=start, finish_on_device=in_step, skipped_samples=skipped
        ),
        finish_batch=functools.partial(finish_batch, config) if in_step else None,
    )
