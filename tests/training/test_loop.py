"""The custom training loop in-process: it learns, it reports NaNs, its schedule is right."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.config import load_config
from cornernet_tf.tasks.data import train_dataset
from cornernet_tf.tasks.training import build_trainer
from cornernet_tf.training.loop import NonFiniteLossError
from cornernet_tf.training.schedule import WarmupSchedule

from .conftest import tiny_overrides


def _fixed_batch_fn(config, poison: bool = False, poison_offsets: bool = False):
    images, targets = next(iter(train_dataset(config)))
    if poison:
        images = tf.tensor_scatter_nd_update(images, [[0, 3, 3, 0]], [float("nan")])
    if poison_offsets:
        targets = dict(targets, tl_offset=tf.fill(tf.shape(targets["tl_offset"]), float("nan")))
    fixed = tf.data.Dataset.from_tensors((images, targets)).repeat()
    return lambda ctx, start, skipped: fixed


def test_loss_goes_down_substantially_on_a_fixed_batch(shapes_dir, tmp_path):
    config = load_config("shapes_tiny", tiny_overrides(shapes_dir, steps=60) + ["train.learning_rate=0.003"])
    trainer = build_trainer(config, tf.distribute.get_strategy(), tmp_path, dataset_fn=_fixed_batch_fn(config))
    first = {k: float(v) for k, v in trainer.test_step(*next(iter(_fixed_batch_fn(config)(None, 0, 0)))).items()}
    trainer.fit()
    last = {k: float(v) for k, v in trainer.test_step(*next(iter(_fixed_batch_fn(config)(None, 0, 0)))).items()}
    assert int(trainer.step.numpy()) == 60
    assert last["total"] < 0.3 * first["total"], (first, last)
    assert last["focal"] < 0.3 * first["focal"], (first, last)
    assert trainer.manager.latest_checkpoint.endswith("ckpt-60")

    resumed = build_trainer(config, tf.distribute.get_strategy(), tmp_path, dataset_fn=_fixed_batch_fn(config))
    assert resumed.restore(require=True) == 60
    for got, want in zip(resumed.model.weights, trainer.model.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)
    for got, want in zip(resumed.optimizer.variables, trainer.optimizer.variables):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)


def test_nan_input_names_the_step_and_loss_part(shapes_dir, tmp_path):
    config = load_config("shapes_tiny", tiny_overrides(shapes_dir, steps=3))
    trainer = build_trainer(
        config, tf.distribute.get_strategy(), tmp_path, dataset_fn=_fixed_batch_fn(config, poison=True)
    )
    with pytest.raises(NonFiniteLossError, match="step 1: the input batch has 1 NaN/Inf pixel values"):
        trainer.fit()


def test_nan_loss_names_the_loss_part(shapes_dir, tmp_path):
    config = load_config("shapes_tiny", tiny_overrides(shapes_dir, steps=3))
    trainer = build_trainer(
        config, tf.distribute.get_strategy(), tmp_path, dataset_fn=_fixed_batch_fn(config, poison_offsets=True)
    )
    with pytest.raises(NonFiniteLossError, match="step 1: loss part 'total' is nan"):
        trainer.fit()


def test_global_batch_must_split_over_replicas(shapes_dir, tmp_path):
    class TwoReplicas:
        num_replicas_in_sync = 2

    config = load_config("shapes_tiny", tiny_overrides(shapes_dir) + ["train.batch_size=5"])
    with pytest.raises(ValueError, match="batch_size 5 must be divisible by the 2 replicas"):
        build_trainer(config, TwoReplicas(), tmp_path, dataset_fn=lambda ctx, start, skipped: None)


def test_schedule_warmup_step_and_cosine():
    step = WarmupSchedule(1.0, "step", total_steps=100, decay_steps=(50, 80), decay_factor=0.1, warmup_steps=10)
    values = [float(step(s)) for s in (0, 9, 10, 49, 50, 79, 80, 99)]
    np.testing.assert_allclose(values, [0.1, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
    cosine = WarmupSchedule(2.0, "cosine", total_steps=100)
    np.testing.assert_allclose([float(cosine(s)) for s in (0, 50, 100)], [2.0, 1.0, 0.0], atol=1e-6)
    assert float(WarmupSchedule(0.5)(1000)) == 0.5
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        WarmupSchedule(1.0, "linear")


def test_skipped_samples_are_counted_exactly_and_checkpointed(tmp_path):
    """Truncated JPEGs in the training split: the trainer's count equals the undecodable samples
    the stream held up to its last consumed sample, and a restored trainer keeps it."""
    from cornernet_tf.data import pipeline
    from cornernet_tf.data.coco import load_coco
    from cornernet_tf.tasks import data as task_data
    from tests.data.conftest import encode, write_coco

    rng = np.random.default_rng(0)
    good = [encode(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), ".jpg") for _ in range(3)]
    images = [("cut.jpg", good[0][:300], 40, 50)] + [(f"{i}.jpg", g, 40, 50) for i, g in enumerate(good)]
    annotations, images_dir = write_coco(
        tmp_path / "data", images, [(i, 1, [5, 5, 20, 20], 0) for i in range(1, 5)], [(1, "a")]
    )
    overrides = [o for o in tiny_overrides("unused", steps=6) if not o.startswith("data.shapes")]
    config = load_config(
        "shapes_tiny",
        overrides
        + [
            "data.dataset=coco",
            f"data.train_annotations={annotations}",
            f"data.train_images={images_dir}",
            "model.num_classes=1",
            "data.class_names=[a]",
            "train.batch_size=2",
            "train.checkpoint_every=6",
        ],
    )

    def dataset_fn(ctx, start, skipped):
        return task_data.train_dataset(config, input_context=ctx, start_step=start, skipped_samples=skipped)

    trainer = build_trainer(config, tf.distribute.get_strategy(), tmp_path / "run", dataset_fn=dataset_fn)
    trainer.fit()
    source = load_coco(annotations, images_dir)
    stream = [int(e["image_id"]) for _, e in pipeline._train_files(config.data.seed, source, 1, 0, 0).take(40)]
    decoded_positions = [i for i, image_id in enumerate(stream) if image_id != 1]
    last_consumed = decoded_positions[6 * 2 - 1]
    assert trainer.total_skipped == stream[:last_consumed].count(1) >= 3  # 12 samples: at least 3 epochs

    restored = build_trainer(config, tf.distribute.get_strategy(), tmp_path / "run", dataset_fn=dataset_fn)
    assert restored.restore() == 6 and restored.total_skipped == trainer.total_skipped
