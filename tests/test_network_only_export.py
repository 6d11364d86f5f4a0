"""Network-only portable exports (`--network_only`): a tiny random CornerNet exported by the CLI as
ONNX (the pad test at two scales with flip, dynamic batch) and TFLite (resize, fixed batch), run in
their runtimes (onnxruntime, the LiteRT interpreter) and matched map by map against the Keras
network on the images the export's own preprocessing makes (the SavedModel's per-image
transform); the export_info.json contract a TensorRT user decodes with; calibrated int8 of the
same graph; the refusals."""

from __future__ import annotations

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import export
from cornernet_tf.config import load_config
from cornernet_tf.detection.inference import network_batch
from cornernet_tf.portable import export_info, fixed_size_runner, onnx
from cornernet_tf.tasks.export import detection_module
from cornernet_tf.tasks.model import build_model
from tests.test_export import _pixels

# a network small enough that every conversion takes seconds (stride 4, size divisor 16)
TINY = [
    "model.depth=2",
    "model.dims=[16, 16, 16]",
    "model.modules=[1, 1, 1]",
    "model.pre_dims=[16, 16]",
    "model.cnv_dim=16",
    "model.pool_dim=16",
    "data.input_size=[64, 64]",
]
# the pad test at two scales with the flip test: two test inputs of other sizes, 2B rows each
PAD = ["detection.test_mode=pad", "detection.scales=[0.5, 1.0]", "detection.flip=true"]
IMAGE_SIZE = (40, 56)
IMAGES = np.stack([_pixels(*IMAGE_SIZE, seed) for seed in (7, 8, 9)])
MAP_KEYS = ["br_embedding", "br_heatmap", "br_offset", "tl_embedding", "tl_heatmap", "tl_offset"]
ATOL = 1e-4


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> pathlib.Path:
    keras.utils.set_random_seed(11)
    model = build_model(load_config("shapes_tiny", TINY).model, corner_pool="vectorized")
    path = tmp_path_factory.mktemp("weights") / "tiny.weights.h5"
    model.save_weights(str(path))
    return path


def _argv(weights: pathlib.Path, export_dir: pathlib.Path, overrides: list[str], *flags: str) -> list[str]:
    sets = [arg for item in [*TINY, *overrides] for arg in ("--set", item)]
    return ["--config", "shapes_tiny", "--weights", str(weights), "--export_dir", str(export_dir), *sets, *flags]


def _export(weights: pathlib.Path, export_dir: pathlib.Path, overrides: list[str], *flags: str) -> pathlib.Path:
    size = ["--image_size", *map(str, IMAGE_SIZE)]
    assert export.main(_argv(weights, export_dir, overrides, *size, "--network_only", *flags)) == 0
    return export_dir / "1"


@pytest.fixture(scope="module")
def exports(weights, tmp_path_factory) -> dict[str, pathlib.Path]:
    """Version folders of the CLI's network-only ONNX (PAD, dynamic batch) and TFLite (resize, batch 3)."""
    root = tmp_path_factory.mktemp("network_only")
    return {
        "onnx": _export(weights, root / "onnx", PAD, "--format", "onnx", "--batch_size", "dynamic"),
        "tflite": _export(weights, root / "tflite", [], "--format", "tflite", "--batch_size", "3"),
    }


def keras_maps(weights: pathlib.Path, overrides: list[str], images: np.ndarray) -> dict[str, np.ndarray]:
    """The Keras network's maps on `images` preprocessed as the SavedModel does (each image
    transformed alone, normalized; with flip the mirrored batch after), named map_<input>_<key>."""
    config = load_config("shapes_tiny", [*TINY, *overrides])
    model = build_model(config.model, corner_pool="vectorized")
    model.load_weights(str(weights))
    module = detection_module(model, config)
    per_image = [module.transforms(tf.constant(image)) for image in images]
    maps = {}
    for index in range(len(per_image[0])):
        pixels = module.normalize(tf.stack([inputs[index][0] for inputs in per_image]))
        outputs = model(network_batch(pixels, module.settings), training=False)
        maps.update({f"map_{index}_{key}": value.numpy() for key, value in outputs.items()})
    return maps


