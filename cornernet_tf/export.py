"""Export a CornerNet as a TF Serving model version, preprocessing and decoding inside the graph.

CLI: `python -m cornernet_tf.export [--config C] (--weights W | --random_weights)
--export_dir exports/cornernet [--version N] [--set key=value ...] [--flip/--no-flip]
[--score_threshold X] [--max_detections N] [--corner_pool vectorized|scan|op]
[--precision float32|bfloat16] [--verbose]
[--format saved_model|tflite|onnx [--quantize none|fp16|int8] [--batch_size N|dynamic]
[--image_size H W] [--representative_images DIR|val [--calibration_images N]] [--network_only]]`
(tflite / onnx: `cornernet_tf.portable`; int8 with --representative_images is a calibrated integer
network, TFLite int8 without them dynamic range; --network_only: the network alone, uint8 images in,
its maps out, the decoding left to the caller, e.g. TensorRT's trtexec).
W is what `python -m cornernet_tf.evaluate` accepts: a `.weights.h5`, a training model_dir (its
latest checkpoint under `checkpoints/`), a checkpoints folder or a checkpoint prefix; as there,
without --config the run's `config.yaml` beside W or above it is used, and --random_weights
needs --config.

Writes `<export_dir>/<version>/` (default version: the highest numeric one there + 1, else 1)
holding saved_model.pb, variables/ and assets/ (class_names.txt: line i names class id i;
config.yaml: the resolved config), whole or not at all (`model_versions.write_version`); an
existing version is never overwritten. The graph and its signatures are
`detection_module.DetectionModule`'s: the run's `detection` settings, those evaluation measures
with (--flip, --score_threshold and --max_detections override them). The corner pool baked in is
export.corner_pool: "vectorized" (default) and "scan" are plain TF ops a stock TF Serving runs;
"op" needs `cornernet_tf.ops.compiled.load_library()` in the loading process first.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.api import pretrained
from cornernet_tf.api.detector import load_image
from cornernet_tf.config import Config, ConfigError, load_config
from cornernet_tf.data import image_header
from cornernet_tf.ops.corner_pool import compiled_available
from cornernet_tf.portable import conversion_memory
from cornernet_tf.predict import IMAGE_EXTENSIONS
from cornernet_tf.tasks.export import export_model, export_network, export_portable
from cornernet_tf.training.checkpoint import SAVED_CONFIG, config_for_weights, load_weights
from cornernet_tf.utils import cli, runtime


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The export flags as `section.key=value` overrides, applied after --set (flags win)."""
    flags = {
        "detection.flip": None if args.flip is None else str(args.flip).lower(),
        "detection.score_threshold": args.score_threshold,
        "detection.max_detections": args.max_detections,
        "export.corner_pool": args.corner_pool,
        "export.precision": args.precision,
    }
    return [f"{key}={value}" for key, value in flags.items() if value is not None]


MIN_CALIBRATION_IMAGES = 8  # fewer cannot give activation ranges worth an export
LARGE_NETWORK_PARAMETERS = 10_000_000  # from here the export says the memory a conversion needs
GB = 1e9


def calibration_folder(source: str, config: Config) -> pathlib.Path:
    """--representative_images: a folder, or "val" for the images folder of the config's val split."""
    if source == "val":
        from cornernet_tf.data.pipeline import CocoFiles
        from cornernet_tf.tasks.data import split_files

        files = split_files(config, "val")
        if not isinstance(files, CocoFiles):
            raise ValueError("--representative_images val: the val split is TFRecords; give a folder of images instead")
        return pathlib.Path(files.images)
    folder = pathlib.Path(source).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"--representative_images {source}: no such folder (give a folder of images, or val)")
    return folder


def representative_images(
    folder: pathlib.Path, image_size: tuple[int, int], count: int
) -> tuple[np.ndarray, list[str]]:
    """Up to `count` images of `folder` (searched recursively, a fixed pseudo-random choice),
    EXIF-oriented and resized to `image_size` (H, W), as uint8 [N, H, W, 3]; and the files that
    could not be read ("path: reason"), which are skipped.

    Raises:
        ValueError: Fewer than min(count, MIN_CALIBRATION_IMAGES) images are usable.
    """
    import cv2  # imported here: only calibration resizes on the host

    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    files = [files[i] for i in np.random.default_rng(0).permutation(len(files))]
    height, width = image_size
    images, unusable = [], []
    for path in files:
        if len(images) == count:
            break
        try:
            pixels = load_image(path)
        except (image_header.UnreadableImageError, image_header.UndecodableImageError) as err:
            unusable.append(str(err))
            continue
        images.append(cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA))
    needed = min(count, MIN_CALIBRATION_IMAGES)
    if len(images) < needed:
        raise ValueError(
            f"--representative_images {folder}: {len(images)} usable image(s) of {len(files)} "
            f"({', '.join(IMAGE_EXTENSIONS)}; {len(unusable)} unreadable), calibration needs at least {needed}"
        )
    return np.stack(images), unusable


