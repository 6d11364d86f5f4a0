"""Training input pipeline throughput against plain JPEG decoding of the same files (CPU).

Writes `--images` JPEGs of 640x480 (textured backgrounds with filled rectangles; COCO-like
image and file sizes) and a COCO json with `--objects` boxes per image over 80 classes into a temporary
folder, then measures, on the same files:
  decode: read + tf.io.decode_jpeg, parallel map, batched (the upper bound of any pipeline);
  full:   `pipeline.train_dataset` with the COCO Hourglass-104 settings (511x511 random
          scale/crop, flip, colour jitter, lighting, normalization, targets 128x128x80).
Prints images/s and CPU time per image of both, and the ratios full / decode (goal: >= 0.5).

    python benchmarks/input_pipeline.py [--images 200] [--batch 8] [--batches 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import cv2
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from cornernet_tf.config import load_config  # noqa: E402
from cornernet_tf.data import augment, coco, pipeline  # noqa: E402
from cornernet_tf.targets import build_targets  # noqa: E402

HEIGHT, WIDTH, NUM_CLASSES = 480, 640, 80


def write_dataset(root: pathlib.Path, count: int, objects: int, seed: int = 0) -> pathlib.Path:
    """`count` JPEGs and their COCO json under `root`; returns the json path."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for index in range(count):
        # photo-like texture at three scales: ~155 KiB per file at quality 90, as COCO's ~160 KiB
        coarse = cv2.resize(rng.normal(0, 40, (HEIGHT // 16, WIDTH // 16, 3)).astype(np.float32), (WIDTH, HEIGHT),
                            interpolation=cv2.INTER_CUBIC)
        middle = cv2.resize(rng.normal(0, 25, (HEIGHT // 4, WIDTH // 4, 3)).astype(np.float32), (WIDTH, HEIGHT))
        image = rng.integers(64, 192, 3) + coarse + middle + rng.normal(0, 15, (HEIGHT, WIDTH, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        for _ in range(objects):
            w, h = rng.integers(20, 300, 2)
            x, y = rng.integers(0, WIDTH - w), rng.integers(0, HEIGHT - h)
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.rectangle(image, (int(x), int(y)), (int(x + w - 1), int(y + h - 1)), color, -1)
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "iscrowd": 0,
                                "category_id": int(rng.integers(1, NUM_CLASSES + 1)),
                                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h)})
        name = f"{index:06d}.jpg"
        cv2.imwrite(str(root / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": index + 1, "file_name": name, "height": HEIGHT, "width": WIDTH})
    categories = [{"id": i + 1, "name": f"class{i}"} for i in range(NUM_CLASSES)]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def measure(dataset: tf.data.Dataset, batches: int, batch_size: int, warmup: int = 3) -> tuple[float, float]:
    """(images per second, CPU milliseconds of this process per image) over `batches` batches.

    CPU time is the fairer number on a machine shared with other jobs: it counts only the work
    this pipeline did, on all threads.
    """
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    images = batches * batch_size
    return images / (time.perf_counter() - wall), 1000 * (time.process_time() - cpu) / images


def stage_costs(path: str, boxes: np.ndarray, classes: np.ndarray, config, repeats: int = 30) -> dict[str, float]:
    """CPU ms per call of each per-image stage on one file, as traced functions (decode,
    augmentation with every option on, targets). Run this before the pipelines: it is
    single-call work, so it shows where a pipeline's time goes."""
    data = config.data
    encoded = tf.io.read_file(path)
    decode = tf.function(lambda: tf.io.decode_jpeg(encoded, channels=3))
    image = decode()
    augment_fn = tf.function(lambda seed: augment.train_transform(
        image, boxes, classes, seed, input_size=tuple(data.input_size), scale_range=tuple(data.random_scale),
        random_crop=True, flip=True, jitter=True, light=True, mean=tuple(data.mean), std=tuple(data.std)))
    _, new_boxes, new_classes = augment_fn(tf.constant([0, 0], tf.int64))
    targets_fn = tf.function(lambda: build_targets(
        new_boxes, new_classes, config.model.num_classes, tuple(data.input_size), tuple(data.output_size),
        max_objects=data.max_objects, gaussian_iou=data.gaussian_iou))
    stages = {"decode": lambda i: decode(), "augment": lambda i: augment_fn(tf.constant([i, 0], tf.int64)),
              "targets": lambda i: targets_fn()}
    costs = {}
    for name, fn in stages.items():
        fn(0)
        started = time.process_time()
        for i in range(repeats):
            fn(i)
        costs[name] = 1000 * (time.process_time() - started) / repeats
    return costs


def decode_only(files: list[str], batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(files).repeat()
    ds = ds.map(lambda f: tf.io.decode_jpeg(tf.io.read_file(f), channels=3), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--objects", type=int, default=7, help="boxes per image (COCO mean: 7.3)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        annotations = write_dataset(root, args.images, args.objects)
        files = sorted(str(p) for p in root.glob("*.jpg"))
        mean_kb = np.mean([os.path.getsize(f) for f in files]) / 1024
        config = load_config("cornernet_hg104_coco", [
            f"data.train_annotations={annotations}", f"data.train_images={root}",
            f"data.val_annotations={annotations}", f"data.val_images={root}",
        ])
        source = coco.load_coco(annotations, root)
        costs = stage_costs(source.image_paths[0], source.boxes[0], source.classes[0], config)
        results = {"decode": [], "full": []}
        for _ in range(args.rounds):  # interleaved, so both see the same background load
            results["decode"].append(measure(decode_only(files, args.batch), args.batches, args.batch))
            full = pipeline.train_dataset(config, batch_size=args.batch)
            results["full"].append(measure(full, args.batches, args.batch))
    (decode_rate, decode_cpu), (full_rate, full_cpu) = (np.median(results[k], axis=0) for k in ("decode", "full"))
    print(f"cpus: {os.cpu_count()}, tensorflow {tf.__version__}, {args.images} JPEGs {WIDTH}x{HEIGHT} "
          f"({mean_kb:.0f} KiB), {args.objects} boxes/image, batch {args.batch} x {args.batches}, "
          f"median of {args.rounds} rounds, load average before {load[0]:.1f}")
    print(f"decode only:         {decode_rate:7.1f} images/s {decode_cpu:6.2f} CPU ms/image")
    print(f"full train pipeline: {full_rate:7.1f} images/s {full_cpu:6.2f} CPU ms/image "
          "(511x511, 80 classes, all augmentations, targets)")
    print("per-image stages, CPU ms: " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
    print(f"ratio full / decode: {full_rate / decode_rate:.2f} by images/s, {decode_cpu / full_cpu:.2f} by CPU time "
          "(goal >= 0.50)")


if __name__ == "__main__":
    main()
