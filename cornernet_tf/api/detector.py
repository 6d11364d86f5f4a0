"""Detect objects in your own images: `Detector`, from a SavedModel export or from training weights.

    detector = Detector.from_export("exports/cornernet")        # or Detector.from_weights("runs/x")
    for found in detector.predict(["a.jpg", "b.png", pixels]):   # paths, uint8 RGB arrays, batches
        print(found.boxes, found.scores, found.class_names)
        picture = found.draw(image)

Both sources run one graph, `detection_module.DetectionModule.serve_tensor` (resize or pad per
the run's detection settings, normalize, `inference.detect_multiscale`): `from_export` calls the SavedModel's
`serving_tensor` signature and needs nothing of the network's code, `from_weights` builds the
same module around the network of the weights in this process. So the two give the same boxes for
the same model, and what you see is what the export serves.

Files are decoded here with `tf.io.decode_image` and turned by their EXIF orientation the way
`cv2.imread` and the training pipeline turn them (`image_header.orient`); boxes are in the pixels
of that displayed image. Consecutive images of one size share a call of the signature, up to
`batch_size` of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from cornernet_tf.api import pretrained
from cornernet_tf.config import Config, config_from_dict, load_config
from cornernet_tf.data import image_header
from cornernet_tf.ops.corner_pool import compiled_available
from cornernet_tf.portable import export_info
from cornernet_tf.portable.export_info import FILE_NAME as PORTABLE_INFO
from cornernet_tf.tasks.export import CLASS_NAMES_ASSET, class_names, detection_module, export_network
from cornernet_tf.training.checkpoint import config_for_weights, load_weights
from cornernet_tf.utils.coco_metrics import detections_to_coco
from cornernet_tf.utils.visualize import draw_detections

SIGNATURE = "serving_tensor"  # uint8 RGB [B, H, W, 3] in, TF Object Detection API outputs out
DEFAULT_BATCH_SIZE = 8

ImageInput = str | os.PathLike | np.ndarray


@dataclasses.dataclass(frozen=True)
class ImageDetections:
    """The detections of one image, best first.

    boxes [N, 4] float32 (x1, y1, x2, y2) in pixels of the image; scores [N] float32;
    class_ids [N] int32, 0-based indices into `all_class_names` (the export's 1-based
    detection_classes minus 1); image_size (height, width).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    all_class_names: tuple[str, ...]
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def class_names(self) -> list[str]:
        """The name of each detection's class."""
        return [class_name(int(i), self.all_class_names) for i in self.class_ids]

    def to_coco(self, image_id: int, category_ids: Sequence[int] | None = None) -> list[dict]:
        """COCO result records; `category_ids[class_id]` is the dataset's category id of a class
        (default class_id + 1, the export's convention)."""
        ids = range(1, len(self._names()) + 1) if category_ids is None else category_ids
        return detections_to_coco(image_id, self.boxes, self.scores, self.class_ids, ids)

    def _names(self) -> list[str]:
        """A name for every class id up to the largest detected."""
        count = max(len(self.all_class_names), int(self.class_ids.max(initial=-1)) + 1)
        return [class_name(i, self.all_class_names) for i in range(count)]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the image size and each detection's box, score, class id and name."""
        return {
            "height": self.image_size[0],
            "width": self.image_size[1],
            "detections": [
                {"box": [float(v) for v in box], "score": float(score), "class_id": int(cls), "class_name": name}
                for box, score, cls, name in zip(self.boxes, self.scores, self.class_ids, self.class_names)
            ],
        }

    def draw(self, image: np.ndarray, legend: bool = True) -> np.ndarray:
        """A copy of `image` (uint8 RGB, the image these detections are of) with every box, its
        class name and score, and a legend of the classes found."""
        if tuple(np.shape(image)[:2]) != self.image_size:
            raise ValueError(
                f"draw: the image is {np.shape(image)[:2]}, these detections are of an image of "
                f"{self.image_size} (height, width)"
            )
        return draw_detections(
            image, self.boxes, self.scores, self.class_ids, self._names(), score_threshold=-1.0, legend=legend
        )