def _print_progress(done: int, total: int) -> None:
    """One line per calibration batch on a terminal (rewritten in place), else at the end."""
    if sys.stdout.isatty():
        print(f"\rcalibrating: {done}/{total} images", end="" if done < total else "\n", flush=True)
    elif done == total:
        print(f"calibrated on {total} images")


def _batch_size(text: str) -> int | None:
    """--batch_size: a positive integer, or "dynamic" (None)."""
    if text == "dynamic":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'dynamic', got {text!r}")
    return int(text)


def _check_format_flags(args: argparse.Namespace, config: Config) -> None:
    """Refuse portable-only flags on a SavedModel and what a portable format cannot hold."""
    if args.format == "saved_model" and args.network_only:
        raise ValueError(
            "--network_only is for --format tflite / onnx (a fixed-size file of the network alone); a SavedModel "
            "holds the whole detector"
        )
    if args.format == "saved_model":
        portable_only = (args.quantize != "none", args.image_size is not None, args.batch_size != 1)
        if any(portable_only) or args.representative_images is not None:
            raise ValueError(
                "--quantize, --image_size, --batch_size and --representative_images are for --format tflite / onnx"
            )
        return
    if config.export.precision != "float32":
        raise ValueError(
            f"--precision {config.export.precision} is for --format saved_model; a {args.format} export is "
            f"made smaller and faster with --quantize"
        )
    from cornernet_tf.portable import check_request  # imported here: the portable formats are extras

    calibrated = args.representative_images is not None
    check_request(args.format, args.quantize, args.batch_size, config.export.corner_pool, calibrated=calibrated)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.export", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config",
        default=None,
        help=f"YAML file or bundled name (default: the run's {SAVED_CONFIG} beside --weights or above it)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help=cli.WEIGHTS_HELP)
    source.add_argument("--random_weights", action="store_true", help="export an untrained model (tests, demos)")
    parser.add_argument("--export_dir", required=True, help="model base path; the export is <export_dir>/<version>")
    parser.add_argument("--version", type=int, default=None, help="default: highest existing version + 1, or 1")
    cli.add_override_flag(parser, "detection.test_mode=resize")
    cli.add_flip_flag(parser, "also run mirrored images (default detection.flip)")
    parser.add_argument("--score_threshold", type=float, default=None, help="default detection.score_threshold")
    parser.add_argument("--max_detections", type=int, default=None, help="default detection.max_detections")
    parser.add_argument(
        "--corner_pool",
        choices=("vectorized", "scan", "op"),
        default=None,
        help="default export.corner_pool (vectorized: runs on a stock TF Serving)",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default=None,
        help="default export.precision; bfloat16: the network computes in bfloat16 (decoding in float32), "
        "for GPUs, TPUs and CPUs with bfloat16 units (AVX512-BF16, AMX)",
    )
    portable = parser.add_argument_group("portable formats (docs/export_and_serving.md)")
    portable.add_argument(
        "--format",
        choices=("saved_model", "tflite", "onnx"),
        default="saved_model",
        help="saved_model (default): TF Serving; tflite / onnx: the tensor signature at a "
        "fixed image size, written as <version>/model.<format> and export_info.json",
    )
    portable.add_argument(
        "--quantize",
        choices=("none", "fp16", "int8"),
        default="none",
        help="tflite only: float16 weights, or int8 weights (dynamic range)",
    )
    portable.add_argument(
        "--batch_size",
        type=_batch_size,
        default=1,
        metavar="N|dynamic",
        help="fixed batch of the tflite / onnx input (default 1); onnx also takes dynamic",
    )
    portable.add_argument(
        "--image_size",
        type=int,
        nargs=2,
        default=None,
        metavar=("HEIGHT", "WIDTH"),
        help="fixed size of the tflite / onnx input images (default data.input_size)",
    )
    portable.add_argument(
        "--representative_images",
        default=None,
        metavar="DIR|val",
        help="onnx --quantize int8: calibrate on the images of DIR (or of the config's val split)",
    )
    portable.add_argument(
        "--calibration_images",
        type=int,
        default=100,
        metavar="N",
        help="how many representative images to calibrate on (default 100)",
    )
    portable.add_argument(
        "--network_only",
        action="store_true",
        help="write the network alone (TensorRT's trtexec, custom decoders): uint8 RGB images in (resize or pad "
        "and normalization still inside), the network's maps out by name (heatmaps as logits, before the "
        "sigmoid), no decoding or soft-NMS; export_info.json states how to decode them",
    )
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


