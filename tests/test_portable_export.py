"""Portable exports (cornernet_tf.portable): a tiny random CornerNet exported by the CLI as TFLite
(float32, float16, int8) and ONNX, each run in its own runtime (the LiteRT interpreter,
onnxruntime) on the images the SavedModel export gets, and compared with that SavedModel's
`serving_tensor`; export_info.json, the refusals and the atomic write."""

from __future__ import annotations

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from cornernet_tf import export
from cornernet_tf.config import load_config
from cornernet_tf.detection.settings import MIN_SCORE_THRESHOLD
from cornernet_tf.portable import export_info, onnx, tflite
from cornernet_tf.tasks.export import export_model, export_portable
from cornernet_tf.tasks.model import build_model
from tests.test_export import FLAGS, OVERRIDES, _pixels

IMAGE_SIZE = (96, 120)
IMAGES = np.stack([_pixels(*IMAGE_SIZE, seed) for seed in (4, 5, 6)])
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def config():
    """The config the CLI exports with FLAGS."""
    flags = ["detection.flip=true", f"detection.score_threshold={MIN_SCORE_THRESHOLD}", "detection.max_detections=20"]
    return load_config("shapes_tiny", [*OVERRIDES, *flags])


@pytest.fixture(scope="module")
def weights(config, tmp_path_factory) -> pathlib.Path:
    keras.utils.set_random_seed(3)
    model = build_model(config.model, corner_pool="vectorized")
    path = tmp_path_factory.mktemp("weights") / "tiny.weights.h5"
    model.save_weights(str(path))
    return path


@pytest.fixture(scope="module")
def saved_model(config, weights, tmp_path_factory) -> dict[str, np.ndarray]:
    """The SavedModel export's serving_tensor outputs on IMAGES: the reference."""
    model = build_model(config.model, corner_pool="vectorized")
    model.load_weights(str(weights))
    version = export_model(model, config, tmp_path_factory.mktemp("saved_model"))
    outputs = tf.saved_model.load(str(version)).signatures["serving_tensor"](images=tf.constant(IMAGES))
    return {key: value.numpy() for key, value in outputs.items()}


def _export(weights: pathlib.Path, export_dir: pathlib.Path, *flags: str) -> pathlib.Path:
    argv = [
        "--config",
        "shapes_tiny",
        "--weights",
        str(weights),
        "--export_dir",
        str(export_dir),
        *[arg for item in OVERRIDES for arg in ("--set", item)],
        *FLAGS,
        "--image_size",
        *map(str, IMAGE_SIZE),
        *flags,
    ]
    assert export.main(argv) == 0
    return export_dir / "1"


@pytest.fixture(scope="module")
def exports(weights, tmp_path_factory) -> dict[str, pathlib.Path]:
    """Version folders of the CLI's tflite (float, fp16, int8; batch 3) and onnx (dynamic batch) exports."""
    root = tmp_path_factory.mktemp("portable")
    return {
        "tflite": _export(weights, root / "tflite", "--format", "tflite", "--batch_size", "3"),
        "fp16": _export(weights, root / "fp16", "--format", "tflite", "--batch_size", "3", "--quantize", "fp16"),
        "int8": _export(weights, root / "int8", "--format", "tflite", "--batch_size", "3", "--quantize", "int8"),
        "onnx": _export(weights, root / "onnx", "--format", "onnx", "--batch_size", "dynamic"),
    }


