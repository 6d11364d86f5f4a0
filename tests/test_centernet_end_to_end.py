"""`model.type: centernet` and `squeeze` through the command lines a user runs: train (3 steps,
tiny) then evaluate its model_dir, export it, load the SavedModel with plain TensorFlow and serve
it. The module-scoped fixtures are parametrised over the model types (one training run each);
the center-keypoint check is CenterNet's alone."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import evaluate, export
from cornernet_tf.config import load_config
from cornernet_tf.data import augment
from cornernet_tf.detection.inference import detect
from cornernet_tf.detection.module import object_detection_outputs
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.checkpoint import load_weights
from tests.serving_helpers import REPO_ROOT, call, running

STEPS = 3
SUBPROCESS_TIMEOUT_S = 300
# ae_threshold 1000 pairs corners whatever their embeddings: plenty of boxes for the center check.
EXPORT_OVERRIDES = ["detection.ae_threshold=1000", "detection.max_detections=50"]
PIXELS = np.random.default_rng(0).integers(0, 256, (2, 56, 72, 3), dtype=np.uint8)


@dataclasses.dataclass(frozen=True)
class Case:
    """A model type's shipped tiny config and the input side that shrinks it: its heatmap side
    (input + 1) // stride (CenterNet 4, Squeeze 8: 16 both) is divisible by 2**depth."""

    config: str
    input_size: int


CASES = {
    "centernet": Case("centernet_shapes_tiny", input_size=64),
    "squeeze": Case("squeeze_shapes_tiny", input_size=128),
}


def tiny_overrides(shapes_dir: pathlib.Path, case: Case) -> list[str]:
    """`case.config` shrunk to train and evaluate in seconds (depth 2, 8 channels): the cost is
    process starts and tracing, which a smaller network would not cut."""
    return [
        f"data.shapes_dir={shapes_dir}",
        "data.shapes_train=8",
        "data.shapes_val=3",
        "data.shapes_image_size=64",
        f"data.input_size=[{case.input_size}, {case.input_size}]",
        "model.depth=2",
        "model.dims=[8, 8, 8]",
        "model.modules=[1, 1, 1]",
        "model.pre_dims=[8, 8]",
        "model.cnv_dim=8",
        "model.pool_dim=8",
        "train.batch_size=2",
        f"train.steps={STEPS}",
        "train.warmup_steps=0",
        "train.eval_every=0",
    ]


class CornersOnly:
    """A model's outputs without the center maps: what the CornerNet decoding would see."""

    def __init__(self, model):
        self.model = model

    def __call__(self, images: tf.Tensor, training: bool = False) -> dict:
        outputs = self.model(images, training=training)
        return {key: value for key, value in outputs.items() if not key.startswith("ct_")}


def set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.fixture(scope="module", params=list(CASES))
def model_type(request) -> str:
    """The model type every module-scoped fixture below is built for."""
    return request.param


@pytest.fixture(scope="module")
def model_dir(model_type, tmp_path_factory) -> pathlib.Path:
    """A model_dir trained by `python -m cornernet_tf.train` (its final evaluation is `evaluate_model`,
    which the evaluate CLI test runs)."""
    case = CASES[model_type]
    root = tmp_path_factory.mktemp(model_type)
    command = [
        sys.executable,
        "-m",
        "cornernet_tf.train",
        "--config",
        case.config,
        "--model_dir",
        str(root / "run"),
        "--no_eval",
        *set_args(tiny_overrides(root / "shapes", case)),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "run"


@pytest.fixture(scope="module")
def config(model_dir):
    return load_config(model_dir / "config.yaml", EXPORT_OVERRIDES)


@pytest.fixture(scope="module")
def base(model_type, model_dir, tmp_path_factory) -> pathlib.Path:
    """The model base path holding version 1, exported by the CLI from the model_dir."""
    path = tmp_path_factory.mktemp("exports") / model_type
    argv = [
        "--config",
        str(model_dir / "config.yaml"),
        "--weights",
        str(model_dir),
        "--export_dir",
        str(path),
        *set_args(EXPORT_OVERRIDES),
    ]
    assert export.main(argv) == 0
    return path


@pytest.fixture(scope="module")
def model(config, model_dir):
    """The trained Keras model, restored in process from the model_dir."""
    model = build_model(config.model, corner_pool="vectorized")
    load_weights(model, model_dir)
    return model


@pytest.fixture(scope="module")
def exported(base) -> dict[str, np.ndarray]:
    """The SavedModel's `serving_tensor` outputs on PIXELS, loaded with plain TensorFlow."""
    loaded = tf.saved_model.load(str(base / "1"))
    return {k: v.numpy() for k, v in loaded.signatures["serving_tensor"](images=tf.constant(PIXELS)).items()}


def test_evaluate_cli_on_the_model_dir(model_type, model_dir, tmp_path, capsys):
    assert load_config(model_dir / "config.yaml").model.type == model_type
    results = tmp_path / "results.json"
    argv = ["--weights", str(model_dir), "--results", str(results), "--visualize", str(tmp_path / "pictures")]
    assert evaluate.main(argv) == 0
    out = capsys.readouterr().out
    assert "using the run's config" in out and f"ckpt-{STEPS}" in out and "AR100" in out
    assert isinstance(json.loads(results.read_text()), list)
    assert len(list((tmp_path / "pictures").glob("*.png"))) == 3


def keras_outputs(model, config) -> dict[str, np.ndarray]:
    """The export's path run in process on PIXELS: eval_resize (the tiny configs' detection.test_mode),
    normalize, `inference.detect` with the config's detection settings, the TF Object Detection API outputs."""
    assert config.detection.test_mode == "resize" and config.detection.scales == [1.0]
    prepared = [augment.eval_resize(tf.constant(image), config.data.input_size) for image in PIXELS]
    info = tf.stack([image_info for _, image_info in prepared])
    images = augment.normalize(
        tf.stack([image for image, _ in prepared]), tuple(config.data.mean), tuple(config.data.std)
    )
    dets = detect(model, images, info, config.detection)
    return {key: value.numpy() for key, value in object_detection_outputs(dets, info).items()}


def test_saved_model_runs_the_keras_path(exported, model, config, model_type):
    maps = model(tf.zeros([1, *config.data.input_size, 3]), training=False)["tl_heatmap"]
    stride = config.data.input_size[0] // maps.shape[1]
    assert (model_type, stride) in {("centernet", 4), ("squeeze", 8)}, "the trained model is not this type"
    want = keras_outputs(model, config)
    assert exported["num_detections"].min() >= 1, "the comparison needs detections"
    for key, value in want.items():
        np.testing.assert_allclose(exported[key], value, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("model_type", ["centernet"], indirect=True)
def test_saved_model_uses_the_centernet_centers(exported, model, config):
    corners_only = keras_outputs(CornersOnly(model), config)
    assert not np.allclose(exported["detection_scores"], corners_only["detection_scores"]), "the centers were ignored"


def test_served_over_rest_like_the_saved_model(base, model_type):
    want = tf.saved_model.load(str(base / "1")).signatures["serving_tensor"](images=tf.constant(PIXELS[:1]))
    with running(base, model_type, "--file_system_poll_wait_seconds", "0") as server:
        status, answer = call(
            server.url + ":predict", "POST", {"signature_name": "serving_tensor", "instances": PIXELS[:1].tolist()}
        )
    assert status == 200, answer
    np.testing.assert_allclose(
        answer["predictions"][0]["detection_scores"], want["detection_scores"].numpy()[0], atol=1e-5
    )
