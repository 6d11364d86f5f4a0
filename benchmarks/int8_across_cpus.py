"""Do the int8 exports compute the same on every CPU, and do they keep the float AP?

    python benchmarks/int8_across_cpus.py --seeds 0 1 2 3 4          # about 4 minutes a seed on 2 cores

For each seed, trains the tests' tiny shapes model (tests/test_reduced_precision.py: 64 x 64 scenes,
1500 steps; the seed changes the training trajectory the way another CPU's float rounding does),
exports it as a float32 SavedModel, a calibrated int8 TFLite (batch 4) and a calibrated int8 ONNX
(7-bit weights, the export's default), and an int8 ONNX with 8-bit weights for comparison, then:

- AP: COCO AP (pycocotools) of each on `--val_images` held-out scenes, and the difference to float;
- the CPU paths: with `qemu-x86_64` on the PATH (Debian's qemu-user), the int8 files run again
  under `qemu-x86_64 -cpu max` (QEMU 7.2's CPU model: AVX2 and FMA, no AVX-512, no VNNI, as an
  AMD Zen 3), and the largest difference of their scores and boxes to this CPU's run is printed.
  On a CPU with VNNI this compares the two int8 instruction paths: VNNI's exact 32-bit sums
  against AVX2's VPMADDUBSW, whose 16-bit pair sums saturate.

Prints a markdown table and writes <work_dir>/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZE = 64
PROBE_IMAGES = 12  # run under emulation (slow: every instruction is translated)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--val_images", type=int, default=200, help="held-out scenes the AP is measured on")
    parser.add_argument("--calibration_images", type=int, default=32)
    parser.add_argument("--work_dir", default="runs/int8_across_cpus")
    parser.add_argument("--child", nargs=2, metavar=("WORK", "OUT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def overrides(shapes_dir: pathlib.Path, steps: int, seed: int) -> list[str]:
    """The tests' tiny model (tests/test_reduced_precision.py) with another seed."""
    return [
        f"data.shapes_dir={shapes_dir}",
        "data.shapes_train=64",
        "data.shapes_val=16",
        f"data.shapes_image_size={SIZE}",
        f"data.input_size=[{SIZE},{SIZE}]",
        "model.depth=2",
        "model.dims=[16,16,16]",
        "model.modules=[1,1,1]",
        "model.pre_dims=[16,16]",
        "model.cnv_dim=16",
        "model.pool_dim=16",
        "train.batch_size=8",
        f"train.steps={steps}",
        "train.learning_rate=0.002",
        "train.lr_schedule=constant",
        "train.warmup_steps=0",
        "train.eval_every=0",
        f"train.checkpoint_every={steps}",
        "detection.max_detections=20",
        f"train.seed={seed}",
        f"data.seed={seed}",
    ]


def command(*args: str) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{done.stderr[-2000:]}")


def build(seed_dir: pathlib.Path, shapes_dir: pathlib.Path, args: argparse.Namespace, seed: int) -> None:
    """Train, then the float SavedModel, int8 TFLite, int8 ONNX (7-bit weights) and float ONNX."""
    run = seed_dir / "run"
    sets = [item for value in overrides(shapes_dir, args.steps, seed) for item in ("--set", value)]
    if not (run / "checkpoints").is_dir():
        command("cornernet_tf.train", "--model_dir", str(run), "--no_eval", *sets)
    calibration = ["--representative_images", str(shapes_dir / "train"), "--calibration_images"]
    calibration.append(str(args.calibration_images))
    exports = {
        "float": [],
        "tflite_int8": ["--format", "tflite", "--quantize", "int8", "--batch_size", "4", *calibration],
        "onnx_int8": ["--format", "onnx", "--quantize", "int8", "--batch_size", "dynamic", *calibration],
        "onnx_float": ["--format", "onnx", "--batch_size", "dynamic"],
    }
    for name, flags in exports.items():
        if not (seed_dir / name / "1").is_dir():
            command("cornernet_tf.export", "--weights", str(run), "--export_dir", str(seed_dir / name), *flags)


