"""TensorFlow Datasets source: a local builder made from the shapes dataset reads back as the shapes
COCO json (boxes, classes, training batches); crowd flags become ignored regions; the image files
are written once, whole, and later uses read only the json; a missing builder, split or data_dir is
one clear error."""

from __future__ import annotations

import json
import logging
import pathlib
import sys

import numpy as np
import pytest

from cornernet_tf.config import load_config
from cornernet_tf.data import coco, pipeline, shapes, tfds_source
from cornernet_tf.tasks import data as data_tasks
from tests.data.conftest import encode, with_exif_orientation

tfds = pytest.importorskip("tensorflow_datasets")

NAMES = list(shapes.CLASS_NAMES)  # rectangle, ellipse, triangle: category ids 1, 2, 3
NAME = "cornernet_tfds_test_shapes"  # the registered name of CornernetTfdsTestShapes
ODD = "cornernet_tfds_test_odd"  # CornernetTfdsTestOdd: not registered, found from its prepared files
SHAPES: dict[str, tuple[pathlib.Path, pathlib.Path]] = {}  # split -> (json, images), set before preparing
SKIP_STATS = {"compute_stats": tfds.download.ComputeStatsMode.SKIP}


def _features() -> tfds.features.FeaturesDict:
    objects = {
        "bbox": tfds.features.BBoxFeature(),
        "label": tfds.features.ClassLabel(names=NAMES),
        "is_crowd": np.bool_,
    }
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(),
            "image/filename": tfds.features.Text(),
            "objects": tfds.features.Sequence(objects),
        }
    )


def _bbox(box: list[float], width: int, height: int) -> tfds.features.BBox:
    """COCO [x, y, w, h] pixels -> TFDS's normalized (ymin, xmin, ymax, xmax)."""
    x, y, w, h = box
    return tfds.features.BBox(ymin=y / height, xmin=x / width, ymax=(y + h) / height, xmax=(x + w) / width)


class CornernetTfdsTestShapes(tfds.core.GeneratorBasedBuilder):
    """The shapes COCO dataset (`SHAPES`) as a TFDS builder; defining it registers it by name."""

    VERSION = tfds.core.Version("1.0.0")
    # no checksums file beside the code: TFDS would look for it with importlib_resources (not a dependency)
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=_features())

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(*SHAPES[split]) for split in ("train", "val")}

    def _generate_examples(self, annotations: pathlib.Path, images: pathlib.Path):
        dataset = json.loads(annotations.read_text())
        for image in dataset["images"]:
            objects = [
                {
                    "bbox": _bbox(a["bbox"], image["width"], image["height"]),
                    "label": a["category_id"] - 1,
                    "is_crowd": bool(a["iscrowd"]),
                }
                for a in dataset["annotations"]
                if a["image_id"] == image["id"]
            ]
            # a path: TFDS stores the file's bytes as they are
            yield (
                image["file_name"],
                {"image": images / image["file_name"], "image/filename": image["file_name"], "objects": objects},
            )


