"""Every export variant on the built-in shapes val split: COCO AP, file size and CPU latency.

    python benchmarks/portable_export.py --weights runs/shapes_tiny    # the main job's model
    python benchmarks/portable_export.py --steps 1200                  # trains shapes_tiny first
    python benchmarks/portable_export.py --hourglass --work_dir /tmp/hg104   # Hourglass-104 latency

Exports one model as a SavedModel in float32 and bfloat16, as float32 / float16 / int8 (dynamic
range) / calibrated full-integer int8 TFLite and as float32 / calibrated int8 ONNX (the shapes
images' 128 x 128, `shapes_tiny`'s test settings; int8 calibrated on `--calibration_images` of the
train split), runs every val image through each in its own runtime (TensorFlow `serving_tensor`,
the LiteRT interpreter, onnxruntime) and scores the detections with pycocotools. Latency per
image: the median over the val images at batch 1, and over batches of 8 (an export of batch 8)
divided by 8, after a warm-up call, same process, same run; every ratio is against the float32
file of the same runtime. `--hourglass`: Hourglass-104 with random weights at 511 x 511, the same
variants' latency only. Prints a markdown table and writes <work_dir>/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "shapes_tiny"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None, help="trained shapes_tiny weights (default: train --steps)")
    parser.add_argument("--steps", type=int, default=600, help="training steps when --weights is not given")
    parser.add_argument("--work_dir", default="runs/portable_export", help="model_dir, exports, results.json")
    parser.add_argument("--max_images", type=int, default=0, help="val images scored (0: all)")
    parser.add_argument("--calibration_images", type=int, default=100, help="train images int8 calibrates on")
    parser.add_argument("--hourglass", action="store_true", help="time Hourglass-104 (random weights) instead")
    parser.add_argument("--hourglass_images", type=int, default=8, help="random 511 x 511 images timed")
    parser.add_argument("--hourglass_calibration", type=int, default=8, help="random images int8 calibrates on")
    parser.add_argument("--hourglass_batch8", action="store_true", help="also export and time batch 8")
    parser.add_argument("--hourglass_variants", default="all", help="variant names separated by ';', or all")
    return parser.parse_args(argv)


def train(model_dir: pathlib.Path, steps: int, shapes_dir: pathlib.Path) -> None:
    overrides = [
        f"train.steps={steps}",
        "train.eval_every=0",
        f"train.checkpoint_every={steps}",
        f"data.shapes_dir={shapes_dir}",
    ]
    command = [
        sys.executable,
        "-m",
        "cornernet_tf.train",
        "--config",
        CONFIG,
        "--model_dir",
        str(model_dir),
        "--no_eval",
        *[arg for item in overrides for arg in ("--set", item)],
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    subprocess.run(command, check=True, env=env)


def val_images(config, max_images: int) -> tuple[list[int], np.ndarray, str, list[int]]:
    """Image ids, uint8 RGB images [N, H, W, 3], the annotations json and the category ids."""
    import cv2

    from cornernet_tf.data import shapes
    from cornernet_tf.tasks.data import dataset_info

    data = config.data
    _, images_dir = shapes.ensure_dataset(data.shapes_dir, data.shapes_train, data.shapes_val, data.shapes_image_size)[
        "val"
    ]
    info = dataset_info(config, "val")
    ground_truth = json.loads(pathlib.Path(info.annotations).read_text())
    entries = sorted(ground_truth["images"], key=lambda entry: entry["id"])[: max_images or None]
    pixels = [
        cv2.cvtColor(cv2.imread(str(pathlib.Path(images_dir) / entry["file_name"])), cv2.COLOR_BGR2RGB)
        for entry in entries
    ]
    return [entry["id"] for entry in entries], np.stack(pixels), info.annotations, info.category_ids


def score(
    run: Callable[[np.ndarray], dict], ids: list[int], images: np.ndarray, annotations: str, category_ids: list[int]
) -> tuple[float, float, float]:
    """(AP, AP50, median latency in ms) of `run` (uint8 [1, H, W, 3] -> detection outputs)."""
    from cornernet_tf.utils.coco_metrics import coco_metrics, detections_to_coco

    run(images[:1])  # warm-up
    records, times = [], []
    height, width = images.shape[1:3]
    for image_id, image in zip(ids, images):
        start = time.perf_counter()
        out = run(image[None])
        times.append(time.perf_counter() - start)
        count = int(out["num_detections"][0])
        ymin, xmin, ymax, xmax = np.moveaxis(np.asarray(out["detection_boxes"][0][:count], np.float64), -1, 0)
        boxes = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=-1)
        classes = np.asarray(out["detection_classes"][0][:count]).astype(int) - 1
        records.extend(detections_to_coco(image_id, boxes, out["detection_scores"][0][:count], classes, category_ids))
    metrics = coco_metrics(annotations, records, image_ids=ids)
    return metrics["AP"], metrics["AP50"], 1000 * float(np.median(times))


def latency_ms(run: Callable[[np.ndarray], dict], images: np.ndarray, batch: int) -> float:
    """Median wall time per image of `run` on consecutive batches of `batch` images (after a warm-up)."""
    batches = [images[start : start + batch] for start in range(0, len(images) - batch + 1, batch)]
    run(batches[0])
    times = []
    for pixels in batches:
        start = time.perf_counter()
        run(pixels)
        times.append((time.perf_counter() - start) / batch)
    return 1000 * float(np.median(times))


# (name, format, quantize, calibrated, precision): every export variant, one row each
VARIANTS = (
    ("SavedModel float32 (TF)", "saved_model", "none", False, "float32"),
    ("SavedModel bfloat16 (TF)", "saved_model", "none", False, "bfloat16"),
    ("TFLite float32", "tflite", "none", False, "float32"),
    ("TFLite fp16", "tflite", "fp16", False, "float32"),
    ("TFLite int8 (weights, dynamic range)", "tflite", "int8", False, "float32"),
    ("TFLite int8 (calibrated, integer network)", "tflite", "int8", True, "float32"),
    ("ONNX float32", "onnx", "none", False, "float32"),
    ("ONNX int8 (calibrated QDQ)", "onnx", "int8", True, "float32"),
)


def export_runner(config, weights, exports, variant, batch, calibration, image_size):
    """Export `variant` of `config`'s network with `weights` at `batch`; (run, bytes on disk)."""
    import dataclasses

    import tensorflow as tf

    from cornernet_tf.portable import MODEL_FILES, onnx, tflite
    from cornernet_tf.tasks.export import export_model, export_network, export_portable
    from cornernet_tf.training.checkpoint import load_weights

    name, fmt, quantize, calibrated, precision = variant
    config = dataclasses.replace(config, export=dataclasses.replace(config.export, precision=precision))
    model = export_network(config)
    if weights is not None:
        load_weights(model, weights)
    folder = exports / f"{fmt}_{quantize}{'_calibrated' if calibrated else ''}_{precision}_batch{batch}"
    if fmt == "saved_model":
        version = export_model(model, config, folder)
        signature = tf.saved_model.load(str(version)).signatures["serving_tensor"]
        run = lambda x: {k: v.numpy() for k, v in signature(images=tf.constant(x)).items()}  # noqa: E731
        return run, sum(p.stat().st_size for p in version.rglob("*") if p.is_file())
    version = export_portable(
        model,
        config,
        folder,
        fmt,
        quantize,
        batch,
        image_size,
        representative_images=calibration if calibrated else None,
    )
    size = sum(p.stat().st_size for p in version.glob("*.tflite")) if fmt == "tflite" else 0
    size = size or (version / MODEL_FILES[fmt]).stat().st_size
    return (tflite if fmt == "tflite" else onnx).runner(version / MODEL_FILES[fmt]), size