def assert_same_maps(got: dict[str, np.ndarray], want: dict[str, np.ndarray], order: list[str]) -> None:
    assert list(got) == order and sorted(got) == sorted(want)
    for name in order:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], atol=ATOL, err_msg=name)


def test_onnx_holds_the_network_alone_and_matches_keras_at_any_batch(exports, weights):
    import onnx as onnx_lib

    version = exports["onnx"]
    assert sorted(p.name for p in version.iterdir()) == ["export_info.json", "model.onnx"]
    graph = onnx_lib.load(str(version / "model.onnx")).graph
    assert not {node.op_type for node in graph.node} & {"Loop", "NonMaxSuppression", "TopK"}  # no decoding
    order = [f"map_{index}_{key}" for index in (0, 1) for key in MAP_KEYS]
    assert [value.name for value in graph.output] == order
    assert [dim.dim_param for dim in graph.input[0].type.tensor_type.shape.dim][0] == "batch"
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "2*batch"
    want = keras_maps(weights, PAD, IMAGES)
    assert_same_maps(onnx.run(version / "model.onnx", IMAGES), want, order)
    single = {name: np.concatenate([value[1:2], value[4:5]]) for name, value in want.items()}  # image 1, mirrored
    assert_same_maps(onnx.run(version / "model.onnx", IMAGES[1:2]), single, order)


def test_tflite_holds_the_network_alone_and_matches_keras(exports, weights):
    version = exports["tflite"]
    assert sorted(p.name for p in version.iterdir()) == ["export_info.json", "model.tflite"]
    run, info = fixed_size_runner(version)
    order = [f"map_0_{key}" for key in MAP_KEYS]
    assert info["outputs"]["order"] == order
    want = keras_maps(weights, [], IMAGES)
    assert_same_maps(run(IMAGES), want, order)  # the file's outputs by position
    from ai_edge_litert.interpreter import Interpreter

    by_signature = Interpreter(model_path=str(version / "model.tflite")).get_signature_runner()(images=IMAGES)
    assert_same_maps({name: by_signature[name] for name in order}, want, order)  # and by their names


def test_export_info_states_the_contract(exports):
    info = export_info.read(exports["onnx"])
    assert info["network_only"] is True and info["format"] == "onnx" and info["model_file"] == "model.onnx"
    assert info["input"] == {
        "name": "images",
        "dtype": "uint8",
        "layout": "NHWC",
        "color": "RGB",
        "shape": ["batch", *IMAGE_SIZE, 3],
        "value_range": [0, 255],
    }
    pre = info["preprocessing"]
    assert pre["in_graph"] and pre["test_mode"] == "pad" and pre["scales"] == [0.5, 1.0] and pre["size_divisor"] == 16
    assert pre["normalization"]["scale"] == 1 / 255 and len(pre["normalization"]["mean"]) == 3
    assert "canvas" in pre["transform"] and pre["fill"] == "black"
    # 40 x 56 at scale 0.5 is 20 x 28, centred in 31 x 31; at 1: 47 x 63 (sides + 1 multiples of 16)
    assert info["test_inputs"] == [
        {
            "index": 0,
            "scale": 0.5,
            "network_input_size": [31, 31],
            "image_to_input": {
                "scale_yx": [0.5, 0.5],
                "offset_yx": [5.0, 1.0],
                "formula": "input_px = image_px * scale + offset, per axis",
            },
        },
        {
            "index": 1,
            "scale": 1.0,
            "network_input_size": [47, 63],
            "image_to_input": {
                "scale_yx": [1.0, 1.0],
                "offset_yx": [3.0, 3.0],
                "formula": "input_px = image_px * scale + offset, per axis",
            },
        },
    ]
    outputs = info["outputs"]
    assert outputs["map_1_tl_heatmap"] == {
        "map": "1/tl_heatmap",
        "test_input": 1,
        "shape": ["2*batch", 12, 16, 3],
        "dtype": "float32",
        "stride": [47 / 12, 63 / 16],
        "content": export_info.map_content("tl_heatmap"),
    }
    assert "BEFORE the sigmoid" in outputs["map_1_tl_heatmap"]["content"]
    assert (
        outputs["map_0_br_offset"]["shape"] == ["2*batch", 8, 8, 2]
        and "map px" in outputs["map_0_br_offset"]["content"]
    )
    assert "mirrored" in outputs["rows"] and "image_to_input" in outputs["coordinates"]
    decoding = info["decoding"]
    assert decoding["in_graph"] is False and decoding["settings"]["flip"] is True
    assert decoding["settings"]["ae_threshold"] == 0.5 and decoding["settings"]["k"] == 20
    assert any("soft-NMS" in step for step in decoding["steps"])
    assert "detection_boxes" not in outputs and info["class_names"] == ["rectangle", "ellipse", "triangle"]
    tflite_info = export_info.read(exports["tflite"])
    assert tflite_info["input"]["shape"] == [3, *IMAGE_SIZE, 3]
    resized = tflite_info["test_inputs"][0]["image_to_input"]
    assert resized["scale_yx"] == pytest.approx([64 / 40, 64 / 56]) and resized["offset_yx"] == [0.0, 0.0]
    assert tflite_info["outputs"]["map_0_tl_heatmap"]["shape"] == [3, 16, 16, 3]
    assert tflite_info["outputs"]["rows"] == "row b: the maps of input image b"


