"""Reduced-precision exports: a bfloat16 SavedModel, calibrated full-integer TFLite and int8 ONNX
of one briefly trained tiny model, each run in its own runtime (TensorFlow, the LiteRT
interpreter, onnxruntime) on the val images and matched against the float32 SavedModel's
detections; the split TFLite graph in float32 against the whole one; the calibration data's
checks and the refusals, through the export command.

bfloat16 keeps every image's top row. int8 is held to what it promises: the COCO AP of the
float model within INT8_AP_TOLERANCE on VAL_IMAGES held-out scenes, and most confident rows
matched. Not every image's top row: with another training trajectory (another CPU's float
rounding, or another seed on this one), a weak top row (score 0.47) can fall just below int8's
noise while the AP moves by less than 0.006 (docs/benchmarks.md, "int8 on every CPU")."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from cornernet_tf import export
from cornernet_tf.portable import export_info, onnx, tflite
from cornernet_tf.portable.graph import PortableDetector
from cornernet_tf.tasks.export import detection_module, export_network
from tests.training.conftest import run_module

STEPS = 1500
SIZE = 64
PROBE_IMAGES = 12
MIN_SCORE = 0.3  # the float rows compared: the confident ones
IOU, SCORE_TOLERANCE = 0.8, 0.05
MATCHED = 0.8  # of the confident float rows
VAL_IMAGES = 100  # held out: the AP of the int8 files is measured on them
INT8_AP_TOLERANCE = 0.02


def _overrides(shapes_dir: pathlib.Path) -> list[str]:
    return [
        f"data.shapes_dir={shapes_dir}",
        "data.shapes_train=64",
        f"data.shapes_val={VAL_IMAGES}",
        f"data.shapes_image_size={SIZE}",
        f"data.input_size=[{SIZE}, {SIZE}]",
        "model.depth=2",
        "model.dims=[16, 16, 16]",
        "model.modules=[1, 1, 1]",
        "model.pre_dims=[16, 16]",
        "model.cnv_dim=16",
        "model.pool_dim=16",
        "train.batch_size=8",
        f"train.steps={STEPS}",
        "train.learning_rate=0.002",
        "train.lr_schedule=constant",
        "train.warmup_steps=0",
        "train.log_every=100",
        "train.eval_every=0",
        "train.checkpoint_every=1000",
        "detection.max_detections=20",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A tiny shapes model trained STEPS steps: its model_dir, val images and train image folder."""
    root = tmp_path_factory.mktemp("reduced_precision")
    shapes_dir = root / "shapes"
    sets = [arg for item in _overrides(shapes_dir) for arg in ("--set", item)]
    trained = run_module(
        ["-m", "cornernet_tf.train", "--model_dir", str(root / "run"), "--no_eval", *sets], timeout=600
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    import cv2

    from cornernet_tf.data import shapes

    folders = shapes.ensure_dataset(shapes_dir, 64, VAL_IMAGES, SIZE)  # the run's dataset, cached by the training
    annotations, val_folder = folders["val"]
    entries = sorted(json.loads(pathlib.Path(annotations).read_text())["images"], key=lambda entry: entry["id"])
    val = np.stack([cv2.cvtColor(cv2.imread(str(val_folder / e["file_name"])), cv2.COLOR_BGR2RGB) for e in entries])
    return {
        "model_dir": root / "run",
        "images": val[:PROBE_IMAGES],
        "val_images": val,
        "val_ids": [entry["id"] for entry in entries],
        "annotations": str(annotations),
        "train_images": folders["train"][1],
    }


def _export(run: dict, export_dir: pathlib.Path, *flags: str) -> pathlib.Path:
    assert export.main(["--weights", str(run["model_dir"]), "--export_dir", str(export_dir), *flags]) == 0
    return export_dir / "1"


def _saved_model(version: pathlib.Path):
    signature = tf.saved_model.load(str(version)).signatures["serving_tensor"]
    return lambda images: {key: value.numpy() for key, value in signature(images=tf.constant(images)).items()}


@pytest.fixture(scope="module")
def float_saved_model(run, tmp_path_factory):
    return _saved_model(_export(run, tmp_path_factory.mktemp("float")))


@pytest.fixture(scope="module")
def float_outputs(run, float_saved_model) -> dict[str, np.ndarray]:
    """The float32 SavedModel's outputs on the probe images: the reference."""
    return float_saved_model(run["images"])


def held_out_ap(run: dict, detect, batch_size: int) -> float:
    """COCO AP (pycocotools) of `detect` (uint8 [batch_size, H, W, 3] -> export outputs) on the
    run's VAL_IMAGES held-out scenes."""
    from cornernet_tf.utils.coco_metrics import coco_metrics, detections_to_coco

    images, records = run["val_images"], []
    categories = [c["id"] for c in json.loads(pathlib.Path(run["annotations"]).read_text())["categories"]]
    for start in range(0, len(images), batch_size):
        out = detect(images[start : start + batch_size])
        for row, image_id in enumerate(run["val_ids"][start : start + batch_size]):
            count = int(out["num_detections"][row])
            boxes = np.asarray(out["detection_boxes"][row][:count], np.float64)[:, [1, 0, 3, 2]] * SIZE
            classes = np.asarray(out["detection_classes"][row][:count]).astype(int) - 1
            records += detections_to_coco(image_id, boxes, out["detection_scores"][row][:count], classes, categories)
    return coco_metrics(run["annotations"], records, image_ids=run["val_ids"])["AP"]


@pytest.fixture(scope="module")
def float_ap(run, float_saved_model) -> float:
    return held_out_ap(run, float_saved_model, 4)


def assert_keeps_the_float_ap(run: dict, detect, batch_size: int, float_ap: float) -> None:
    ap = held_out_ap(run, detect, batch_size)
    assert abs(ap - float_ap) <= INT8_AP_TOLERANCE, f"AP {ap:.4f} against float {float_ap:.4f}"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a [4] with boxes b [N, 4] (ymin, xmin, ymax, xmax)."""
    top_left, bottom_right = np.maximum(a[:2], b[:, :2]), np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = lambda box: np.prod(box[..., 2:] - box[..., :2], axis=-1)  # noqa: E731
    return inter / (area(a) + area(b) - inter + 1e-12)


def assert_matches_float(got: dict[str, np.ndarray], want: dict[str, np.ndarray], every_top_row: bool = True) -> int:
    """The float rows scoring >= MIN_SCORE each need a row of `got` of their class with IoU >= IOU
    and a score within SCORE_TOLERANCE: MATCHED of them (a low row's box may move one corner to a
    neighbouring peak of nearly the same score), and with `every_top_row` every image's top row.
    Returns how many rows were compared."""
    matched = []
    for image in range(len(want["num_detections"])):
        rows = int(got["num_detections"][image])
        boxes, scores, classes = (
            got[key][image][:rows] for key in ("detection_boxes", "detection_scores", "detection_classes")
        )
        wanted = zip(want["detection_boxes"][image], want["detection_scores"][image], want["detection_classes"][image])
        for rank, (box, score, label) in enumerate(wanted):
            if score < MIN_SCORE:
                break
            same = (classes == label) & (_iou(box, boxes) >= IOU) & (np.abs(scores - score) <= SCORE_TOLERANCE)
            unmatched = f"image {image}: the top row {box.round(3)} score {score:.3f} is unmatched"
            assert rank > 0 or not every_top_row or same.any(), unmatched
            matched.append(bool(same.any()))
    assert np.mean(matched) >= MATCHED, f"{sum(matched)} of {len(matched)} confident rows matched"
    return len(matched)


def test_the_trained_model_detects_confidently(float_outputs):
    confident = (float_outputs["detection_scores"] >= MIN_SCORE).sum()
    assert confident >= PROBE_IMAGES, f"{confident} confident rows: the comparisons below would be weak"


def test_bfloat16_saved_model_matches_float(run, float_outputs, tmp_path, capsys):
    version = _export(run, tmp_path, "--precision", "bfloat16")
    assert "computing in bfloat16" in capsys.readouterr().out
    assert "precision: bfloat16" in (version / "assets" / "config.yaml").read_text()
    graph = tf.saved_model.load(str(version)).signatures["serving_tensor"].graph
    assert any(op.type == "Conv2D" and op.get_attr("T") == tf.bfloat16 for op in graph.get_operations()) or any(
        node.op == "Conv2D" and node.attr["T"].type == tf.bfloat16.as_datatype_enum
        for function in graph.as_graph_def().library.function
        for node in function.node_def
    ), "the convolutions do not compute in bfloat16"
    got = _saved_model(version)(run["images"])
    assert assert_matches_float(got, float_outputs) >= PROBE_IMAGES
    from cornernet_tf.api.detector import Detector

    in_process = Detector.from_weights(run["model_dir"], overrides=["export.precision=bfloat16"])
    assert in_process.model.compute_dtype == "bfloat16"
    for image, found in enumerate(in_process.predict(list(run["images"][:4]))):
        count = int(got["num_detections"][image])
        np.testing.assert_allclose(found.scores, got["detection_scores"][image][:count], atol=1e-5)


@pytest.fixture(scope="module")
def int8_tflite(run, tmp_path_factory) -> pathlib.Path:
    """The calibrated full-integer TFLite export (batch 4) of the trained model."""
    return _export(
        run, tmp_path_factory.mktemp("int8_tflite"), "--format", "tflite", "--quantize", "int8", "--batch_size", "4",
        "--representative_images", str(run["train_images"]), "--calibration_images", "32",
    )  # fmt: skip


def test_bfloat16_export_warns_on_a_cpu_without_bfloat16_units(run, tmp_path, capsys, monkeypatch):
    from cornernet_tf.utils import runtime

    monkeypatch.setattr(runtime, "cpu_bfloat16_units", lambda: None)
    _export(run, tmp_path, "--precision", "bfloat16")
    assert "this CPU has no bfloat16 units" in capsys.readouterr().err
    monkeypatch.setattr(runtime, "cpu_bfloat16_units", lambda: "avx512_bf16")
    _export(run, tmp_path / "again", "--precision", "bfloat16")
    assert "bfloat16 units" not in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_an_int8_export_says_what_int8_gains_on_a_cpu_without_int8_units(fmt, capsys, monkeypatch):
    """Measured on an AVX2-only CPU: LiteRT's int8 about as fast as float32 (a warning), onnxruntime's
    0.5-0.8x (a note); on a CPU with VNNI or AMX nothing is said."""
    from cornernet_tf.utils import runtime

    monkeypatch.setattr(runtime, "cpu_int8_units", lambda: None)
    export._say_where_int8_pays(fmt)
    said = capsys.readouterr()
    if fmt == "tflite":
        assert said.err.startswith("warning: this CPU has no int8 dot-product units") and "--format onnx" in said.err
    else:
        assert "onnxruntime's int8 measured" in said.out and not said.err
    monkeypatch.setattr(runtime, "cpu_int8_units", lambda: "avx512_vnni")
    export._say_where_int8_pays(fmt)
    assert capsys.readouterr() == ("", "")


def test_calibrated_int8_tflite_runs_an_integer_network_in_litert(int8_tflite, run, float_outputs, float_ap):
    version = int8_tflite
    assert sorted(p.name for p in version.iterdir()) == ["decoding.tflite", "export_info.json", "model.tflite"]
    info = export_info.read(version)
    assert info["decoding_file"] == "decoding.tflite" and info["calibration"] == {"images": 32}
    assert "int8 network" in info["quantization_detail"]
    convolutions = [
        op
        for op in Interpreter(model_path=str(version / "model.tflite"))._get_ops_details()
        if op["op_name"] == "CONV_2D"
    ]
    interpreter = Interpreter(model_path=str(version / "model.tflite"))
    dtypes = {np.dtype(interpreter.get_tensor_details()[op["inputs"][0]]["dtype"]).name for op in convolutions}
    assert convolutions and dtypes == {"int8"}, dtypes
    detect = tflite.runner(version / "model.tflite")
    got = {key: [] for key in float_outputs}
    for start in range(0, PROBE_IMAGES, 4):
        for key, value in detect(run["images"][start : start + 4]).items():
            got[key].append(value)
    got = {key: np.concatenate(value) for key, value in got.items()}
    assert assert_matches_float(got, float_outputs, every_top_row=False) >= PROBE_IMAGES
    assert_keeps_the_float_ap(run, detect, 4, float_ap)


def test_detector_and_predict_run_a_portable_export(int8_tflite, run, tmp_path):
    """`Detector.from_export` on a TFLite export: images of another size are resized to the export's
    and the boxes come back in their pixels; `predict --export` the same."""
    import cv2

    from cornernet_tf import predict
    from cornernet_tf.api.detector import Detector

    detector = Detector.from_export(int8_tflite.parent)
    assert "tflite export" in detector.description
    small = [run["images"][i] for i in range(5)]  # 5: a full batch of 4 and a padded one
    # pixels repeated 2 x 2: the export's area resize gives back exactly the small image
    large = [np.repeat(np.repeat(image, 2, axis=0), 2, axis=1) for image in small]
    found_small, found_large = detector.predict(small), detector.predict(large)
    direct = tflite.run(int8_tflite / "model.tflite", np.stack(small[:4]))
    for image, (a, b) in enumerate(zip(found_small, found_large)):
        if image < 4:
            count = int(direct["num_detections"][image])
            np.testing.assert_allclose(a.scores, direct["detection_scores"][image][:count], atol=1e-6)
        assert a.image_size == (SIZE, SIZE) and b.image_size == (2 * SIZE, 2 * SIZE)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-6)
        np.testing.assert_allclose(b.boxes, 2 * a.boxes, atol=1e-3)
    cv2.imwrite(str(tmp_path / "probe.png"), cv2.cvtColor(large[0], cv2.COLOR_RGB2BGR))
    argv = [str(tmp_path / "probe.png"), "--export", str(int8_tflite), "--out", str(tmp_path / "out")]
    assert predict.main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "probe.png.jsonl").read_text().splitlines()]
    assert rows[0]["width"] == 2 * SIZE and len(rows[0]["detections"]) == (found_large[0].scores >= 0.3).sum()


def test_calibrated_int8_onnx_matches_float_in_onnxruntime(run, float_outputs, float_ap, tmp_path, capsys, monkeypatch):
    from cornernet_tf.utils import runtime

    monkeypatch.setattr(runtime, "cpu_int8_units", lambda: None)  # an AVX2-only CPU: the export says what int8 gains
    # a machine short of memory for a network taken as large: the export says so before converting
    monkeypatch.setattr(export, "LARGE_NETWORK_PARAMETERS", 0)
    monkeypatch.setattr(runtime, "available_memory", lambda: 1_000_000)
    version = _export(
        run, tmp_path, "--format", "onnx", "--quantize", "int8", "--batch_size", "dynamic",
        "--representative_images", str(run["train_images"]), "--calibration_images", "32",
    )  # fmt: skip
    said = capsys.readouterr()
    assert "this CPU has no int8 dot-product units" in said.out and "dot-product" not in said.err
    assert "to onnx needs about" in said.out and "this machine has 0.0 GB available" in said.out
    assert "the onnx conversion may be killed for lack of memory" in said.err
    import onnx as onnx_lib

    graph = onnx_lib.load(str(version / "model.onnx")).graph
    nodes = graph.node
    # 7-bit weights (|w| <= 64): a pair of 8-bit activations times them sums below 2^15, so CPUs
    # without VNNI (16-bit pair sums) do not saturate and every CPU computes the same numbers
    weights = [onnx_lib.numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx_lib.TensorProto.INT8]
    kernels = [w for w in weights if w.ndim == 4]
    assert kernels and all(np.abs(w.astype(int)).max() <= 64 for w in kernels)
    quantized_outputs = {node.output[0] for node in nodes if node.op_type == "DequantizeLinear"}
    convolutions = [node for node in nodes if node.op_type == "Conv"]
    assert convolutions and all(
        node.input[0] in quantized_outputs and node.input[1] in quantized_outputs for node in convolutions
    )
    bodies = [attr.g for node in nodes if node.op_type == "Loop" for attr in node.attribute if attr.name == "body"]
    assert bodies and not any(n.op_type.endswith("QuantizeLinear") for body in bodies for n in body.node)
    # onnxruntime runs every one of them as an integer convolution (uint8 activations: with int8
    # ones it left some as float convolutions between a dequantize and a quantize)
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(str(version / "model.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = [node.op_type for node in onnx_lib.load(options.optimized_model_filepath).graph.node]
    assert optimized.count("QLinearConv") == len(convolutions) and not {"Conv", "FusedConv"} & set(optimized)
    assert export_info.read(version)["quantization"] == "int8"
    detect = onnx.runner(version / "model.onnx")
    assert assert_matches_float(detect(run["images"]), float_outputs, every_top_row=False) >= PROBE_IMAGES
    assert_keeps_the_float_ap(run, detect, 8, float_ap)


def test_int8_onnx_calibration_equals_onnxruntimes_own(run, tmp_path):
    """The export calibrates in its own lean session and hands the ranges to quantize_static as a
    cache: the file is byte for byte the one quantize_static writes calibrating by itself."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from cornernet_tf.config import load_config
    from cornernet_tf.training.checkpoint import load_weights

    config = load_config(str(run["model_dir"] / "config.yaml"), [])
    model = export_network(config)
    load_weights(model, str(run["model_dir"]))
    source, target = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    source.write_bytes(onnx.convert(PortableDetector(detection_module(model, config), 2, (SIZE, SIZE))))
    images = run["images"][:6]
    progress = []
    exported = onnx.quantize(source, images, 2, lambda done, total: progress.append((done, total)))
    assert progress == [(2, 6), (4, 6), (6, 6)]

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([images[:2], images[2:4], images[4:]])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    quantize_static(
        str(source), str(target), Batches(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=onnx.QUANTIZED_OPS,
    )  # fmt: skip
    assert exported == target.read_bytes()


def test_the_split_tflite_graph_in_float_equals_the_whole_one(run):
    """network + decoding (replaying the maps, flip on: two network batches per input) = the graph."""
    from cornernet_tf.config import load_config

    config = load_config(str(run["model_dir"] / "config.yaml"), ["detection.flip=true"])
    model = export_network(config)
    from cornernet_tf.training.checkpoint import load_weights

    load_weights(model, str(run["model_dir"]))
    detector = PortableDetector(detection_module(model, config), 2, (SIZE, SIZE))
    assert detector.map_names()[:2] == ["0/br_embedding", "0/br_heatmap"]
    network = tflite._frozen_network_converter(detector).convert()  # the calibrated export's route, in float
    decoding = tflite._decoding_converter(detector).convert()
    whole = tflite.run(tflite.convert(detector), run["images"][:2])
    halves = tflite.runner(network, decoding)(run["images"][:2])
    for key in whole:
        np.testing.assert_allclose(halves[key], whole[key], atol=1e-4, err_msg=key)


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_unusable_calibration_images_are_one_error_and_touch_no_export(run, tmp_path, capsys):
    export_dir = tmp_path / "exports"
    _export(run, export_dir, "--format", "onnx")  # version 1: the float export beside
    before = {p.name: p.stat().st_mtime_ns for p in (export_dir / "1").iterdir()}
    broken = tmp_path / "broken"
    broken.mkdir()
    for index in range(5):
        (broken / f"cut_{index}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    argv = ["--weights", str(run["model_dir"]), "--export_dir", str(export_dir), "--format", "onnx"]
    code = export.main([*argv, "--quantize", "int8", "--representative_images", str(broken)])
    line = _error_line(capsys)
    assert code == 2 and "0 usable image(s) of 5" in line and "5 unreadable" in line and "at least 8" in line, line
    assert sorted(p.name for p in export_dir.iterdir()) == ["1"]
    assert {p.name: p.stat().st_mtime_ns for p in (export_dir / "1").iterdir()} == before


def test_unreadable_calibration_images_are_named_and_skipped(run, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in sorted(run["train_images"].iterdir())[:10]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "empty.png").write_bytes(b"")
    images, unusable = export.representative_images(folder, (SIZE, SIZE), 100)
    assert images.shape == (10, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert len(unusable) == 1 and "empty.png" in unusable[0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--format", "onnx", "--quantize", "int8"], "give --representative_images"),
        (["--format", "onnx", "--representative_images", "val"], "calibrates --quantize int8, not --quantize none"),
        (["--format", "tflite", "--precision", "bfloat16"], "--precision bfloat16 is for --format saved_model"),
        (["--representative_images", "val"], "--representative_images are for --format tflite / onnx"),
        (["--format", "onnx", "--quantize", "int8", "--representative_images", "/no/such/folder"], "no such folder"),
    ],
)
def test_impossible_requests_are_one_error_line(run, tmp_path, capsys, flags, message):
    argv = ["--weights", str(run["model_dir"]), "--export_dir", str(tmp_path / "e"), *flags]
    assert export.main(argv) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "e").exists()


def test_val_calibrates_on_the_runs_validation_images(run, tmp_path, capsys, monkeypatch):
    from cornernet_tf.utils import runtime

    monkeypatch.setattr(runtime, "cpu_int8_units", lambda: "avx512_vnni")
    version = _export(
        run, tmp_path, "--format", "onnx", "--quantize", "int8", "--representative_images", "val",
        "--calibration_images", "8",
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert "int8 dot-product units" not in err
    assert "calibration: 8 images of" in out and json.loads((version / "export_info.json").read_text())["calibration"]
