"""Sharded TFRecords of a COCO-format dataset, for fast sequential reads and per-worker sharding.

Each record is one usable image: its encoded file bytes as they are on disk (never
re-encoded), COCO id, size, file name, EXIF orientation to apply, boxes (flattened x1, y1, x2,
y2 in image px, already filtered and clipped by `coco.load_coco`) and 0-based classes. Shards
are `NAME-00000-of-00008.tfrecord` in the output folder; a sidecar `NAME.json` keeps the class
names, COCO category ids, the source annotation file (for a split converted in memory, VOC or
YOLO, its ground truth written beside the shards as `NAME_ground_truth.json`, so evaluation of the
records has a json to score against), the ids of every image of the split, the
number of records per shard (the training pipeline needs them to resume mid-stream), the
counts and every image left out with its reason. Images are left out when the reader found
them unusable, and when their bytes fail to decode here (each is decoded once, so a truncated
JPEG never reaches a shard). Every file is written to a temporary name and renamed into place,
so a crashed run never leaves a truncated shard under a final name.

CLI:
    python -m cornernet_tf.data.tfrecord --coco ANNOTATIONS --images DIR --out DIR [--shards N]
    python -m cornernet_tf.data.tfrecord --shapes --out DIR [--shards N]   # both splits
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO

from cornernet_tf.data import coco
from cornernet_tf.utils import cli
from cornernet_tf.utils.files import atomic_path
from cornernet_tf.utils.write_errors import WRITE_ERRORS, reason

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: image/orientation, and image_ids + skipped in the sidecar
_SHARD_RE = re.compile(r"^(?P<name>.+)-\d{5}-of-\d{5}\.tfrecord$")
_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/id": tf.io.FixedLenFeature([], tf.int64),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/orientation": tf.io.FixedLenFeature([], tf.int64, default_value=1),
    "image/object/bbox": tf.io.VarLenFeature(tf.float32),
    "image/object/class": tf.io.VarLenFeature(tf.int64),
}


def serialize_example(
    encoded: bytes,
    image_id: int,
    height: int,
    width: int,
    filename: str,
    boxes: np.ndarray,
    classes: np.ndarray,
    orientation: int = 1,
) -> bytes:
    """One tf.train.Example.

    Args:
        encoded: The image file's bytes as they are on disk.
        image_id: COCO image id.
        height: Image height in pixels, as the annotations give it.
        width: Image width in pixels, as the annotations give it.
        filename: The image's file name.
        boxes: [N, 4] float32 (x1, y1, x2, y2) in image px.
        classes: [N] 0-based class indices.
        orientation: The EXIF orientation the pipeline applies after decoding (1: none).

    Returns:
        The serialized example, as `parse_example` reads it.
    """

    def feature(kind: str, values) -> tf.train.Feature:
        if kind == "bytes":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if kind == "float":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    features = {
        "image/encoded": feature("bytes", [encoded]),
        "image/id": feature("int", [int(image_id)]),
        "image/height": feature("int", [int(height)]),
        "image/width": feature("int", [int(width)]),
        "image/filename": feature("bytes", [filename.encode()]),
        "image/orientation": feature("int", [int(orientation)]),
        "image/object/bbox": feature("float", np.asarray(boxes, np.float32).reshape(-1).tolist()),
        "image/object/class": feature("int", np.asarray(classes, np.int64).reshape(-1).tolist()),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """A serialized record -> the pipeline's example structure.

    {"encoded": string, "image_id": int64, "orientation": int32, "boxes": [N, 4] float32,
    "classes": [N] int32}
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    return {
        "encoded": parsed["image/encoded"],
        "image_id": parsed["image/id"],
        "orientation": tf.cast(parsed["image/orientation"], tf.int32),
        "boxes": tf.reshape(tf.sparse.to_dense(parsed["image/object/bbox"]), [-1, 4]),
        "classes": tf.cast(tf.sparse.to_dense(parsed["image/object/class"]), tf.int32),
    }


def shard_paths(out_dir: str, name: str, num_shards: int) -> list[str]:
    """Final shard file names `out_dir/NAME-0000k-of-0000n.tfrecord`."""
    return [os.path.join(out_dir, f"{name}-{k:05d}-of-{num_shards:05d}.tfrecord") for k in range(num_shards)]


def sidecar_path(pattern: str) -> str:
    """The sidecar json of the shards matched by a file pattern (e.g. `out/train-*.tfrecord`)."""
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"no TFRecord files match {pattern!r}; write them with `python -m cornernet_tf.data.tfrecord`"
        )
    match = _SHARD_RE.match(os.path.basename(files[0]))
    if not match:
        raise ValueError(f"{files[0]!r} is not named NAME-00000-of-00008.tfrecord; cannot find its sidecar")
    return os.path.join(os.path.dirname(files[0]), match["name"] + ".json")


