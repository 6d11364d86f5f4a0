"""Export a CornerNet as a TF Serving model version, preprocessing and decoding inside the graph.

CLI: `python -m cornernet_tf.export [--config C] (--weights W | --random_weights)
--export_dir exports/cornernet [--version N] [--set key=value ...] [--flip/--no-flip]
[--score_threshold X] [--max_detections N] [--corner_pool vectorized|scan|op] [--verbose]
[--format saved_model|tflite|onnx [--quantize none|fp16|int8] [--batch_size N|dynamic]
[--image_size H W]]` (tflite / onnx: `cornernet_tf.portable`).
W is what `python -m cornernet_tf.evaluate` accepts: a `.weights.h5`, a training model_dir (its
latest checkpoint under `checkpoints/`), a checkpoints folder or a checkpoint prefix; as there,
without --config the run's `config.yaml` beside W or above it is used, and --random_weights
needs --config.

Writes `<export_dir>/<version>/` (default version: the highest numeric one there + 1, else 1)
holding saved_model.pb, variables/ and assets/ (class_names.txt: line i names class id i;
config.yaml: the resolved config). The version is written under a temporary name TF Serving
ignores (`.tmp-<version>-*`) and renamed in when complete, so a server polling the base path
never sees half an export and a failed export leaves nothing; an existing version is never
overwritten.

Signatures (method `tensorflow/serving/predict`), after the TF Object Detection API:
  serving_default: images tf.string [B], encoded JPEG / PNG / GIF / BMP of any sizes
  serving_tensor:  images tf.uint8 [B, H, W, 3], RGB
both returning, with M = export.max_detections and rows sorted by score:
  detection_boxes   [B, M, 4] float32, (ymin, xmin, ymax, xmax) / original (height, width)
  detection_scores  [B, M] float32
  detection_classes [B, M] float32, 1-based class ids (the API's convention), 0 on empty rows
  num_detections    [B] float32, rows holding a detection (score >= export.score_threshold);
                    the rows after them are zeros.
Each image is resized (export.test_mode "resize", to data.input_size) or padded (the original
"pad" test transform at scale 1) and normalized with data.mean / data.std, then decoded by
`inference.detect`, the path evaluation measures. The corner pool baked in is export.corner_pool:
"vectorized" (default) and "scan" are plain TF ops a stock TF Serving runs; "op" needs
`cornernet_tf.ops.compiled.load_library()` in the loading process first.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Callable, Optional

import keras
import tensorflow as tf

from cornernet_tf import cli
from cornernet_tf.config import Config, ConfigError, load_config
from cornernet_tf.data import augment, image_header_tf
from cornernet_tf.data import image_info as info_lib
from cornernet_tf.inference import MIN_SCORE_THRESHOLD, DetectionSettings, Model, detect
from cornernet_tf.models import build_model
from cornernet_tf.ops.corner_pool import compiled_available
from cornernet_tf.training.checkpoint import SAVED_CONFIG, config_for_weights, load_weights

CLASS_NAMES_ASSET = "class_names.txt"
CONFIG_ASSET = "config.yaml"
TEMP_PREFIX = ".tmp-"  # not a number: TF Serving and `serve` skip it
_IMAGE_SPEC = tf.RaggedTensorSpec([None, None, 3], tf.float32, ragged_rank=1)


def detection_settings(config: Config) -> DetectionSettings:
    """Decoding settings of an export: config.eval's decoding, config.export's flip and output
    size. A score threshold below the original's soft-NMS threshold (0.001) is raised to it."""
    return dataclasses.replace(
        DetectionSettings.from_eval_config(config.eval),
        flip=config.export.flip,
        max_detections=config.export.max_detections,
        score_threshold=max(config.export.score_threshold, MIN_SCORE_THRESHOLD),
    )


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

    def __init__(self, model: Model, config: Config):
        super().__init__(name="cornernet")
        self.model = model
        self.model_variables = list(model.variables)
        self.settings = detection_settings(config)
        self.test_mode = config.export.test_mode
        self.input_size = tuple(config.data.input_size)
        self.size_divisor = config.model.stride * 2**config.model.depth
        self.mean, self.std = tuple(config.data.mean), tuple(config.data.std)
        self.max_image_pixels = config.export.max_image_pixels

    def _transform(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One uint8 image [H, W, 3] -> (network input [h, w, 3] in [0, 1], image_info [6])."""
        if self.test_mode == "resize":
            return augment.eval_resize(image, self.input_size)
        return augment.eval_pad(image, self.size_divisor)

    def _detect(self, elements: tf.Tensor, to_image: Callable[[tf.Tensor], tf.Tensor]) -> dict[str, tf.Tensor]:
        """Transform each of `elements` [B, ...] (after `to_image`: uint8 [H, W, 3]) on its own,
        zero-pad the inputs at the bottom/right to a common size (only "pad" inputs differ; the
        image_info stays valid), normalize, detect."""

        def one(element: tf.Tensor) -> tuple[tf.RaggedTensor, tf.Tensor]:
            image, info = self._transform(to_image(element))
            return tf.RaggedTensor.from_tensor(image, ragged_rank=1), info

        # One image at a time: a request's peak is one image at its original size, whatever its batch.
        images, image_info = tf.map_fn(
            one, elements, fn_output_signature=(_IMAGE_SPEC, tf.TensorSpec([info_lib.IMAGE_INFO_SIZE], tf.float32)),
            parallel_iterations=1,
        )
        images = augment.normalize(images.to_tensor(), self.mean, self.std)
        return object_detection_outputs(detect(self.model, images, image_info, self.settings), image_info)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_encoded(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """serving_default: encoded images [B] -> detections. A bad image, or one whose header
        declares more than export.max_image_pixels pixels, is InvalidArgument before decoding."""
        return self._detect(images, lambda data: image_header_tf.decode_bounded(data, self.max_image_pixels))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_tensor(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """serving_tensor: uint8 RGB images [B, H, W, 3] -> detections."""
        return self._detect(images, lambda image: image)

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """The SavedModel's signature map (traces both functions on first use)."""
        return {
            "serving_default": self.serve_encoded.get_concrete_function(),
            "serving_tensor": self.serve_tensor.get_concrete_function(),
        }


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


def numeric_versions(export_dir: pathlib.Path) -> list[int]:
    """Version numbers present in `export_dir` (numeric folder names, complete or not)."""
    if not export_dir.is_dir():
        return []
    return sorted(int(p.name) for p in export_dir.iterdir() if p.name.isascii() and p.name.isdigit())


def write_version(
    export_dir: str | os.PathLike, write: Callable[[pathlib.Path], None], version: Optional[int] = None
) -> pathlib.Path:
    """Run `write(temp_dir)`, then rename temp_dir to `<export_dir>/<version>` in one step.

    version None: the highest existing + 1 (1 for a new export_dir). An existing version is
    refused (FileExistsError); any failure removes the temporary folder and re-raises. The
    rename is atomic on one local file system, which is why the temporary folder lives in
    export_dir itself. Returns the version folder.
    """
    export_dir = pathlib.Path(export_dir).expanduser()
    export_dir.mkdir(parents=True, exist_ok=True)
    if version is None:
        version = max(numeric_versions(export_dir), default=0) + 1
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    target = export_dir / str(version)
    refusal = f"{target} already exists; export to another --version or remove it first"
    if target.exists():
        raise FileExistsError(refusal)
    temp = pathlib.Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{version}-", dir=export_dir))
    try:
        write(temp)
        temp.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server running as another user
        try:
            os.rename(temp, target)  # fails if another export created a non-empty one meanwhile
        except OSError as err:
            raise FileExistsError(f"{refusal} ({err.strerror})") from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target


def export_model(
    model: Model, config: Config, export_dir: str | os.PathLike, version: Optional[int] = None
) -> pathlib.Path:
    """Export `model` (built with corner pool config.export.corner_pool) as a new version of
    `export_dir`; returns the version folder."""
    module = DetectionModule(model, config)
    return write_version(export_dir, lambda directory: write_saved_model(module, config, directory), version)


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The export flags as `export.key=value` overrides, applied after --set (flags win)."""
    flags = {
        "flip": None if args.flip is None else str(args.flip).lower(),
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "corner_pool": args.corner_pool,
    }
    return [f"export.{key}={value}" for key, value in flags.items() if value is not None]


def _batch_size(text: str) -> int | None:
    """--batch_size: a positive integer, or "dynamic" (None)."""
    if text == "dynamic":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'dynamic', got {text!r}")
    return int(text)


def _check_format_flags(args: argparse.Namespace, config: Config) -> None:
    """Refuse portable-only flags on a SavedModel and what a portable format cannot hold."""
    if args.format == "saved_model":
        if args.quantize != "none" or args.image_size is not None or args.batch_size != 1:
            raise ValueError("--quantize, --image_size and --batch_size are for --format tflite / onnx")
        return
    from cornernet_tf.portable import check_request  # imported here: the portable formats are extras

    check_request(config, args.format, args.quantize, args.batch_size)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.export", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None, help=f"YAML file or bundled name (default: the run's "
                        f"{SAVED_CONFIG} beside --weights or above it)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help=".weights.h5 file, model_dir, checkpoints folder or checkpoint prefix")
    source.add_argument("--random_weights", action="store_true", help="export an untrained model (tests, demos)")
    parser.add_argument("--export_dir", required=True, help="model base path; the export is <export_dir>/<version>")
    parser.add_argument("--version", type=int, default=None, help="default: highest existing version + 1, or 1")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set export.test_mode=pad (repeatable)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="also run mirrored images (default export.flip)")
    parser.add_argument("--score_threshold", type=float, default=None, help="default export.score_threshold")
    parser.add_argument("--max_detections", type=int, default=None, help="default export.max_detections")
    parser.add_argument("--corner_pool", choices=("vectorized", "scan", "op"), default=None,
                        help="default export.corner_pool (vectorized: runs on a stock TF Serving)")
    portable = parser.add_argument_group("portable formats (docs/export_and_serving.md)")
    portable.add_argument("--format", choices=("saved_model", "tflite", "onnx"), default="saved_model",
                          help="saved_model (default): TF Serving; tflite / onnx: the tensor signature at a "
                          "fixed image size, written as <version>/model.<format> and export_info.json")
    portable.add_argument("--quantize", choices=("none", "fp16", "int8"), default="none",
                          help="tflite only: float16 weights, or int8 weights (dynamic range)")
    portable.add_argument("--batch_size", type=_batch_size, default=1, metavar="N|dynamic",
                          help="fixed batch of the tflite / onnx input (default 1); onnx also takes dynamic")
    portable.add_argument("--image_size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                          help="fixed size of the tflite / onnx input images (default data.input_size)")
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


def _config_path(args: argparse.Namespace) -> str:
    """--config, else the config of --weights' run; random weights belong to no run."""
    if args.random_weights and args.config is None:
        raise ConfigError("--random_weights needs --config (the YAML or bundled name of the network to "
                          "export)")
    return config_for_weights(args.config, args.weights)


@cli.command
def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    config = load_config(_config_path(args), [*args.overrides, *flag_overrides(args)])
    corner_pool = config.export.corner_pool
    _check_format_flags(args, config)
    if corner_pool == "op" and not compiled_available():
        raise ValueError("--corner_pool op: the compiled corner-pool library is not available; build it "
                         "(pip install -e .) or export with --corner_pool vectorized")
    keras.utils.set_random_seed(config.train.seed)
    model = build_model(config.model, corner_pool=corner_pool)
    if args.random_weights:
        print("WARNING: --random_weights: exporting an UNTRAINED model; its detections are noise",
              file=sys.stderr)
    else:
        print(f"loaded weights {load_weights(model, args.weights)}")
    if args.format != "saved_model":
        from cornernet_tf.portable import export_portable

        target = export_portable(model, config, args.export_dir, args.format, args.quantize, args.batch_size,
                                 args.image_size, args.version)
        print(f"exported {config.name} to {target}: {args.format}, quantization {args.quantize}, batch "
              f"{args.batch_size or 'dynamic'}; corner pool {corner_pool}")
        return 0
    target = export_model(model, config, args.export_dir, args.version)
    print(f"exported {config.name} to {target}: signatures serving_default, serving_tensor; corner pool {corner_pool}")
    if corner_pool == "op":
        print("the export uses the compiled corner-pool op: loaders must call cornernet_tf.ops.compiled.load_library() "
              "first, and a stock TF Serving cannot load it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
