"""Fine-tuning on a small dataset of your own: from a trained detector with new heads, against
training from scratch for the same steps (CPU).

1. A source detector: `shapes_tiny` (3 classes) trained `--source_steps` steps on the built-in
   dataset (a stand-in for a COCO preset).
2. A small target dataset in Pascal VOC form with other classes: `--images` shapes images whose
   ellipses and triangles are one class "round_or_pointed" beside "rectangle" (2 classes, so
   the class heatmap heads are new), 64 validation images.
3. Fine-tuned: `train --init_weights <source>` on the target, at each of `--learning_rates`;
   from scratch: the same config and steps at the config's learning rate. AP on the target's
   validation set for each, with the command lines used.

    python benchmarks/fine_tuning.py [--source_steps 1000] [--steps 300] [--images 200]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import cornernet_tf  # noqa: F401 (before TensorFlow: the CPU runtime set-up a user of the package gets)

# isort: split
from cornernet_tf.data import shapes
from tests.data.test_voc_yolo import write_voc

TARGET_CLASSES = ["rectangle", "round_or_pointed"]


def run(*args: str) -> float:
    """Run `python -m <args>` as a user would; returns its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def write_target(root: pathlib.Path, images: int) -> pathlib.Path:
    """The target dataset as VOC: shapes images (another seed), two classes."""
    layout = shapes.ensure_dataset(root / "raw", images, 64, 128, max_objects=6, seed=11)
    for split in ("train", "val"):
        annotations, folder = layout[split]
        dataset = json.loads(pathlib.Path(annotations).read_text())
        names = {c["id"]: c["name"] for c in dataset["categories"]}
        dataset["categories"] = [{"id": 1, "name": TARGET_CLASSES[0]}, {"id": 2, "name": TARGET_CLASSES[1]}]
        for annotation in dataset["annotations"]:
            annotation["category_id"] = 1 if names[annotation["category_id"]] == "rectangle" else 2
        write_voc(dataset, pathlib.Path(folder), root / "voc", split)
    return root / "voc"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source_steps", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--learning_rates", default="0.001,0.00025")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = pathlib.Path(folder)
        shapes_dir = f"data.shapes_dir={root / 'shapes'}"
        source = root / "source"
        seconds = run(
            "cornernet_tf.train", "--config", "shapes_tiny", "--model_dir", str(source), "--no_eval",
            "--set", shapes_dir, "--set", f"train.steps={args.source_steps}",
        )  # fmt: skip
        print(f"source: shapes_tiny, {args.source_steps} steps in {seconds / 60:.1f} min", flush=True)
        target = write_target(root, args.images)
        common = [
            "--set", "data.dataset=voc", "--set", f"data.voc_dir={target}",
            "--set", f"data.class_names=[{', '.join(TARGET_CLASSES)}]", "--set", "model.num_classes=2",
            "--set", f"train.steps={args.steps}", "--set", "train.warmup_steps=20",
        ]  # fmt: skip
        runs = {f"fine-tuned, lr {lr}": ["--init_weights", str(source), "--set", f"train.learning_rate={lr}"]
                for lr in args.learning_rates.split(",")}  # fmt: skip
        runs["from scratch, lr 0.001"] = []
        print(f"\n{'run':>24}  {'minutes':>7}  {'val AP':>6}  {'val AP50':>8}")
        for name, extra in runs.items():
            model_dir = root / name.replace(" ", "_").replace(",", "")
            seconds = run(
                "cornernet_tf.train", "--config", "shapes_tiny", "--model_dir", str(model_dir), *common, *extra
            )
            metrics = json.loads((model_dir / "eval" / "metrics.json").read_text())
            print(f"{name:>24}  {seconds / 60:7.1f}  {metrics['AP']:6.3f}  {metrics['AP50']:8.3f}", flush=True)


if __name__ == "__main__":
    main()