def assert_close_detections(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert want["num_detections"].min() >= 5, "the comparison needs detections"
    np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
    np.testing.assert_array_equal(got["detection_classes"], want["detection_classes"])
    np.testing.assert_allclose(got["detection_scores"], want["detection_scores"], atol=TOLERANCE)
    np.testing.assert_allclose(got["detection_boxes"], want["detection_boxes"], atol=TOLERANCE)


def test_float_tflite_in_litert_matches_the_saved_model(exports, saved_model):
    version = exports["tflite"]
    assert sorted(p.name for p in version.iterdir()) == ["export_info.json", "model.tflite"]
    assert_close_detections(tflite.run(version / "model.tflite", IMAGES), saved_model)  # by position
    detect = Interpreter(model_path=str(version / "model.tflite")).get_signature_runner()
    assert_close_detections(detect(images=IMAGES), saved_model)  # by the signature's names


def test_onnx_in_onnxruntime_matches_the_saved_model_at_any_batch(exports, saved_model):
    model = exports["onnx"] / "model.onnx"
    assert_close_detections(onnx.run(model, IMAGES), saved_model)
    single = onnx.run(model, IMAGES[1:2])
    assert_close_detections(single, {key: value[1:2] for key, value in saved_model.items()})


def test_onnx_holds_its_weights_folded_as_constants(exports):
    """Converted without its weights and given them afterwards (portable/onnx.py): the images are
    the only input, and every convolution reads its kernel straight from an initializer in ONNX's
    [out, in, kh, kw] layout, the layout transposes and batch normalizations folded in."""
    import onnx as onnx_lib

    graph = onnx_lib.load(str(exports["onnx"] / "model.onnx")).graph
    assert [value.name for value in graph.input] == ["images"]
    initializers = {tensor.name: tuple(tensor.dims) for tensor in graph.initializer}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert convolutions and not [node for node in graph.node if node.op_type == "BatchNormalization"]
    for node in convolutions:
        kernel = initializers[node.input[1]]
        assert len(kernel) == 4 and list(kernel[2:]) == next(a.ints for a in node.attribute if a.name == "kernel_shape")
        assert len(node.input) == 3 and node.input[2] in initializers  # the bias, batch normalization folded in


def _weight_types(path: pathlib.Path) -> set[str]:
    """numpy dtype names of the model's constant tensors of 1000+ elements (the weights)."""
    interpreter = Interpreter(model_path=str(path))
    return {
        np.dtype(d["dtype"]).name
        for d in interpreter.get_tensor_details()
        if np.prod(d["shape"]) >= 1000 and d["index"] not in {t["index"] for t in interpreter.get_input_details()}
    }


def test_quantized_tflite_stores_smaller_weights_and_runs_in_litert(exports, saved_model):
    size = {kind: (exports[kind] / "model.tflite").stat().st_size for kind in ("tflite", "fp16", "int8")}
    assert size["fp16"] <= 0.6 * size["tflite"] and size["int8"] <= 0.3 * size["tflite"], size
    assert "float16" in _weight_types(exports["fp16"] / "model.tflite")
    assert "int8" in _weight_types(exports["int8"] / "model.tflite")
    for kind in ("fp16", "int8"):
        got = tflite.run(exports[kind] / "model.tflite", IMAGES)
        assert {key: value.shape for key, value in got.items()} == {
            key: value.shape for key, value in saved_model.items()
        }
        assert np.isfinite(got["detection_scores"]).all() and got["num_detections"].min() >= 1
    fp16 = tflite.run(exports["fp16"] / "model.tflite", IMAGES)  # float16 weights, float32 compute
    np.testing.assert_allclose(fp16["detection_scores"][:, 0], saved_model["detection_scores"][:, 0], atol=0.02)


def test_export_info_describes_each_export(exports):
    info = export_info.read(exports["tflite"])
    assert info["format"] == "tflite" and info["model_file"] == "model.tflite" and info["quantization"] == "none"
    assert info["network_only"] is False and "test_inputs" not in info and "decoding" not in info
    assert info["input"] == {
        "name": "images",
        "dtype": "uint8",
        "layout": "NHWC",
        "color": "RGB",
        "shape": [3, 96, 120, 3],
        "value_range": [0, 255],
    }
    assert info["outputs"]["order"] == ["detection_boxes", "detection_classes", "detection_scores", "num_detections"]
    assert info["outputs"]["detection_boxes"] == [3, 20, 4]
    assert info["class_names"] == ["rectangle", "ellipse", "triangle"]
    assert info["preprocessing"]["network_input_size"] == [128, 128] and info["model"]["corner_pool"] == "vectorized"
    assert info["preprocessing"]["test_mode"] == "resize" and info["preprocessing"]["scales"] == [1.0]
    assert info["model"]["flip"] and info["model"]["score_threshold"] == MIN_SCORE_THRESHOLD
    assert info["versions"]["tensorflow"] == tf.__version__ and info["versions"]["ai-edge-litert"]
    int8 = export_info.read(exports["int8"])
    assert int8["quantization"] == "int8" and "dynamic range" in int8["quantization_detail"]
    onnx_info = json.loads((exports["onnx"] / "export_info.json").read_text())
    assert onnx_info["input"]["shape"] == ["batch", 96, 120, 3] and onnx_info["opset"] == onnx.OPSET
    assert onnx_info["versions"]["tf2onnx"] and onnx_info["outputs"]["num_detections"] == [None]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--format", "tflite", "--corner_pool", "op"], "the compiled corner-pool op only runs in TensorFlow"),
        (["--format", "onnx", "--quantize", "fp16"], "ONNX takes none or int8"),
        (["--format", "tflite", "--batch_size", "dynamic"], "TFLite needs a fixed batch size"),
        (["--quantize", "fp16"], "are for --format tflite / onnx"),
    ],
)
def test_cli_refuses_what_a_format_cannot_hold(weights, tmp_path, capsys, flags, message):
    argv = ["--config", "shapes_tiny", "--weights", str(weights), "--export_dir", str(tmp_path / "out"), *flags]
    assert export.main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error:") and message in line
    assert not (tmp_path / "out").exists()


def test_failed_write_leaves_no_version(config, tmp_path, monkeypatch):
    monkeypatch.setattr(tflite, "convert", lambda *args, **kwargs: b"flatbuffer")

    def fail(directory: pathlib.Path, info: dict) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(export_info, "write", fail)
    model = build_model(config.model, corner_pool="vectorized")
    with pytest.raises(OSError, match="No space left"):
        export_portable(model, config, tmp_path, "tflite")
    assert list(tmp_path.iterdir()) == []
