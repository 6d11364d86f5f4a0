"""`python -m cornernet_tf.data.convert`: a VOC or YOLO dataset converted once reads back as the same
boxes, classes and training batches; its TFRecords carry its ground truth for evaluation; a failed
write leaves the folder as it was, and bad input is one error line."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import pathlib
import shlex

import numpy as np
import pytest
import tensorflow as tf
from pycocotools.coco import COCO

from cornernet_tf.config import load_config
from cornernet_tf.data import coco, convert, shapes, tfrecord, voc, yolo
from cornernet_tf.tasks import data as data_tasks
from tests.data.test_voc_yolo import NAMES, write_voc, write_yolo

SPLITS = ("train", "val")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, pathlib.Path]:
    """One small shapes dataset written as VOC and as YOLO."""
    root = tmp_path_factory.mktemp("convert")
    layout = shapes.ensure_dataset(root / "shapes", 8, 4, 96, max_objects=4)
    for split in SPLITS:
        annotations, images = layout[split]
        dataset = json.loads(pathlib.Path(annotations).read_text())
        write_voc(dataset, pathlib.Path(images), root / "voc", split)
        write_yolo(dataset, pathlib.Path(images), root / "yolo", split)
    return {"voc": root / "voc", "yolo": root / "yolo" / "data.yaml"}


def _overrides(sources: dict[str, pathlib.Path], kind: str) -> list[str]:
    if kind == "voc":
        return ["data.dataset=voc", f"data.voc_dir={sources['voc']}", f"data.class_names=[{', '.join(NAMES)}]"]
    return ["data.dataset=yolo", f"data.yolo_yaml={sources['yolo']}"]


def _reader(sources: dict[str, pathlib.Path], kind: str, split: str) -> coco.CocoSource:
    """The split as the format's own reader gives it."""
    return voc.load_voc(sources["voc"], split, NAMES) if kind == "voc" else yolo.load_yolo(sources["yolo"], split)


def _convert(capsys, overrides: list[str], *args: str) -> tuple[int, list[str], str]:
    """Run the command; returns its status, the overrides it printed (one per word) and its stderr."""
    status = convert.main(["--config", "shapes_tiny", *[w for o in overrides for w in ("--set", o)], *args])
    captured = capsys.readouterr()
    return status, [word for line in captured.out.splitlines() for word in shlex.split(line)], captured.err


def _by_file(source: coco.CocoSource) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {pathlib.Path(p).name: (b, c) for p, b, c in zip(source.image_paths, source.boxes, source.classes)}


def _folder(path: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir()}


@pytest.mark.parametrize("kind", ["voc", "yolo"])
def test_a_converted_split_reads_back_as_the_readers_boxes_exactly(sources, kind, tmp_path, capsys):
    status, printed, err = _convert(capsys, _overrides(sources, kind), "--to", "coco", "--out", str(tmp_path))
    assert status == 0, err
    assert printed[0] == "data.dataset=coco" and len(printed) == 5
    settings = dict(word.split("=", 1) for word in printed)
    for split in SPLITS:
        reader = _reader(sources, kind, split)
        assert reader.summary() in err
        annotations, images = settings[f"data.{split}_annotations"], settings[f"data.{split}_images"]
        assert annotations == str(tmp_path / f"{split}.json")
        folder = sources["voc"] / "JPEGImages" if kind == "voc" else sources["yolo"].parent / "images" / split
        assert images == str(folder)  # the common parent of the split's image files
        converted = coco.load_coco(annotations, images)
        assert converted.class_names == reader.class_names == NAMES and converted.category_ids == reader.category_ids
        np.testing.assert_array_equal(converted.image_ids, reader.image_ids)
        assert (converted.status == coco.USABLE).all() and converted.counts == reader.counts
        expected = _by_file(reader)
        assert len(expected) == len(reader)
        for name, (boxes, classes) in _by_file(converted).items():
            np.testing.assert_array_equal(boxes, expected[name][0])
            np.testing.assert_array_equal(classes, expected[name][1])
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_config_on_the_converted_json_trains_on_the_same_first_batch_as_the_voc_config(sources, tmp_path, capsys):
    status, printed, err = _convert(capsys, _overrides(sources, "voc"), "--to", "coco", "--out", str(tmp_path))
    assert status == 0, err
    first = {}
    for name, overrides in (("voc", _overrides(sources, "voc")), ("coco", printed)):
        config = load_config("shapes_tiny", [*overrides, "data.deterministic=true", "train.batch_size=4"])
        first[name] = next(iter(data_tasks.train_dataset(config)))
    (voc_images, voc_targets), (coco_images, coco_targets) = first["voc"], first["coco"]
    np.testing.assert_array_equal(coco_images.numpy(), voc_images.numpy())
    assert sorted(coco_targets) == sorted(voc_targets)
    for key in voc_targets:
        np.testing.assert_array_equal(np.asarray(coco_targets[key]), np.asarray(voc_targets[key]), err_msg=key)


