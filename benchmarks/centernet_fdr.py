"""CenterNet vs CornerNet on the built-in shapes dataset: AP, AR and false-discovery rate.

    python benchmarks/centernet_fdr.py --steps 1500      # after pip install -e . (else PYTHONPATH=.)

The CenterNet paper's claim: center keypoints remove incorrect boxes, so CenterNet's
false-discovery rate (FDR) is lower than CornerNet's. This trains `shapes_tiny` (CornerNet) and
`centernet_shapes_tiny` (CenterNet) with the same steps, batch, learning-rate schedule and seeds
through `python -m cornernet_tf.train`, evaluates both on the val split (each config's own test
settings, `detection.max_detections` raised to 100) and reports COCO AP / AR and

    FDR = detections that match no ground truth / detections,

counted over detections scoring >= --score_threshold and over all returned (top 100 per
image). A detection matches if pycocotools' evaluation (IoU 0.5, area 'all', 100 detections)
pairs it one-to-one with a ground-truth box of its class, so a duplicate of a found object is a
false discovery. Results go to <work_dir>/results.json and print as a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {"CornerNet": "shapes_tiny", "CenterNet": "centernet_shapes_tiny"}
MATCH_IOU = 0.5
MAX_DETECTIONS = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each model")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="train.seed and data.seed of both runs")
    parser.add_argument("--score_threshold", type=float, default=0.3)
    parser.add_argument("--work_dir", default="runs/centernet_fdr", help="model_dirs and results.json")
    parser.add_argument("--shapes_dir", default=None, help="shapes dataset folder (default: <work_dir>/shapes)")
    parser.add_argument("--skip_training", action="store_true", help="evaluate the model_dirs already there")
    return parser.parse_args(argv)


def train(config_name: str, model_dir: pathlib.Path, args: argparse.Namespace, shapes_dir: pathlib.Path) -> float:
    """Train `config_name` into `model_dir` with the benchmark's budget; returns the wall time (s)."""
    overrides = [
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        f"train.seed={args.seed}",
        f"data.seed={args.seed}",
        f"data.shapes_dir={shapes_dir}",
        "train.eval_every=0",
        f"train.checkpoint_every={args.steps}",
    ]
    command = [
        sys.executable,
        "-m",
        "cornernet_tf.train",
        "--config",
        config_name,
        "--model_dir",
        str(model_dir),
        "--no_eval",
        *[arg for item in overrides for arg in ("--set", item)],
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    start = time.monotonic()
    subprocess.run(command, check=True, env=env, cwd=REPO_ROOT)
    return time.monotonic() - start


def coco_matches(annotations: str, records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(scores [D], matched [D] bool) of every detection record, matched one-to-one to a
    ground-truth box of its class at IoU MATCH_IOU by pycocotools (area 'all', 100 per image)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(annotations)
        evaluation = COCOeval(truth, truth.loadRes([dict(r) for r in records]), "bbox")
        evaluation.params.iouThrs = np.array([MATCH_IOU])
        evaluation.params.maxDets = [MAX_DETECTIONS]
        evaluation.params.imgIds = sorted({r["image_id"] for r in records})
        evaluation.evaluate()
    all_area = evaluation.params.areaRng[0]
    per_image = [e for e in evaluation.evalImgs if e is not None and e["aRng"] == all_area]
    scores = np.concatenate([np.asarray(e["dtScores"], np.float64) for e in per_image] + [np.zeros(0)])
    matched = np.concatenate([np.asarray(e["dtMatches"][0]) > 0 for e in per_image] + [np.zeros(0, bool)])
    return scores, matched


def false_discovery_rate(matched: np.ndarray) -> float:
    """Fraction of detections (matched [D] bool) that match no ground truth; nan without any."""
    return float(np.mean(~matched)) if matched.size else float("nan")


def evaluate(model_dir: pathlib.Path, score_threshold: float) -> dict[str, float]:
    """COCO metrics and FDRs of the run in `model_dir` on its val split."""
    from cornernet_tf.config import load_config
    from cornernet_tf.tasks.data import dataset_info
    from cornernet_tf.tasks.evaluation import evaluate_model
    from cornernet_tf.tasks.model import build_model
    from cornernet_tf.training.checkpoint import load_weights

    config = load_config(model_dir / "config.yaml", [f"detection.max_detections={MAX_DETECTIONS}"])
    model = build_model(config.model)
    load_weights(model, model_dir)
    metrics, records = evaluate_model(model, config, split="val")
    scores, matched = coco_matches(dataset_info(config, "val").annotations, records)
    above = scores >= score_threshold
    return {
        **{key: metrics[key] for key in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")},
        "detections": int(matched.size),
        "detections_above_threshold": int(above.sum()),
        "FDR_above_threshold": false_discovery_rate(matched[above]),
        "FDR_top100": false_discovery_rate(matched),
    }


def markdown(results: dict[str, dict], score_threshold: float) -> str:
    """The results as a markdown table, one column per model plus CenterNet / CornerNet."""
    rows = [
        ("AP", "AP"),
        ("AP50", "AP50"),
        ("AR100", "AR100"),
        (f"detections >= {score_threshold}", "detections_above_threshold"),
        (f"FDR, score >= {score_threshold}", "FDR_above_threshold"),
        ("detections (top 100 per image)", "detections"),
        ("FDR, top 100", "FDR_top100"),
        ("training time (s)", "train_seconds"),
    ]
    lines = ["| | CornerNet | CenterNet | CenterNet / CornerNet |", "| --- | --- | --- | --- |"]
    for label, key in rows:
        corner, center = results["CornerNet"][key], results["CenterNet"][key]
        ratio = center / corner if corner else float("nan")
        lines.append(f"| {label} | {corner:.4g} | {center:.4g} | {ratio:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work_dir = pathlib.Path(args.work_dir).expanduser().resolve()
    shapes_dir = pathlib.Path(args.shapes_dir).expanduser().resolve() if args.shapes_dir else work_dir / "shapes"
    seconds = {name: 0.0 for name in CONFIGS}
    if not args.skip_training:
        for name, config_name in CONFIGS.items():
            seconds[name] = train(config_name, work_dir / config_name, args, shapes_dir)
    results = {
        name: {**evaluate(work_dir / config_name, args.score_threshold), "train_seconds": seconds[name]}
        for name, config_name in CONFIGS.items()
    }
    results["settings"] = {key: value for key, value in vars(args).items() if key != "skip_training"}
    (work_dir / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown(results, args.score_threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