def quantize_8bit_weights(seed_dir: pathlib.Path, shapes_dir: pathlib.Path, count: int) -> None:
    """The int8 ONNX as the export made it before 7-bit weights (`reduce_range=False`)."""
    target = seed_dir / "onnx_int8_8bit" / "1" / "model.onnx"
    if target.is_file():
        return
    import cv2
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from cornernet_tf.portable.onnx import QUANTIZED_OPS

    paths = sorted((shapes_dir / "train").iterdir())[:count]
    images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[None] for path in paths]

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.pending = iter(images)

        def get_next(self) -> dict | None:
            image = next(self.pending, None)
            return None if image is None else {"images": image}

    target.parent.mkdir(parents=True, exist_ok=True)
    source = seed_dir / "onnx_float" / "1" / "model.onnx"
    quantize_static(
        str(source), str(target), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
        op_types_to_quantize=QUANTIZED_OPS,
    )  # fmt: skip


def probe_outputs(seed_dir: pathlib.Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Scores and boxes of the int8 files on `images`, with onnxruntime and LiteRT alone (this runs
    under emulation too, where importing TensorFlow would take minutes)."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    out = {}
    for name in ("onnx_int8", "onnx_int8_8bit"):
        session = onnxruntime.InferenceSession(str(seed_dir / name / "1" / "model.onnx"))
        names = [output.name for output in session.get_outputs()]
        result = dict(zip(names, session.run(names, {"images": images})))
        out.update({f"{name}/{key}": result[key] for key in ("detection_scores", "detection_boxes")})
    network = Interpreter(model_path=str(seed_dir / "tflite_int8" / "1" / "model.tflite"))
    decoding = Interpreter(model_path=str(seed_dir / "tflite_int8" / "1" / "decoding.tflite"))
    network.allocate_tensors()
    decoding.allocate_tensors()
    numbered = {int(re.search(r"map_(\d+)", d["name"]).group(1)): d["index"] for d in decoding.get_input_details()}
    scores, boxes = [], []
    for start in range(0, len(images), 4):
        network.set_tensor(network.get_input_details()[0]["index"], images[start : start + 4])
        network.invoke()
        maps = [network.get_tensor(d["index"]) for d in network.get_output_details()]
        for number, value in zip(sorted(numbered), maps):
            decoding.set_tensor(numbered[number], value)
        decoding.invoke()
        result = [decoding.get_tensor(d["index"]) for d in decoding.get_output_details()]
        boxes.append(result[0])
        scores.append(result[2])
    out["tflite_int8/detection_scores"], out["tflite_int8/detection_boxes"] = (
        np.concatenate(scores),
        np.concatenate(boxes),
    )
    return out


def emulated_difference(seed_dir: pathlib.Path, images: np.ndarray, qemu: str) -> dict[str, float]:
    """Largest |score| and |box| difference (boxes in pixels) of each int8 file between this CPU
    and `qemu-x86_64 -cpu max` (AVX2 without VNNI)."""
    np.save(seed_dir / "probe.npy", images)
    native = probe_outputs(seed_dir, images)
    emulated_file = seed_dir / "emulated.npz"
    script = pathlib.Path(__file__).resolve()
    subprocess.run(
        [qemu, "-cpu", "max", sys.executable, str(script), "--child", str(seed_dir), str(emulated_file)],
        check=True, capture_output=True, timeout=1800,
    )  # fmt: skip
    emulated = dict(np.load(emulated_file))
    differences = {}
    for key, value in native.items():
        scale = SIZE if key.endswith("boxes") else 1
        differences[key] = float(np.abs(value.astype(np.float64) - emulated[key]).max() * scale)
    return differences


def held_out(val_dir: pathlib.Path, count: int) -> tuple[np.ndarray, list[int], str]:
    import cv2

    from cornernet_tf.data import shapes

    annotations, images_dir = shapes.ensure_dataset(val_dir, 1, count, SIZE)["val"]
    entries = sorted(json.loads(pathlib.Path(annotations).read_text())["images"], key=lambda e: e["id"])
    pixels = [cv2.cvtColor(cv2.imread(str(images_dir / e["file_name"])), cv2.COLOR_BGR2RGB) for e in entries]
    return np.stack(pixels), [e["id"] for e in entries], str(annotations)


def average_precision(detect, images: np.ndarray, ids: list[int], annotations: str, batch: int) -> float:
    from cornernet_tf.utils.coco_metrics import coco_metrics, detections_to_coco

    categories = [c["id"] for c in json.loads(pathlib.Path(annotations).read_text())["categories"]]
    records = []
    for start in range(0, len(images), batch):
        out = detect(images[start : start + batch])
        for row, image_id in enumerate(ids[start : start + batch]):
            count = int(out["num_detections"][row])
            boxes = np.asarray(out["detection_boxes"][row][:count], np.float64)[:, [1, 0, 3, 2]] * SIZE
            classes = np.asarray(out["detection_classes"][row][:count]).astype(int) - 1
            records += detections_to_coco(image_id, boxes, out["detection_scores"][row][:count], classes, categories)
    return coco_metrics(annotations, records, image_ids=ids)["AP"]


def measure(seed_dir: pathlib.Path, val: tuple[np.ndarray, list[int], str]) -> dict[str, float]:
    import tensorflow as tf

    from cornernet_tf.portable import onnx, tflite

    signature = tf.saved_model.load(str(seed_dir / "float" / "1")).signatures["serving_tensor"]
    runners = {
        "float": (lambda x: {k: v.numpy() for k, v in signature(images=tf.constant(x)).items()}, 4),
        "tflite_int8": (tflite.runner(seed_dir / "tflite_int8" / "1" / "model.tflite"), 4),
        "onnx_int8": (onnx.runner(seed_dir / "onnx_int8" / "1" / "model.onnx"), 8),
        "onnx_int8_8bit": (onnx.runner(seed_dir / "onnx_int8_8bit" / "1" / "model.onnx"), 8),
    }
    return {name: average_precision(detect, *val, batch) for name, (detect, batch) in runners.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:  # under emulation: the int8 files' outputs only
        seed_dir = pathlib.Path(args.child[0])
        np.savez(args.child[1], **probe_outputs(seed_dir, np.load(seed_dir / "probe.npy")))
        return 0
    work = pathlib.Path(args.work_dir)
    shapes_dir = work / "shapes"
    val = held_out(work / "held_out", args.val_images)
    qemu = shutil.which("qemu-x86_64")
    results = {}
    for seed in args.seeds:
        seed_dir = work / f"seed{seed}"
        build(seed_dir, shapes_dir, args, seed)
        quantize_8bit_weights(seed_dir, shapes_dir, args.calibration_images)
        results[seed] = {"ap": measure(seed_dir, val)}
        if qemu:
            results[seed]["emulated_avx2"] = emulated_difference(seed_dir, val[0][:PROBE_IMAGES], qemu)
        print(f"seed {seed}: {json.dumps(results[seed])}", flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, qemu is not None)
    return 0


def print_table(results: dict, emulated: bool) -> None:
    files = ("tflite_int8", "onnx_int8", "onnx_int8_8bit")
    header = "| seed | AP float | " + " | ".join(f"{name} AP - float" for name in files)
    if emulated:
        header += " | " + " | ".join(f"{name} AVX2 vs here: score / box px" for name in files)
    print(header + " |")
    print("|" + " --- |" * (header.count("|")))
    for seed, result in results.items():
        ap = result["ap"]
        cells = [str(seed), f"{ap['float']:.4f}", *(f"{ap[name] - ap['float']:+.4f}" for name in files)]
        if emulated:
            differences = result["emulated_avx2"]
            for name in files:
                cells.append(
                    f"{differences[f'{name}/detection_scores']:.4f} / {differences[f'{name}/detection_boxes']:.2f}"
                )
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
