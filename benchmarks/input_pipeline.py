"""Training input pipeline throughput against plain JPEG decoding of the same files (CPU).

Writes `--images` JPEGs of 640x480 (textured backgrounds with filled rectangles; COCO-like
image and file sizes) and a COCO json with `--objects` boxes per image over 80 classes into a temporary
folder, then measures, on the same files:
  decode: read + tf.io.decode_jpeg, parallel map, batched (the upper bound of any pipeline);
  full:   `tasks.data.train_dataset(..., finish_on_device=True)` with the COCO Hourglass-104
          settings: what the training loop reads (decode, random window / flip / colour
          draws, boxes, uint8 images, padded batches); the loop then runs
          `pipeline.finish_batch` (resampling to 511x511, colour, normalization, targets
          128x128x80) on the accelerator;
  all on host: the same with `finish_batch` mapped into the dataset on the CPU, for reference.
Prints images/s and CPU time per image of each, the ratio full / decode (goal: >= 0.5), and
the CPU cost per image of each stage.

    python benchmarks/input_pipeline.py [--images 200] [--batch 8] [--batches 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import cornernet_tf  # noqa: F401 (before TensorFlow: the CPU runtime set-up a user of the package gets)

# isort: split
import cv2
import numpy as np
import tensorflow as tf

from cornernet_tf.config import load_config
from cornernet_tf.data import augment, coco
from cornernet_tf.data.pipeline import TrainInputSpec
from cornernet_tf.objective.targets import build_batch_targets
from cornernet_tf.tasks import data as data_tasks

HEIGHT, WIDTH, NUM_CLASSES = 480, 640, 80


def write_dataset(root: pathlib.Path, count: int, objects: int, seed: int = 0) -> pathlib.Path:
    """`count` JPEGs and their COCO json under `root`; returns the json path."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for index in range(count):
        # photo-like texture at three scales: ~155 KiB per file at quality 90, as COCO's ~160 KiB
        coarse = cv2.resize(
            rng.normal(0, 40, (HEIGHT // 16, WIDTH // 16, 3)).astype(np.float32),
            (WIDTH, HEIGHT),
            interpolation=cv2.INTER_CUBIC,
        )
        middle = cv2.resize(rng.normal(0, 25, (HEIGHT // 4, WIDTH // 4, 3)).astype(np.float32), (WIDTH, HEIGHT))
        image = rng.integers(64, 192, 3) + coarse + middle + rng.normal(0, 15, (HEIGHT, WIDTH, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        for _ in range(objects):
            w, h = rng.integers(20, 300, 2)
            x, y = rng.integers(0, WIDTH - w), rng.integers(0, HEIGHT - h)
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.rectangle(image, (int(x), int(y)), (int(x + w - 1), int(y + h - 1)), color, -1)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "iscrowd": 0,
                    "category_id": int(rng.integers(1, NUM_CLASSES + 1)),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                }
            )
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


def stage_costs(
    path: str, boxes: np.ndarray, classes: np.ndarray, spec: TrainInputSpec, batch: int, repeats: int = 20
) -> dict[str, float]:
    """CPU ms per image of each stage, as traced functions on one file: decode and
    `sample_view` (per image, host), and on a batch of `batch` copies `render_views` and the
    targets (what `finish_batch` runs on the accelerator in training). Single-call work, run
    before the pipelines: it shows where a pipeline's time goes."""
    input_size = spec.targets.input_size
    encoded = tf.io.read_file(path)
    decode = tf.function(lambda: tf.io.decode_jpeg(encoded, channels=3))
    image = decode()
    view_fn = tf.function(
        lambda seed: augment.sample_view(
            image,
            boxes,
            classes,
            seed,
            input_size=input_size,
            scale_range=spec.scale_range,
            random_crop=True,
            flip=True,
            jitter=True,
            light=True,
        )
    )
    view, view_boxes, view_classes = view_fn(tf.constant([0, 0], tf.int64))
    views = {key: tf.stack([value] * batch) for key, value in view.items()}
    render_fn = tf.function(lambda: augment.render_views(views, input_size, spec.mean, spec.std))
    count = view_boxes.shape[0]
    targets_fn = tf.function(
        lambda: build_batch_targets(
            tf.stack([view_boxes] * batch),
            tf.stack([view_classes] * batch),
            tf.fill([batch], count),
            **dataclasses.asdict(spec.targets),
        )
    )
    stages = {
        "decode": (lambda i: decode(), 1),
        "sample_view": (lambda i: view_fn(tf.constant([i, 0], tf.int64)), 1),
        "render_views": (lambda i: render_fn(), batch),
        "targets": (lambda i: targets_fn(), batch),
    }
    costs = {}
    for name, (fn, images) in stages.items():
        fn(0)
        started = time.process_time()
        for i in range(repeats):
            fn(i)
        costs[name] = 1000 * (time.process_time() - started) / (repeats * images)
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
        config = load_config(
            "cornernet_hg104_coco",
            [
                f"data.train_annotations={annotations}",
                f"data.train_images={root}",
                f"data.val_annotations={annotations}",
                f"data.val_images={root}",
            ],
        )
        source = coco.load_coco(annotations, root)
        costs = stage_costs(
            source.image_paths[0], source.boxes[0], source.classes[0], data_tasks.train_input(config), args.batch
        )
        pipelines = {
            "decode": lambda: decode_only(files, args.batch),
            "full": lambda: data_tasks.train_dataset(config, batch_size=args.batch, finish_on_device=True),
            "host": lambda: data_tasks.train_dataset(config, batch_size=args.batch),
        }
        results = {name: [] for name in pipelines}
        for _ in range(args.rounds):  # interleaved, so all see the same background load
            for name, make in pipelines.items():
                results[name].append(measure(make(), args.batches, args.batch))
    (decode_rate, decode_cpu), (full_rate, full_cpu), (host_rate, host_cpu) = (
        np.median(results[name], axis=0) for name in pipelines
    )
    print(
        f"cpus: {os.cpu_count()}, tensorflow {tf.__version__}, {args.images} JPEGs {WIDTH}x{HEIGHT} "
        f"({mean_kb:.0f} KiB), {args.objects} boxes/image, batch {args.batch} x {args.batches}, "
        f"median of {args.rounds} rounds, load average before {load[0]:.1f}"
    )
    print(f"decode only:         {decode_rate:7.1f} images/s {decode_cpu:6.2f} CPU ms/image")
    print(
        f"full train pipeline: {full_rate:7.1f} images/s {full_cpu:6.2f} CPU ms/image "
        "(what training reads; finish_batch then runs on the accelerator)"
    )
    print(
        f"all on host:         {host_rate:7.1f} images/s {host_cpu:6.2f} CPU ms/image "
        "(finish_batch in the pipeline, on these CPUs)"
    )
    print("per-image stages, CPU ms: " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
    print(
        f"ratio full / decode: {full_rate / decode_rate:.2f} by images/s, {decode_cpu / full_cpu:.2f} by CPU time "
        f"(goal >= 0.50); all on host / decode: {host_rate / decode_rate:.2f}"
    )


if __name__ == "__main__":
    main()
