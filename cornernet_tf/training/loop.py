"""One custom training loop for every tf.distribute strategy.

Keras 3 `fit` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585), so the
loop is `strategy.run` inside a `tf.function`. `Trainer.train_step` keeps Keras' train_step
semantics for one replica's batch.

Losses are normalised by counts of the whole global batch (positives per heatmap, objects),
all-reduced across replicas first, so the per-replica losses add up to the loss of the global
batch and the optimizer's cross-replica gradient sum is the gradient of that loss.

Resuming is exact: the input pipeline is a pure function of the sample index, so a run that
restarts from the checkpoint of step `s` sees the same batches from `s` on that an
uninterrupted run would have seen. Samples the pipeline dropped as undecodable are counted
exactly per input pipeline (each batch says how many it skipped, see `targets.SKIPPED`) and
checkpointed, so the resumed stream starts past them too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import pathlib
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from cornernet_tf.objective.losses import attention_keys, cornernet_loss, positive_mask, saccade_loss
from cornernet_tf.objective.targets import SKIPPED
from cornernet_tf.training.checkpoint import (
    CHECKPOINT_SUBDIR,
    READ_ERRORS,
    CheckpointWriteError,
    checkpoints_newest_first,
    forget_checkpoints,
    set_aside,
    training_checkpoint,
)
from cornernet_tf.training.progress import ProgressLogger
from cornernet_tf.training.strategy import is_chief, num_input_pipelines, worker_id
from cornernet_tf.utils.write_errors import WRITE_ERRORS, reason

DatasetFn = Callable[[tf.distribute.InputContext, int, int], tf.data.Dataset]
BatchFinisher = Callable[[Any], tuple[tf.Tensor, Mapping[str, tf.Tensor]]]


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """What the loop needs to know of a run: the global batch (split over replicas), the input
    [height, width] the model is built at, the step to train to, how often to checkpoint (and
    how many to keep) and to evaluate (0: only at the end), BatchNorm over all replicas, and
    the loss weights (`losses.cornernet_loss`)."""

    global_batch: int
    input_size: Sequence[int]
    steps: int
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 0
    sync_batchnorm: bool = False
    pull_weight: float = 0.1
    push_weight: float = 0.1
    offset_weight: float = 1.0


class NonFiniteLossError(FloatingPointError):
    """A loss part became NaN or Inf; the message names the step and the part."""


class StopRequested(Exception):
    """SIGTERM or Ctrl-C arrived; a checkpoint was saved before raising. `by_cluster`: under
    multi-worker, SIGTERM reached some worker of the cluster and every worker saved and stopped."""

    def __init__(self, signum: int, step: int, by_cluster: bool = False):
        name = signal.Signals(signum).name
        if by_cluster:
            message = (
                f"stopped at step {step}: a worker of the cluster received {name}, and every worker saved the "
                f"checkpoint of step {step}; restart every worker with the same command to resume from it"
            )
        else:
            message = f"stopped by {name} at step {step}; checkpoint saved"
        super().__init__(message)
        self.signum = signum
        self.step = step


class _SignalFlag:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.received_at = 0.0  # time.monotonic() of the signal
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalFlag:
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self.received_at = time.monotonic()

    def sigterm(self) -> bool:
        return self.signum == signal.SIGTERM

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class _ClusterSaved(Exception):
    """Raised by the preemption handler's exit function once this worker saved its checkpoint."""


# how long a worker that received SIGTERM waits for the cluster to agree on a step to save at
# (normally the next step: the handler polls the flag every second) before it saves alone
CLUSTER_STOP_PATIENCE_S = 20.0