def read_sidecar(pattern: str) -> dict:
    """Class names, category ids, source annotations and counts of a TFRecord set."""
    path = sidecar_path(pattern)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"TFRecord sidecar {path!r} is missing; rewrite the shards")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def split_image_ids(meta: dict) -> list[int]:
    """The ids of every image of a TFRecord set's split, in id order (records hold only the
    usable ones); sidecars of format 1 lack them, so they are read from the annotation json."""
    if "image_ids" in meta:
        return list(meta["image_ids"])
    with tf.io.gfile.GFile(meta["annotations"]) as f:
        return sorted(int(image["id"]) for image in json.load(f)["images"])


def summary(pattern: str, meta: dict) -> str:
    """One line about a TFRecord set: records, images left out when it was written, boxes, classes."""
    skipped = len(meta.get("skipped", []))
    return (
        f"{pattern}: {meta['num_examples'] + skipped} images ({meta['num_examples']} usable, {skipped} skipped "
        f"when written), {meta['num_boxes']} boxes, {len(meta['class_names'])} classes"
    )


# the first two bytes of the formats `tf.io.decode_image` reads
_IMAGE_KINDS = {b"\xff\xd8": "JPEG", b"\x89P": "PNG", b"GI": "GIF", b"BM": "BMP", b"RI": "WebP"}


def _decode_failure(encoded: bytes, expected_size: tuple[int, int], orientation: int) -> str:
    """Why these bytes cannot train ("" when they decode to the expected stored size)."""
    try:
        shape = tuple(tf.io.decode_image(encoded, channels=3, expand_animations=False).shape[:2])
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        kind = _IMAGE_KINDS.get(encoded[:2], "image")
        log.info("undecodable %s data: %s", kind, err.message)  # TensorFlow's words, for whoever digs
        return f"undecodable (truncated or corrupt {kind} data)"
    stored = expected_size[::-1] if orientation in (5, 6, 7, 8) else expected_size
    if shape != tuple(stored):
        return f"size mismatch (decodes to {shape[1]}x{shape[0]}, expected {stored[1]}x{stored[0]})"
    return ""


def _write_shard(
    writer: tf.io.TFRecordWriter, source: coco.CocoSource, rows: np.ndarray, skipped: list[str], counts: dict
) -> tuple[int, int]:
    """Write the images of `rows` that decode to their json size; the others are named in
    `skipped` and counted in `counts`. Returns (examples, boxes) written."""
    examples = boxes = 0
    for row in rows:
        file_name = os.path.basename(source.image_paths[row])
        with tf.io.gfile.GFile(source.image_paths[row], "rb") as f:
            encoded = f.read()
        failure = _decode_failure(encoded, tuple(source.image_sizes[row]), int(source.orientation[row]))
        if failure:
            skipped.append(f"{file_name}: {failure}")
            counts["undecodable_images" if failure.startswith("undecodable") else "size_mismatch_images"] += 1
            continue
        height, width = source.image_sizes[row]
        writer.write(
            serialize_example(
                encoded,
                source.image_ids[row],
                height,
                width,
                file_name,
                source.boxes[row],
                source.classes[row],
                int(source.orientation[row]),
            )
        )
        examples += 1
        boxes += len(source.boxes[row])
    return examples, boxes


