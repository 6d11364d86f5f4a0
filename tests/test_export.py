"""export.py: a tiny random CornerNet exported through the CLI, loaded by plain TensorFlow in a
fresh process, by TF's saved_model_cli and by the REST and gRPC server, each compared with the in-process
Keras model + `inference.detect` path; what an export serves is what evaluation measures (the same
`detection` settings, multi-scale and flip included); the versioned, atomic write of the model directory."""

from __future__ import annotations

import os
import pathlib
import resource
import signal
import subprocess
import sys

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from cornernet_tf import export
from cornernet_tf.config import load_config
from cornernet_tf.data import augment
from cornernet_tf.detection.inference import detect, detect_multiscale
from cornernet_tf.detection.settings import MIN_SCORE_THRESHOLD, DetectionConfig
from cornernet_tf.ops.corner_pool import compiled_available
from cornernet_tf.serving.version_writer import write_version
from cornernet_tf.tasks.data import eval_dataset
from cornernet_tf.tasks.export import CONFIG_ASSET, export_model
from cornernet_tf.tasks.model import build_model
from cornernet_tf.training.checkpoint import training_checkpoint
from tests.data.conftest import encode, write_coco
from tests.serving_helpers import b64, call, png_bomb, running

# ae_threshold 1000 pairs corners whatever their embeddings, so a random model detects plenty.
OVERRIDES = ["detection.ae_threshold=1000"]
# The decoding the export must bake in: shapes_tiny's detection settings, the export flags below.
SETTINGS = DetectionConfig(
    k=20,
    num_dets=100,
    ae_threshold=1000.0,
    max_detections=20,
    flip=True,
    test_mode="resize",
    score_threshold=MIN_SCORE_THRESHOLD,
)
FLAGS = ["--flip", "--score_threshold", str(MIN_SCORE_THRESHOLD), "--max_detections", "20"]
SUBPROCESS_TIMEOUT_S = 300


