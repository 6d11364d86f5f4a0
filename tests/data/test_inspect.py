"""`python -m cornernet_tf.data.inspect`: its counts are the readers' own, its pictures are images,
its augmented grid is a function of the seed, and bad input is one error line."""

from __future__ import annotations

import json
import pathlib

import cv2
import numpy as np
import pytest

from cornernet_tf.config import load_config
from cornernet_tf.data import coco, inspect, pipeline, shapes, tfrecord
from cornernet_tf.tasks import data as data_tasks
from cornernet_tf.utils import cli
from tests.data.test_voc_yolo import NAMES, write_voc

SHAPES = ["data.shapes_train=12", "data.shapes_val=6", "data.shapes_image_size=96", "data.shapes_max_objects=4"]
CHARTS = ("box_size", "aspect_ratio", "boxes_per_image")


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("inspect") / "shapes"
    shapes.ensure_dataset(root, 12, 6, 96, max_objects=4)
    return root


def _shapes_args(shapes_dir: pathlib.Path) -> list[str]:
    return [f"data.shapes_dir={shapes_dir}", *SHAPES]


@pytest.fixture(scope="module")
def faulty_voc(shapes_dir) -> pathlib.Path:
    """The shapes dataset as VOC, its train set with an image file missing and a malformed XML."""
    root = shapes_dir.parent / "voc"
    layout = shapes.ensure_dataset(shapes_dir, 12, 6, 96, max_objects=4)
    for split in ("train", "val"):
        annotations, images = layout[split]
        write_voc(json.loads(pathlib.Path(annotations).read_text()), pathlib.Path(images), root, split)
    stems = (root / "ImageSets" / "Main" / "train.txt").read_text().split()
    (root / "JPEGImages" / f"{stems[0]}.png").unlink()
    (root / "Annotations" / f"{stems[1]}.xml").write_text("<annotation><filename>")
    return root


def _voc_args(root: pathlib.Path) -> list[str]:
    return ["data.dataset=voc", f"data.voc_dir={root}", f"data.class_names=[{', '.join(NAMES)}]"]


def _expected(source: coco.CocoSource) -> dict:
    """The numbers of a report, recomputed with numpy from the source's own arrays and counts."""
    rows = source.usable_rows
    classes = [source.classes[row] for row in rows]
    boxes = np.concatenate([source.boxes[row] for row in rows]).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return {
        "images": {
            "listed": len(source) + source.counts["unreadable_annotation_files"],
            "usable": len(rows),
            "skipped": {key: source.counts[key] for key in inspect.IMAGE_SKIPS},
        },
        "boxes": {
            "kept": len(boxes),
            "skipped": {key: source.counts[key] for key in inspect.BOX_SKIPS},
            "on_skipped_images": source.num_boxes - len(boxes),
        },
        "counts": source.counts,
        "classes": [
            {"name": name, "images": sum(int(c in image) for image in classes), "boxes": int(count)}
            for c, (name, count) in enumerate(
                zip(source.class_names, np.bincount(np.concatenate(classes), minlength=len(source.class_names)))
            )
        ],
        "sizes": [int((area < 32**2).sum()), int(((area >= 32**2) & (area < 96**2)).sum()), int((area >= 96**2).sum())],
        "max_per_image": max(len(c) for c in classes),
    }


def _check_report(report: dict, source: coco.CocoSource) -> None:
    expected = _expected(source)
    for key in ("images", "boxes", "counts", "classes"):
        assert report[key] == expected[key], key
    images, boxes = report["images"], report["boxes"]
    assert images["listed"] == images["usable"] + sum(images["skipped"].values())
    assert set(coco.COUNT_KEYS) == set(report["counts"])
    sizes = report["box_size"]
    assert [sizes["small"], sizes["medium"], sizes["large"]] == expected["sizes"]
    assert sum(sizes["counts"]) == sum(report["aspect_ratio"]["counts"]) == boxes["kept"]
    assert sizes["edges"][0] <= 16 and sizes["edges"][-1] >= 128  # COCO's limits always on the axis
    per_image = report["boxes_per_image"]
    assert sum(per_image["counts"]) == images["usable"] and per_image["max"] == expected["max_per_image"]
    assert per_image["mean"] == pytest.approx(boxes["kept"] / images["usable"])


def test_the_counts_of_a_shapes_split_are_the_readers(shapes_dir):
    config = load_config("shapes_tiny", _shapes_args(shapes_dir))
    for split in ("train", "val"):
        source = pipeline.annotated_source(data_tasks.split_files(config, split))
        report = inspect.inspect_split(source)
        _check_report(report, source)
        assert report["images"]["usable"] == len(source) == {"train": 12, "val": 6}[split]
        assert not any(report["images"]["skipped"].values())