def _config_path(args: argparse.Namespace) -> str:
    """--config, else the config of --weights' run; random weights belong to no run."""
    if args.random_weights and args.config is None:
        raise ConfigError("--random_weights needs --config (the YAML or bundled name of the network to export)")
    return config_for_weights(args.config, args.weights)


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.weights is not None:
        args.weights = pretrained.resolve(args.weights, args.config)
    config = load_config(_config_path(args), [*args.overrides, *flag_overrides(args)])
    corner_pool = config.export.corner_pool
    _check_format_flags(args, config)
    if corner_pool == "op" and not compiled_available():
        raise ValueError(
            "--corner_pool op: the compiled corner-pool library is not available; build it "
            "(pip install -e .) or export with --corner_pool vectorized"
        )
    keras.utils.set_random_seed(config.train.seed)
    model = export_network(config)
    if args.random_weights:
        print("WARNING: --random_weights: exporting an UNTRAINED model; its detections are noise", file=sys.stderr)
    else:
        print(f"loaded weights {load_weights(model, args.weights)}")
    if args.format != "saved_model":
        _say_memory_needed(args.format, args.quantize, model.count_params())
        calibration = None
        if args.representative_images is not None:
            folder = calibration_folder(args.representative_images, config)
            image_size = tuple(args.image_size or config.data.input_size)
            calibration, unusable = representative_images(folder, image_size, args.calibration_images)
            print(
                f"calibration: {len(calibration)} images of {folder}"
                + (f"; {len(unusable)} unreadable, skipped: {'; '.join(unusable[:5])}" if unusable else "")
            )
        target = export_portable(
            model,
            config,
            args.export_dir,
            args.format,
            args.quantize,
            args.batch_size,
            args.image_size,
            args.version,
            representative_images=calibration,
            on_progress=_print_progress,
            network_only=args.network_only,
        )
        print(
            f"exported {config.name} to {target}: {args.format}{', network only' if args.network_only else ''}, "
            f"quantization {args.quantize}, batch {args.batch_size or 'dynamic'}; corner pool {corner_pool}"
        )
        if args.quantize == "int8":
            _say_where_int8_pays(args.format)
        return 0
    target = export_model(model, config, args.export_dir, args.version)
    print(
        f"exported {config.name} to {target}: signatures serving_default, serving_tensor; corner pool {corner_pool}, "
        f"computing in {config.export.precision}"
    )
    if config.export.precision == "bfloat16" and not any(tf.config.list_logical_devices(k) for k in ("GPU", "TPU")):
        if runtime.cpu_bfloat16_units() is None:
            print(
                "warning: this CPU has no bfloat16 units (AVX512-BF16 or AMX): here bfloat16 is emulated and slower "
                "than float32; serve this export on a CPU with them, a GPU or a TPU",
                file=sys.stderr,
            )
    if corner_pool == "op":
        print(
            "the export uses the compiled corner-pool op: loaders must call cornernet_tf.ops.compiled.load_library() "
            "first, and a stock TF Serving cannot load it"
        )
    return 0


def _say_where_int8_pays(fmt: str) -> None:
    """After an int8 export on a CPU without 8-bit dot-product units (VNNI, AMX), what the file
    gains here: what it gains depends on the CPU and the runtime (docs/benchmarks.md, "int8 on
    every CPU"), and the file is the same for every CPU."""
    if runtime.cpu_int8_units() is not None:
        return
    if fmt == "tflite":
        print(
            "warning: this CPU has no int8 dot-product units (VNNI or AMX): LiteRT's int8 kernels run here at about "
            "the speed of float32 (0.9-1.1x measured on an AVX2-only AMD Zen 3, 0.25-0.4x with VNNI; "
            "docs/export_and_serving.md); serve this file on a CPU with them, or here export --format onnx "
            "--quantize int8 (onnxruntime's int8: 0.5-0.8x its float file on that Zen 3)",
            file=sys.stderr,
        )
    else:
        print(
            "this CPU has no int8 dot-product units (VNNI or AMX): onnxruntime's int8 measured 0.5-0.8x the float "
            "file's time on such a CPU (an AVX2-only AMD Zen 3), 0.3-0.7x on one with VNNI (docs/export_and_serving.md)"
        )


def _say_memory_needed(fmt: str, quantize: str, parameters: int) -> None:
    """Before a large network's conversion: the memory it is expected to need, and a warning
    when this machine has less available, rather than a conversion killed for memory later."""
    if parameters < LARGE_NETWORK_PARAMETERS:
        return
    needed, available = conversion_memory(fmt, quantize, parameters), runtime.available_memory()
    print(
        f"converting {parameters / 1e6:.0f} M parameters to {fmt} needs about {needed / GB:.1f} GB of memory "
        "beyond what this process holds"
        + ("" if available is None else f"; this machine has {available / GB:.1f} GB available")
    )
    if available is not None and available < needed:
        print(
            f"warning: the {fmt} conversion may be killed for lack of memory ({needed / GB:.1f} GB needed, "
            f"{available / GB:.1f} GB available): close other programs or export on a machine with more memory",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
