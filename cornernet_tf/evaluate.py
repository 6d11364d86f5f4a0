"""Evaluate a CornerNet on a split with the 12 COCO metrics, with optional flip / multi-scale test.

CLI: `python -m cornernet_tf.evaluate --weights W [--config C] [--set key=value ...]
[--flip/--no-flip] [--scales 0.5,0.75,1,1.25,1.5] [--max_images N] [--split val]
[--results out.json] [--metrics metrics.json] [--visualize DIR] [--verbose]`. W is a Keras `.weights.h5`
(`model.save_weights`, `python -m cornernet_tf.convert`), a training model_dir (its latest
checkpoint under `checkpoints/`), a checkpoints folder or a checkpoint prefix. Without --config,
the run's saved `config.yaml` beside W or above it is used (`checkpoint.find_saved_config`); when
there is none the command fails and asks for --config.

Detections come from `inference.detect_multiscale`, the path export serves; test scales other
than 1 use the original "pad" transform whatever eval.test_mode says.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import time
from typing import Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from cornernet_tf import cli
from cornernet_tf.coco_metrics import (
    METRIC_NAMES,
    coco_metrics,
    detections_to_coco,
    format_metrics,
    write_json,
    write_results,
)
from cornernet_tf.config import Config, load_config
from cornernet_tf.data import image_info as info_lib
from cornernet_tf.data.pipeline import dataset_info, eval_dataset, eval_image_ids
from cornernet_tf.inference import DetectionSettings, Model, detect_multiscale
from cornernet_tf.models import build_model
from cornernet_tf.training.checkpoint import SAVED_CONFIG, config_for_weights, load_weights
from cornernet_tf.visualize import draw_detections, save_png

PROGRESS_EVERY_S = 5.0


def restore_image(image: np.ndarray, image_info: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The original image (approximately: resampled) from a normalized input [H, W, 3] and its
    image_info [6]: undo the normalization, then warp input px back to image px.

    Returns uint8 RGB [original_height, original_width, 3]; pixels the input never held are 0.
    """
    pixels = np.clip((np.asarray(image) * np.asarray(std) + np.asarray(mean)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    scale_y, scale_x, offset_y, offset_x, height, width = (float(v) for v in image_info)
    # pixel centres: input (x + 0.5) * scale + offset - 0.5 holds image pixel x
    to_input = np.array(
        [[scale_x, 0.0, 0.5 * scale_x + offset_x - 0.5], [0.0, scale_y, 0.5 * scale_y + offset_y - 0.5]]
    )
    return cv2.warpAffine(
        pixels, to_input, (int(round(width)), int(round(height))), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )


def _detector(model: Model, settings: DetectionSettings, num_scales: int):
    """`detect_multiscale` as one tf.function for any batch and image size (no retracing)."""
    spec = (tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, info_lib.IMAGE_INFO_SIZE]))
    return tf.function(lambda inputs: detect_multiscale(model, inputs, settings), input_signature=[[spec] * num_scales])