def test_every_fault_of_a_voc_split_is_counted_as_its_reader_counts_it(faulty_voc):
    config = load_config("shapes_tiny", _voc_args(faulty_voc))
    source = pipeline.annotated_source(data_tasks.split_files(config, "train"))
    report = inspect.inspect_split(source)
    _check_report(report, source)
    assert report["images"]["listed"] == 12 and report["images"]["usable"] == 10
    skipped = {key: value for key, value in report["images"]["skipped"].items() if value}
    assert skipped == {"unreadable_annotation_files": 1, "unreadable_images": 1}
    table = inspect.format_table({"train": report})
    assert "skipped: unreadable annotation files" in table and "skipped: unreadable images" in table
    assert "skipped: crowd boxes" not in table  # zero everywhere: left out


def test_a_tfrecord_set_reports_its_sidecars_counts_and_its_records_boxes(shapes_dir, tmp_path):
    source = coco.load_coco(*shapes.ensure_dataset(shapes_dir, 12, 6, 96, max_objects=4)["train"])
    tfrecord.write_tfrecords(source, str(tmp_path), "train", num_shards=2, progress=lambda line: None)
    pattern = str(tmp_path / "train-*.tfrecord")
    from_records = inspect.inspect_files(pipeline.TFRecordFiles(pattern))
    from_source = inspect.inspect_split(source)
    assert from_records["counts"] == tfrecord.read_sidecar(pattern)["counts"]
    del from_source["boxes"]["on_skipped_images"]  # the records do not hold the skipped images
    for key in ("images", "boxes", "classes", "box_size", "aspect_ratio", "boxes_per_image"):
        assert from_records[key] == from_source[key], key


def _image(path: pathlib.Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return image


def test_the_command_writes_the_summary_and_the_pictures(shapes_dir, tmp_path, capsys):
    out = tmp_path / "out"
    overrides = [arg for key in _shapes_args(shapes_dir) for arg in ("--set", key)]
    assert inspect.main(["--config", "shapes_tiny", *overrides, "--out", str(out), "--samples", "6"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "summary.txt").read_text().strip() in printed
    assert summary["config"] == "shapes_tiny" and list(summary["splits"]) == ["train", "val"]
    config = load_config("shapes_tiny", _shapes_args(shapes_dir))
    for split, report in summary["splits"].items():
        _check_report(report, pipeline.annotated_source(data_tasks.split_files(config, split)))
        for chart in CHARTS:
            height, width, _ = _image(out / f"{split}_{chart}.png").shape
            assert 300 <= height <= 1000 and 500 <= width <= 1500
    grid = _image(out / "train_augmented.png")  # 6 tiles of 128 px: 3 x 2, and the legend
    assert grid.shape[0] >= 2 * 128 and grid.shape[1] > 3 * 128
    assert not (out / "val_augmented.png").exists()


def test_the_augmented_grid_is_a_function_of_the_seed(shapes_dir):
    def grid(seed: int) -> np.ndarray:
        config = load_config("shapes_tiny", [*_shapes_args(shapes_dir), f"data.seed={seed}"])
        return inspect.augmented_grid(config, 4, list(shapes.CLASS_NAMES))

    first = grid(0)
    assert first.dtype == np.uint8 and first.shape[0] >= 2 * 128 and first.shape[1] > 2 * 128
    np.testing.assert_array_equal(grid(0), first)
    other = grid(1)
    assert other.shape != first.shape or (other != first).any()


def test_the_command_inspects_a_faulty_voc_split(faulty_voc, tmp_path, capsys):
    out = tmp_path / "voc"
    overrides = [arg for key in _voc_args(faulty_voc) for arg in ("--set", key)]
    assert inspect.main([*overrides, "--out", str(out), "--splits", "train", "--samples", "2"]) == 0
    assert "skipped: unreadable images" in capsys.readouterr().out
    report = json.loads((out / "summary.json").read_text())["splits"]["train"]
    assert report["images"]["usable"] == 10 and _image(out / "train_augmented.png").size


@pytest.mark.parametrize(
    "args, says",
    [
        (["--splits", "train", "test"], "--splits takes train and/or val, got ['test']"),
        (["--set", "data.dataset=coco"], "data.train_annotations and data.train_images must be set"),
        (["--set", "data.dataset=voc"], "data.voc_dir must be set"),
        (["--samples", "-1"], "--samples must be >= 0"),
    ],
)
def test_bad_input_is_one_error_line(args, says, tmp_path, capsys):
    assert inspect.main([*args, "--out", str(tmp_path / "out")]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert says in line and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
