"""Look at a config's dataset before training on it: counts, box statistics and augmented samples.

CLI: `python -m cornernet_tf.data.inspect --config C [--set key=value ...] [--out DIR]
[--splits train val] [--samples 16] [--seed S]` reads each split of data.dataset (shapes, coco,
voc, yolo or tfrecord) and writes into DIR (default `inspect_<config name>`):

- `summary.txt` (also printed) and `summary.json`: images (listed, usable, skipped by reason),
  boxes (kept, skipped by reason), every count of the reader, per class the images containing it
  and its boxes, COCO's small / medium / large boxes and boxes per image;
- `<split>_box_size.png`, `<split>_aspect_ratio.png`, `<split>_boxes_per_image.png`: histograms
  of sqrt(w * h) in image px (log-spaced bins, COCO's limits 32 and 96 marked), of w / h
  (log-spaced) and of the boxes per image;
- `train_augmented.png`: the first `--samples` samples of the training stream as the network sees
  them (data.input_size, scale and crop, flip, colour jitter, lighting; de-normalized), their boxes
  drawn in the class colours. The stream is the one training draws, keyed by `--seed` (default
  data.seed), so the picture is the same for a seed and shows what a run with that seed sees first.

Why: the faults of a dataset (missing images, dropped boxes, a rare class, objects too small for
the input size, an augmentation that crops the objects away) cost a training run when they are
found from its loss curve; here they cost a minute. The counts are the readers' own
(`coco.CocoSource.counts`, or a TFRecord set's sidecar), never recounted, so they are what
training and evaluation go by. The box statistics describe the boxes the pipeline trains on: those
of the usable images (for TFRecords, read from the records). Charts are drawn with OpenCV, as
`utils.eval_plots` draws its own: the package has no plotting dependency.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import tensorflow as tf

from cornernet_tf.config import Config, load_config
from cornernet_tf.data import coco, pipeline, tfrecord
from cornernet_tf.tasks import data as data_tasks
from cornernet_tf.utils import cli
from cornernet_tf.utils.files import atomic_write_text
from cornernet_tf.utils.visualize import class_color, draw_legend, save_png

# The reader's counts (`coco.COUNT_KEYS`) that leave out an image or a box; the others (images
# without boxes, reoriented or clipped ones, ...) are notes about what is kept.
IMAGE_SKIPS = ("unreadable_annotation_files", "unreadable_images", "undecodable_images", "size_mismatch_images")
BOX_SKIPS = (
    "crowd_boxes",
    "unknown_category_boxes",
    "degenerate_boxes",
    "outside_boxes",
    "malformed_boxes",
    "malformed_label_lines",
)
COCO_SIZE_LIMITS = (32, 96)  # sqrt(area) px: small < 32 <= medium < 96 <= large
_BINS_PER_OCTAVE = 4
_MAX_BARS = 100
_PROGRESS_EVERY = 5000  # records

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_CHART_W, _CHART_H = 800, 480
_LEFT, _TOP, _RIGHT, _BOTTOM = 70, 50, 770, 410  # the plot area in the chart
_BLACK, _GRID_GREY = (0, 0, 0), (225, 225, 225)
_BAR, _MARK = (70, 130, 180), (200, 30, 30)
_TILE_GAP = 4

Progress = Callable[[str], None]


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _histogram(values: np.ndarray, edges: np.ndarray) -> dict:
    return {"edges": edges.tolist(), "counts": np.histogram(values, edges)[0].tolist()}


def _log_edges(low: float, high: float) -> np.ndarray:
    """Edges 2**(k / 4) over the whole octaves from 2**low to 2**high."""
    return 2.0 ** (np.arange(low * _BINS_PER_OCTAVE, high * _BINS_PER_OCTAVE + 1) / _BINS_PER_OCTAVE)


def box_statistics(boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray], class_names: Sequence[str]) -> dict:
    """Per class the images containing it and its boxes, COCO size buckets and the three
    histograms, of the boxes [N_i, 4] (x1, y1, x2, y2, image px) and classes [N_i] of each image.

    The size axis always spans 16..128 px so that COCO's limits show; the aspect-ratio axis is
    symmetric around 1.
    """
    flat = np.concatenate([np.zeros((0, 4)), *boxes]).astype(np.float64)
    labels = np.concatenate([np.zeros(0, np.int64), *classes]).astype(np.int64)
    per_image = np.array([len(b) for b in boxes], np.int64)
    width, height = flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]
    area = width * height
    log_size = np.log2(np.sqrt(area))
    low, high = math.floor(log_size.min(initial=4.0)), math.ceil(log_size.max(initial=7.0))
    reach = math.ceil(np.abs(np.log2(width / height)).max(initial=1.0))
    step = max(1, math.ceil((per_image.max(initial=0) + 1) / _MAX_BARS))
    images_with = np.zeros(len(class_names), np.int64)
    for image_classes in classes:
        images_with[np.unique(image_classes)] += 1
    small, medium = COCO_SIZE_LIMITS
    return {
        "classes": [
            {"name": name, "images": int(images), "boxes": int(count)}
            for name, images, count in zip(class_names, images_with, np.bincount(labels, minlength=len(class_names)))
        ],
        "box_size": {
            "small": int((area < small**2).sum()),
            "medium": int(((area >= small**2) & (area < medium**2)).sum()),
            "large": int((area >= medium**2).sum()),
            **_histogram(np.sqrt(area), _log_edges(low, high)),
        },
        "aspect_ratio": _histogram(width / height, _log_edges(-reach, reach)),
        "boxes_per_image": {
            "mean": float(per_image.mean()) if len(per_image) else 0.0,
            "max": int(per_image.max(initial=0)),
            # bins of whole counts, a count in the middle of its bar when a bar is one count
            **_histogram(per_image, np.arange(0, per_image.max(initial=0) + step + 1, step) - 0.5),
        },
    }


def _report(
    source: str,
    listed: int,
    usable: int,
    kept: int,
    counts: dict[str, int],
    boxes: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    class_names: Sequence[str],
) -> dict:
    return {
        "source": source,
        "images": {"listed": listed, "usable": usable, "skipped": {key: counts[key] for key in IMAGE_SKIPS}},
        "boxes": {"kept": kept, "skipped": {key: counts[key] for key in BOX_SKIPS}},
        "counts": dict(counts),
        **box_statistics(boxes, classes, class_names),
    }


def inspect_split(source: coco.CocoSource) -> dict:
    """The report of a split read by an annotation reader (COCO json, VOC, YOLO, shapes).

    "images": listed (the split's images, including those whose annotation file could not be
    read), usable (what the pipeline trains on), skipped {reason: count}; "boxes": kept (on usable
    images), on_skipped_images, skipped {reason: count}; "counts": the reader's `counts`; then
    `box_statistics` of the usable images.
    """
    rows = source.usable_rows
    boxes = [source.boxes[row] for row in rows]
    kept = sum(len(b) for b in boxes)
    report = _report(
        source.annotations,
        len(source) + source.counts["unreadable_annotation_files"],
        len(rows),
        kept,
        source.counts,
        boxes,
        [source.classes[row] for row in rows],
        source.class_names,
    )
    report["boxes"]["on_skipped_images"] = source.num_boxes - kept
    return report


def inspect_records(pattern: str, progress: Progress = _to_stderr) -> dict:
    """The report of a TFRecord set (as `inspect_split`, without boxes on skipped images, which
    the records do not hold): the counts are its sidecar's, the box statistics those of its
    records (`tfrecord.parse_example`). `progress` gets a line every few thousand records."""
    meta = tfrecord.read_sidecar(pattern)
    counts = {**dict.fromkeys(coco.COUNT_KEYS, 0), **meta.get("counts", {})}

    def boxes_of(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        example = tfrecord.parse_example(serialized)
        return example["boxes"], example["classes"]

    records = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))).map(
        boxes_of, num_parallel_calls=tf.data.AUTOTUNE
    )
    boxes, classes = [], []
    for boxes_i, classes_i in records.as_numpy_iterator():
        boxes.append(boxes_i)
        classes.append(classes_i)
        if len(boxes) % _PROGRESS_EVERY == 0:
            progress(f"inspect: {pattern}: {len(boxes)}/{meta['num_examples']} records")
    listed = len(tfrecord.split_image_ids(meta)) + counts["unreadable_annotation_files"]
    return _report(
        pattern, listed, meta["num_examples"], meta["num_boxes"], counts, boxes, classes, meta["class_names"]
    )


def inspect_files(files: pipeline.SplitFiles, progress: Progress = _to_stderr) -> dict:
    """`inspect_records` of a TFRecord set, else `inspect_split` of the annotation source."""
    if isinstance(files, pipeline.TFRecordFiles):
        return inspect_records(files.pattern, progress)
    return inspect_split(pipeline.annotated_source(files))


def _words(key: str) -> str:
    return key.replace("_", " ")


def format_table(reports: dict[str, dict]) -> str:
    """The reports of the splits side by side, one column each, after a line naming each split's
    source; a reason to skip or a note that is zero in every split is left out."""
    values = list(reports.values())

    def nonzero(rows: list[tuple[str, list]]) -> list[tuple[str, list]]:
        return [row for row in rows if any(value not in (0, "-") for value in row[1])]

    notes = [key for key in coco.COUNT_KEYS if key not in IMAGE_SKIPS + BOX_SKIPS]
    rows = [
        ("", list(reports)),
        ("images listed", [r["images"]["listed"] for r in values]),
        ("  usable", [r["images"]["usable"] for r in values]),
        *nonzero([(f"  skipped: {_words(k)}", [r["images"]["skipped"][k] for r in values]) for k in IMAGE_SKIPS]),
        ("boxes kept (on usable images)", [r["boxes"]["kept"] for r in values]),
        *nonzero([("  on skipped images", [r["boxes"].get("on_skipped_images", "-") for r in values])]),
        *nonzero([(f"  skipped: {_words(k)}", [r["boxes"]["skipped"][k] for r in values]) for k in BOX_SKIPS]),
        *nonzero([(f"note: {_words(k)}", [r["counts"].get(k, 0) for r in values]) for k in notes]),
    ]
    small, medium = COCO_SIZE_LIMITS
    for bucket, limits in (("small", f"< {small}"), ("medium", f"{small}-{medium}"), ("large", f">= {medium}")):
        rows.append((f"{bucket} boxes, sqrt(w*h) {limits} px", [r["box_size"][bucket] for r in values]))
    per_image = [r["boxes_per_image"] for r in values]
    rows.append(("boxes per image: mean / max", [f"{p['mean']:.2f} / {p['max']}" for p in per_image]))
    rows.append(("class: images / boxes", [""] * len(values)))
    by_split = [{c["name"]: f"{c['images']} / {c['boxes']}" for c in r["classes"]} for r in values]
    names = list(dict.fromkeys(name for classes in by_split for name in classes))
    rows += [(f"  {name}", [classes.get(name, "-") for classes in by_split]) for name in names]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(str(cells[column])) for _, cells in rows) for column in range(len(values))]
    lines = [f"{split}: {r['source']}" for split, r in reports.items()]
    for label, cells in rows:
        line = label.ljust(label_width) + "".join(f"  {str(c).rjust(w)}" for c, w in zip(cells, widths))
        lines.append(line.rstrip())
    return "\n".join(lines)


def _nice_step(span: float, most: int) -> float:
    """The smallest 1, 2 or 5 x 10^k step that cuts `span` (> 0) into at most `most` parts."""
    raw = span / most
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.45, align: float = 0.0) -> None:
    """Text with its baseline at `origin`, shifted left by `align` (0.5: centred, 1: right-aligned) of its width."""
    shift = int(align * cv2.getTextSize(text, _FONT, scale, 1)[0][0])
    cv2.putText(canvas, text, (origin[0] - shift, origin[1]), _FONT, scale, _BLACK, 1, cv2.LINE_AA)


def draw_histogram(
    histogram: dict, title: str, x_label: str, y_label: str, log_x: bool, marks: Sequence[float] = ()
) -> np.ndarray:
    """A bar chart of {"edges", "counts"} (uint8 RGB), the x axis in log2 when `log_x`, with a
    vertical line at each value of `marks`."""
    edges, counts = np.asarray(histogram["edges"], np.float64), np.asarray(histogram["counts"])
    scale = np.log2 if log_x else np.asarray
    low, high = float(scale(edges[0])), float(scale(edges[-1]))

    def x_of(value: float) -> int:
        return int(round(_LEFT + (float(scale(value)) - low) / (high - low) * (_RIGHT - _LEFT)))

    step = max(1, int(_nice_step(max(int(counts.max(initial=0)), 1), 5)))
    y_max = step * math.ceil(max(int(counts.max(initial=0)), 1) / step)

    def y_of(count: float) -> int:
        return int(round(_BOTTOM - count / y_max * (_BOTTOM - _TOP)))

    canvas = np.full((_CHART_H, _CHART_W, 3), 255, np.uint8)
    for value in range(0, y_max + 1, step):
        cv2.line(canvas, (_LEFT, y_of(value)), (_RIGHT, y_of(value)), _GRID_GREY, 1)
        _put_text(canvas, str(value), (_LEFT - 8, y_of(value) + 5), align=1.0)
    for left, right, count in zip(edges[:-1], edges[1:], counts):
        if count:
            cv2.rectangle(
                canvas, (x_of(left) + 1, y_of(count)), (max(x_of(right) - 1, x_of(left) + 1), _BOTTOM), _BAR, -1
            )
    cv2.line(canvas, (_LEFT, _TOP), (_LEFT, _BOTTOM), _BLACK, 1)
    cv2.line(canvas, (_LEFT, _BOTTOM), (_RIGHT, _BOTTOM), _BLACK, 1)
    if log_x:
        ticks = 2.0 ** np.arange(math.ceil(low), math.floor(high) + 1)
    else:
        tick_step = max(1, int(_nice_step(high - low, 12)))
        ticks = np.arange(math.ceil(low / tick_step) * tick_step, high, tick_step)
    for tick in ticks:
        cv2.line(canvas, (x_of(tick), _BOTTOM), (x_of(tick), _BOTTOM + 5), _BLACK, 1)
        _put_text(canvas, f"{tick:g}", (x_of(tick), _BOTTOM + 20), align=0.5)
    for mark in marks:
        cv2.line(canvas, (x_of(mark), _TOP), (x_of(mark), _BOTTOM), _MARK, 1)
        cv2.putText(canvas, f"{mark:g}", (x_of(mark) + 3, _TOP + 14), _FONT, 0.45, _MARK, 1, cv2.LINE_AA)
    _put_text(canvas, title, (_LEFT, 25), scale=0.55)
    _put_text(canvas, y_label, (8, _TOP - 8))
    _put_text(canvas, x_label, ((_LEFT + _RIGHT) // 2, _BOTTOM + 50), align=0.5)
    if not counts.sum():
        _put_text(canvas, "nothing to count", ((_LEFT + _RIGHT) // 2, (_TOP + _BOTTOM) // 2), align=0.5)
    return canvas


def split_charts(split: str, report: dict) -> dict[str, np.ndarray]:
    """The three histograms of a split's report, by file name."""
    sizes = report["box_size"]
    small, medium = COCO_SIZE_LIMITS
    return {
        f"{split}_box_size.png": draw_histogram(
            sizes,
            f"{split}: box size, {sizes['small']} small, {sizes['medium']} medium, {sizes['large']} large",
            f"sqrt(width * height), image px (log scale; COCO's limits {small} and {medium} marked)",
            "boxes",
            log_x=True,
            marks=COCO_SIZE_LIMITS,
        ),
        f"{split}_aspect_ratio.png": draw_histogram(
            report["aspect_ratio"],
            f"{split}: box aspect ratio",
            "width / height (log scale)",
            "boxes",
            log_x=True,
            marks=(1,),
        ),
        f"{split}_boxes_per_image.png": draw_histogram(
            report["boxes_per_image"],
            f"{split}: boxes per usable image, mean {report['boxes_per_image']['mean']:.2f}",
            "boxes in the image",
            "images",
            log_x=False,
        ),
    }


