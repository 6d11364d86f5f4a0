"""`model.type: saccade` through the command lines a user runs: train (3 steps, tiny) on the built-in
dataset of small objects, evaluate its model_dir, export it, and check that the SavedModel, the
`Detector`, `predict` and the REST server answer what `evaluate` detected on the same images;
the portable formats and `ObjectDetector.fit` refuse it in one line."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import evaluate, export, predict
from cornernet_tf.api.detector import Detector
from cornernet_tf.api.object_detector import ObjectDetector
from cornernet_tf.config import load_config
from cornernet_tf.tasks.evaluation import evaluate_model
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.checkpoint import load_weights
from tests.serving_helpers import REPO_ROOT, call, running

STEPS = 3
SUBPROCESS_TIMEOUT_S = 300
# After 3 steps every score is near the heads' prior 0.1: attention threshold 0.05 makes the second
# pass crop (whose detections are kept whatever their score, T2), and ae_threshold 1000 pairs corners
# whatever their embeddings, so there are detections to compare.
EXPORT_OVERRIDES = ["detection.ae_threshold=1000", "detection.att_thresholds=[0.05]", "detection.max_detections=30"]
PIXELS = np.random.default_rng(0).integers(0, 256, (2, 70, 90, 3), dtype=np.uint8)


def tiny_overrides(shapes_dir: pathlib.Path) -> list[str]:
    """saccade_shapes_tiny shrunk to train and test in seconds: a depth-2 hourglass (two attention
    maps, cells of 8 and 4 px), 8 channels, 96-pixel images, a first pass at 48 and 96 px and at
    most 4 crops after it."""
    return [
        f"data.shapes_dir={shapes_dir}",
        "data.shapes_train=8",
        "data.shapes_val=3",
        "data.shapes_image_size=96",
        "data.shapes_object_size=[8, 40]",
        "data.shapes_max_objects=4",
        "data.att_ranges=[[32, 256], [0, 32]]",
        "model.depth=2",
        "model.dims=[8, 8, 8]",
        "model.modules=[1, 1, 1]",
        "model.pre_dims=[8, 8]",
        "model.cnv_dim=8",
        "model.pool_dim=8",
        "model.att_dim=8",
        "detection.init_sizes=[48, 96]",
        "detection.att_scales=[[1, 2]]",
        "detection.att_nms_ks=[3, 3]",
        "detection.att_max_crops=4",
        "train.batch_size=2",
        f"train.steps={STEPS}",
        "train.warmup_steps=0",
        "train.eval_every=0",
    ]


def set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> pathlib.Path:
    """A model_dir trained by `python -m cornernet_tf.train`."""
    root = tmp_path_factory.mktemp("saccade")
    command = [sys.executable, "-m", "cornernet_tf.train", "--config", "saccade_shapes_tiny"]
    command += ["--model_dir", str(root / "run"), "--no_eval", *set_args(tiny_overrides(root / "shapes"))]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " attention " in result.stdout  # the attention loss is trained and logged
    return root / "run"


@pytest.fixture(scope="module")
def config(model_dir):
    return load_config(model_dir / "config.yaml", EXPORT_OVERRIDES)


@pytest.fixture(scope="module")
def model(config, model_dir):
    model = build_model(config.model, corner_pool="vectorized")
    load_weights(model, model_dir)
    return model


@pytest.fixture(scope="module")
def base(model_dir, tmp_path_factory) -> pathlib.Path:
    """The model base path holding version 1, exported by the CLI from the model_dir."""
    path = tmp_path_factory.mktemp("exports") / "saccade"
    argv = ["--weights", str(model_dir), "--export_dir", str(path), *set_args(EXPORT_OVERRIDES)]
    assert export.main(argv) == 0
    return path


@pytest.fixture(scope="module")
def evaluated(model, config) -> list[dict]:
    """evaluate_model's COCO records on the val split (the saccade test, one image per batch)."""
    metrics, records = evaluate_model(model, config)
    assert metrics["num_images"] == 3
    return records


def test_evaluate_cli_on_the_model_dir(model_dir, tmp_path, capsys):
    argv = ["--weights", str(model_dir), "--results", str(tmp_path / "r.json"), "--visualize", str(tmp_path / "v")]
    assert evaluate.main(argv) == 0
    out = capsys.readouterr().out
    assert "using the run's config" in out and f"ckpt-{STEPS}" in out and "AR100" in out
    assert isinstance(json.loads((tmp_path / "r.json").read_text()), list)
    assert len(list((tmp_path / "v").glob("*.png"))) == 3


