"""The graph the portable formats convert: the SavedModel's `serving_tensor` at a fixed image size.

TFLite and ONNX converters need static element shapes, and the SavedModel's per-image `map_fn`
(ragged inputs of any size) produces TensorList ops of variant dtype that neither converts.
At a fixed [H, W] every image gets the same transform, so the batch is transformed at once:
the B images are laid side by side as the channels of one [H, W, 3B] image, which the resize /
pad transform (channel-independent) treats exactly as it treats each image alone. Decoding
(`inference.detect`) and the TF Object Detection API outputs are the export's own.

The same graph also comes in two halves, for an integer network beside float decoding: `network`
(images -> the network's maps of every test input, in `map_names` order) and `decoding` (those
maps -> the outputs); `decoding` replays the maps to `detect_multiscale` in place of the network.
The network half alone is also an export of its own (`--network_only`: TensorRT's trtexec, custom
decoders), its outputs named by `network_output_names` and described by `input_geometry`.

Either graph also comes with the network's weights as inputs after the images
(`weights_as_inputs`, through Keras' `stateless_call`): a graph without weight constants, which
a converter can rewrite without copying the weights (`portable/onnx.py`, `portable/tflite.py`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from cornernet_tf.detection.inference import detect_multiscale, network_batch
from cornernet_tf.detection.module import DetectionModule, object_detection_outputs

INPUT_NAME = "images"
OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
COMPILED_OP_TYPES = ("FusedCornerPool", "CornerPool")  # the op library's TF-only kernels
WEIGHT_INPUT = "weight_{:04d}"  # `weights_as_inputs`' input names, by position in the model's variables


def network_output_name(map_name: str) -> str:
    """A `map_names` entry (`<test input>/<map>`, e.g. 0/tl_heatmap) as an output name that ONNX,
    TFLite and TensorRT's tools all take (no slash): `map_<test input>_<map>`, e.g. map_0_tl_heatmap."""
    index, key = map_name.split("/", 1)
    return f"map_{index}_{key}"


@dataclasses.dataclass(frozen=True)
class WeightInputs:
    """A traced graph taking the network's weights as inputs (`PortableDetector.weights_as_inputs`).

    function: a tf.function traced once at `signature` (converters such as tf2onnx take a
    tf.function and its signature); signature: the images' spec, then one per weight, named as
    in `weights` (in order); weights: the variable each weight input stands for, by input name.
    """

    function: tf.types.experimental.PolymorphicFunction
    signature: list[tf.TensorSpec]
    weights: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class InputGeometry:
    """One test input (scale) of a fixed-size export, the same for every image of that size.

    scale: the test scale; size: the network input's [height, width]; image_info: the [6]
    `data/image_info.py` vector relating it to the image (input px = image px * scale + offset);
    maps: each network output's shape [height, width, channels] by name.
    """

    scale: float
    size: tuple[int, int]
    image_info: tuple[float, ...]
    maps: dict[str, tuple[int, ...]]


