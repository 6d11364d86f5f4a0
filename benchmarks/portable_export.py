"""Portable exports on the built-in shapes val split: COCO AP, file size and CPU latency per format.

    python benchmarks/portable_export.py --steps 600          # trains shapes_tiny first
    python benchmarks/portable_export.py --weights runs/shapes_tiny

Exports one model as a SavedModel, float32 / float16 / int8 TFLite and ONNX (batch 1, the
shapes images' 128 x 128, `shapes_tiny`'s test settings), runs every val image through each in
its own runtime (TensorFlow `serving_tensor`, the LiteRT interpreter, onnxruntime) and scores
the detections with pycocotools. Latency: the median of per-image wall times (after one
warm-up call) over the val images, same process, same run. Prints a markdown table and writes
<work_dir>/results.json.
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
    from cornernet_tf.coco_metrics import coco_metrics, detections_to_coco

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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = pathlib.Path(args.work_dir)
    shapes_dir = work / "shapes"
    weights = args.weights
    if weights is None:
        weights = str(work / "model")
        if not (work / "model" / "checkpoints").is_dir():
            train(work / "model", args.steps, shapes_dir)

    import tensorflow as tf  # imported after the training subprocess

    from cornernet_tf.config import load_config
    from cornernet_tf.portable import MODEL_FILES, onnx, tflite
    from cornernet_tf.tasks.export import export_model, export_portable
    from cornernet_tf.tasks.model import build_model
    from cornernet_tf.training.checkpoint import load_weights

    config = load_config(CONFIG, [f"data.shapes_dir={shapes_dir}"])
    model = build_model(config.model, corner_pool="vectorized")
    load_weights(model, weights)
    ids, images, annotations, category_ids = val_images(config, args.max_images)
    exports = work / "exports"
    saved = export_model(model, config, exports / "saved_model")
    signature = tf.saved_model.load(str(saved)).signatures["serving_tensor"]
    runners = {
        "SavedModel (TF)": (
            lambda x: {k: v.numpy() for k, v in signature(images=tf.constant(x)).items()},
            sum(p.stat().st_size for p in saved.rglob("*") if p.is_file()),
        )
    }
    for name, fmt, quantize in (
        ("TFLite float32", "tflite", "none"),
        ("TFLite fp16", "tflite", "fp16"),
        ("TFLite int8", "tflite", "int8"),
        ("ONNX float32", "onnx", "none"),
    ):
        version = export_portable(model, config, exports / f"{fmt}_{quantize}", fmt, quantize)
        path = version / MODEL_FILES[fmt]
        runners[name] = ((tflite if fmt == "tflite" else onnx).runner(path), path.stat().st_size)
    results = {}
    for name, (run, size) in runners.items():
        ap, ap50, latency = score(run, ids, images, annotations, category_ids)
        results[name] = {"AP": ap, "AP50": ap50, "latency_ms": latency, "bytes": size}
    float_size = results["TFLite float32"]["bytes"]
    float_ap = results["TFLite float32"]["AP"]
    print(f"{len(ids)} val images, weights {weights}\n")
    print("| format | AP | AP50 | AP - float TFLite AP | file | file / float TFLite | ms per image |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(
            f"| {name} | {r['AP']:.4f} | {r['AP50']:.4f} | {r['AP'] - float_ap:+.4f} | {r['bytes'] / 1e6:.2f} MB "
            f"| {r['bytes'] / float_size:.2f}x | {r['latency_ms']:.1f} |"
        )
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