def calibration_images(config, count: int, image_size) -> np.ndarray:
    """`count` images of the train split (never the val images scored), as the export command reads them."""
    from cornernet_tf.export import representative_images
    from cornernet_tf.tasks.data import split_files

    images, _ = representative_images(pathlib.Path(split_files(config, "train").images), image_size, count)
    return images


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = pathlib.Path(args.work_dir)
    if args.hourglass:
        return hourglass(work, args)
    shapes_dir = work / "shapes"
    weights = args.weights
    if weights is None:
        weights = str(work / "model")
        if not (work / "model" / "checkpoints").is_dir():
            train(work / "model", args.steps, shapes_dir)

    from cornernet_tf.config import load_config

    config = load_config(CONFIG, [f"data.shapes_dir={shapes_dir}"])
    ids, images, annotations, category_ids = val_images(config, args.max_images)
    image_size = images.shape[1:3]
    calibration = calibration_images(config, args.calibration_images, image_size)
    exports = work / "exports"
    results = {}
    for variant in VARIANTS:
        run, size = export_runner(config, weights, exports, variant, 1, calibration, image_size)
        ap, ap50, latency = score(run, ids, images, annotations, category_ids)
        run8, _ = export_runner(config, weights, exports, variant, 8, calibration, image_size)
        results[variant[0]] = {
            "format": variant[1],
            "AP": ap,
            "AP50": ap50,
            "bytes": size,
            "ms_batch1": latency,
            "ms_batch8": latency_ms(run8, images, 8),
        }
        print(variant[0], results[variant[0]], flush=True)
    print(f"\n{len(ids)} val images, weights {weights}, {len(calibration)} calibration images (train split)\n")
    print_table(results)
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