def calibration_batches(images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """uint8 calibration images [N, H, W, 3] as consecutive contiguous batches of `batch_size`
    (an export's fixed batch), the remainder dropped.

    Raises:
        ValueError: The images fill no batch.
    """
    batches = [
        np.ascontiguousarray(images[start : start + batch_size], np.uint8)
        for start in range(0, len(images) - batch_size + 1, batch_size)
    ]
    if not batches:
        raise ValueError(f"{len(images)} calibration image(s) do not fill one batch of {batch_size}")
    return batches


class PortableDetector(tf.Module):
    """uint8 RGB images [batch_size, H, W, 3] (batch_size None: any) -> the export's outputs."""

    def __init__(self, module: DetectionModule, batch_size: int | None, image_size: tuple[int, int]):
        super().__init__(name="cornernet_portable")
        self.detection = module
        self.batch_size = batch_size
        self.image_size = tuple(image_size)
        self.serve = tf.function(self._serve, input_signature=[self._image_spec()])

    def _inputs(self, images: tf.Tensor) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """(normalized images, image_info) of each test input (scale) of uint8 `images`."""
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
        return inputs

    def _serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._detect(images, self.detection.model)

    def _detect(self, images: tf.Tensor, model: Callable[..., dict[str, tf.Tensor]]) -> dict[str, tf.Tensor]:
        """The export's outputs of uint8 `images`, the maps computed by `model` (the network, or
        a stand-in computing it from weights given as inputs)."""
        inputs = self._inputs(images)
        dets = detect_multiscale(model, inputs, self.detection.settings)
        return object_detection_outputs(dets, inputs[0][1])

    def _maps(self, images: tf.Tensor, model: Callable[..., dict[str, tf.Tensor]]) -> dict[str, tf.Tensor]:
        """The network's maps of every test input of uint8 `images`, by `map_names` entry, in order."""
        maps = {}
        for index, (pixels, _) in enumerate(self._inputs(images)):
            outputs = model(network_batch(pixels, self.detection.settings), training=False)
            maps.update((f"{index}/{key}", outputs[key]) for key in sorted(outputs))
        return maps

    def _image_spec(self) -> tf.TensorSpec:
        return tf.TensorSpec([self.batch_size, *self.image_size, 3], tf.uint8, name=INPUT_NAME)

    # ---- the two halves ----

    @functools.cached_property
    def _network_half(self) -> tuple[tf.types.experimental.PolymorphicFunction, list[str]]:
        """The network half as a tf.function traced once at the input signature, and its map names."""
        names: list[str] = []

        def network(images: tf.Tensor) -> tuple[tf.Tensor, ...]:
            maps = self._maps(images, self.detection.model)
            names[:] = maps
            return tuple(maps.values())

        function = tf.function(network, input_signature=[self._image_spec()])
        self._checked(function.get_concrete_function())
        return function, names

    def network_function(self) -> tf.types.experimental.ConcreteFunction:
        """uint8 images -> the network's maps of every test input, a tuple in `map_names` order."""
        return self._network_half[0].get_concrete_function()

    def map_names(self) -> list[str]:
        """`<test input index>/<map name>` of each map `network_function` returns, in order."""
        return list(self._network_half[1])

    def network_output_names(self) -> list[str]:
        """The network-only export's output names, in `map_names` order (`network_output_name`)."""
        return [network_output_name(name) for name in self.map_names()]

    def input_geometry(self) -> list[InputGeometry]:
        """Each test input's geometry and map shapes at this export's image size, in `map_names`'
        index order: what a caller decoding the network's maps itself needs. The shapes are the
        traced network's (static at a fixed image size); the geometry comes from transforming one
        black image, without running the network.

        Raises:
            ValueError: A map's height, width or channels are not static.
        """
        detection = self.detection
        maps: list[dict[str, tuple[int, ...]]] = [{} for _ in detection.test_scales]
        for name, tensor in zip(self.map_names(), self.network_function().structured_outputs, strict=True):
            index, key = name.split("/", 1)
            if not tensor.shape[1:].is_fully_defined():
                raise ValueError(f"the network's map {name} has no static shape at {self.image_size}: {tensor.shape}")
            maps[int(index)][key] = tuple(tensor.shape[1:].as_list())
        black = tf.zeros([*self.image_size, 3], tf.float32)
        transforms = detection.transforms(black)
        return [
            InputGeometry(
                scale=float(scale),
                size=tuple(int(side) for side in pixels.shape[:2]),
                image_info=tuple(float(value) for value in info.numpy()),
                maps=shapes,
            )
            for scale, (pixels, info), shapes in zip(detection.test_scales, transforms, maps, strict=True)
        ]

    def decoding_function(self) -> tf.types.experimental.ConcreteFunction:
        """The network half's maps (inputs `map_0`, `map_1`, ... in `map_names` order) -> the outputs."""
        shapes = [tensor.shape for tensor in self.network_function().structured_outputs]
        names = self.map_names()

        def decoding(*maps: tf.Tensor) -> dict[str, tf.Tensor]:
            inputs = self._inputs(tf.zeros([self.batch_size, *self.image_size, 3], tf.uint8))
            grouped: list[dict[str, tf.Tensor]] = [{} for _ in inputs]
            for name, tensor in zip(names, maps):
                index, key = name.split("/", 1)
                grouped[int(index)][key] = tensor
            replay = iter(grouped)  # each test input's maps, in the order detect_multiscale runs them
            dets = detect_multiscale(lambda batch, training=False: next(replay), inputs, self.detection.settings)
            return object_detection_outputs(dets, inputs[0][1])

        specs = [tf.TensorSpec(shape, tf.float32, name=f"map_{i}") for i, shape in enumerate(shapes)]
        return tf.function(decoding).get_concrete_function(*specs)

    def weights_as_inputs(self, network_only: bool = False) -> WeightInputs:
        """The whole detector (`concrete_function`), or with `network_only` its network half
        (`network_function`), traced with the network's weights as inputs after the images: the
        model runs through Keras' `stateless_call` on the weight inputs, so the graph holds no
        weight constant. Weights the outputs do not use (the heads of intermediate stacks) stay
        inputs of the function; a converter drops them."""
        model = self.detection.model
        trainable, non_trainable = list(model.trainable_variables), list(model.non_trainable_variables)
        weights = {WEIGHT_INPUT.format(index): variable for index, variable in enumerate(trainable + non_trainable)}
        specs = [tf.TensorSpec(variable.shape, variable.dtype, name=name) for name, variable in weights.items()]

        def traced(images: tf.Tensor, *values: tf.Tensor) -> dict[str, tf.Tensor] | tuple[tf.Tensor, ...]:
            def network(batch: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
                trained, statistics = list(values[: len(trainable)]), list(values[len(trainable) :])
                return model.stateless_call(trained, statistics, batch, training=training)[0]

            return tuple(self._maps(images, network).values()) if network_only else self._detect(images, network)

        signature = [self._image_spec(), *specs]
        function = tf.function(traced, input_signature=signature)
        self._checked(function.get_concrete_function())
        return WeightInputs(function, signature, weights)

    def concrete_function(self) -> tf.types.experimental.ConcreteFunction:
        """The traced function; refuses a graph holding the compiled corner-pool op."""
        return self._checked(self.serve.get_concrete_function())

    @staticmethod
    def _checked(function: tf.types.experimental.ConcreteFunction) -> tf.types.experimental.ConcreteFunction:
        """`function`, refused when its graph holds the compiled corner-pool op."""
        op_types = {op.type for op in function.graph.get_operations()}
        op_types |= {node.op for fn in function.graph.as_graph_def().library.function for node in fn.node_def}
        found = sorted(op_types.intersection(COMPILED_OP_TYPES))
        if found:
            raise ValueError(
                f"the model uses the compiled corner-pool op ({', '.join(found)}), which only "
                "TensorFlow can run; export with --corner_pool vectorized"
            )
        return function