def augmented_samples(config: Config, samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first `samples` samples of the config's training stream (`tasks.data.fit_dataset`:
    train_dataset's images, order and augmentation, not normalized): images uint8 [S, H, W, 3],
    boxes [S, M, 4] (x1, y1, x2, y2, input px) and classes [S, M], padding rows -1."""
    images, targets = next(iter(data_tasks.fit_dataset(config, "xyxy", batch_size=samples)))
    pixels = np.clip(np.round(images.numpy()), 0, 255).astype(np.uint8)  # colour jitter may overshoot
    return pixels, targets["boxes"].numpy(), targets["labels"].numpy()


def draw_grid(images: np.ndarray, boxes: np.ndarray, classes: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Images [S, H, W, 3] tiled in a square-ish grid with their boxes (rows of class -1 are
    padding) in the class colours, and a legend of the classes drawn (with their box counts) to its
    right."""
    count, height, width = images.shape[:3]
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.full(
        (rows * (height + _TILE_GAP) + _TILE_GAP, columns * (width + _TILE_GAP) + _TILE_GAP, 3), 128, np.uint8
    )
    thickness = max(1, min(height, width) // 256 + 1)
    for index, (image, image_boxes, image_classes) in enumerate(zip(images, boxes, classes)):
        tile = np.ascontiguousarray(image)
        for box, cls in zip(image_boxes, image_classes):
            if cls >= 0:
                x1, y1, x2, y2 = (int(round(float(v))) for v in box)
                cv2.rectangle(tile, (x1, y1), (x2, y2), class_color(int(cls)), thickness)
        top = _TILE_GAP + (index // columns) * (height + _TILE_GAP)
        left = _TILE_GAP + (index % columns) * (width + _TILE_GAP)
        grid[top : top + height, left : left + width] = tile
    drawn = classes[classes >= 0].tolist()
    if not drawn:
        return grid
    # draw_legend's corner panel, drawn on a black scratch canvas and cut to its extent
    scratch = np.zeros((max(grid.shape[0], 20 * len(set(drawn)) + 30), 600, 3), np.uint8)
    scratch = draw_legend(scratch, drawn, class_names)
    legend = scratch[:, max(np.flatnonzero(scratch.any(axis=(0, 2)))[0] - _TILE_GAP, 0) :]
    canvas = np.zeros((legend.shape[0], grid.shape[1] + legend.shape[1], 3), np.uint8)
    canvas[: grid.shape[0], : grid.shape[1]] = grid
    canvas[:, grid.shape[1] :] = legend
    return canvas


def augmented_grid(config: Config, samples: int, class_names: Sequence[str]) -> np.ndarray:
    """`draw_grid` of the `augmented_samples` of a config."""
    return draw_grid(*augmented_samples(config, samples), class_names)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.data.inspect", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="shapes_tiny", help="YAML file or bundled config name")
    cli.add_override_flag(parser, "data.voc_dir=~/VOCdevkit/VOC2007")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default inspect_<config name>)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], help="train and/or val (default both)")
    parser.add_argument("--samples", type=int, default=16, help="augmented training samples drawn (0: none)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the training stream drawn (default data.seed)")
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {args.samples}")
    unknown = [split for split in args.splits if split not in data_tasks.SPLITS]
    if unknown:  # before any split is read (or generated)
        raise ValueError(f"--splits takes {' and/or '.join(data_tasks.SPLITS)}, got {unknown}")
    seed = [] if args.seed is None else [f"data.seed={args.seed}"]
    # a deterministic stream, so that the grid is a function of the seed
    config = load_config(args.config, [*args.overrides, "data.deterministic=true", *seed])
    files = {split: data_tasks.split_files(config, split) for split in dict.fromkeys(args.splits)}
    out = pathlib.Path(args.out or f"inspect_{config.name}")
    reports = {}
    for split, where in files.items():
        _to_stderr(f"inspect: reading {split} ({config.data.dataset})")
        reports[split] = inspect_files(where)
    table = format_table(reports)
    print(table)
    atomic_write_text(out / "summary.txt", table + "\n")
    summary = {"config": config.name, "dataset": config.data.dataset, "seed": config.data.seed, "splits": reports}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    written = ["summary.txt", "summary.json"]
    for split, report in reports.items():
        for name, chart in split_charts(split, report).items():
            save_png(out / name, chart)
            written.append(name)
    if "train" in reports and args.samples:
        _to_stderr(f"inspect: drawing {args.samples} augmented training samples (seed {config.data.seed})")
        names = [c["name"] for c in reports["train"]["classes"]]
        save_png(out / "train_augmented.png", augmented_grid(config, args.samples, names))
        written.append("train_augmented.png")
    print(f"wrote {out}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
