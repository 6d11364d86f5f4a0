"""Evaluate a CornerNet on a split with the 12 COCO metrics, with optional flip / multi-scale test.

CLI: `python -m cornernet_tf.evaluate --weights W [--config C] [--set key=value ...]
[--flip/--no-flip] [--scales 0.5,0.75,1,1.25,1.5] [--max_images N] [--split val]
[--results out.json] [--metrics metrics.json] [--visualize DIR] [--plots DIR] [--verbose]`. W is a Keras `.weights.h5`
(`model.save_weights`, `python -m cornernet_tf.convert`), a training model_dir (its latest
checkpoint under `checkpoints/`), a checkpoints folder or a checkpoint prefix. Without --config,
the run's saved `config.yaml` beside W or above it is used (`checkpoint.find_saved_config`); when
there is none the command fails and asks for --config.

Decoding follows the config's `detection` section (what export serves); test scales other than 1
use the original "pad" transform whatever detection.test_mode says. The work is
`tasks.evaluation.evaluate_model`.
"""

from __future__ import annotations

import argparse
import sys

from cornernet_tf.api import pretrained
from cornernet_tf.config import load_config
from cornernet_tf.tasks.evaluation import evaluate_model
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.checkpoint import SAVED_CONFIG, config_for_weights, load_weights
from cornernet_tf.utils import cli
from cornernet_tf.utils.coco_metrics import format_metrics, write_json


def _scales(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales wants numbers separated by commas, got {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True, help=cli.WEIGHTS_HELP)
    parser.add_argument(
        "--config",
        default=None,
        help=f"YAML file or bundled name (default: the run's {SAVED_CONFIG} beside --weights or above it)",
    )
    cli.add_override_flag(parser, "detection.k=50")
    cli.add_flip_flag(parser, "also test mirrored images (default detection.flip)")
    parser.add_argument(
        "--scales", type=_scales, default=None, help="test scales, e.g. 0.5,0.75,1,1.25,1.5 (default detection.scales)"
    )
    parser.add_argument("--max_images", type=int, default=None, help="evaluate the first N images (0 = all)")
    parser.add_argument("--split", choices=("train", "val"), default="val")
    parser.add_argument("--batch_size", type=int, default=1, help="images per batch (1 = the original)")
    parser.add_argument("--results", default=None, help="write COCO results json here")
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="FILE",
        help="write the metrics (the 12 numbers, image counts, AP and AP50 per class) as json here",
    )
    parser.add_argument("--visualize", default=None, metavar="DIR", help="write PNGs of detections here")
    parser.add_argument("--num_visualize", type=int, default=8, help="how many images --visualize draws")
    parser.add_argument(
        "--plots",
        default=None,
        metavar="DIR",
        help="write precision-recall curves (per class, IoU 0.5 and 0.5:0.95) and the confusion matrix here",
    )
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.weights = pretrained.resolve(args.weights, args.config)
    config = load_config(config_for_weights(args.config, args.weights), args.overrides)
    model = build_model(config.model)
    print(f"loaded weights {load_weights(model, args.weights)}")
    metrics, _ = evaluate_model(
        model,
        config,
        split=args.split,
        flip=args.flip,
        scales=args.scales,
        max_images=args.max_images,
        results_path=args.results,
        visualize_dir=args.visualize,
        num_visualize=args.num_visualize,
        batch_size=args.batch_size,
        plots_dir=args.plots,
    )
    print(format_metrics(metrics))
    if args.plots:
        print(f"plots: {args.plots}")
    if args.results:
        print(f"results: {args.results}")
    if args.metrics:
        print(f"metrics: {write_json(args.metrics, metrics, indent=2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
