"""TFRecord round trip: bytes, ids, boxes and classes come back; sidecar; atomic, stale-free shards; CLI."""

import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.data import coco, tfrecord


@pytest.fixture
def source(coco_writer, encode_image):
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(5):
        h, w = 20 + 3 * i, 30 - 2 * i
        images.append((f"{i}.png", encode_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), h, w))
        for k in range(i % 3):  # 0, 1 or 2 objects
            annotations.append((i + 1, 1 + k, [1.5 + k, 2.0, 5.25, 6.0 + k], 0))
    path, images_dir = coco_writer(images, annotations, [(1, "cat"), (2, "dog")])
    return coco.load_coco(path, images_dir)


def _read_back(pattern: str) -> list[dict]:
    files = sorted(tf.io.gfile.glob(pattern))
    ds = tf.data.TFRecordDataset(files).map(tfrecord.parse_example)
    return [{k: v.numpy() for k, v in ex.items()} for ex in ds]


def test_round_trip_returns_the_source_examples(source, tmp_path):
    paths = tfrecord.write_tfrecords(source, str(tmp_path), "train", num_shards=2, progress=lambda _: None)
    assert [os.path.basename(p) for p in paths] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    examples = _read_back(str(tmp_path / "train-*.tfrecord"))
    assert [int(e["image_id"]) for e in examples] == list(source.image_ids)
    for row, example in enumerate(examples):
        with open(source.image_paths[row], "rb") as f:
            assert example["encoded"] == f.read()
        np.testing.assert_array_equal(example["boxes"], source.boxes[row])
        np.testing.assert_array_equal(example["classes"], source.classes[row])
        assert example["boxes"].shape == (len(source.boxes[row]), 4) and example["classes"].dtype == np.int32


def test_sidecar_and_no_temporary_files(source, tmp_path):
    tfrecord.write_tfrecords(source, str(tmp_path), "val", num_shards=3, progress=lambda _: None)
    meta = tfrecord.read_sidecar(str(tmp_path / "val-*.tfrecord"))
    assert meta["class_names"] == ["cat", "dog"] and meta["category_ids"] == [1, 2]
    assert meta["num_examples"] == 5 and meta["num_boxes"] == source.num_boxes and meta["skipped"] == []
    assert meta["image_ids"] == [1, 2, 3, 4, 5] and meta["format_version"] == 2
    assert meta["annotations"] == os.path.abspath(source.annotations)
    assert meta["shard_sizes"] == {f"val-0000{k}-of-00003.tfrecord": n for k, n in enumerate([2, 2, 1])}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_rewrite_with_fewer_shards_removes_stale_ones(source, tmp_path):
    tfrecord.write_tfrecords(source, str(tmp_path), "train", num_shards=4, progress=lambda _: None)
    tfrecord.write_tfrecords(source, str(tmp_path), "train", num_shards=2, progress=lambda _: None)
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".tfrecord")) == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    assert len(_read_back(str(tmp_path / "train-*.tfrecord"))) == 5


def test_more_shards_than_images_is_capped(source, tmp_path):
    paths = tfrecord.write_tfrecords(source, str(tmp_path), "x", num_shards=50, progress=lambda _: None)
    assert len(paths) == 5


def test_missing_pattern_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
        tfrecord.read_sidecar(str(tmp_path / "nothing-*.tfrecord"))


def test_cli_writes_shards_and_reports_progress(source, tmp_path, capsys):
    out = tmp_path / "out"
    images_dir = os.path.dirname(source.image_paths[0])
    tfrecord.main(["--coco", source.annotations, "--images", images_dir, "--out", str(out), "--shards", "2"])
    captured = capsys.readouterr()
    assert "shard 2/2, 5/5 images" in captured.err
    assert "instances-*.tfrecord" in captured.out
    assert json.loads((out / "instances.json").read_text())["num_examples"] == 5