class CornernetTfdsTestOdd(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Crowd flags, a degenerate box, EXIF-turned JPEGs, a negative and bytes that are no image."""

    VERSION = tfds.core.Version("1.0.0")
    name = ODD
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=_features())

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        def box(ymin, xmin, ymax, xmax, label, crowd=False):
            return {
                "bbox": tfds.features.BBox(*(float(v) for v in (ymin, xmin, ymax, xmax))),
                "label": label,
                "is_crowd": crowd,
            }

        # stored 60 wide, 40 high; EXIF would show it turned by 90 degrees (a), or upside down (b)
        turned = with_exif_orientation(encode(np.full((40, 60, 3), 90, np.uint8), ".jpg"), 6)
        flipped = with_exif_orientation(encode(np.full((50, 70, 3), 90, np.uint8), ".jpg"), 3)
        yield (
            "a",
            {
                "image": turned,
                "image/filename": "a.jpg",
                "objects": [box(0.1, 0.2, 0.5, 0.6, 0), box(0, 0, 1, 1, 1, True)],
            },
        )
        yield (
            "b",
            {
                "image": flipped,
                "image/filename": "b.jpg",
                "objects": [box(0.2, 0.1, 0.6, 0.5, 2), box(0.1, 0.3, 0.2, 0.3, 0)],
            },
        )
        yield "c", {"image": encode(np.zeros((30, 30, 3), np.uint8)), "image/filename": "c.png", "objects": []}
        yield "d", {"image": b"not an image", "image/filename": "d.png", "objects": [box(0.1, 0.1, 0.2, 0.2, 0)]}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict:
    """The shapes dataset (6 train, 4 val images) and the two builders prepared in one data_dir."""
    root = tmp_path_factory.mktemp("tfds")
    SHAPES.update(shapes.ensure_dataset(root / "shapes", 6, 4, 96, max_objects=4))
    for split, (instances, _) in SHAPES.items():
        categories = json.loads(instances.read_text())["categories"]
        assert [c["name"] for c in sorted(categories, key=lambda c: c["id"])] == NAMES, split
    data_dir = root / "data"
    config = tfds.download.DownloadConfig(**SKIP_STATS)
    for builder in (CornernetTfdsTestShapes, CornernetTfdsTestOdd):
        builder(data_dir=str(data_dir)).download_and_prepare(download_config=config)
    return {"shapes": dict(SHAPES), "data_dir": data_dir}


def _tfds_file_names(source: coco.CocoSource) -> list[str]:
    """The builder's own file name (`image/filename`) of each image of a TFDS source, in row order."""
    by_id = {image["id"]: image["tfds_file_name"] for image in source.ground_truth.dataset["images"]}
    return [by_id[int(image_id)] for image_id in source.image_ids]


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_tfds_split_has_the_images_boxes_and_classes_of_the_coco_json(prepared, split):
    annotations, images = prepared["shapes"][split]
    shapes_source = coco.load_coco(annotations, images)
    reference = {
        pathlib.Path(path).name: (boxes, classes)
        for path, boxes, classes in zip(shapes_source.image_paths, shapes_source.boxes, shapes_source.classes)
    }
    source = tfds_source.load_tfds(NAME, split, data_dir=prepared["data_dir"])
    assert source.annotations == f"tfds:{NAME}:{split}"
    assert source.class_names == NAMES == tfds_source.class_names(NAME, prepared["data_dir"])
    assert len(source) == len(reference) and (source.status == coco.USABLE).all() and not source.problems
    assert source.num_boxes == sum(len(b) for b, _ in reference.values()) and source.counts["crowd_boxes"] == 0
    folder = prepared["data_dir"] / tfds_source.CACHE_DIR / NAME / split
    for path, name, boxes, classes in zip(source.image_paths, _tfds_file_names(source), source.boxes, source.classes):
        np.testing.assert_allclose(boxes, reference[name][0], atol=1e-3)  # normalized float32 in the dataset
        np.testing.assert_array_equal(classes, reference[name][1])
        assert pathlib.Path(path).parent == folder and pathlib.Path(path).suffix == ".png"
        assert pathlib.Path(path).read_bytes() == (images / name).read_bytes()  # as stored: never re-encoded
    assert not list(folder.parent.glob(".*"))  # no temporary folder left behind
    assert len(list(folder.iterdir())) == len(source) + 1  # the images and instances.json


def test_a_tfds_split_gives_the_training_batch_of_the_coco_json(prepared, tmp_path):
    """TFDS orders a split by its keys' hashes: the json fed to the pipeline takes the shapes json's
    image ids (by the builder's file names), so both streams pick the same images."""
    source = tfds_source.load_tfds(NAME, "train", data_dir=prepared["data_dir"])
    annotations, images = prepared["shapes"]["train"]
    shapes_ids = {image["file_name"]: image["id"] for image in json.loads(annotations.read_text())["images"]}
    dataset = source.ground_truth.dataset
    new_id = {image["id"]: shapes_ids[image["tfds_file_name"]] for image in dataset["images"]}
    remapped = {
        "images": [{**image, "id": new_id[image["id"]]} for image in dataset["images"]],
        "annotations": [{**a, "image_id": new_id[a["image_id"]]} for a in dataset["annotations"]],
        "categories": dataset["categories"],
    }
    (tmp_path / "tfds.json").write_text(json.dumps(remapped))
    spec = data_tasks.train_input(load_config("shapes_tiny", ["data.deterministic=true"]))
    batches = [
        next(iter(pipeline.train_dataset(files, spec, 4)))
        for files in (
            pipeline.CocoFiles(str(annotations), str(images)),
            pipeline.CocoFiles(str(tmp_path / "tfds.json"), str(pathlib.Path(source.image_paths[0]).parent)),
        )
    ]
    (reference_images, reference), (images_tfds, targets) = batches
    np.testing.assert_allclose(images_tfds.numpy(), reference_images.numpy(), atol=1e-5)
    for key in reference:
        np.testing.assert_allclose(np.asarray(targets[key]), np.asarray(reference[key]), atol=2e-3, err_msg=key)


def test_crowd_flags_exif_and_faults_are_counted_exactly(prepared):
    """The odd builder is not registered: `tfds.builder` finds it by name from its prepared files."""
    source = tfds_source.load_tfds(ODD, "train", data_dir=prepared["data_dir"])
    counts = {key: value for key, value in source.counts.items() if value}
    assert counts == {
        "crowd_boxes": 1,  # a's is_crowd object
        "degenerate_boxes": 1,  # b's zero-width box
        "undecodable_images": 1,  # d
        "images_without_boxes": 1,  # c
        "exif_ignored_images": 2,  # a (turned by 90 degrees) and b (by 180): TFDS images are used as stored
    }
    assert (source.orientation == 1).all() and source.class_names == NAMES
    rows = dict(zip(_tfds_file_names(source), range(len(source))))
    assert sorted(rows) == ["a.jpg", "b.jpg", "c.png", "d.png"]
    assert pathlib.Path(source.image_paths[rows["d.png"]]).suffix == tfds_source.UNKNOWN_EXTENSION
    assert source.status[rows["d.png"]] == coco.UNDECODABLE and len(source.problems) == 1
    assert source.problems[0].startswith(pathlib.Path(source.image_paths[rows["d.png"]]).name)
    np.testing.assert_allclose(source.boxes[rows["a.jpg"]], [[0.2 * 60, 0.1 * 40, 0.6 * 60, 0.5 * 40]], atol=1e-4)
    np.testing.assert_allclose(source.boxes[rows["b.jpg"]], [[0.1 * 70, 0.2 * 50, 0.5 * 70, 0.6 * 50]], atol=1e-4)
    np.testing.assert_array_equal(source.classes[rows["b.jpg"]], [2])
    crowd = [a for a in source.ground_truth.dataset["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["category_id"] == 2 and crowd[0]["bbox"] == [0.0, 0.0, 60.0, 40.0]


def test_the_second_use_reads_only_the_cached_json(prepared, tmp_path, monkeypatch):
    first = tfds_source.load_tfds(NAME, "val", data_dir=prepared["data_dir"], cache_dir=tmp_path)
    assert pathlib.Path(first.image_paths[0]).parent == tmp_path / NAME / "val"

    def no_reading(*args, **kwargs):
        raise AssertionError("the dataset was read again")

    monkeypatch.setattr(CornernetTfdsTestShapes, "as_dataset", no_reading)
    second = tfds_source.load_tfds(NAME, "val", data_dir=prepared["data_dir"], cache_dir=tmp_path)
    assert second.image_paths == first.image_paths
    for a, b in zip(first.boxes, second.boxes):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(AssertionError, match="read again"):  # the builder found by name is the patched class
        tfds_source.load_tfds(NAME, "val", data_dir=prepared["data_dir"], cache_dir=tmp_path / "elsewhere")


def test_a_half_built_or_stale_cache_is_never_used(prepared, tmp_path, monkeypatch, caplog):
    folder = tmp_path / NAME / "val"
    expected = tfds_source.load_tfds(NAME, "val", data_dir=prepared["data_dir"], cache_dir=tmp_path)
    whole = json.loads((folder / tfds_source.ANNOTATIONS).read_text())

    def rebuilt() -> coco.CocoSource:
        source = tfds_source.load_tfds(NAME, "val", data_dir=prepared["data_dir"], cache_dir=tmp_path)
        assert source.image_paths == expected.image_paths and source.num_boxes == expected.num_boxes
        assert json.loads((folder / tfds_source.ANNOTATIONS).read_text()) == whole
        return source

    # a killed run's temporary folder, complete-looking json and all, is left alone and named
    leftover = tmp_path / NAME / ".val.partial-1-dead"
    leftover.mkdir()
    (leftover / tfds_source.ANNOTATIONS).write_text(json.dumps({**whole, "annotations": []}))
    (folder / tfds_source.ANNOTATIONS).unlink()  # the folder without its json: rebuilt
    (folder / "junk.png").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger=tfds_source.__name__):
        rebuilt()
    assert not (folder / "junk.png").exists() and leftover.exists() and ".val.partial-1-dead" in caplog.text

    # a cache of another build of the dataset (here: another example count) is rebuilt
    (folder / tfds_source.ANNOTATIONS).write_text(
        json.dumps({**whole, "info": {"tfds": {**whole["info"]["tfds"], "num_examples": 3}}, "annotations": []})
    )
    rebuilt()

    # a build that fails midway leaves neither the folder nor its temporary sibling
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tfds_source, "_write_split", fail)
    cache = tmp_path / "failed"
    with pytest.raises(KeyboardInterrupt):
        tfds_source.load_tfds(NAME, "val", data_dir=prepared["data_dir"], cache_dir=cache)
    assert list((cache / NAME).iterdir()) == []


def test_a_missing_builder_split_or_data_dir_is_one_clear_error(prepared, tmp_path):
    data_dir = prepared["data_dir"]
    with pytest.raises(
        tfds_source.TfdsError, match=r"no TensorFlow Datasets builder 'no_such_set_xyz' \(split 'train'\)"
    ) as error:
        tfds_source.load_tfds("no_such_set_xyz", "train", data_dir=tmp_path)
    assert str(tmp_path) in str(error.value) and "tfds build no_such_set_xyz" in str(error.value)
    assert "\n" not in str(error.value)  # not the catalog's list of every dataset
    with pytest.raises(tfds_source.TfdsError, match=r"has no split 'test': its splits are \['train', 'val'\]") as error:
        tfds_source.load_tfds(NAME, "test", data_dir=data_dir)
    assert NAME in str(error.value) and str(data_dir) in str(error.value)
    empty = tmp_path / "empty"
    with pytest.raises(tfds_source.TfdsError, match=rf"'{NAME}' \(split 'train'\) is not prepared in {empty}") as error:
        tfds_source.load_tfds(NAME, "train", data_dir=empty)
    assert f"tfds build {NAME} --data_dir {empty}" in str(error.value) and "download_and_prepare()" in str(error.value)
    assert not empty.exists()  # nothing downloaded or prepared


def test_a_builder_without_boxes_names_its_features(tmp_path):
    """mnist comes from the TFDS catalog (its code, not prepared: nothing is downloaded)."""
    with pytest.raises(tfds_source.TfdsError, match=r"mnist.*features are image, label"):
        tfds_source.class_names("mnist", tmp_path)


def test_without_tensorflow_datasets_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r'pip install "cornernet-tf\[tfds\]"'):
        tfds_source.load_tfds(NAME, "train")


def test_a_config_reads_a_tfds_builder_as_any_other_source(prepared):
    """data.dataset tfds: the split record, class names and ground truth of the builder's split."""
    from cornernet_tf.config import load_config
    from cornernet_tf.data import pipeline
    from cornernet_tf.tasks import data as data_tasks

    config = load_config(
        "shapes_tiny",
        [
            "data.dataset=tfds",
            "data.tfds_name=cornernet_tfds_test_shapes",
            f"data.tfds_data_dir={prepared['data_dir']}",
            "data.tfds_val_split=val",
        ],
    )
    files = data_tasks.split_files(config, "val")
    assert files == pipeline.TfdsFiles("cornernet_tfds_test_shapes", "val", str(prepared["data_dir"]))
    info = data_tasks.dataset_info(config, "val")
    assert info.class_names == NAMES and info.num_images == 4
    assert len(info.annotations.dataset["annotations"]) == len(
        json.loads(prepared["shapes"]["val"][0].read_text())["annotations"]
    )
    with pytest.raises(ValueError, match="data.tfds_name must be set"):
        data_tasks.split_files(load_config("shapes_tiny", ["data.dataset=tfds"]), "train")
