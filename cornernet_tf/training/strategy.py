"""Choose a tf.distribute strategy by name; one training loop serves them all."""

from __future__ import annotations

import json
import os
import re

import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
# What a step's collective ops raise on the survivors when a worker of the cluster dies: TensorFlow's
# coordination service stops hearing its heartbeats (after about 10 s) and aborts the collectives.
PEER_LOST_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError)
_TASK = re.compile(r"/job:[\w-]+/replica:\d+/task:\d+")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Build the strategy `name` (one of STRATEGIES).

    `mirrored` uses every local GPU; on a machine without GPUs it mirrors over the local CPU
    devices (one, unless the CPU was split into logical devices, as the tests do to exercise
    several replicas). `multi_worker` reads the cluster from TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi_worker needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; choose one of {list(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that owns the model directory (always true off multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and task_id == 0


def worker_id(strategy: tf.distribute.Strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(getattr(resolver, "task_id", 0) or 0) if resolver is not None else 0


def num_input_pipelines(strategy: tf.distribute.Strategy) -> int:
    """How many input pipelines `distribute_datasets_from_function` makes: one per worker of a
    multi-worker cluster (chief included), else one (a TPU host counted as one worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


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
            raise ValueError(
                "train.finish_batches: step is not possible on TPUs (static input shapes); use auto or pipeline"
            )
        return False
    return finish_batches != "pipeline"


def lost_workers(error: tf.errors.OpError) -> list[str]:
    """The tasks a `PEER_LOST_ERRORS` error names as gone ("/job:worker/replica:0/task:1"), in
    the order named; empty when it names none."""
    message = error.message or ""
    named = message.split("unhealthy", 1)[-1] if "unhealthy" in message else message
    return list(dict.fromkeys(_TASK.findall(named)))