def class_name(class_id: int, names: Sequence[str]) -> str:
    """Name of 0-based class `class_id`; `class_<id + 1>` when the export names none (`tasks.export.class_names`)."""
    return names[class_id] if 0 <= class_id < len(names) else f"class_{class_id + 1}"


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB [H, W, 3], turned by its EXIF orientation; the first frame of a
    GIF. A missing or unreadable file is `image_header.UnreadableImageError` (an OSError), bytes
    that are not a whole JPEG, PNG, GIF or BMP `image_header.UndecodableImageError` (a ValueError)."""
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as err:
        raise image_header.UnreadableImageError(f"{path}: {err.strerror or err}") from None
    try:
        header = image_header.header_of_bytes(data)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except image_header.UnreadableImageError as err:  # an empty file
        raise image_header.UnreadableImageError(f"{path}: {err}") from None
    except (image_header.UndecodableImageError, tf.errors.InvalidArgumentError) as err:
        message = err.message if isinstance(err, tf.errors.OpError) else str(err)
        raise image_header.UndecodableImageError(
            f"{path}: {message.splitlines()[0] if message else 'undecodable'}"
        ) from None
    if header.orientation != 1:
        image = image_header.orient(image, tf.constant(header.orientation))
    return image.numpy()


def as_images(images: ImageInput | Iterable[ImageInput]) -> Iterator[np.ndarray | str | os.PathLike]:
    """Each image of what `Detector.predict` takes, as a path or a checked uint8 array [H, W, 3]."""
    if isinstance(images, (str, os.PathLike)):
        yield images
        return
    if isinstance(images, (np.ndarray, tf.Tensor)):
        array = np.asarray(images)
        if array.ndim == 4:
            yield from (_checked(image) for image in array)
        else:
            yield _checked(array)
        return
    for item in images:
        yield from as_images(item)


def _checked(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(
            f"an image array must be uint8 RGB [H, W, 3] (a batch [B, H, W, 3]), got {image.dtype} "
            f"{list(image.shape)}; e.g. np.asarray(pil_image.convert('RGB'))"
        )
    return image


def device_scope(device: str | None) -> contextlib.AbstractContextManager:
    """`tf.device` of a device named like "cpu", "gpu", "gpu:1" or "/GPU:0" that this process
    has; no scope for None (TensorFlow's own placement)."""
    if device is None:
        return contextlib.nullcontext()
    kind, _, index = device.strip().lstrip("/").removeprefix("device:").partition(":")
    name = f"{kind.upper()}:{index or 0}"
    available = [d.name.split("device:")[-1] for d in tf.config.list_logical_devices()]
    if name not in available:
        raise ValueError(f"device {device!r}: this process has no {name} (it has {', '.join(available)})")
    return tf.device(f"/{name}")


def _runs(images: Iterable[np.ndarray], batch_size: int) -> Iterator[list[np.ndarray]]:
    """Consecutive images of one size, at most `batch_size` per run."""
    run: list[np.ndarray] = []
    for image in images:
        if run and (len(run) == batch_size or image.shape != run[0].shape):
            yield run
            run = []
        run.append(image)
    if run:
        yield run


class Detector:
    """Detections of uint8 RGB images through an exported or in-process `DetectionModule`.

    `score_threshold` drops detections below it and `max_detections` keeps the best ones, on top
    of what the module returns (detection.score_threshold and detection.max_detections are baked into
    an export; a lower threshold or more detections than it returns cannot be had from it).
    """

    def __init__(
        self,
        signature: Callable[..., dict[str, tf.Tensor]],
        class_names: Sequence[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        device: str | None = None,
        description: str = "",
    ) -> None:
        """Wrap a detection signature; `from_export` and `from_weights` make one from files.

        Args:
            signature: Called as signature(images=uint8 [B, H, W, 3]); returns the TF Object
                Detection API outputs of `SIGNATURE` (num_detections, detection_boxes,
                detection_scores, detection_classes).
            class_names: Name of each 0-based class index.
            batch_size: Most images per signature call.
            score_threshold: Drop detections scored below it; None keeps what the module returns.
            max_detections: Keep at most this many per image; None keeps what the module returns.
            device: Device to run on ("cpu", "gpu", "gpu:1", "/GPU:0"); None: TensorFlow's placement.
            description: What the detector runs, for messages.

        Raises:
            ValueError: `batch_size` or `max_detections` is below 1, or this process has no `device`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_detections is not None and max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        self.signature = signature
        self.class_names = tuple(class_names)
        self.batch_size = batch_size
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.device = device
        self.description = description
        self.config = None  # the Config of a detector made from weights
        self.model = None  # its Keras network
        self._module = None
        device_scope(device)  # fails now on a device this process lacks

    @classmethod
    def from_export(cls, path: str | os.PathLike, **options) -> Detector:
        """A detector on an export of `python -m cornernet_tf.export`: a version folder, or a
        model base path (its highest complete version). A SavedModel runs its `serving_tensor`; a
        TFLite or ONNX export runs in its own runtime (an extra), each image resized to the
        export's fixed size first, the boxes mapped back to the image; a network-only one (the
        network's maps, no decoding) is refused with ValueError. Options as `Detector`'s."""
        version = find_export(path)
        if (version / PORTABLE_INFO).is_file():
            if export_info.read(version).get("network_only"):
                raise ValueError(
                    f"{version}: a network-only export returns the network's maps, not detections; decode them "
                    f"yourself (its {PORTABLE_INFO} says how) or export without --network_only"
                )
            from cornernet_tf.portable import fixed_size_runner  # imported here: the formats are extras

            run, info = fixed_size_runner(version)
            signature = _fixed_size_signature(run, info["input"]["shape"])
            description = f"{info['format']} export {version} ({info['quantization']})"
            return cls(signature, info.get("class_names", []), description=description, **options)
        loaded = tf.saved_model.load(str(version))
        if SIGNATURE not in loaded.signatures:
            raise ValueError(
                f"{version}: the SavedModel has no {SIGNATURE!r} signature (it has "
                f"{sorted(loaded.signatures)}); export it with python -m cornernet_tf.export"
            )
        names_file = version / "assets" / CLASS_NAMES_ASSET
        names = names_file.read_text().splitlines() if names_file.is_file() else []
        detector = cls(loaded.signatures[SIGNATURE], names, description=f"export {version}", **options)
        detector._module = loaded  # keeps the variables the signature reads alive
        return detector

    @classmethod
    def from_weights(
        cls,
        weights: str | os.PathLike,
        config: str | os.PathLike | Config | None = None,
        overrides: Sequence[str] = (),
        flip: bool | None = None,
        **options,
    ) -> Detector:
        """A detector on training weights (a `.weights.h5`, a model_dir, a checkpoints folder or a
        checkpoint prefix), run through the export's module in this process.

        Args:
            weights: The weights to load.
            config: A YAML path or bundled name, a loaded `Config`, or None for the run's saved config
                beside or above the weights.
            overrides: `key=value` config overrides.
            flip: Also run mirrored images; None: detection.flip of the config.
            **options: The other arguments of `Detector` (batch_size, score_threshold,
                max_detections, device); a larger max_detections raises detection.max_detections.

        Returns:
            The detector, with `config` and `model` set.

        Raises:
            FileNotFoundError: `weights` do not exist or hold no checkpoint.
            ValueError: The weights do not fit the config's network, the config is unusable
                (`ConfigError`, also when no saved config is found), export.corner_pool is "op"
                without the compiled library, or `device` is missing.
        """
        weights = pretrained.resolve(weights, None if isinstance(config, Config) else config)
        if isinstance(config, Config):
            config = config_from_dict(config.to_dict(), overrides)
        else:
            config = load_config(
                config_for_weights(None if config is None else str(config), str(weights)), list(overrides)
            )
        wanted = options.get("max_detections") or 0
        config = dataclasses.replace(
            config,
            detection=dataclasses.replace(
                config.detection,
                flip=config.detection.flip if flip is None else flip,
                max_detections=max(config.detection.max_detections, wanted),
            ),
        )
        if config.export.corner_pool == "op" and not compiled_available():
            raise ValueError(
                "export.corner_pool op: the compiled corner-pool library is not available; build it "
                "(pip install -e .) or use export.corner_pool=vectorized"
            )
        with device_scope(options.get("device")):
            model = export_network(config)
            loaded_from = load_weights(model, weights)
            module = detection_module(model, config)
        detector = cls(module.serve_tensor, class_names(config), description=f"weights {loaded_from}", **options)
        detector.config, detector.model, detector._module = config, model, module
        return detector

    def predict(self, images: ImageInput | Iterable[ImageInput]) -> list[ImageDetections]:
        """Detections of each image: a path, a uint8 RGB array [H, W, 3], a batch [B, H, W, 3],
        or a list of any of these; one `ImageDetections` per image, in order."""
        pixels = [load_image(item) if isinstance(item, (str, os.PathLike)) else item for item in as_images(images)]
        results: list[ImageDetections] = []
        for run in _runs(pixels, self.batch_size):
            results.extend(self._detect(np.stack(run)))
        return results

    def _detect(self, batch: np.ndarray) -> list[ImageDetections]:
        """One signature call on uint8 [B, H, W, 3] -> per image its detections in image pixels."""
        with device_scope(self.device):
            outputs = self.signature(images=tf.constant(batch))
        found = {key: np.asarray(value) for key, value in outputs.items()}
        height, width = batch.shape[1:3]
        results = []
        for row in range(len(batch)):
            count = int(found["num_detections"][row])
            scores = found["detection_scores"][row, :count]
            keep = np.ones(count, bool) if self.score_threshold is None else scores >= self.score_threshold
            keep &= np.cumsum(keep) <= (self.max_detections or count)
            ymin, xmin, ymax, xmax = (found["detection_boxes"][row, :count][keep] * [height, width, height, width]).T
            results.append(
                ImageDetections(
                    boxes=np.stack([xmin, ymin, xmax, ymax], axis=-1).astype(np.float32),
                    scores=scores[keep].astype(np.float32),
                    class_ids=(found["detection_classes"][row, :count][keep] - 1).astype(np.int32),
                    all_class_names=self.class_names,
                    image_size=(int(height), int(width)),
                )
            )
        return results

    def network_input(self, image: str | os.PathLike | np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        """What the network of a detector made from weights sees for one image: the normalized
        input [1, h, w, 3] and its image_info [1, 6] (`data/image_info.py`), e.g. to draw its
        heatmaps with `detector.model`."""
        if self.model is None:
            raise ValueError(
                "network_input needs a detector made with Detector.from_weights; an export holds only "
                "its detection signatures"
            )
        pixels = load_image(image) if isinstance(image, (str, os.PathLike)) else _checked(np.asarray(image))
        nearest_one = int(np.argmin([abs(scale - 1.0) for scale in self._module.test_scales]))
        inputs, image_info = self._module.transforms(tf.constant(pixels))[nearest_one]
        return self._module.normalize(inputs)[None], image_info[None]


def _fixed_size_signature(
    run: Callable[[np.ndarray], dict[str, np.ndarray]], shape: Sequence[int | str]
) -> Callable[..., dict[str, np.ndarray]]:
    """A `serving_tensor`-like function of a portable export's runner: images of any one size are
    resized to its [H, W] (boxes are fractions of the image, so they hold for the original) and
    run in batches of its size (a short last one padded, its extra rows dropped)."""
    import cv2  # imported here: only portable exports resize on the host

    batch, height, width = shape[0], int(shape[1]), int(shape[2])

    def signature(images: tf.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        pixels = np.asarray(images, np.uint8)
        if pixels.shape[1:3] != (height, width):
            pixels = np.stack([cv2.resize(p, (width, height), interpolation=cv2.INTER_AREA) for p in pixels])
        step = batch if isinstance(batch, int) else len(pixels)
        parts = []
        for start in range(0, len(pixels), step):
            chunk = pixels[start : start + step]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), axis=0)])
            parts.append({key: value[: len(chunk)] for key, value in run(padded).items()})
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    return signature


def _is_export(folder: pathlib.Path) -> bool:
    return (folder / "saved_model.pb").is_file() or (folder / PORTABLE_INFO).is_file()


def find_export(path: str | os.PathLike) -> pathlib.Path:
    """The export folder of `path`: itself when it holds saved_model.pb (or a portable export's
    export_info.json), else its highest numeric version folder that does (a TF Serving model base
    path)."""
    path = pathlib.Path(path).expanduser()
    if _is_export(path):
        return path
    versions = (
        sorted((int(p.name), p) for p in path.glob("*") if p.name.isascii() and p.name.isdigit() and _is_export(p))
        if path.is_dir()
        else []
    )
    if not versions:
        raise FileNotFoundError(
            f"export {str(path)!r}: no saved_model.pb or {PORTABLE_INFO} in it or in a numeric version folder "
            f"under it; pass a folder written by python -m cornernet_tf.export"
        )
    return versions[-1][1]