def _by_image(records: list[dict]) -> dict[int, np.ndarray]:
    """{image_id: rows (x, y, w, h, score, category_id) sorted by score}."""
    rows: dict[int, list] = {}
    for r in records:
        rows.setdefault(r["image_id"], []).append([*r["bbox"], r["score"], r["category_id"]])
    return {key: np.array(sorted(value, key=lambda row: -row[4])) for key, value in rows.items()}


def test_the_saved_model_answers_what_evaluate_detected(base, config, evaluated):
    """serving_default on the val images' encoded files = evaluate_model's detections of them."""
    loaded = tf.saved_model.load(str(base / "1"))
    annotations = json.loads(pathlib.Path(config.data.shapes_dir, "annotations", "instances_val.json").read_text())
    want = _by_image(evaluated)
    assert sum(len(rows) for rows in want.values()) > 0, "the comparison needs detections"
    for image in annotations["images"]:
        data = pathlib.Path(config.data.shapes_dir, "val", image["file_name"]).read_bytes()
        out = {k: v.numpy()[0] for k, v in loaded.signatures["serving_default"](images=tf.constant([data])).items()}
        count = int(out["num_detections"])
        height, width = image["height"], image["width"]
        ymin, xmin, ymax, xmax = (out["detection_boxes"][:count] * [height, width, height, width]).T
        got = np.stack(
            [xmin, ymin, xmax - xmin, ymax - ymin, out["detection_scores"][:count], out["detection_classes"][:count]], 1
        )
        expected = want.get(image["id"], np.zeros((0, 6)))
        assert got.shape == expected.shape, image["file_name"]
        np.testing.assert_allclose(got, expected, atol=6e-3, err_msg=image["file_name"])  # records: 0.01 px


def test_detector_predict_and_rest_answer_the_saved_model(base, model_dir, tmp_path):
    loaded = tf.saved_model.load(str(base / "1"))
    want = {k: v.numpy() for k, v in loaded.signatures["serving_tensor"](images=tf.constant(PIXELS)).items()}
    assert want["num_detections"].min() >= 1
    detector = Detector.from_weights(model_dir, overrides=EXPORT_OVERRIDES)
    for found, scores in zip(detector.predict(PIXELS), want["detection_scores"], strict=True):
        np.testing.assert_allclose(found.scores, scores[: len(found.scores)], atol=1e-5)
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), PIXELS[0][..., ::-1])
    out = tmp_path / "predictions"
    assert (
        predict.main([str(images / "a.png"), "--export", str(base), "--out", str(out), "--score_threshold", "0"]) == 0
    )
    (lines,) = out.glob("*.jsonl")
    line = json.loads(lines.read_text())
    scores = [detection["score"] for detection in line["detections"]]
    np.testing.assert_allclose(scores, want["detection_scores"][0][: len(scores)], atol=1e-5)
    assert len(scores) == int(want["num_detections"][0])
    with running(base, "saccade", "--file_system_poll_wait_seconds", "0") as server:
        status, reply = call(
            server.url + ":predict", "POST", {"signature_name": "serving_tensor", "instances": PIXELS[:1].tolist()}
        )
    assert status == 200, reply
    np.testing.assert_allclose(reply["predictions"][0]["detection_scores"], want["detection_scores"][0], atol=1e-5)


def test_portable_formats_and_keras_fit_refuse_saccade_in_one_line(model_dir, tmp_path, capsys):
    argv = ["--weights", str(model_dir), "--export_dir", str(tmp_path / "t"), "--format", "tflite"]
    assert export.main(argv) == 2
    err = capsys.readouterr().err
    assert "a tflite export cannot hold the saccade test" in err and "detection.test_mode=resize" in err
    assert not (tmp_path / "t").exists()
    detector = ObjectDetector(load_config(model_dir / "config.yaml"))
    with pytest.raises(ValueError, match="ObjectDetector.fit does not train CornerNet-Saccade"):
        detector.fit(np.zeros((1, 255, 255, 3), np.uint8), {"boxes": np.zeros((1, 1, 4)), "labels": np.zeros((1, 1))})


def test_keras_object_detector_predicts_like_the_saved_model(base, model_dir, config):
    """ObjectDetector.from_preset(run folder).predict runs the saccade test as the export does."""
    loaded = tf.saved_model.load(str(base / "1"))
    want = {k: v.numpy() for k, v in loaded.signatures["serving_tensor"](images=tf.constant(PIXELS)).items()}
    detector = ObjectDetector.from_preset(model_dir, config=config)
    found = detector.predict(PIXELS, verbose=0)
    count = want["num_detections"].astype(int)
    np.testing.assert_array_equal(found["num_detections"], count)
    for row in range(len(PIXELS)):
        np.testing.assert_allclose(
            found["confidence"][row, : count[row]], want["detection_scores"][row, : count[row]], atol=1e-5
        )
