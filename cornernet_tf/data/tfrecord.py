"""Sharded TFRecords of a COCO-format dataset, for fast sequential reads and per-worker sharding.

Each record is one image: its encoded file bytes as they are on disk (never re-encoded), COCO
id, size, file name, boxes (flattened x1, y1, x2, y2 in image px, already filtered and
clipped by `coco.load_coco`) and 0-based classes. Shards are `NAME-00000-of-00008.tfrecord`
in the output folder; a sidecar `NAME.json` keeps the class names, COCO category ids, the
source annotation file, the number of records per shard (the training pipeline needs them to
resume mid-stream) and the counts. Every file is written to a temporary name and renamed
into place, so a crashed run never leaves a truncated shard under a final name.

CLI:
    python -m cornernet_tf.data.tfrecord --coco ANNOTATIONS --images DIR --out DIR [--shards N]
    python -m cornernet_tf.data.tfrecord --shapes --out DIR [--shards N]   # both splits
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from cornernet_tf.data import coco

FORMAT_VERSION = 1
_SHARD_RE = re.compile(r"^(?P<name>.+)-\d{5}-of-\d{5}\.tfrecord$")
_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/id": tf.io.FixedLenFeature([], tf.int64),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/object/bbox": tf.io.VarLenFeature(tf.float32),
    "image/object/class": tf.io.VarLenFeature(tf.int64),
}


def serialize_example(
    encoded: bytes, image_id: int, height: int, width: int, filename: str, boxes: np.ndarray, classes: np.ndarray
) -> bytes:
    """One tf.train.Example; boxes [N, 4] float32 image px, classes [N] 0-based."""

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
        "image/object/bbox": feature("float", np.asarray(boxes, np.float32).reshape(-1).tolist()),
        "image/object/class": feature("int", np.asarray(classes, np.int64).reshape(-1).tolist()),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """A serialized record -> the pipeline's example structure.

    {"encoded": string, "image_id": int64, "boxes": [N, 4] float32, "classes": [N] int32}
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    return {
        "encoded": parsed["image/encoded"],
        "image_id": parsed["image/id"],
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
        raise FileNotFoundError(f"no TFRecord files match {pattern!r}; write them with "
                                "`python -m cornernet_tf.data.tfrecord`")
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


def _atomic_write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_tfrecords(
    source: coco.CocoSource,
    out_dir: str,
    name: str,
    num_shards: int = 8,
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[str]:
    """Write `source` as `num_shards` (at most one per image) shards plus `NAME.json`.

    Shards hold contiguous runs of images in id order. Stale shards of an earlier run with
    another shard count are removed. Returns the shard paths.
    """
    num_shards = max(1, min(num_shards, len(source)))
    tf.io.gfile.makedirs(out_dir)
    paths = shard_paths(out_dir, name, num_shards)
    started, done = time.time(), 0
    shard_rows = np.array_split(np.arange(len(source)), num_shards)
    for shard, (path, rows) in enumerate(zip(paths, shard_rows)):
        tmp = path + ".tmp"
        with tf.io.TFRecordWriter(tmp) as writer:
            for row in rows:
                with tf.io.gfile.GFile(source.image_paths[row], "rb") as f:
                    encoded = f.read()
                height, width = source.image_sizes[row]
                writer.write(serialize_example(
                    encoded, source.image_ids[row], height, width, os.path.basename(source.image_paths[row]),
                    source.boxes[row], source.classes[row],
                ))
        tf.io.gfile.rename(tmp, path, overwrite=True)
        done += len(rows)
        rate = done / max(time.time() - started, 1e-9)
        progress(f"tfrecord: {name} shard {shard + 1}/{num_shards}, {done}/{len(source)} images ({rate:.0f} img/s)")
    stale = set(tf.io.gfile.glob(os.path.join(out_dir, f"{name}-?????-of-?????.tfrecord"))) - set(paths)
    for path in stale:
        tf.io.gfile.remove(path)
    sidecar = {
        "format_version": FORMAT_VERSION,
        "class_names": source.class_names,
        "category_ids": source.category_ids,
        "annotations": os.path.abspath(source.annotations),
        "num_examples": len(source),
        "num_boxes": source.num_boxes,
        "shard_sizes": {os.path.basename(p): len(rows) for p, rows in zip(paths, shard_rows)},
        "counts": source.counts,
    }
    _atomic_write_text(os.path.join(out_dir, f"{name}.json"), json.dumps(sidecar, indent=1))
    return paths


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
        print(f"{name}: {os.path.join(args.out, name)}-*.tfrecord")


if __name__ == "__main__":
    main()
