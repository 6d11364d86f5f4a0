"""The graph every export serves: a network, its preprocessing and its decoding in one `tf.Module`.

Signatures (method `tensorflow/serving/predict`), after the TF Object Detection API:
  serving_default: images tf.string [B], encoded JPEG / PNG / GIF / BMP / WebP of any sizes
  serving_tensor:  images tf.uint8 [B, H, W, 3], RGB
both returning, with M = detection.max_detections and rows sorted by score:
  detection_boxes   [B, M, 4] float32, (ymin, xmin, ymax, xmax) / original (height, width)
  detection_scores  [B, M] float32
  detection_classes [B, M] float32, 1-based class ids (the API's convention), 0 on empty rows
  num_detections    [B] float32, rows holding a detection (score >= detection.score_threshold);
                    the rows after them are zeros.
Each image is resized (test_mode "resize", to the network's input size) or padded at each test
scale (the original "pad" transform), normalized, then decoded by `inference.detect_multiscale`
with the run's `DetectionConfig`: the path evaluation measures. test_mode "saccade" hands the
image as it is to `inference.detect_saccade` (CornerNet-Saccade's crops, at most
detection.att_max_crops of them per image, so the graph's work per image is bounded). The SavedModel (`export`), the
portable formats (`portable`) and `Detector.from_weights` all wrap this module. The "pad" canvas
and a batch's padding are black, or `Preprocessing.fill` (data.pad_value mean), as evaluation's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from cornernet_tf.data import augment, image_header_tf
from cornernet_tf.data import image_info as info_lib
from cornernet_tf.detection.inference import Model, detect_multiscale, detect_saccade
from cornernet_tf.detection.settings import DetectionConfig

_IMAGE_SPEC = tf.RaggedTensorSpec([None, None, 3], tf.float32, ragged_rank=1)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a network input: input_size [height, width] for the "resize" test
    mode; size_divisor (the network's stride * 2**depth) for "pad"; the normalization mean and
    std of [0, 1] RGB; the most pixels an encoded image's header may declare before decoding;
    fill: the colour of the "pad" canvas and of a batch's padding, [0, 1] RGB (None: black, the
    original's; the normalization mean: mmdetection's, 0 once normalized)."""

    input_size: tuple[int, int]
    size_divisor: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    max_image_pixels: int = 40_000_000
    fill: augment.Fill = None


def object_detection_outputs(dets: dict[str, tf.Tensor], image_info: tf.Tensor) -> dict[str, tf.Tensor]:
    """`inference.detect` rows (boxes x1, y1, x2, y2 in image px, 0-based classes, valid [B, M])
    and image_info [B, 6] -> the TF Object Detection API outputs described in the module doc."""
    x1, y1, x2, y2 = tf.unstack(dets["boxes"], axis=-1)
    height = image_info[:, None, info_lib.ORIGINAL_HEIGHT]
    width = image_info[:, None, info_lib.ORIGINAL_WIDTH]
    valid = dets["valid"]
    return {
        "detection_boxes": tf.stack([y1 / height, x1 / width, y2 / height, x2 / width], axis=-1),
        "detection_scores": dets["scores"],
        "detection_classes": tf.where(valid, tf.cast(dets["classes"] + 1, tf.float32), 0.0),
        "num_detections": tf.reduce_sum(tf.cast(valid, tf.float32), axis=1),
    }


class DetectionModule(tf.Module):
    """The exported object: a CornerNet plus the serving preprocessing and decoding.

    The model's variables are tracked explicitly (`model_variables`, also on the loaded object):
    Keras 3 keeps list-held layers where TensorFlow's object graph does not look
    (`evaluate.checkpoint_blind_weights`), which would leave them to the saver's fallback for
    captured, untracked variables.
    """

    def __init__(self, model: Model, settings: DetectionConfig, preprocessing: Preprocessing):
        super().__init__(name="cornernet")
        self.model = model
        self.model_variables = list(model.variables)
        self.settings = settings
        self.preprocessing = preprocessing

    @property
    def test_scales(self) -> list[float]:
        """The scales `transforms` makes inputs at: detection.scales for a multi-scale test
        procedure ("pad"); one input otherwise ("resize": at the network's size, "saccade": the
        image as it is)."""
        return list(self.settings.scales) if self.settings.procedure.multi_scale else [1.0]

    def transforms(self, image: tf.Tensor) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """One image [H, W, 3] (uint8, or float in 0..255) -> per test scale of the settings
        (network input [h, w, 3] in [0, 1], image_info [6]) by the test procedure's transform
        (`augment.test_transform`)."""
        pre, transform = self.preprocessing, self.settings.procedure.transform
        return [
            augment.test_transform(image, transform, pre.input_size, pre.size_divisor, scale, pre.fill)
            for scale in self.test_scales
        ]

    def normalize(self, images: tf.Tensor) -> tf.Tensor:
        """Network inputs in [0, 1] -> what the network was trained on (unchanged for the crop
        search, which normalizes every crop it makes)."""
        if not self.settings.procedure.normalized_input:
            return images
        return augment.normalize(images, self.preprocessing.mean, self.preprocessing.std)

    def _detect(self, elements: tf.Tensor, to_image: Callable[[tf.Tensor], tf.Tensor]) -> dict[str, tf.Tensor]:
        """Transform each of `elements` [B, ...] (after `to_image`: uint8 [H, W, 3]) on its own,
        per scale pad the inputs at the bottom/right to a common size with the canvas fill (only
        "pad" inputs differ; the image_info stays valid), normalize, detect over all scales."""
        num_scales = len(self.test_scales)
        info_spec = tf.TensorSpec([info_lib.IMAGE_INFO_SIZE], tf.float32)

        def one(element: tf.Tensor) -> tuple[tf.Tensor, ...]:
            pairs = self.transforms(to_image(element))
            return tuple(
                part for image, info in pairs for part in (tf.RaggedTensor.from_tensor(image, ragged_rank=1), info)
            )

        # One image at a time: a request's peak is one image at its original size, whatever its batch.
        parts = tf.map_fn(
            one, elements, fn_output_signature=(_IMAGE_SPEC, info_spec) * num_scales, parallel_iterations=1
        )
        fill = self.preprocessing.fill
        inputs = [(self.normalize(augment.pad_batch(parts[2 * s], fill)), parts[2 * s + 1]) for s in range(num_scales)]
        image_info = inputs[0][1]
        if self.settings.procedure.crop_search:
            pre = self.preprocessing
            dets = detect_saccade(self.model, *inputs[0], self.settings, pre.input_size, pre.mean, pre.std)
        else:
            dets = detect_multiscale(self.model, inputs, self.settings)
        return object_detection_outputs(dets, image_info)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_encoded(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """serving_default: encoded images [B] -> detections. A bad image, or one whose header
        declares more than `preprocessing.max_image_pixels` pixels, is InvalidArgument before decoding."""
        pixels = self.preprocessing.max_image_pixels
        return self._detect(images, lambda data: image_header_tf.decode_bounded(data, pixels))

    def detect_pixels(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """RGB images [B, H, W, 3] (uint8, or float in 0..255) -> detections; not compiled, for
        callers inside their own graph (`serve_tensor`, `ObjectDetector.predict_step`)."""
        return self._detect(images, lambda image: image)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_tensor(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """serving_tensor: uint8 RGB images [B, H, W, 3] -> detections."""
        return self.detect_pixels(images)

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """The SavedModel's signature map (traces both functions on first use)."""
        return {
            "serving_default": self.serve_encoded.get_concrete_function(),
            "serving_tensor": self.serve_tensor.get_concrete_function(),
        }
