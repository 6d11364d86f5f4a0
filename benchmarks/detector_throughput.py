"""Throughput of `cornernet_tf.Detector` against calling the SavedModel signature directly.

    python benchmarks/detector_throughput.py                      # 200 shapes images, batch 8, 5 rounds
    python benchmarks/detector_throughput.py --export exports/cornernet --batch_size 4

Both sides detect the same built-in-dataset validation images with the same batch size through the
same SavedModel (by default a random-weight `shapes_tiny` export made here; random weights cost
what trained ones do). "direct" loops over `signatures["serving_tensor"]` on pre-stacked uint8
batches and fetches the outputs as NumPy; "Detector" is `Detector.from_export(...).predict(list of
arrays)`, which also groups the images into batches, converts the outputs to pixel boxes and builds
the result objects. "paths" repeats the comparison from the PNG files: `Detector.predict(paths)`
(read, decode, EXIF check on the host, `serving_tensor`) against `serving_default` on the file
bytes read in the loop. The two sides alternate batch by batch (who goes first alternates too), so
a change of machine load hits both; a round is one pass over the images on each side, and the
ratio is Detector / direct throughput.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import tempfile
import time

import cornernet_tf  # noqa: F401 (first: the CPU runtime set-up a user of the package gets)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.api.detector import Detector, find_export, load_image
from cornernet_tf.config import load_config
from cornernet_tf.data import shapes
from cornernet_tf.tasks.export import export_model
from cornernet_tf.tasks.model import build_model


def make_export(root: pathlib.Path) -> pathlib.Path:
    """A random-weight shapes_tiny export (128 x 128 input, vectorized corner pool)."""
    config = load_config("shapes_tiny")
    keras.utils.set_random_seed(0)
    return export_model(build_model(config.model, corner_pool="vectorized"), config, root / "export")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", default=None, help="SavedModel (default: a random shapes_tiny export made here)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        root = pathlib.Path(temp)
        version = find_export(args.export) if args.export else make_export(root)
        _, image_dir = shapes.ensure_dataset(root / "shapes", 1, args.images)["val"]
        paths = sorted(image_dir.glob("*.png"))[: args.images]
        arrays = [load_image(path) for path in paths]
        batches = {i: np.stack(arrays[i : i + args.batch_size]) for i in range(0, len(arrays), args.batch_size)}

        loaded = tf.saved_model.load(str(version))
        tensor_signature, encoded_signature = loaded.signatures["serving_tensor"], loaded.signatures["serving_default"]
        detector = Detector.from_export(version, batch_size=args.batch_size)
        starts = list(batches)

        def direct_arrays(start: int) -> None:
            {key: value.numpy() for key, value in tensor_signature(images=tf.constant(batches[start])).items()}

        def direct_paths(start: int) -> None:
            data = [path.read_bytes() for path in paths[start : start + args.batch_size]]
            {key: value.numpy() for key, value in encoded_signature(images=tf.constant(data)).items()}

        sides = {
            "arrays": (direct_arrays, lambda start: detector.predict(arrays[start : start + args.batch_size])),
            "paths": (direct_paths, lambda start: detector.predict(paths[start : start + args.batch_size])),
        }
        for direct, ours in sides.values():  # warm-up: traces, allocations
            direct(0)
            ours(0)
        seconds = {name: np.zeros((args.rounds, 2)) for name in sides}  # per round: direct, Detector
        for round_index in range(args.rounds):
            for name, pair in sides.items():
                for batch_index, start in enumerate(starts):
                    order = (0, 1) if (round_index + batch_index) % 2 == 0 else (1, 0)  # who goes first
                    for side in order:
                        began = time.perf_counter()
                        pair[side](start)
                        seconds[name][round_index, side] += time.perf_counter() - began
    print(
        f"{len(paths)} shapes images of {arrays[0].shape[1]} x {arrays[0].shape[0]}, batch {args.batch_size}, "
        f"{args.rounds} rounds; TF {tf.__version__}, {platform.processor() or platform.machine()}"
    )
    for name, times in seconds.items():
        rates = len(paths) / times
        ratios = rates[:, 1] / rates[:, 0]
        print(
            f"{name:6s}: direct {np.median(rates[:, 0]):.1f} images/s, Detector {np.median(rates[:, 1]):.1f} "
            f"images/s; Detector / direct per round {', '.join(f'{r:.3f}' for r in ratios)} "
            f"(median {np.median(ratios):.3f}, all rounds {times[:, 0].sum() / times[:, 1].sum():.3f})"
        )


if __name__ == "__main__":
    main()