def test_detector_refuses_a_network_only_export(exports):
    from cornernet_tf.api.detector import Detector

    with pytest.raises(ValueError, match="network-only export returns the network's maps"):
        Detector.from_export(exports["tflite"])


@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory) -> pathlib.Path:
    import cv2

    folder = tmp_path_factory.mktemp("calibration")
    for seed in range(8):
        cv2.imwrite(str(folder / f"{seed}.png"), _pixels(*IMAGE_SIZE, 100 + seed))
    return folder


def test_calibrated_int8_network_only(weights, calibration_folder, tmp_path, monkeypatch):
    """TFLite: the calibrated export's int8 network file alone; ONNX: the network-only graph in QDQ."""
    from cornernet_tf.utils import runtime

    monkeypatch.setattr(runtime, "cpu_int8_units", lambda: "avx512_vnni")
    calibrate = ["--quantize", "int8", "--representative_images", str(calibration_folder)]
    version = _export(weights, tmp_path / "tflite", [], "--format", "tflite", "--batch_size", "2", *calibrate)
    assert sorted(p.name for p in version.iterdir()) == ["export_info.json", "model.tflite"]
    info = export_info.read(version)
    assert "int8 network" in info["quantization_detail"] and "decoding" not in info["quantization_detail"]
    run, _ = fixed_size_runner(version)
    want = keras_maps(weights, [], IMAGES[:2])
    got = run(IMAGES[:2])
    assert {name: value.shape for name, value in got.items()} == {name: value.shape for name, value in want.items()}
    heat = "map_0_tl_heatmap"
    assert np.corrcoef(got[heat].ravel(), want[heat].ravel())[0, 1] > 0.9, "int8 maps far from float"
    version = _export(weights, tmp_path / "onnx", [], "--format", "onnx", *calibrate)
    import onnx as onnx_lib

    nodes = onnx_lib.load(str(version / "model.onnx")).graph.node
    assert any(node.op_type == "DequantizeLinear" for node in nodes) and not any(n.op_type == "Loop" for n in nodes)
    got = onnx.run(version / "model.onnx", IMAGES[:1])
    assert np.corrcoef(got[heat].ravel(), want[heat][:1].ravel())[0, 1] > 0.9


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "config, flags, message",
    [
        ("shapes_tiny", ["--network_only"], "--network_only is for --format tflite / onnx"),
        ("shapes_tiny", ["--network_only", "--format", "onnx", "--quantize", "fp16"], "ONNX takes none or int8"),
        ("saccade_shapes_tiny", ["--network_only", "--format", "onnx"], "cannot hold the saccade test"),
    ],
)
def test_refusals_are_one_error_line_and_write_nothing(tmp_path, capsys, config, flags, message):
    argv = ["--config", config, "--random_weights", "--export_dir", str(tmp_path / "out"), *flags]
    assert export.main(argv) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "out").exists()
