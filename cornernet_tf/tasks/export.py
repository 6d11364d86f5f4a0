"""What a `Config` exports: the detection module of its network, and the export's files.

The module decodes with `config.detection`, the settings evaluation measures with, so an export
serves what was measured. `export_model` writes a SavedModel version (TF Serving's layout) and
`export_portable` a TFLite / ONNX one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.config import Config
from cornernet_tf.detection.inference import Model
from cornernet_tf.detection.module import DetectionModule, Preprocessing
from cornernet_tf.models import CornerNet
from cornernet_tf.serving.version_writer import write_version
from cornernet_tf.tasks.data import canvas_fill
from cornernet_tf.tasks.model import build_model

CLASS_NAMES_ASSET = "class_names.txt"  # line i names class id i
CONFIG_ASSET = "config.yaml"  # the resolved config
# export.precision -> the Keras dtype policy the network is built with: bfloat16 keeps float32
# weights and casts them per call (the checkpoint's weights load unchanged, and BatchNorm's
# statistics and the outputs stay float32: decoding and soft-NMS compute in float32)
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@contextlib.contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy set to `name` while layers are made (a model's sublayers take
    the global policy, not their parent's), then restored."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def export_network(config: Config) -> CornerNet:
    """The config's network as an export computes it: export.corner_pool, in export.precision."""
    with _dtype_policy(PRECISION_POLICIES[config.export.precision]):
        return build_model(config.model, corner_pool=config.export.corner_pool)


def preprocessing(config: Config) -> Preprocessing:
    """How the config's network sees an image."""
    data = config.data
    return Preprocessing(
        input_size=tuple(data.input_size),
        size_divisor=config.model.size_divisor,
        mean=tuple(data.mean),
        std=tuple(data.std),
        max_image_pixels=config.export.max_image_pixels,
        fill=canvas_fill(config),
    )


def detection_module(model: Model, config: Config) -> DetectionModule:
    """`model` (a network of the config) with the config's preprocessing and detection settings."""
    return DetectionModule(model, config.detection, preprocessing(config))


def class_names(config: Config) -> list[str]:
    """Names of class ids 1..num_classes: data.class_names, else `class_<id>`."""
    return list(config.data.class_names) or [f"class_{i}" for i in range(1, config.model.num_classes + 1)]


def write_saved_model(module: DetectionModule, config: Config, directory: pathlib.Path) -> None:
    """SavedModel with both signatures in `directory`, plus the class names and config assets."""
    tf.saved_model.save(module, str(directory), signatures=module.signatures())
    assets = directory / "assets"
    assets.mkdir(exist_ok=True)
    (assets / CLASS_NAMES_ASSET).write_text("".join(f"{name}\n" for name in class_names(config)))
    (assets / CONFIG_ASSET).write_text(config.to_yaml())


def export_model(
    model: Model, config: Config, export_dir: str | os.PathLike, version: int | None = None
) -> pathlib.Path:
    """Export `model` (built with corner pool config.export.corner_pool) as a new SavedModel
    version of `export_dir` (`model_versions.write_version`); returns the version folder.

    Args:
        model: A network of `config`.
        config: The run's config; its preprocessing and detection settings go into the graph,
            its class names and YAML into the assets.
        export_dir: The versioned export folder (a TF Serving model base path).
        version: Version number to write; None: the highest existing + 1.

    Returns:
        The version folder.

    Raises:
        ValueError: A version below 1.
        FileExistsError: The version already exists.
    """
    module = detection_module(model, config)
    return write_version(export_dir, lambda directory: write_saved_model(module, config, directory), version)


def export_portable(
    model: Model,
    config: Config,
    export_dir: str | os.PathLike,
    fmt: str,
    quantize: str = "none",
    batch_size: int | None = 1,
    image_size: tuple[int, int] | None = None,
    version: int | None = None,
    representative_images: np.ndarray | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    network_only: bool = False,
) -> pathlib.Path:
    """`model` as a TFLite or ONNX version of `export_dir` (`portable.export_portable`), at
    `image_size` (default data.input_size); returns the version folder.

    Args:
        model: A network of `config` on a pure-TF corner pool.
        config: The run's config; its preprocessing, detection settings and class names are used.
        export_dir: The versioned export folder.
        fmt: "tflite" or "onnx".
        quantize: "none", "fp16" or "int8" (TFLite only).
        batch_size: Fixed batch size; None: dynamic (ONNX only).
        image_size: The fixed input (H, W); None: data.input_size.
        version: Version number to write; None: the highest existing + 1.
        representative_images: uint8 [N, H, W, 3] at the image size, for calibrated int8.
        on_progress: Called with (images run, N) while calibrating.
        network_only: The network alone (preprocessing inside, its maps out), no decoding.

    Returns:
        The version folder.

    Raises:
        ValueError: A request the format cannot hold (the saccade test among them), a network
            on the compiled corner-pool op, or a version below 1 (see `portable.export_portable`).
        FileExistsError: The version already exists.
    """
    if not config.detection.procedure.portable:
        raise ValueError(
            f"a {fmt} export cannot hold the {config.detection.test_mode} test (a varying number of crops per image, "
            "found in loops); "
            "export a SavedModel, or --set detection.test_mode=resize for the network's single-pass test at "
            "data.input_size"
        )
    from cornernet_tf import portable  # imported here: the portable formats are extras

    described = {
        "class_names": class_names(config),
        "model": {"config": config.name, "type": config.model.type, "corner_pool": config.export.corner_pool},
    }
    return portable.export_portable(
        detection_module(model, config),
        export_dir,
        fmt,
        quantize=quantize,
        batch_size=batch_size,
        image_size=tuple(image_size or config.data.input_size),
        version=version,
        description=described,
        representative_images=representative_images,
        on_progress=on_progress,
        network_only=network_only,
    )
