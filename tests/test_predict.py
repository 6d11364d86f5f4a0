"""predict.py: the command on a folder of good and broken images and a short video, from an
export and from weights, compared with `Detector` and the SavedModel; Ctrl-C mid-run."""

from __future__ import annotations

import contextlib
import io
import json
import pathlib

import cv2
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import predict
from cornernet_tf.api.detector import Detector
from tests.test_cli import TF_LOG_LINE, run_command
from tests.test_detector import OVERRIDES, assert_same, pixels, signature_detections, tiny_model

FRAMES = 5


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> pathlib.Path:
    """photos/: two PNGs, a JPEG in a subfolder, a file that is no image, an empty one and a
    short video."""
    root = tmp_path_factory.mktemp("inputs") / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(tf.io.encode_png(pixels(48, 72, 0)).numpy())
    (root / "b.png").write_bytes(tf.io.encode_png(pixels(40, 56, 1)).numpy())
    (root / "sub" / "c.jpg").write_bytes(tf.io.encode_jpeg(pixels(48, 72, 2)).numpy())
    (root / "notes.png").write_bytes(b"not a picture")
    (root / "empty.jpg").write_bytes(b"")
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for index in range(FRAMES):
        writer.write(cv2.cvtColor(pixels(48, 64, 10 + index), cv2.COLOR_RGB2BGR))
    writer.release()
    return root


