"""The graph the portable formats convert: the SavedModel's `serving_tensor` at a fixed image size.

TFLite and ONNX converters need static element shapes, and the SavedModel's per-image `map_fn`
(ragged inputs of any size) produces TensorList ops of variant dtype that neither converts.
At a fixed [H, W] every image gets the same transform, so the batch is transformed at once:
the B images are laid side by side as the channels of one [H, W, 3B] image, which the resize /
pad transform (channel-independent) treats exactly as it treats each image alone. Decoding
(`inference.detect`) and the TF Object Detection API outputs are the export's own.
"""

from __future__ import annotations

import tensorflow as tf

from cornernet_tf.detection_module import DetectionModule, object_detection_outputs
from cornernet_tf.inference import detect_multiscale

INPUT_NAME = "images"
OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
COMPILED_OP_TYPES = ("FusedCornerPool", "CornerPool")  # the op library's TF-only kernels


class PortableDetector(tf.Module):
    """uint8 RGB images [batch_size, H, W, 3] (batch_size None: any) -> the export's outputs."""

    def __init__(self, module: DetectionModule, batch_size: int | None, image_size: tuple[int, int]):
        super().__init__(name="cornernet_portable")
        self.detection = module
        self.batch_size = batch_size
        self.image_size = tuple(image_size)
        spec = tf.TensorSpec([batch_size, *self.image_size, 3], tf.uint8, name=INPUT_NAME)
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        height, width = self.image_size
        batch = tf.shape(images)[0]
        channels = -1 if self.batch_size is None else 3 * self.batch_size  # static where it can be
        side_by_side = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [height, width, channels])
        # float before the transform: TFLite has no resize of uint8 input to float output (which
        # a uint8 resize, or the converter's rewrite of cast-then-resize, would need)
        inputs = []
        for pixels, info in self.detection.transforms(tf.cast(side_by_side, tf.float32)):
            shape = tf.shape(pixels)
            pixels = tf.transpose(tf.reshape(pixels, [shape[0], shape[1], -1, 3]), [2, 0, 1, 3])
            inputs.append((self.detection.normalize(pixels), tf.tile(info[None], [batch, 1])))
        dets = detect_multiscale(self.detection.model, inputs, self.detection.settings)
        return object_detection_outputs(dets, inputs[0][1])

    def concrete_function(self) -> tf.types.experimental.ConcreteFunction:
        """The traced function; refuses a graph holding the compiled corner-pool op."""
        function = self.serve.get_concrete_function()
        op_types = {op.type for op in function.graph.get_operations()}
        op_types |= {node.op for fn in function.graph.as_graph_def().library.function for node in fn.node_def}
        found = sorted(op_types.intersection(COMPILED_OP_TYPES))
        if found:
            raise ValueError(
                f"the model uses the compiled corner-pool op ({', '.join(found)}), which only "
                "TensorFlow can run; export with --corner_pool vectorized"
            )
        return function
