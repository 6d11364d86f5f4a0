"""The main job's training images read as COCO json, Pascal VOC and YOLO: read time and training
input throughput of each, interleaved in one run (CPU).

The built-in shapes dataset of the main job (`shapes_tiny`: 2000 training images of 128 px) is
written as VOC and YOLO with the writers of the readers' tests, then per round and source:
  read:   the split read from scratch (`pipeline.annotated_source`: json / XML / label files parsed,
          every image header probed), seconds;
  stream: `tasks.data.train_dataset` of the main job's config, images/s over `--batches` batches
          after 3 warm-up batches (decode, augmentation, targets: the whole host pipeline).
The VOC and YOLO readers hand the pipeline the same `CocoSource` as the json (the tests check
that the batches are identical), so the stream should match within noise; the read differs.

    python benchmarks/dataset_sources.py [--images 2000] [--batches 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import cornernet_tf  # noqa: F401 (before TensorFlow: the CPU runtime set-up a user of the package gets)

# isort: split
from cornernet_tf.config import load_config
from cornernet_tf.data import pipeline, shapes
from cornernet_tf.tasks import data as data_tasks
from tests.data.test_voc_yolo import write_voc, write_yolo

SOURCES = ("coco", "voc", "yolo")


def write_sources(root: pathlib.Path, images: int) -> dict[str, list[str]]:
    """The shapes dataset as COCO json, VOC and YOLO under `root`; the config overrides of each."""
    layout = shapes.ensure_dataset(root / "shapes", images, 50, 128, max_objects=6)
    for split in ("train", "val"):
        annotations, folder = layout[split]
        dataset = json.loads(pathlib.Path(annotations).read_text())
        write_voc(dataset, pathlib.Path(folder), root / "voc", split)
        write_yolo(dataset, pathlib.Path(folder), root / "yolo", split)
    names = ", ".join(shapes.CLASS_NAMES)
    coco_keys = [
        f"data.{split}_{kind}={value}"
        for split in ("train", "val")
        for kind, value in zip(("annotations", "images"), layout[split])
    ]
    return {
        "coco": ["data.dataset=coco", *coco_keys],
        "voc": ["data.dataset=voc", f"data.voc_dir={root / 'voc'}", f"data.class_names=[{names}]"],
        "yolo": ["data.dataset=yolo", f"data.yolo_yaml={root / 'yolo' / 'data.yaml'}"],
    }


def measure(overrides: list[str], batches: int) -> tuple[float, float]:
    """(seconds to read the training split, training stream images/s) of one source."""
    config = load_config("shapes_tiny", overrides)
    files = data_tasks.split_files(config, "train")
    pipeline.annotated_source.cache_clear()
    start = time.perf_counter()
    pipeline.annotated_source(files)
    read = time.perf_counter() - start
    stream = iter(data_tasks.train_dataset(config))
    for _ in range(3):
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return read, batches * config.train.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sources = write_sources(pathlib.Path(folder), args.images)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in SOURCES}
        for round_number in range(args.rounds):
            order = SOURCES[round_number % 3 :] + SOURCES[: round_number % 3]  # interleaved, rotated
            for name in order:
                results[name].append(measure(sources[name], args.batches))
                read, rate = results[name][-1]
                print(f"round {round_number + 1} {name:>4}: read {read:.2f} s, stream {rate:.0f} img/s", flush=True)
    reference = statistics.median(rate for _, rate in results["coco"])
    print(f"\n{'source':>6}  {'read s (min-max)':>17}  {'stream img/s (min-max)':>23}  {'stream / coco':>13}")
    for name in SOURCES:
        reads, rates = [r for r, _ in results[name]], [s for _, s in results[name]]
        print(
            f"{name:>6}  {min(reads):7.2f} - {max(reads):6.2f}  {min(rates):10.0f} - {max(rates):10.0f}  "
            f"{statistics.median(rates) / reference:13.3f}"
        )


if __name__ == "__main__":
    main()