def read_lines(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def as_arrays(line: dict) -> dict[str, np.ndarray]:
    found = line["detections"]
    return {
        "boxes": np.array([d["box"] for d in found], np.float32).reshape(-1, 4),
        "scores": np.array([d["score"] for d in found], np.float32),
        "classes": np.array([d["class_id"] for d in found], int),
    }


def video_frames(path: pathlib.Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def run(source, out, model_args, *extra) -> int:
    return predict.main([str(source), *model_args, "--out", str(out), "--score_threshold", "0.05", *extra])


@pytest.fixture(scope="module")
def export_run(model_files, source, tmp_path_factory) -> tuple[pathlib.Path, str]:
    """The output folder and the printed lines of one run on photos/ from the export."""
    out, printed = tmp_path_factory.mktemp("export_run"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run(source, out, ["--export", str(model_files[1])], "--batch_size", "2") == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def detector(model_files):
    return Detector.from_export(model_files[1], score_threshold=0.05)


def test_folder_outputs_equal_detector_and_saved_model(export_run, detector, model_files, source):
    out = export_run[0] / "photos"
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == [
        "a.png",
        "a.png.jsonl",
        "b.png",
        "b.png.jsonl",
        "clip.avi",
        "clip.avi.jsonl",
        "sub/c.jpg",
        "sub/c.jpg.jsonl",
    ]
    loaded = tf.saved_model.load(str(model_files[1]))
    for name in ("a.png", "b.png", "sub/c.jpg"):
        (line,) = read_lines(out / f"{name}.jsonl")
        assert line["source"] == str(source / name)
        (found,) = detector.predict(source / name)
        assert len(found) >= 3, "the comparison needs detections"
        assert_same(found, as_arrays(line))
        encoded = (source / name).read_bytes()
        image = tf.io.decode_image(encoded, channels=3).numpy()
        want = signature_detections(
            loaded.signatures["serving_default"](images=tf.constant([encoded])), *image.shape[:2]
        )[0]
        keep = want["scores"] >= 0.05
        assert_same(found, {key: value[keep] for key, value in want.items()})
        assert [d["class_name"] for d in line["detections"]] == found.class_names
        picture = cv2.imread(str(out / name))
        assert picture.shape == image.shape


def test_video_outputs_one_line_per_frame(export_run, detector, source):
    lines = read_lines(export_run[0] / "photos" / "clip.avi.jsonl")
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    frames = video_frames(source / "clip.avi")
    results = detector.predict(frames)
    for line, found in zip(lines, results):
        assert (line["height"], line["width"]) == (48, 64)
        assert_same(found, as_arrays(line))
    assert len(video_frames(export_run[0] / "photos" / "clip.avi")) == FRAMES


def test_weights_give_the_outputs_of_the_export(export_run, model_files, source, tmp_path):
    sets = [arg for item in OVERRIDES for arg in ("--set", item)]
    args = ["--weights", str(model_files[0]), "--config", "shapes_tiny", *sets]
    assert (
        predict.main(
            [str(source / "sub"), str(source / "a.png"), *args, "--out", str(tmp_path), "--score_threshold", "0.05"]
        )
        == 0
    )
    for ours, theirs in (("sub/c.jpg", "photos/sub/c.jpg"), ("a.png", "photos/a.png")):
        (got,), (want,) = read_lines(tmp_path / f"{ours}.jsonl"), read_lines(export_run[0] / f"{theirs}.jsonl")
        want_arrays = as_arrays(want)
        assert len(want_arrays["scores"]) >= 3
        got_arrays = as_arrays(got)
        np.testing.assert_array_equal(got_arrays["classes"], want_arrays["classes"])
        np.testing.assert_allclose(got_arrays["boxes"], want_arrays["boxes"], atol=1e-4)
        np.testing.assert_allclose(got_arrays["scores"], want_arrays["scores"], atol=1e-4)


def test_summary_names_the_skipped_files(export_run):
    out = export_run[1]
    assert "predicted 3 images and 5 frames of 1 video(s)" in out
    assert "skipped 2 unreadable file(s)" in out and "notes.png" in out and "empty.jpg" in out


def _interrupt_on_call(monkeypatch, call: int) -> None:
    """Make the `call`-th Detector.predict raise KeyboardInterrupt, as Ctrl-C would."""
    original, calls = Detector.predict, []

    def predict_or_interrupt(self, images):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(Detector, "predict", predict_or_interrupt)


def _temporary_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return list(folder.rglob(".*"))


def test_ctrl_c_keeps_every_finished_image(model_files, source, tmp_path, monkeypatch, capsys):
    _interrupt_on_call(monkeypatch, 3)  # batches of 1: a.png and b.png are done, then Ctrl-C
    assert run(source, tmp_path, ["--export", str(model_files[1])], "--batch_size", "1") == 130
    out = tmp_path / "photos"
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["a.png", "a.png.jsonl", "b.png", "b.png.jsonl"]
    assert not _temporary_files(tmp_path)
    for name in ("a.png", "b.png"):
        assert len(read_lines(out / f"{name}.jsonl")) == 1 and cv2.imread(str(out / name)) is not None
    assert "interrupted after 2 images" in capsys.readouterr().out


def test_ctrl_c_in_a_video_keeps_its_finished_frames(model_files, source, tmp_path, monkeypatch, capsys):
    _interrupt_on_call(monkeypatch, 3)  # frames 0-1 and 2-3 are done, then Ctrl-C
    assert run(source / "clip.avi", tmp_path, ["--export", str(model_files[1])], "--batch_size", "2") == 130
    lines = read_lines(tmp_path / "clip.avi.jsonl")
    assert [line["frame"] for line in lines] == [0, 1, 2, 3]
    assert len(video_frames(tmp_path / "clip.avi")) == 4
    assert not _temporary_files(tmp_path)
    assert "holds its first 4 frames" in capsys.readouterr().out


def test_user_errors(model_files, source, tmp_path, capsys):
    assert run(tmp_path / "nothing_here", tmp_path, ["--export", str(model_files[1])]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert run(source / "notes.png", tmp_path, ["--export", str(model_files[1])]) == 2
    assert "no input could be read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run(source, tmp_path, ["--export", str(model_files[1]), "--flip"])
    assert exit_info.value.code == 2 and "--flip apply to --weights" in capsys.readouterr().err


def test_collect_inputs_names_outputs_by_source(source, tmp_path):
    inputs = predict.collect_inputs([str(source / "*.png"), str(source / "sub"), str(source / "a.png")])
    assert [(i.path.name, str(i.output)) for i in inputs] == [
        ("a.png", "a.png"),
        ("b.png", "b.png"),
        ("notes.png", "notes.png"),
        ("c.jpg", "sub/c.jpg"),
    ]
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="would both write"):
        predict.collect_inputs([str(source / "a.png"), str(tmp_path / "a.png")])


def test_the_command_starts_quietly(model_files, source, tmp_path):
    result = run_command(
        ["cornernet_tf.predict", str(source / "a.png"), "--export", str(model_files[1]), "--out", str(tmp_path)]
    )
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("predicting 1 file(s) with export"), result.stdout[:2000]
    assert not TF_LOG_LINE.search(result.stdout), result.stdout
    assert (tmp_path / "a.png.jsonl").is_file()