FLOAT_OF = {"saved_model": "SavedModel float32 (TF)", "tflite": "TFLite float32", "onnx": "ONNX float32"}


def print_table(results: dict) -> None:
    """Markdown rows: each variant against the float32 file of its own runtime."""
    print("| variant | AP | AP - float | file | / float | ms/image, batch 1 | / float | ms/image, batch 8 | / float |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        base = results[FLOAT_OF[r["format"]]]
        print(
            f"| {name} | {r.get('AP', float('nan')):.4f} | {r.get('AP', 0) - base.get('AP', 0):+.4f} "
            f"| {r['bytes'] / 1e6:.2f} MB | {r['bytes'] / base['bytes']:.2f}x "
            f"| {r['ms_batch1']:.1f} | {r['ms_batch1'] / base['ms_batch1']:.2f}x "
            f"| {r['ms_batch8']:.1f} | {r['ms_batch8'] / base['ms_batch8']:.2f}x |"
        )


def release_memory() -> None:
    """Drop the Keras models built so far (each export builds its own) and collect."""
    import gc

    import keras

    keras.utils.clear_session()
    gc.collect()


def hourglass(work: pathlib.Path, args: argparse.Namespace) -> int:
    """Hourglass-104 (random weights) at 511 x 511: every variant's latency per image at batch 1
    (and 8 with --hourglass_batch8), same run."""
    from cornernet_tf.config import load_config

    size = (511, 511)
    config = load_config("cornernet_hg104_coco", ["detection.flip=false"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.hourglass_images, *size, 3), dtype=np.uint8)
    calibration = rng.integers(0, 256, (args.hourglass_calibration, *size, 3), dtype=np.uint8)
    results = {}
    batches = (1, 8) if args.hourglass_batch8 else (1,)
    for variant in VARIANTS:
        if args.hourglass_variants != "all" and variant[0] not in args.hourglass_variants.split(";"):
            continue
        row = {"format": variant[1]}
        for batch in batches:
            start = time.perf_counter()
            run, row["bytes"] = export_runner(config, None, work / "hg104", variant, batch, calibration, size)
            row[f"export_s_batch{batch}"] = time.perf_counter() - start
            row[f"ms_batch{batch}"] = latency_ms(run, images, batch)
            del run
            release_memory()  # an Hourglass-104 model and its runtime hold gigabytes
        row.setdefault("ms_batch8", float("nan"))
        results[variant[0]] = row
        print(variant[0], row, flush=True)
    (work / "hourglass_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