def write_tfrecords(
    source: coco.CocoSource,
    out_dir: str,
    name: str,
    num_shards: int = 8,
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[str]:
    """Write the usable images of `source` as `num_shards` (at most one per image) shards plus
    `NAME.json` (and `NAME_ground_truth.json` for a source converted in memory).

    Shards hold contiguous runs of images in id order. Each image is decoded once; one that
    fails (or decodes to another size) is left out, counted and named in the sidecar like the
    images the reader already found unusable. Stale shards of an earlier run with another shard
    count are removed.

    Args:
        source: The split, as `coco.load_coco` reads it.
        out_dir: Folder of the shards and the sidecar json (created if missing).
        name: Shard name prefix: `NAME-0000k-of-0000n.tfrecord` and `NAME.json`.
        num_shards: Shards wanted; fewer when the split has fewer usable images.
        progress: Called with one line after each shard, and once more naming the images left out.

    Returns:
        The shard paths.

    Raises:
        ValueError: `source` has no usable image.
    """
    usable = source.usable_rows
    if not len(usable):
        raise ValueError(f"{source.annotations}: no usable image to write ({source.summary()})")
    num_shards = max(1, min(num_shards, len(usable)))
    tf.io.gfile.makedirs(out_dir)
    paths = shard_paths(out_dir, name, num_shards)
    started, done = time.time(), 0
    skipped, written, num_boxes = list(source.problems), [], 0
    counts = dict(source.counts)
    try:
        # Shards, sidecar and ground truth are written under temporary names and renamed into place
        # once all are written, the sidecar last (an ExitStack exits in reverse); a failed write (a
        # full disk) removes them all and leaves the folder as it was.
        with contextlib.ExitStack() as stack:
            sidecar_temp = stack.enter_context(atomic_path(os.path.join(out_dir, f"{name}.json")))
            annotations = os.path.abspath(source.annotations)
            if isinstance(source.ground_truth, COCO):  # converted in memory: evaluation needs it as a file
                annotations = os.path.abspath(os.path.join(out_dir, f"{name}_ground_truth.json"))
                stack.enter_context(atomic_path(annotations)).write_text(json.dumps(source.ground_truth.dataset))
            for shard, (path, rows) in enumerate(zip(paths, np.array_split(usable, num_shards))):
                with tf.io.TFRecordWriter(str(stack.enter_context(atomic_path(path)))) as writer:
                    examples, boxes = _write_shard(writer, source, rows, skipped, counts)
                written.append(examples)
                num_boxes += boxes
                done += len(rows)
                rate = done / max(time.time() - started, 1e-9)
                progress(
                    f"tfrecord: {name} shard {shard + 1}/{num_shards}, {done}/{len(usable)} images ({rate:.0f} img/s)"
                )
            sidecar = {
                "format_version": FORMAT_VERSION,
                "class_names": source.class_names,
                "category_ids": source.category_ids,
                "annotations": annotations,
                "num_examples": sum(written),
                "num_boxes": num_boxes,
                "shard_sizes": {os.path.basename(p): count for p, count in zip(paths, written)},
                "counts": counts,
                "image_ids": source.image_ids.tolist(),
                "skipped": skipped,
            }
            sidecar_temp.write_text(json.dumps(sidecar, indent=1))
    except WRITE_ERRORS as err:
        raise OSError(
            f"could not write the {name} TFRecords in {out_dir} ({reason(err)}); nothing was written, the "
            f"folder is as it was"
        ) from None
    stale = set(tf.io.gfile.glob(os.path.join(out_dir, f"{name}-?????-of-?????.tfrecord"))) - set(paths)
    for path in stale:
        tf.io.gfile.remove(path)
    if skipped:
        progress(
            f"tfrecord: {name}: {len(skipped)} of {len(source)} images left out: "
            + "; ".join(skipped[:5])
            + (" ..." if len(skipped) > 5 else "")
            + f" (all in {name}.json)"
        )
    return paths


@cli.command
def main(argv: list[str] | None = None) -> None:
    from cornernet_tf.config import DataConfig

    defaults = DataConfig()
    parser = argparse.ArgumentParser(description="Write a COCO-format dataset as sharded TFRecords.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--coco", metavar="ANNOTATIONS", help="COCO instances json")
    what.add_argument("--shapes", action="store_true", help="the built-in shapes dataset (train and val)")
    parser.add_argument("--images", help="image folder of --coco")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--shards", type=int, default=8, help="number of shards per split (default 8)")
    parser.add_argument("--name", help="shard name prefix (default: the annotation file name)")
    parser.add_argument("--shapes-dir", default=defaults.shapes_dir)
    parser.add_argument("--shapes-train", type=int, default=defaults.shapes_train)
    parser.add_argument("--shapes-val", type=int, default=defaults.shapes_val)
    parser.add_argument("--shapes-image-size", type=int, default=defaults.shapes_image_size)
    cli.add_verbose_flag(parser)
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("--shards must be >= 1")
    if args.coco:
        if not args.images:
            parser.error("--coco needs --images (the folder holding the json's file_name entries)")
        jobs = [(args.name or os.path.splitext(os.path.basename(args.coco))[0], args.coco, args.images)]
    else:
        from cornernet_tf.data import shapes

        layout = shapes.ensure_dataset(args.shapes_dir, args.shapes_train, args.shapes_val, args.shapes_image_size)
        jobs = [(split, str(ann), str(images)) for split, (ann, images) in layout.items()]
    for name, annotations_path, images_dir in jobs:
        source = coco.load_coco(annotations_path, images_dir)
        print(source.summary(), file=sys.stderr)
        write_tfrecords(source, args.out, name, args.shards)
        pattern = f"{os.path.join(args.out, name)}-*.tfrecord"
        print(summary(pattern, read_sidecar(pattern)))


if __name__ == "__main__":
    sys.exit(main())
