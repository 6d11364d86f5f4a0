"""`export_info.json`: what a runtime needs to feed a portable export and read its outputs.

A network-only export (`"network_only": true`) has no detections to describe: its outputs are
the network's maps, so the file states the contract a caller decoding them itself (TensorRT,
a custom decoder) needs without reading this package: each map's meaning, shape and stride,
each test input's geometry (how its pixels relate to the image's), the preprocessing already
applied inside, and the decoding settings and steps the other exports apply.
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib

from cornernet_tf import __version__
from cornernet_tf.data import image_info as info_lib
from cornernet_tf.portable.graph import INPUT_NAME, OUTPUT_NAMES, PortableDetector

FILE_NAME = "export_info.json"
QUANTIZATION_DETAILS = {
    "none": "float32",
    "fp16": "float16 weights, float32 compute",
    "int8": "int8 weights (dynamic range): activations quantized at run time where a kernel supports it",
}
# int8 with representative images: what is integer, per format; the network part, then (whole
# exports) the decoding's
CALIBRATED_DETAILS = {
    "tflite": "int8 network in model_file (int8 kernels, int8 weights and activations at ranges calibrated on "
    "representative images; uint8 images in, float maps out)",
    "onnx": "int8 convolutions (static QDQ: per-channel int8 weights, uint8 activations at ranges calibrated on "
    "representative images); the rest of the network (corner pools, ReLUs, additions) and the preprocessing float32",
}
CALIBRATED_DECODING = {
    "tflite": "decoding and soft-NMS float32 in decoding_file",
    "onnx": "decoding and soft-NMS float32",
}
TRANSFORMS = {  # detection.test_mode -> what the graph does to the input images before normalizing
    "resize": "each image resized to network_input_size (bilinear, half-pixel centres, no antialiasing)",
    "pad": "each image resized by each test scale (bilinear; scale 1: unchanged) and centred in a canvas whose "
    "sides + 1 are multiples of size_divisor (the original test transform), the canvas filled with fill",
}
KEYPOINTS = {"tl": "top-left corner", "br": "bottom-right corner", "ct": "center keypoint"}
MAP_CONTENTS = {
    "heatmap": "{kind} heatmap logits, one channel per class (channel c: class id c + 1), BEFORE the sigmoid: "
    "sigmoid(logit) is the score in [0, 1]",
    "embedding": "{kind} associative embedding (1 channel): a top-left and a bottom-right corner are one object's "
    "when their embeddings differ by at most decoding.settings.ae_threshold",
    "offset": "{kind} sub-pixel offset in map pixels (channel 0: x, channel 1: y): the keypoint of cell (x, y) lies "
    "at (x + offset_x, y + offset_y) map px",
}
ATTENTION_CONTENT = (
    "CornerNet-Saccade's attention logits (1 channel, before the sigmoid), used by its crop test only; "
    "not needed to decode boxes"
)
_PACKAGES = {"tflite": ("tensorflow", "keras", "ai-edge-litert"), "onnx": ("tensorflow", "keras", "tf2onnx", "onnx")}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def map_content(key: str) -> str:
    """What the network output `key` (tl_heatmap, br_offset, attention_0, ...) holds, in words."""
    kind, _, part = key.partition("_")
    if kind == "attention":
        return ATTENTION_CONTENT
    return MAP_CONTENTS[part].format(kind=KEYPOINTS[kind])


def export_info(
    detector: PortableDetector,
    fmt: str,
    model_file: str,
    quantize: str,
    extra: dict | None = None,
    calibrated: bool = False,
    network_only: bool = False,
) -> dict:
    """The description of one export (see docs/export_and_serving.md).

    Args:
        detector: The converted graph; its settings, preprocessing, batch and image size are
            described.
        fmt: "tflite" or "onnx".
        model_file: The model's file name in the version folder.
        quantize: "none", "fp16" or "int8".
        extra: Keys to add (the class names, the model) or to extend "model" with.
        calibrated: int8 was calibrated (the network is integer), not dynamic range.
        network_only: The file holds the network half alone (`network_contract` describes it).

    Returns:
        The export_info.json content: format, input, preprocessing, outputs, class names, model
        and package versions; a network-only export's outputs are its maps, with its test
        inputs and the decoding left to the caller (`network_contract`).
    """
    settings, preprocessing = detector.detection.settings, detector.detection.preprocessing
    batch = detector.batch_size
    max_detections = settings.max_detections
    extra = dict(extra or {})
    if calibrated:
        detail = CALIBRATED_DETAILS[fmt] + ("" if network_only else f"; {CALIBRATED_DECODING[fmt]}")
    else:
        detail = QUANTIZATION_DETAILS[quantize]
    info = {
        "format": fmt,
        "model_file": model_file,
        "network_only": network_only,
        "quantization": quantize,
        "quantization_detail": detail,
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "layout": "NHWC",
            "color": "RGB",
            "shape": [batch if batch is not None else "batch", *detector.image_size, 3],
            "value_range": [0, 255],
        },
        "preprocessing": {
            "in_graph": True,
            "test_mode": settings.test_mode,
            "transform": TRANSFORMS[settings.test_mode],
            "scales": list(settings.scales),
            "network_input_size": list(preprocessing.input_size),
            "size_divisor": preprocessing.size_divisor,
            "fill": "black" if preprocessing.fill is None else list(preprocessing.fill),
            "normalization": {
                "scale": 1 / 255,
                "mean": list(preprocessing.mean),
                "std": list(preprocessing.std),
                "formula": "(pixel * scale - mean) / std per RGB channel",
            },
        },
        "outputs": {
            "order": list(OUTPUT_NAMES),
            "detection_boxes": [batch, max_detections, 4],
            "detection_classes": [batch, max_detections],
            "detection_scores": [batch, max_detections],
            "num_detections": [batch],
            "boxes": "ymin, xmin, ymax, xmax divided by the image height / width",
            "classes": "1-based class ids, 0 on empty rows",
        },
        "class_names": extra.pop("class_names", []),
        "model": {**extra.pop("model", {}), "flip": settings.flip, "score_threshold": settings.score_threshold},
        "versions": {"cornernet_tf": __version__, **{name: _version(name) for name in _PACKAGES[fmt]}},
        **extra,
    }
    if network_only:
        info.update(network_contract(detector))
    return info


def network_contract(detector: PortableDetector) -> dict:
    """export_info.json's "outputs", "test_inputs" and "decoding" of a network-only export.

    outputs: the maps by name, in order (name `map_<test input>_<map>`, the map, its test input,
    shape, dtype, stride and content) and how rows and coordinates relate to the images;
    test_inputs: per test scale the network input's size and the image -> input transform;
    decoding: the settings and steps of the decoding the whole exports hold.
    """
    settings = detector.detection.settings
    geometry = detector.input_geometry()
    rows: int | str
    if detector.batch_size is None:
        rows = "2*batch" if settings.flip else "batch"
    else:
        rows = detector.batch_size * (2 if settings.flip else 1)
    outputs: dict = {"order": detector.network_output_names()}
    for name, map_name in zip(outputs["order"], detector.map_names(), strict=True):
        index, key = map_name.split("/", 1)
        test_input = geometry[int(index)]
        shape = test_input.maps[key]
        outputs[name] = {
            "map": map_name,
            "test_input": int(index),
            "shape": [rows, *shape],
            "dtype": "float32",
            "stride": [size / side for size, side in zip(test_input.size, shape[:2], strict=True)],
            "content": map_content(key),
        }
    outputs["rows"] = (
        "rows 0..B-1: the maps of the B input images; rows B..2B-1 (flip test): the maps of the same images "
        "mirrored left-right, so their x runs mirrored (a mirrored map's x is map_width - x)"
        if settings.flip
        else "row b: the maps of input image b"
    )
    outputs["coordinates"] = (
        "map px (x, y) of test input i (keypoint position plus its offset) -> input px (x * stride[1], "
        "y * stride[0]) -> image px ((input_x - offset_yx[1]) / scale_yx[1], (input_y - offset_yx[0]) / "
        "scale_yx[0]) with test_inputs[i].image_to_input; pixel-edge coordinates (0: the first pixel's top/left edge)"
    )
    test_inputs = [
        {
            "index": index,
            "scale": item.scale,
            "network_input_size": list(item.size),
            "image_to_input": {
                "scale_yx": [item.image_info[info_lib.SCALE_Y], item.image_info[info_lib.SCALE_X]],
                "offset_yx": [item.image_info[info_lib.OFFSET_Y], item.image_info[info_lib.OFFSET_X]],
                "formula": "input_px = image_px * scale + offset, per axis",
            },
        }
        for index, item in enumerate(geometry)
    ]
    centernet = "ct_heatmap" in geometry[0].maps
    names = ["k", "nms_kernel", "ae_threshold", "num_dets", "no_border", "flip", "soft_nms_sigma"]
    names += ["score_threshold", "max_detections", *(["center_area_threshold"] if centernet else [])]
    steps = [
        "per test input, image and corner kind: sigmoid of the heatmap, keep the cells equal to the "
        "nms_kernel x nms_kernel max-pool (stride 1, SAME padding) of it, take the top k over classes and cells",
        "each corner's position: its cell plus the offset read at that cell (map px)",
        "pair every top-left with every bottom-right corner: score (tl + br) / 2, invalid when the classes differ, "
        "the embeddings differ by more than ae_threshold, or the bottom-right corner lies left of or above the "
        "top-left one (no_border: or a corner lies on the map's outer row / column); keep the best num_dets pairs",
        "flip: a box (x1, y1, x2, y2) of a mirrored row becomes (map_width - x2, y1, map_width - x1, y2), and "
        "joins the boxes of its image",
        "boxes to image px (outputs.coordinates), clipped to the image",
    ]
    if centernet:
        steps.append(
            "CenterNet: the top k center keypoints (ct_heatmap, ct_offset; the test input nearest scale 1) in "
            "image px; boxes reaching 5 input px beyond the image are dropped; a box is kept only when a center of "
            "its class lies in its central region (1/3 of its sides, 1/5 above center_area_threshold square px), "
            "its score becoming (2 * score + center score) / 3"
        )
    steps.append(
        "all test inputs' boxes of an image together: per-class Gaussian soft-NMS (weight exp(-iou^2 / "
        "soft_nms_sigma), iou with w = x2 - x1 + 1; boxes decayed below score_threshold dropped), the best "
        "max_detections kept"
    )
    return {
        "outputs": outputs,
        "test_inputs": test_inputs,
        "decoding": {
            "in_graph": False,
            "settings": {name: getattr(settings, name) for name in names},
            "steps": steps,
            "reference": "cornernet_tf.detection.inference.detect_multiscale (cornernet_tf.detection.decode), the "
            "decoding every other export holds; PortableDetector.decoding_function replays these maps to it",
        },
    }


def write(directory: pathlib.Path, info: dict) -> pathlib.Path:
    path = directory / FILE_NAME
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def read(directory: str | pathlib.Path) -> dict:
    return json.loads((pathlib.Path(directory) / FILE_NAME).read_text())