@contextlib.contextmanager
def _cluster_preemption(
    strategy: tf.distribute.Strategy, save: Callable[[], Any], scratch: pathlib.Path, sigterm: Callable[[], bool]
) -> Iterator[Any]:
    """Under multi-worker, SIGTERM to any one worker makes every worker save the checkpoint of the
    same step and stop: TensorFlow's `PreemptionCheckpointHandler` polls `sigterm` (our signal
    flag, so the handler never replaces the signal handler), agrees on the step through the
    coordination service, calls `save` (the Trainer's own, so checkpoints keep their step numbers
    and write-error handling) there on every worker, then raises `_ClusterSaved`. Yields the
    handler (None off multi-worker).

    The handler restores "the latest checkpoint" when it is made; `Trainer.restore` has done that
    already (setting damaged checkpoints aside), so the handler gets a manager of an empty scratch
    folder, which also keeps its run counter at 0 on every worker alike.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield None
        return

    def stop() -> None:
        raise _ClusterSaved

    quiet = _WithoutMessage("PreemptionCheckpointHandler.total_run_calls")  # its own deprecated call
    tf.get_logger().addFilter(quiet)
    try:
        yield tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver,
            tf.train.CheckpointManager(tf.train.Checkpoint(), str(scratch), max_to_keep=1),
            termination_config=tf.distribute.experimental.TerminationConfig(
                termination_watcher_fn=sigterm, exit_fn=stop, save_fn=save
            ),
        )
    finally:
        tf.get_logger().removeFilter(quiet)


class _WithoutMessage(logging.Filter):
    """Drops log records whose message holds `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _positive_counts(targets: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Per-replica counts the losses normalise by: exact 1.0 peaks per heatmap (and attention map),
    and objects."""
    counts = {
        key: tf.reduce_sum(tf.cast(positive_mask(targets[key]), tf.float32))
        for key in ("tl_heatmap", "br_heatmap", "ct_heatmap", *attention_keys(targets))
        if key in targets
    }
    counts["objects"] = tf.reduce_sum(tf.cast(targets["mask"], tf.float32))
    return counts


def global_batch_losses(
    model: Callable[..., Any],
    images: tf.Tensor,
    targets: Mapping[str, tf.Tensor],
    training: bool,
    pull_weight: float = 0.1,
    push_weight: float = 0.1,
    offset_weight: float = 1.0,
) -> dict[str, tf.Tensor]:
    """This replica's share of the loss of the global batch: every stack's outputs of `model`
    (called with `return_all_stacks=True`) against `targets`, normalised by counts all-reduced
    over the replicas in sync, so the replicas' parts add up to the global batch's loss.

    The one loss computation of the command line's `Trainer` and of `ObjectDetector.fit`.

    Args:
        model: The network.
        images: This replica's normalized images [B, H, W, 3].
        targets: Their `build_batch_targets` dict.
        training: Run BatchNorm in training mode.
        pull_weight, push_weight, offset_weight: As `losses.cornernet_loss`.

    Returns:
        Scalars "total", "focal", "pull", "push", "offset" (`losses.cornernet_loss`), and
        "attention" with CornerNet-Saccade's attention targets (`losses.saccade_loss`).
    """
    counts = _positive_counts(targets)
    context = tf.distribute.get_replica_context()
    if context is not None:
        counts = context.all_reduce(tf.distribute.ReduceOp.SUM, counts)
    outputs = model(images, training=training, return_all_stacks=True)
    outputs = [{key: tf.cast(value, tf.float32) for key, value in stack.items()} for stack in outputs]
    loss = saccade_loss if attention_keys(targets) else cornernet_loss
    return loss(
        outputs,
        targets,
        pull_weight=pull_weight,
        push_weight=push_weight,
        offset_weight=offset_weight,
        num_positives={key: value for key, value in counts.items() if key != "objects"},
        num_objects=counts["objects"],
    )


def synchronize_batchnorm(model: keras.Model) -> int:
    """Make every BatchNormalization use statistics of the global batch (all replicas).

    Returns how many layers were switched. Keras reads `synchronized` at call time, and it is
    part of the layer config, so a saved model keeps the setting.
    """
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


class Trainer:
    """Builds model, optimizer and checkpointing inside `strategy.scope()` and runs the loop."""

    def __init__(
        self,
        settings: LoopSettings,
        strategy: tf.distribute.Strategy,
        model_dir: str | os.PathLike,
        build_model: Callable[[], keras.Model],
        build_optimizer: Callable[[], keras.optimizers.Optimizer],
        dataset_fn: DatasetFn,
        finish_batch: BatchFinisher | None = None,
    ):
        """`build_model()` and `build_optimizer()` are called inside `strategy.scope()`.

        Args:
            settings: The run's loop settings.
            strategy: The tf.distribute strategy to train under.
            model_dir: The run's folder; checkpoints go to its checkpoints folder (on the chief).
            build_model: Returns the network.
            build_optimizer: Returns the optimizer.
            dataset_fn: `dataset_fn(input_context, start_step, skipped_samples)` makes a replica's
                dataset, resumed after `start_step` steps and `skipped_samples` samples its pipeline
                dropped; it yields (images, targets), or batches that `finish_batch` turns into them.
                Targets may hold `SKIPPED` [B], the samples dropped before each example.
            finish_batch: Turns a batch into (images, targets) on the replica's device (inside the
                compiled step, before the forward pass); None: batches already are (images, targets).

        Raises:
            ValueError: The global batch does not divide by the strategy's replicas.
        """
        self.settings = settings
        self.strategy = strategy
        self.model_dir = pathlib.Path(model_dir)
        self.dataset_fn = dataset_fn
        self.finish_batch = finish_batch
        replicas = strategy.num_replicas_in_sync
        if settings.global_batch % replicas:
            raise ValueError(
                f"train.batch_size {settings.global_batch} must be divisible by the {replicas} replicas "
                f"of the strategy (global batch is split evenly)"
            )
        height, width = settings.input_size
        with strategy.scope():
            self.model = build_model()
            self.model(tf.zeros([1, height, width, 3]), training=False)
            if settings.sync_batchnorm:
                synchronize_batchnorm(self.model)
            self.optimizer = build_optimizer()
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(
                0, dtype=tf.int64, trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
            )
            # one count per input pipeline (one per worker), since each resumes its own stream
            self.num_pipelines = num_input_pipelines(strategy)
            self.skipped_samples = tf.Variable(
                tf.zeros([self.num_pipelines], tf.int64),
                trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self.checkpoint = training_checkpoint(self.model, self.optimizer, self.step, self.skipped_samples)
        self.chief = is_chief(strategy)
        directory = self.model_dir / CHECKPOINT_SUBDIR
        if not self.chief:  # other workers save to a scratch folder they delete afterwards
            directory = self.model_dir / ".workers" / f"worker_{worker_id(strategy)}"
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(directory), max_to_keep=settings.keep_checkpoints
        )
        self.damaged: list[str] = []  # checkpoints `restore` found unreadable: 'prefix (reason)'
        self._distributed_step = self._make_distributed_step()

    # ---- Keras-like step functions (one replica) ----

    def compute_losses(self, images: tf.Tensor, targets: Mapping[str, tf.Tensor], training: bool) -> dict:
        """Forward all stacks and return the loss parts for this replica's batch."""
        settings = self.settings
        return global_batch_losses(
            self.model,
            images,
            targets,
            training,
            pull_weight=settings.pull_weight,
            push_weight=settings.push_weight,
            offset_weight=settings.offset_weight,
        )

    def train_step(self, images: tf.Tensor, targets: Mapping[str, tf.Tensor]) -> dict:
        """One optimisation step on this replica's batch (gradients are summed across replicas)."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            losses = self.compute_losses(images, targets, training=True)
            loss = losses["total"]
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return losses

    def test_step(self, images: tf.Tensor, targets: Mapping[str, tf.Tensor]) -> dict:
        """Loss parts in inference mode (BatchNorm uses its moving statistics)."""
        return self.compute_losses(images, targets, training=False)

    def _make_distributed_step(self) -> Callable[[Iterator], dict]:
        strategy = self.strategy

        replicas_per_pipeline = strategy.num_replicas_in_sync // self.num_pipelines

        def skipped_per_pipeline(targets: Mapping[str, tf.Tensor]) -> tf.Tensor:
            """[num_pipelines] int64: this replica's skipped samples in its pipeline's slot."""
            if SKIPPED not in targets:
                return tf.zeros([self.num_pipelines], tf.int64)
            context = tf.distribute.get_replica_context()
            pipeline = tf.cast(context.replica_id_in_sync_group, tf.int32) // replicas_per_pipeline
            count = tf.reduce_sum(tf.cast(targets[SKIPPED], tf.int64))
            return tf.one_hot(pipeline, self.num_pipelines, dtype=tf.int64) * count

        def replica_step(batch):
            images, targets = self.finish_batch(batch) if self.finish_batch else batch
            # Optimised graphs can turn NaN pixels into finite activations, so inputs are
            # checked directly rather than trusted to poison the loss.
            bad_pixels = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(images)), tf.float32))
            return self.train_step(images, targets), bad_pixels, skipped_per_pipeline(targets)

        @tf.function
        def distributed_step(iterator):
            losses, bad_pixels, skipped = strategy.run(replica_step, args=(next(iterator),))
            self.step.assign_add(1)
            reduce = lambda value: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)  # noqa: E731
            self.skipped_samples.assign_add(reduce(skipped))
            return {key: reduce(value) for key, value in losses.items()}, reduce(bad_pixels)

        return distributed_step

    # ---- checkpoints ----

    def restore(self, require: bool = False) -> int:
        """Restore the newest readable checkpoint of model_dir, if any; returns the step reached.

        A checkpoint that cannot be read (a truncated index or data file, a missing shard: what
        a crash or a full disk during a save leaves) is set aside as `damaged-ckpt-N.*` by the
        chief, named in `self.damaged`, and the next older one is tried. A checkpoint of another
        architecture is not damage: that raises as before.

        Raises:
            FileNotFoundError: `require` and there is no checkpoint; or every checkpoint is damaged.
        """
        directory = self.model_dir / CHECKPOINT_SUBDIR
        candidates = checkpoints_newest_first(directory)
        if not candidates:
            if require:
                raise FileNotFoundError(f"--resume: no checkpoint in {directory}")
            return 0
        self.damaged = []
        for index, prefix in enumerate(candidates):
            try:
                self.checkpoint.restore(prefix).assert_existing_objects_matched()
            except READ_ERRORS as err:
                self.damaged.append(f"{prefix} ({' '.join(str(err).split())[:160]})")
                if self.chief:
                    set_aside(prefix)
                continue
            if self.damaged and self.chief:
                forget_checkpoints(directory, candidates[:index])
                self.manager = tf.train.CheckpointManager(
                    self.checkpoint, str(directory), max_to_keep=self.settings.keep_checkpoints
                )
            return int(self.step.numpy())
        if self.chief:
            forget_checkpoints(directory, candidates)
        raise FileNotFoundError(
            f"no readable checkpoint in {directory}: {'; '.join(self.damaged)}; they were set aside as "
            f"damaged-*; start a new run, or restore a backup of the folder"
        )

    def save(self) -> str | None:
        """Save a checkpoint of the current step (every worker must call it under multi-worker).

        Raises:
            CheckpointWriteError: The checkpoint could not be written (full disk, permissions);
                its partial files are removed and the earlier checkpoints are intact.
        """
        step = int(self.step.numpy())
        try:
            path = self.manager.save(checkpoint_number=step)
        except WRITE_ERRORS as err:
            directory = pathlib.Path(self.manager.directory)
            for partial in directory.glob(f"ckpt-{step}_temp*"):
                shutil.rmtree(partial, ignore_errors=True)
            previous = self.manager.latest_checkpoint
            raise CheckpointWriteError(
                f"could not write the checkpoint of step {step} in {directory} ({reason(err)}); "
                + (
                    f"{previous} is intact: free space and run the same command to resume from it"
                    if previous
                    else "no earlier checkpoint exists"
                )
            ) from None
        if not self.chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
            return None
        return path

    # ---- the loop ----

    @property
    def total_skipped(self) -> int:
        """Training samples dropped as undecodable since the run started (all pipelines)."""
        return int(self.skipped_samples.numpy().sum())

    def learning_rate(self) -> float:
        return (
            float(self.optimizer.learning_rate.numpy())
            if hasattr(self.optimizer.learning_rate, "numpy")
            else float(self.optimizer.learning_rate)
        )

    def fit(
        self,
        progress: ProgressLogger | None = None,
        on_eval: Callable[[int], None] | None = None,
        max_steps: int | None = None,
    ) -> int:
        """Train from the current step to `settings.steps` (or `max_steps`); returns the final step.

        Saves every `settings.checkpoint_every` steps, at the end, and when SIGTERM/Ctrl-C arrives
        (then raises `StopRequested`; under multi-worker, SIGTERM to any worker stops them all at
        one step, each saving); calls `on_eval(step)` every `settings.eval_every` steps
        but the last. Raises `NonFiniteLossError` on a NaN/Inf loss part.
        """
        settings = self.settings
        total = min(settings.steps, max_steps) if max_steps else settings.steps
        start = int(self.step.numpy())
        if start >= total:
            return start
        skipped = self.skipped_samples.numpy()
        dataset = self.strategy.distribute_datasets_from_function(
            lambda ctx: self.dataset_fn(ctx, start, int(skipped[ctx.input_pipeline_id]))
        )
        iterator = iter(dataset)
        reported = int(skipped.sum())
        scratch = self.model_dir / ".workers" / "preemption"
        with (
            _SignalFlag() as stop,
            _cluster_preemption(self.strategy, self.save, scratch, stop.sigterm) as preemption,
        ):
            for _ in range(start, total):
                losses, bad_pixels = self._distributed_step(iterator)
                losses = {key: float(value) for key, value in losses.items()}
                step = int(self.step.numpy())
                if bad_pixels > 0:
                    raise NonFiniteLossError(
                        f"step {step}: the input batch has {int(bad_pixels)} NaN/Inf pixel values; "
                        f"check the dataset's images and the normalization (data.std)"
                    )
                for name, value in losses.items():
                    if not math.isfinite(value):
                        raise NonFiniteLossError(
                            f"step {step}: loss part '{name}' is {value}; check the input data "
                            f"(NaN pixels or boxes) and lower train.learning_rate"
                        )
                total_skipped = self.total_skipped
                if progress is not None:
                    if total_skipped > reported:
                        progress.message(
                            f"step {step}: {total_skipped - reported} training sample(s) could not be decoded and "
                            f"were skipped ({total_skipped} since the start of the run)"
                        )
                    progress.update(step, losses, self.learning_rate(), skipped_samples=total_skipped)
                reported = total_skipped
                if preemption is not None:
                    try:
                        preemption.save_checkpoint_if_preempted()
                    except _ClusterSaved:
                        raise StopRequested(signal.SIGTERM, step, by_cluster=True) from None
                cluster_may_stop = (
                    preemption is not None
                    and stop.sigterm()
                    and time.monotonic() - stop.received_at < CLUSTER_STOP_PATIENCE_S
                )
                if stop.signum is not None and not cluster_may_stop:  # Ctrl-C, or no cluster-wide stop came
                    self.save()
                    raise StopRequested(stop.signum, step)
                if step % settings.checkpoint_every == 0 or step == total:
                    self.save()
                if on_eval is not None and settings.eval_every and step % settings.eval_every == 0 and step != total:
                    with progress.paused() if progress is not None else contextlib.nullcontext():
                        on_eval(step)
        return int(self.step.numpy())