def test_tfrecords_of_a_voc_split_carry_its_ground_truth(sources, tmp_path, capsys):
    out = tmp_path / "records"
    status, printed, err = _convert(
        capsys, _overrides(sources, "voc"), "--to", "tfrecord", "--out", str(out), "--splits", "val", "--shards", "2"
    )
    assert status == 0, err
    pattern = str(out / "val-*.tfrecord")
    assert printed == ["data.dataset=tfrecord", f"data.val_tfrecords={pattern}"]
    reader = _reader(sources, "voc", "val")
    assert reader.summary() in err
    meta = tfrecord.read_sidecar(pattern)
    assert meta["annotations"] == str(out / "val_ground_truth.json")
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(meta["annotations"])
    assert truth.dataset == reader.ground_truth.dataset
    assert sorted(p.name for p in out.iterdir()) == [
        "val-00000-of-00002.tfrecord",
        "val-00001-of-00002.tfrecord",
        "val.json",
        "val_ground_truth.json",
    ]

    config = load_config("shapes_tiny", [*printed, "data.deterministic=true"])
    info = data_tasks.dataset_info(config, "val")
    assert info.image_ids == reader.image_ids.tolist() and info.annotations == meta["annotations"]
    assert info.class_names == NAMES
    evaluated = [int(i) for _, labels in data_tasks.eval_dataset(config, "val") for i in labels["image_id"].numpy()]
    assert evaluated == reader.image_ids.tolist()
    records = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))).map(tfrecord.parse_example)
    boxes = {int(r["image_id"]): len(r["boxes"]) for r in records}
    assert boxes == {int(i): len(b) for i, b in zip(reader.image_ids, reader.boxes)}
    assert meta["num_boxes"] == reader.num_boxes


def test_a_failed_coco_write_leaves_the_folder_as_it_was(sources, tmp_path, capsys, monkeypatch):
    """The second json fails half written (a full disk): neither json replaces the old files."""
    (tmp_path / "train.json").write_text("old")
    (tmp_path / "notes.txt").write_text("kept")
    before = _folder(tmp_path)
    write_text, temps = pathlib.Path.write_text, []

    def full_disk(self: pathlib.Path, text: str, *args, **kwargs) -> int:
        if self.name.startswith(".") and ".tmp" in self.name:  # the temporary files of atomic writes
            temps.append(self.name)
            if len(temps) == 2:
                write_text(self, text[: len(text) // 2], *args, **kwargs)
                raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    status, printed, err = _convert(capsys, _overrides(sources, "voc"), "--to", "coco", "--out", str(tmp_path))
    assert status == 2 and printed == []
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "could not write the COCO json" in errors[0] and "No space left on device" in errors[0]
    assert len(temps) == 2 and _folder(tmp_path) == before


def test_a_failed_tfrecord_write_leaves_the_folder_as_it_was(sources, tmp_path, capsys, monkeypatch):
    """A write fails in the second shard: the shards, sidecar and ground truth of an earlier run stay
    as they were, and a fresh folder stays empty."""
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    args = ("--to", "tfrecord", "--splits", "val", "--shards", "2")
    assert _convert(capsys, _overrides(sources, "voc"), *args, "--out", str(out))[0] == 0
    before = _folder(out)
    write_shard, calls = tfrecord._write_shard, []

    def failing(*shard_args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_shard(*shard_args)

    monkeypatch.setattr(tfrecord, "_write_shard", failing)
    for folder in (out, fresh):
        calls.clear()
        status, printed, err = _convert(capsys, _overrides(sources, "voc"), *args, "--out", str(folder))
        assert status == 2 and printed == [] and len(calls) == 2
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "could not write the val TFRecords" in errors[0], err
    assert _folder(out) == before
    assert list(fresh.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "args", "message"),
    [
        (None, ("--splits", "train", "test"), "split must be 'train' or 'val', got 'test'"),
        (["data.dataset=coco"], (), "data.train_annotations and data.train_images must be set for dataset=coco"),
        (
            ["data.dataset=tfrecord", "data.train_tfrecords=/x/train-*.tfrecord"],
            (),
            "the train split already is TFRecords (/x/train-*.tfrecord)",
        ),
        (None, ("--shards", "0"), "--shards must be >= 1, got 0"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(sources, tmp_path, capsys, overrides, args, message):
    out = tmp_path / "out"
    status, printed, err = _convert(
        capsys, overrides or _overrides(sources, "voc"), "--to", "tfrecord", "--out", str(out), *args
    )
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 2 and printed == [] and len(errors) == 1 and message in errors[0], err
    assert not out.exists()
