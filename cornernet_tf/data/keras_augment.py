"""The original's training augmentation for `fit` users: (image, {"boxes", "labels"}) samples in,
samples at the network's input size out, in a `tf.data` map.

    augmentation = detector.augmentation(seed=0)            # or TrainingAugmentation(...)
    train = augmentation.apply(samples).batch(16)            # samples: one image of any size each
    detector.fit(train, epochs=10)

It is the command line's augmentation (`augment.sample_view` + `augment.render_views`: random
scale and crop, flip, colour jitter, PCA lighting; boxes moved, clipped, emptied ones dropped),
not a re-implementation, so a model trained either way sees the same distribution. Pixels come
out as float32 in the 0..255 range (colour jitter may step outside it, as in the original) and
the detector normalizes them, so the composition is the command line's normalization.

Each sample's random draws are keyed by (seed, its position in the dataset) with stateless ops:
the same dataset gives the same augmented stream whatever tf.data's parallelism.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from cornernet_tf.data import augment
from cornernet_tf.data.ground_truth import PADDING
from cornernet_tf.data.pipeline import TrainInputSpec

_RAW = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean and std that leave pixels as they are


@dataclasses.dataclass(frozen=True)
class TrainingAugmentation(augment.AugmentationSettings):
    """Random scale + crop, flip, colour jitter and lighting of one (image, y) sample.

    input_size: (height, width) of the output, the network's input. bounding_box_format: of the
    boxes in and out (a `keras.utils.bounding_boxes` format; relative formats are relative to the
    image they belong to). max_boxes: boxes per output sample, padded with -1 so that samples
    batch. seed: of all draws. The draws themselves (scale_range, random_crop, flip, color_jitter,
    lighting, fill; keyword-only) are `augment.AugmentationSettings`, the command line's: the
    config's data.random_scale, data.random_crop, data.flip, data.color_jitter, data.lighting and
    data.pad_value (mean: fill = data.mean).
    """

    input_size: tuple[int, int]
    bounding_box_format: str = "xyxy"
    max_boxes: int = 128
    seed: int = 0

    @classmethod
    def from_spec(cls, spec: TrainInputSpec, bounding_box_format: str = "xyxy", seed: int = 0) -> TrainingAugmentation:
        """The augmentation of a training input spec (`tasks.data.train_input(config)`): its input
        size, draws, canvas fill and most boxes per sample."""
        draws = {field.name: getattr(spec, field.name) for field in dataclasses.fields(augment.AugmentationSettings)}
        return cls(
            input_size=tuple(spec.targets.input_size),
            bounding_box_format=bounding_box_format,
            max_boxes=spec.targets.max_objects,
            seed=seed,
            **draws,
        )

    def __call__(
        self, image: tf.Tensor, y: dict[str, tf.Tensor], seed: tf.Tensor
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """One augmented sample.

        Args:
            image: [H, W, 3] uint8 (or float 0..255) RGB of any size.
            y: {"boxes": [N, 4] in `bounding_box_format` of this image, "labels": [N]}; rows
                labelled -1 are padding and are ignored.
            seed: [2] int, the stateless seed of this sample's draws.

        Returns:
            (image [h, w, 3] float32 in 0..255, {"boxes": [max_boxes, 4] in `bounding_box_format`
            of the output image, "labels": [max_boxes] int32}), padding rows -1.
        """
        image = tf.convert_to_tensor(image)
        if image.dtype != tf.uint8:
            image = tf.cast(image, tf.float32) / 255.0  # render_views takes floats in 0..1
        labels = tf.reshape(tf.cast(y["labels"], tf.int32), [-1])
        real = tf.not_equal(labels, PADDING)
        height, width = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32))
        boxes = keras.utils.bounding_boxes.convert_format(
            tf.reshape(tf.cast(y["boxes"], tf.float32), [-1, 4]),
            source=self.bounding_box_format,
            target="xyxy",
            height=height,
            width=width,
        )
        view, boxes, labels = augment.sample_view(
            image,
            tf.boolean_mask(boxes, real),
            tf.boolean_mask(labels, real),
            tf.cast(seed, tf.int64),
            input_size=self.input_size,
            scale_range=self.scale_range,
            random_crop=self.random_crop,
            flip=self.flip,
            jitter=self.color_jitter,
            light=self.lighting,
        )
        batch = {key: value[tf.newaxis] for key, value in view.items()}
        pixels = augment.render_views(batch, self.input_size, *_RAW, self.fill)
        count = tf.minimum(tf.shape(boxes)[0], self.max_boxes)
        out_h, out_w = self.input_size
        boxes = keras.utils.bounding_boxes.convert_format(
            boxes[:count], source="xyxy", target=self.bounding_box_format, height=out_h, width=out_w
        )
        padding = self.max_boxes - count
        return pixels[0] * 255.0, {
            "boxes": tf.pad(boxes, [[0, padding], [0, 0]], constant_values=PADDING),
            "labels": tf.pad(labels[:count], [[0, padding]], constant_values=PADDING),
        }

    def apply(self, samples: tf.data.Dataset, num_parallel_calls: int = tf.data.AUTOTUNE) -> tf.data.Dataset:
        """`samples` (unbatched (image, y) pairs) augmented; sample i draws with seed (seed, i)."""

        def one(index: tf.Tensor, sample: tuple) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
            image, y = sample
            return self(image, y, tf.stack([tf.constant(self.seed, tf.int64), index]))

        return samples.enumerate().map(one, num_parallel_calls=num_parallel_calls, deterministic=True)