class _Progress:
    """Prints `images done / total, images/s` at most every PROGRESS_EVERY_S seconds, and at the end."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.start = self.last = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            print(f"{self.label}: {done}/{self.total} images, {rate:.1f} images/s", flush=True)


def evaluate_model(
    model: Model,
    config: Config,
    split: str = "val",
    flip: Optional[bool] = None,
    scales: Optional[Sequence[float]] = None,
    max_images: Optional[int] = None,
    results_path: Optional[str | os.PathLike] = None,
    visualize_dir: Optional[str | os.PathLike] = None,
    num_visualize: int = 8,
    batch_size: int = 1,
) -> tuple[dict[str, float], list[dict]]:
    """COCO metrics of `model` on `split`; returns (metrics, the COCO result records).

    metrics: the 12 COCO numbers (`METRIC_NAMES`), then "num_images" (scored) and
    "num_unusable_images" (of those, the ones that could not be read or decoded), then
    "AP/<class>" and "AP50/<class>" of every category (`coco_metrics.per_class_ap`); flat floats,
    so the trainer logs them all to TensorBoard and metrics.json.

    flip, scales, max_images default to config.eval (max_images 0 = all). Every scale runs its
    own `eval_dataset` over the same images; their detections are merged before soft-NMS.
    Metrics are computed against the split's annotations over every image of the split (the
    first max_images): an image that could not be read or decoded counts as an image without
    detections, so its ground truth stays in the metric, and the printed account says how many.
    `results_path` receives the records as COCO results json; `visualize_dir` PNGs of the first
    `num_visualize` images with their detections (drawn on the input nearest scale 1, mapped
    back to the original image). The original evaluates one image per batch (`batch_size` 1);
    larger pad-mode batches pad images to the batch's largest.
    """
    evaluation = dataclasses.replace(
        config.eval,
        flip=config.eval.flip if flip is None else flip,
        scales=list(config.eval.scales if scales is None else scales),
        max_images=config.eval.max_images if max_images is None else max_images,
    )
    evaluation.validate()
    config = dataclasses.replace(config, eval=evaluation)
    data, info = config.data, dataset_info(config, split)
    mode = evaluation.test_mode if evaluation.scales == [1.0] else "pad"
    if mode != evaluation.test_mode:
        print(f"test scales {evaluation.scales} use the 'pad' transform (eval.test_mode is {evaluation.test_mode!r})")
    datasets = [eval_dataset(config, split, batch_size, scale, mode) for scale in evaluation.scales]
    detector = _detector(model, DetectionSettings.from_eval_config(evaluation), len(datasets))
    shown = int(np.argmin([abs(scale - 1.0) for scale in evaluation.scales]))
    scored_ids = eval_image_ids(config, split)
    progress = _Progress(f"eval {split} ({'flip, ' if evaluation.flip else ''}scales {evaluation.scales})",
                         len(scored_ids))

    records: list[dict] = []
    image_ids: list[int] = []
    for batches in zip(*datasets):
        ids = batches[0][1]["image_id"].numpy()
        if any(not np.array_equal(meta["image_id"].numpy(), ids) for _, meta in batches[1:]):
            raise RuntimeError("the test scales' pipelines went out of step (different image ids in one batch)")
        dets = {key: value.numpy() for key, value in detector([(i, m["image_info"]) for i, m in batches]).items()}
        for row, image_id in enumerate(ids):
            boxes, scores, classes = (dets[key][row][dets["valid"][row]] for key in ("boxes", "scores", "classes"))
            records.extend(detections_to_coco(image_id, boxes, scores, classes, info.category_ids))
            if visualize_dir is not None and len(image_ids) < num_visualize:
                images, meta = batches[shown]
                picture = restore_image(images[row].numpy(), meta["image_info"][row].numpy(), data.mean, data.std)
                drawn = draw_detections(picture, boxes, scores, classes, info.class_names)
                save_png(pathlib.Path(visualize_dir) / f"{split}_{int(image_id)}.png", drawn)
            image_ids.append(int(image_id))
        progress.update(len(image_ids))
    progress.update(len(image_ids), final=True)
    if not image_ids:
        raise ValueError(f"no {split} image could be read; check the data paths of this config")
    print(_account(split, scored_ids, image_ids), flush=True)
    if results_path is not None:
        write_results(results_path, records)
    # pycocotools' loadRes adds keys to the records it is given: hand it copies
    metrics = coco_metrics(info.annotations, [dict(r) for r in records], image_ids=scored_ids, per_class=True)
    counts = {"num_images": len(scored_ids), "num_unusable_images": len(set(scored_ids) - set(image_ids))}
    summary = {name: metrics.pop(name) for name in METRIC_NAMES}
    return {**summary, **counts, **metrics}, records


def _account(split: str, scored_ids: Sequence[int], decoded_ids: Sequence[int]) -> str:
    """One line: how many images were scored, and which had no pixels to detect on."""
    unusable = sorted(set(scored_ids) - set(decoded_ids))
    line = f"eval {split}: {len(scored_ids)} images scored, {len(scored_ids) - len(unusable)} decoded"
    if not unusable:
        return line
    ids = ", ".join(str(i) for i in unusable[:10]) + (" ..." if len(unusable) > 10 else "")
    return f"{line}; {len(unusable)} could not be read or decoded and count as images without detections (ids {ids})"


def _scales(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales wants numbers separated by commas, got {text!r}") from None


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True, help=".weights.h5 file, model_dir, checkpoints folder or prefix")
    parser.add_argument("--config", default=None, help=f"YAML file or bundled name (default: the run's "
                        f"{SAVED_CONFIG} beside --weights or above it)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set eval.top_k=50 (repeatable)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="also test mirrored images (default eval.flip)")
    parser.add_argument("--scales", type=_scales, default=None, help="test scales, e.g. 0.5,0.75,1,1.25,1.5")
    parser.add_argument("--max_images", type=int, default=None, help="evaluate the first N images (0 = all)")
    parser.add_argument("--split", choices=("train", "val"), default="val")
    parser.add_argument("--batch_size", type=int, default=1, help="images per batch (1 = the original)")
    parser.add_argument("--results", default=None, help="write COCO results json here")
    parser.add_argument("--metrics", default=None, metavar="FILE",
                        help="write the metrics (the 12 numbers, image counts, AP and AP50 per class) as json here")
    parser.add_argument("--visualize", default=None, metavar="DIR", help="write PNGs of detections here")
    parser.add_argument("--num_visualize", type=int, default=8, help="how many images --visualize draws")
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


@cli.command
def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    config = load_config(config_for_weights(args.config, args.weights), args.overrides)
    model = build_model(config.model)
    print(f"loaded weights {load_weights(model, args.weights)}")
    metrics, _ = evaluate_model(
        model, config, split=args.split, flip=args.flip, scales=args.scales, max_images=args.max_images,
        results_path=args.results, visualize_dir=args.visualize, num_visualize=args.num_visualize,
        batch_size=args.batch_size,
    )
    print(format_metrics(metrics))
    if args.results:
        print(f"results: {args.results}")
    if args.metrics:
        print(f"metrics: {write_json(args.metrics, metrics, indent=2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