def _pixels(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random RGB image (noise blurred by upsampling), uint8 [H, W, 3]."""
    coarse = np.random.default_rng(seed).uniform(0, 255, (height // 8 + 1, width // 8 + 1, 3))
    return tf.cast(tf.image.resize(coarse, (height, width)), tf.uint8).numpy()


JPEG = tf.io.encode_jpeg(_pixels(90, 120, 0)).numpy()
PNG = tf.io.encode_png(_pixels(50, 70, 1)).numpy()
TENSOR_BATCH = np.stack([_pixels(60, 80, 2), _pixels(60, 80, 3)])

FRESH_PROCESS_SCRIPT = """
import pathlib, sys
import numpy as np
import tensorflow as tf
version_dir, inputs, out = sys.argv[1:]
loaded = tf.saved_model.load(version_dir)
inputs = pathlib.Path(inputs)
calls = {"serving_default": tf.constant([(inputs / "image.jpg").read_bytes(), (inputs / "image.png").read_bytes()]),
         "serving_tensor": tf.constant(np.load(inputs / "pixels.npy"))}
results = {f"{name}.{key}": value.numpy()
           for name, images in calls.items() for key, value in loaded.signatures[name](images=images).items()}
assert not [m for m in sys.modules if m.startswith("cornernet_tf")], "the SavedModel needed cornernet_tf"


def peak_memory():
    status = pathlib.Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


before = peak_memory()
loaded.signatures["serving_default"](images=tf.constant([(inputs / "photo.png").read_bytes()]))
results["memory.photo"] = np.int64(peak_memory() - before)
try:
    loaded.signatures["serving_default"](images=tf.constant([(inputs / "bomb.png").read_bytes()]))
except tf.errors.InvalidArgumentError as err:
    results["bomb.error"] = np.array(err.message)
results["memory.bomb"] = np.int64(peak_memory() - before)
np.savez(out, **results)
"""


@pytest.fixture(scope="module")
def config():
    return load_config("shapes_tiny", OVERRIDES)


@pytest.fixture(scope="module")
def model(config):
    keras.utils.set_random_seed(3)
    return build_model(config.model, corner_pool="vectorized")


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.weights.h5"
    model.save_weights(str(path))
    return path


def _set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.fixture(scope="module")
def base(weights, tmp_path_factory) -> pathlib.Path:
    """The model base path holding version 1, exported by the CLI."""
    path = tmp_path_factory.mktemp("exports") / "cornernet"
    argv = [
        "--config",
        "shapes_tiny",
        "--weights",
        str(weights),
        "--export_dir",
        str(path),
        *_set_args(OVERRIDES),
        *FLAGS,
    ]
    assert export.main(argv) == 0
    return path


def api_outputs(dets: dict[str, np.ndarray], info: np.ndarray) -> dict[str, np.ndarray]:
    """`inference.detect` rows and image_info [B, 6] -> the TF Object Detection API outputs, in NumPy."""
    height_width = np.stack([info[:, 4], info[:, 5]] * 2, axis=-1)[:, None, :]  # h, w, h, w
    valid = dets["valid"]
    return {
        "detection_boxes": dets["boxes"][..., [1, 0, 3, 2]] / height_width,
        "detection_scores": dets["scores"],
        "detection_classes": np.where(valid, dets["classes"] + 1, 0).astype(np.float32),
        "num_detections": valid.sum(axis=1).astype(np.float32),
    }


def keras_outputs(model, images: list[np.ndarray], transform) -> dict[str, np.ndarray]:
    """The in-process path: each uint8 image through `transform` (an augment.eval_* transform),
    zero-padded at the bottom/right to the batch's largest, normalized, `inference.detect`, then
    converted to the TF Object Detection API outputs (`api_outputs`)."""
    prepared = [transform(tf.constant(image)) for image in images]
    height = max(int(p.shape[0]) for p, _ in prepared)
    width = max(int(p.shape[1]) for p, _ in prepared)
    batch = np.zeros((len(images), height, width, 3), np.float32)
    for row, (pixels, _) in enumerate(prepared):
        batch[row, : pixels.shape[0], : pixels.shape[1]] = pixels
    info = np.stack([i.numpy() for _, i in prepared])
    data = load_config("shapes_tiny").data
    normalized = augment.normalize(tf.constant(batch), tuple(data.mean), tuple(data.std))
    dets = {k: v.numpy() for k, v in detect(model, normalized, tf.constant(info), SETTINGS).items()}
    return api_outputs(dets, info)


def assert_same_detections(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert want["num_detections"].min() >= 5, "the comparison needs detections"
    np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
    np.testing.assert_array_equal(got["detection_classes"], want["detection_classes"])
    np.testing.assert_allclose(got["detection_scores"], want["detection_scores"], atol=1e-4)
    np.testing.assert_allclose(got["detection_boxes"], want["detection_boxes"], atol=1e-4)


def resize(image: tf.Tensor):
    return augment.eval_resize(image, (128, 128))


def decoded(data: bytes) -> np.ndarray:
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def test_export_dir_layout_and_assets(base):
    assert sorted(p.name for p in base.iterdir()) == ["1"]
    version = base / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert version.stat().st_mode & 0o777 == 0o755
    assert (version / "assets" / "class_names.txt").read_text() == "rectangle\nellipse\ntriangle\n"
    saved = load_config(version / "assets" / "config.yaml")
    assert saved.detection.ae_threshold == 1000.0 and saved.detection.flip and saved.detection.max_detections == 20
    assert saved.detection == SETTINGS
    assert saved.export.corner_pool == "vectorized" and saved.model == load_config("shapes_tiny").model


PHOTO_SIZE = (4000, 5000)  # 20 MP: 60 MB as uint8, 240 MB more as a float copy


def test_fresh_process_without_cornernet_tf_matches_keras_path(base, model, tmp_path):
    """Also, in the same process: a 20 MP image costs less than a float copy of it, and a
    decompression bomb is InvalidArgument at no memory cost (both measured as VmHWM growth)."""
    (tmp_path / "image.jpg").write_bytes(JPEG)
    (tmp_path / "image.png").write_bytes(PNG)
    (tmp_path / "photo.png").write_bytes(tf.io.encode_png(np.zeros((*PHOTO_SIZE, 3), np.uint8)).numpy())
    (tmp_path / "bomb.png").write_bytes(png_bomb(20000, 20000))
    np.save(tmp_path / "pixels.npy", TENSOR_BATCH)
    out = tmp_path / "out.npz"
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(base / "1"), str(tmp_path), str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as arrays:
        got = {key: arrays[key] for key in arrays.files}
    assert "20000 x 20000 pixels" in str(got["bomb.error"]) and "export.max_image_pixels = 40000000" in str(
        got["bomb.error"]
    )
    assert got["memory.bomb"] < 500 * 2**20
    assert got["memory.photo"] < 4 * PHOTO_SIZE[0] * PHOTO_SIZE[1] * 3 - 40 * 2**20, got["memory.photo"]
    for signature, images in (
        ("serving_default", [decoded(JPEG), decoded(PNG)]),
        ("serving_tensor", list(TENSOR_BATCH)),
    ):
        outputs = {key.split(".", 1)[1]: value for key, value in got.items() if key.startswith(signature + ".")}
        assert_same_detections(outputs, keras_outputs(model, images, resize))


def test_saved_model_cli_shows_both_signatures(base):
    result = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", str(base / "1"), "--all"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = result.stdout.split("signature_def[")
    signatures = {block.split("]", 1)[0].strip("'"): block for block in blocks[1:]}
    for name, dtype, shape in (
        ("serving_default", "DT_STRING", "(-1)"),
        ("serving_tensor", "DT_UINT8", "(-1, -1, -1, 3)"),
    ):
        text = " ".join(signatures[name].split())
        assert f"inputs['images'] tensor_info: dtype: {dtype} shape: {shape}" in text
        for output, out_shape in (
            ("detection_boxes", "(-1, 20, 4)"),
            ("detection_classes", "(-1, 20)"),
            ("detection_scores", "(-1, 20)"),
            ("num_detections", "(-1)"),
        ):
            assert f"outputs['{output}'] tensor_info: dtype: DT_FLOAT shape: {out_shape}" in text
        assert "Method name is: tensorflow/serving/predict" in text


def _grpc_predict(address: str, images: list[bytes]) -> dict[str, np.ndarray]:
    """serving_default through the official TF Serving gRPC client."""
    with grpc.insecure_channel(address) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "cornernet"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=120)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def test_rest_and_grpc_servers_answer_like_the_saved_model(base):
    """The server's own pixel check is off (--max_image_pixels 0): the bomb is refused by the
    export graph, as it is under a stock tensorflow_model_server."""
    direct = tf.saved_model.load(str(base / "1")).signatures
    want = {k: v.numpy() for k, v in direct["serving_default"](images=tf.constant([JPEG, PNG])).items()}
    want_tensor = direct["serving_tensor"](images=tf.constant(TENSOR_BATCH[:1]))["detection_scores"].numpy()
    flags = ("--file_system_poll_wait_seconds", "0", "--max_image_pixels", "0", "--max_request_pixels", "0")
    with running(base, "cornernet", *flags, grpc=True) as server:
        status, answer = call(server.url + ":predict", "POST", {"instances": [b64(JPEG), b64(PNG)]})
        assert status == 200, answer
        from_grpc = _grpc_predict(server.grpc_address, [JPEG, PNG])
        for name, value in want.items():
            got = np.array([row[name] for row in answer["predictions"]], np.float32)
            np.testing.assert_allclose(got, value, atol=1e-5)
            np.testing.assert_allclose(from_grpc[name], got, atol=1e-5)
        status, answer = call(
            server.url + ":predict",
            "POST",
            {"signature_name": "serving_tensor", "instances": TENSOR_BATCH[:1].tolist()},
        )
        assert status == 200, answer
        np.testing.assert_allclose(np.array(answer["predictions"][0]["detection_scores"]), want_tensor[0], atol=1e-5)
        status, answer = call(server.url + ":predict", "POST", {"instances": [b64(b"not an image")]})
        assert status == 400 and answer["error"]
        bomb = png_bomb(20000, 20000)
        before = server.peak_memory_bytes()
        status, answer = call(server.url + ":predict", "POST", {"instances": [b64(JPEG), b64(bomb)]})
        assert status == 400 and "export.max_image_pixels = 40000000" in answer["error"], answer
        with pytest.raises(grpc.RpcError) as caught:
            _grpc_predict(server.grpc_address, [bomb])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "20000 x 20000" in caught.value.details()
        assert server.peak_memory_bytes() - before < 500 * 2**20
    assert want["num_detections"].min() >= 5


def test_pad_mode_batches_images_of_different_sizes(config, model, tmp_path):
    pad_config = load_config("shapes_tiny", [*OVERRIDES, "detection.test_mode=pad", "detection.flip=true"])
    version = export_model(model, pad_config, tmp_path)
    outputs = tf.saved_model.load(str(version)).signatures["serving_default"](images=tf.constant([JPEG, PNG]))
    want = keras_outputs(model, [decoded(JPEG), decoded(PNG)], lambda image: augment.eval_pad(image, 32))
    assert_same_detections({k: v.numpy() for k, v in outputs.items()}, want)


MULTISCALE_TEST = ["detection.test_mode=pad", "detection.scales=[0.5, 1.0]", "detection.flip=true"]


def _measured(model, config, split: str = "val") -> dict[str, np.ndarray]:
    """What `tasks.evaluation.evaluate_model` scores on the split: per image (batches of 1, as
    there), every test scale's `tasks.data.eval_dataset` input through `detect_multiscale` with
    config.detection, as TF Object Detection API outputs stacked in id order."""
    datasets = [eval_dataset(config, split, scale=scale) for scale in config.detection.scales]
    rows = []
    for batches in zip(*datasets):
        inputs = [(images, meta["image_info"]) for images, meta in batches]
        dets = {key: value.numpy() for key, value in detect_multiscale(model, inputs, config.detection).items()}
        rows.append(api_outputs(dets, inputs[0][1].numpy()))
    return {key: np.concatenate([row[key] for row in rows]) for key in rows[0]}


def test_served_detections_are_the_measured_ones_with_multiscale_flip_test(model, tmp_path):
    """serving_tensor of an export with detection.test_mode=pad, scales [0.5, 1] and flip gives
    the detections evaluation measures on the same images (read from files by the eval pipeline)."""
    images = list(TENSOR_BATCH) + [_pixels(60, 80, 4)]
    files = [(f"{number}.png", encode(image), 60, 80) for number, image in enumerate(images, 1)]
    annotations, images_dir = write_coco(
        tmp_path / "coco", files, [], [(1, "rectangle"), (2, "ellipse"), (3, "triangle")]
    )
    data = [
        f"data.{split}_{kind}={path}"
        for split in ("train", "val")
        for kind, path in (("annotations", annotations), ("images", images_dir))
    ]
    overrides = [*OVERRIDES, *MULTISCALE_TEST, "data.dataset=coco", *data]
    config = load_config("shapes_tiny", overrides)
    version = export_model(model, config, tmp_path / "exports")
    served = tf.saved_model.load(str(version)).signatures["serving_tensor"](images=tf.constant(np.stack(images)))
    measured = _measured(model, config)
    assert measured["num_detections"].shape == (len(images),)
    assert_same_detections({key: value.numpy() for key, value in served.items()}, measured)
    # both test-time augmentations change the detections, so the export really runs them
    for plainer in ("detection.scales=[1.0]", "detection.flip=false"):
        other = _measured(model, load_config("shapes_tiny", [*overrides, plainer]))
        assert not np.allclose(other["detection_scores"], measured["detection_scores"], atol=1e-4), plainer


def _op_types(version: pathlib.Path) -> set[str]:
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((version / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    return {node.op for function in graph.library.function for node in function.node_def}


@pytest.mark.skipif(not compiled_available(), reason="the compiled corner-pool library is not built")
def test_compiled_op_export_matches_vectorized(config, model, base, tmp_path):
    op_model = build_model(config.model, corner_pool="op")
    op_model.set_weights(model.get_weights())
    op_config = load_config("shapes_tiny", [*OVERRIDES, "export.corner_pool=op", "detection.flip=true"])
    version = export_model(op_model, op_config, tmp_path)
    assert "FusedCornerPool" in _op_types(version) and "FusedCornerPool" not in _op_types(base / "1")
    images = tf.constant([JPEG, PNG])
    got = tf.saved_model.load(str(version)).signatures["serving_default"](images=images)
    want = tf.saved_model.load(str(base / "1")).signatures["serving_default"](images=images)
    assert_same_detections({k: v.numpy() for k, v in got.items()}, {k: v.numpy() for k, v in want.items()})


def test_failed_export_leaves_no_version_and_no_temp_dir(config, model, tmp_path, monkeypatch):
    export_dir = tmp_path / "models"
    seen = []

    def write_half_then_fail(obj, directory, signatures=None):
        (pathlib.Path(directory) / "saved_model.pb").write_bytes(b"half a SavedModel")
        seen.extend(p.name for p in export_dir.iterdir())
        raise OSError("No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", write_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export_model(model, config, export_dir)
    assert len(seen) == 1 and seen[0].startswith(".tmp-1-")  # never a numeric name while incomplete
    assert list(export_dir.iterdir()) == []


def _write_marker(directory: pathlib.Path) -> None:
    (directory / "saved_model.pb").write_bytes(b"marker")


def test_versions_increment_and_existing_versions_are_refused(tmp_path):
    export_dir = tmp_path / "new" / "models"
    assert write_version(export_dir, _write_marker).name == "1"
    (export_dir / "notes").mkdir()  # not a version
    assert write_version(export_dir, _write_marker).name == "2"
    assert write_version(export_dir, _write_marker, version=7).name == "7"
    assert write_version(export_dir, _write_marker).name == "8"
    (export_dir / "9").mkdir()  # incomplete (e.g. being copied in): still taken
    assert write_version(export_dir, _write_marker).name == "10"

    def never(directory: pathlib.Path) -> None:
        raise AssertionError("must not write")

    with pytest.raises(FileExistsError, match="already exists"):
        write_version(export_dir, never, version=2)
    with pytest.raises(ValueError, match="positive"):
        write_version(export_dir, never, version=0)
    assert sorted(p.name for p in export_dir.iterdir()) == ["1", "10", "2", "7", "8", "9", "notes"]
    assert (export_dir / "2" / "saved_model.pb").read_bytes() == b"marker"


def test_interrupted_write_is_cleaned_up(tmp_path):
    def interrupted(directory: pathlib.Path) -> None:
        _write_marker(directory)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_version(tmp_path, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_to_overwrite_a_version(base, weights, capsys):
    argv = ["--config", "shapes_tiny", "--weights", str(weights), "--export_dir", str(base), "--version", "1"]
    assert export.main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in base.iterdir()) == ["1"]


def test_cli_without_config_exports_with_the_config_of_the_weights_run(config, model, tmp_path, capsys):
    run = tmp_path / "run"
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    checkpoint = training_checkpoint(model, optimizer, tf.Variable(5, dtype=tf.int64))
    prefix = tf.train.CheckpointManager(checkpoint, str(run / "checkpoints"), max_to_keep=1).save(5)
    load_config("shapes_tiny", [*OVERRIDES, "detection.max_detections=7"]).save(run / "config.yaml")
    assert export.main(["--weights", prefix, "--export_dir", str(tmp_path / "exports")]) == 0
    assert f"using the run's config {run / 'config.yaml'}" in capsys.readouterr().out
    exported = load_config(tmp_path / "exports" / "1" / "assets" / CONFIG_ASSET)
    assert exported.detection.max_detections == 7


def test_cli_without_config_and_without_a_saved_one_asks_for_config(weights, tmp_path, capsys):
    assert export.main(["--weights", str(weights), "--export_dir", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "has no config.yaml beside it or above it; pass --config" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", [[], ["--random_weights", "--weights", "w.weights.h5"]])
def test_cli_needs_exactly_one_weights_source(source, tmp_path):
    with pytest.raises(SystemExit):
        export.parse_args(["--config", "shapes_tiny", "--export_dir", str(tmp_path), *source])


def test_cli_flags_become_config_overrides():
    args = export.parse_args(
        [
            "--config",
            "c",
            "--random_weights",
            "--export_dir",
            "e",
            "--no-flip",
            "--score_threshold",
            "0.3",
            "--corner_pool",
            "scan",
        ]
    )
    assert export.flag_overrides(args) == [
        "detection.flip=false",
        "detection.score_threshold=0.3",
        "export.corner_pool=scan",
    ]


def test_squeeze_exports_and_pads_to_its_stride_8_divisor(tmp_path):
    """CornerNet-Squeeze (stride 8, depth 3): pad mode must pad to side | 63, not CornerNet's | 31."""
    overrides = [*OVERRIDES, "detection.test_mode=pad", "detection.flip=true"]
    squeeze_config = load_config("squeeze_shapes_tiny", overrides)
    keras.utils.set_random_seed(3)  # a random model whose corners pair up (ae_threshold 1000)
    squeeze = build_model(squeeze_config.model, corner_pool="vectorized")
    version = export_model(squeeze, squeeze_config, tmp_path)
    outputs = tf.saved_model.load(str(version)).signatures["serving_default"](images=tf.constant([JPEG, PNG]))
    want = keras_outputs(squeeze, [decoded(JPEG), decoded(PNG)], lambda image: augment.eval_pad(image, 64))
    assert_same_detections({k: v.numpy() for k, v in outputs.items()}, want)


def test_a_full_disk_leaves_no_version_behind(weights, tmp_path):
    """A write failing mid-export (a file-size limit stands in for a full disk): one error line,
    exit status 2, nothing in the export folder, not even the temporary version."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    base = tmp_path / "exports"
    argv = ["--config", "shapes_tiny", "--weights", str(weights), "--export_dir", str(base), *_set_args(OVERRIDES)]
    done = subprocess.run(
        [sys.executable, "-m", "cornernet_tf.export", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "could not write version 1 of" in errors[0] and "nothing was written" in errors[0]
    assert "Traceback" not in done.stderr
    assert list(base.iterdir()) == []
