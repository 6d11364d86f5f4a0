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
config.yaml: the resolved config), whole or not at all (`model_versions.write_version`); an
existing version is never overwritten. The graph and its signatures are
`detection_module.DetectionModule`'s: the run's `detection` settings, those evaluation measures
with (--flip, --score_threshold and --max_detections override them). The corner pool baked in is
export.corner_pool: "vectorized" (default) and "scan" are plain TF ops a stock TF Serving runs;
"op" needs `cornernet_tf.ops.compiled.load_library()` in the loading process first.
"""

from __future__ import annotations

import argparse
import sys

import keras

from cornernet_tf import cli
from cornernet_tf.config import Config, ConfigError, load_config
from cornernet_tf.ops.corner_pool import compiled_available
from cornernet_tf.tasks.export import export_model, export_portable
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.checkpoint import SAVED_CONFIG, config_for_weights, load_weights


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The export flags as `section.key=value` overrides, applied after --set (flags win)."""
    flags = {
        "detection.flip": None if args.flip is None else str(args.flip).lower(),
        "detection.score_threshold": args.score_threshold,
        "detection.max_detections": args.max_detections,
        "export.corner_pool": args.corner_pool,
    }
    return [f"{key}={value}" for key, value in flags.items() if value is not None]


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

    check_request(args.format, args.quantize, args.batch_size, config.export.corner_pool)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.export", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config",
        default=None,
        help=f"YAML file or bundled name (default: the run's {SAVED_CONFIG} beside --weights or above it)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help=".weights.h5 file, model_dir, checkpoints folder or checkpoint prefix")
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
    config = load_config(_config_path(args), [*args.overrides, *flag_overrides(args)])
    corner_pool = config.export.corner_pool
    _check_format_flags(args, config)
    if corner_pool == "op" and not compiled_available():
        raise ValueError(
            "--corner_pool op: the compiled corner-pool library is not available; build it "
            "(pip install -e .) or export with --corner_pool vectorized"
        )
    keras.utils.set_random_seed(config.train.seed)
    model = build_model(config.model, corner_pool=corner_pool)
    if args.random_weights:
        print("WARNING: --random_weights: exporting an UNTRAINED model; its detections are noise", file=sys.stderr)
    else:
        print(f"loaded weights {load_weights(model, args.weights)}")
    if args.format != "saved_model":
        target = export_portable(
            model, config, args.export_dir, args.format, args.quantize, args.batch_size, args.image_size, args.version
        )
        print(
            f"exported {config.name} to {target}: {args.format}, quantization {args.quantize}, batch "
            f"{args.batch_size or 'dynamic'}; corner pool {corner_pool}"
        )
        return 0
    target = export_model(model, config, args.export_dir, args.version)
    print(f"exported {config.name} to {target}: signatures serving_default, serving_tensor; corner pool {corner_pool}")
    if corner_pool == "op":
        print(
            "the export uses the compiled corner-pool op: loaders must call cornernet_tf.ops.compiled.load_library() "
            "first, and a stock TF Serving cannot load it"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