def test_bad_images_are_left_out_counted_and_named_across_shards(coco_writer, encode_image, tmp_path):
    """Bad files first, in the middle and last, over 3 shards: the reader's finds (empty, not an
    image) and the writer's (a JPEG cut inside its pixel data) are all counted and named."""
    rng = np.random.default_rng(1)
    good = [encode_image(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), ".jpg") for _ in range(4)]
    images = [
        ("cut_first.jpg", good[0][: len(good[0]) // 2], 24, 32),
        ("a.jpg", good[0], 24, 32),
        ("empty.jpg", b"", 24, 32),
        ("b.jpg", good[1], 24, 32),
        ("c.jpg", good[2], 24, 32),
        ("text.jpg", b"not an image", 24, 32),
        ("d.jpg", good[3], 24, 32),
        ("cut_last.jpg", good[3][: len(good[3]) // 2], 24, 32),
    ]
    path, images_dir = coco_writer(images, [(i, 1, [2, 2, 5, 5], 0) for i in range(1, 9)], [(1, "x")])
    lines = []
    tfrecord.write_tfrecords(
        coco.load_coco(path, images_dir), str(tmp_path), "val", num_shards=3, progress=lines.append
    )
    pattern = str(tmp_path / "val-*.tfrecord")
    meta = tfrecord.read_sidecar(pattern)
    assert meta["num_examples"] == 4 and sum(meta["shard_sizes"].values()) == 4
    assert [int(e["image_id"]) for e in _read_back(pattern)] == [2, 4, 5, 7]
    assert meta["image_ids"] == list(range(1, 9)) == tfrecord.split_image_ids(meta)
    assert sorted(item.split(":")[0] for item in meta["skipped"]) == [
        "cut_first.jpg",
        "cut_last.jpg",
        "empty.jpg",
        "text.jpg",
    ]
    assert (meta["counts"]["unreadable_images"], meta["counts"]["undecodable_images"]) == (1, 3)
    assert "4 of 8 images left out" in lines[-1]
    assert "cut_last.jpg: undecodable (truncated or corrupt JPEG data)" in meta["skipped"]
    # the boxes of the images written: those left out train nothing
    assert tfrecord.summary(pattern, meta).endswith("8 images (4 usable, 4 skipped when written), 4 boxes, 1 classes")


def test_orientation_round_trips_and_old_records_default_to_none(source, tmp_path):
    record = tfrecord.serialize_example(b"x", 1, 2, 3, "f.jpg", np.zeros((0, 4)), np.zeros(0), orientation=6)
    assert int(tfrecord.parse_example(tf.constant(record))["orientation"]) == 6
    features = tf.train.Example.FromString(record)
    del features.features.feature["image/orientation"]  # as format 1 wrote them
    assert int(tfrecord.parse_example(tf.constant(features.SerializeToString()))["orientation"]) == 1


def test_a_full_disk_leaves_the_folder_as_it_was(coco_writer, encode_image, tmp_path):
    """TFRecords written again into a folder, with a write failing in the second shard (a
    file-size limit stands in for a full disk): one error line, and every file as before; into an
    empty folder: nothing at all."""
    rng = np.random.default_rng(2)
    images = [(f"{i}.png", encode_image(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)), 48, 64) for i in range(6)]
    path, images_dir = coco_writer(images, [(i, 1, [2, 2, 20, 20], 0) for i in range(1, 7)], [(1, "x")])
    command = [sys.executable, "-m", "cornernet_tf.data.tfrecord", "--coco", str(path), "--images", str(images_dir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    first = subprocess.run([*command, "--out", str(tmp_path / "out"), "--shards", "3"], capture_output=True, env=env)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    shard = max(len(data) for name, data in before.items() if name.endswith(".tfrecord"))

    def limit() -> None:  # the first shard fits, the second does not
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (shard + 10, shard + 10))

    for out, shards in ((tmp_path / "out", "2"), (tmp_path / "fresh", "2")):
        again = subprocess.run(
            [*command, "--out", str(out), "--shards", shards],
            capture_output=True,
            text=True,
            env=env,
            preexec_fn=limit,
            timeout=300,
        )
        assert again.returncode == 2, again.stderr
        errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "could not write the" in errors[0] and "nothing was written" in errors[0]
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert list((tmp_path / "fresh").iterdir()) == []
