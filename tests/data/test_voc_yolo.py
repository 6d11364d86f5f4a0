"""Pascal VOC and YOLO sources: the same images and boxes as a COCO json give the same samples,
batches and metrics, and every fault is counted exactly."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from cornernet_tf.config import load_config
from cornernet_tf.data import coco, pipeline, shapes, voc, yolo
from cornernet_tf.tasks import data as data_tasks
from cornernet_tf.utils.coco_metrics import coco_metrics

NAMES = list(shapes.CLASS_NAMES)  # rectangle, ellipse, triangle: COCO category order, not sorted


def write_voc(dataset: dict, images_dir: pathlib.Path, root: pathlib.Path, image_set: str) -> None:
    """A COCO dataset dict written as VOC, by the devkit's convention: xmin = x + 1,
    xmax = x + w (1-based, inclusive)."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    images = root / "JPEGImages"
    images.mkdir(exist_ok=True)
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    ids = []
    for image in sorted(dataset["images"], key=lambda i: i["id"]):
        stem = pathlib.Path(image["file_name"]).stem
        ids.append(stem)
        (images / image["file_name"]).write_bytes((images_dir / image["file_name"]).read_bytes())
        objects = "".join(
            f"<object><name>{names[a['category_id']]}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{a['bbox'][0] + 1!r}</xmin><ymin>{a['bbox'][1] + 1!r}</ymin>"
            f"<xmax>{a['bbox'][0] + a['bbox'][2]!r}</xmax><ymax>{a['bbox'][1] + a['bbox'][3]!r}</ymax>"
            "</bndbox></object>"
            for a in dataset["annotations"]
            if a["image_id"] == image["id"]
        )
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{image['file_name']}</filename><size><width>{image['width']}</width>"
            f"<height>{image['height']}</height><depth>3</depth></size>{objects}</annotation>"
        )
    (root / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{i}\n" for i in ids))


def write_yolo(dataset: dict, images_dir: pathlib.Path, root: pathlib.Path, split: str) -> None:
    """A COCO dataset dict written as an Ultralytics split: images/<split>, labels/<split>."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    index = {c["id"]: k for k, c in enumerate(sorted(dataset["categories"], key=lambda c: c["id"]))}
    for image in dataset["images"]:
        (root / "images" / split / image["file_name"]).write_bytes((images_dir / image["file_name"]).read_bytes())
        w, h = image["width"], image["height"]
        lines = [
            f"{index[a['category_id']]} {(a['bbox'][0] + a['bbox'][2] / 2) / w:.10f} "
            f"{(a['bbox'][1] + a['bbox'][3] / 2) / h:.10f} {a['bbox'][2] / w:.10f} {a['bbox'][3] / h:.10f}\n"
            for a in dataset["annotations"]
            if a["image_id"] == image["id"]
        ]
        (root / "labels" / split / f"{pathlib.Path(image['file_name']).stem}.txt").write_text("".join(lines))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\nnames: {NAMES}\n")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    """One small shapes dataset as COCO json, VOC and YOLO."""
    root = tmp_path_factory.mktemp("sources")
    layout = shapes.ensure_dataset(root / "shapes", 10, 6, 96, max_objects=4)
    voc_root, yolo_root = root / "voc", root / "yolo"
    for split in ("train", "val"):
        annotations, images = layout[split]
        dataset = json.loads(pathlib.Path(annotations).read_text())
        assert [c["name"] for c in sorted(dataset["categories"], key=lambda c: c["id"])] == NAMES
        write_voc(dataset, pathlib.Path(images), voc_root, split)
        write_yolo(dataset, pathlib.Path(images), yolo_root, split)
    return {"coco": layout, "voc": voc_root, "yolo": yolo_root / "data.yaml", "root": root}


def _config(sources: dict, dataset: str, *overrides: str):
    keys = {
        "coco": [
            f"data.{split}_{kind}={value}"
            for split in ("train", "val")
            for kind, value in zip(("annotations", "images"), sources["coco"][split])
        ],
        "voc": [f"data.voc_dir={sources['voc']}", f"data.class_names=[{', '.join(NAMES)}]"],
        "yolo": [f"data.yolo_yaml={sources['yolo']}"],
    }[dataset]
    return load_config("shapes_tiny", [f"data.dataset={dataset}", *keys, "data.deterministic=true", *overrides])


def _by_file(source: coco.CocoSource) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {pathlib.Path(p).name: (b, c) for p, b, c in zip(source.image_paths, source.boxes, source.classes)}


@pytest.mark.parametrize("split", ["train", "val"])
def test_voc_and_yolo_read_the_boxes_of_the_coco_json(sources, split):
    reference = _by_file(coco.load_coco(*sources["coco"][split]))
    from_voc = voc.load_voc(sources["voc"], split, NAMES)
    from_yolo = yolo.load_yolo(sources["yolo"], split)
    for source, tolerance in ((from_voc, 0.0), (from_yolo, 1e-4)):
        assert source.class_names == NAMES and len(source) == len(reference)
        assert (source.status == coco.USABLE).all() and not source.problems
        for name, (boxes, classes) in _by_file(source).items():
            np.testing.assert_allclose(boxes, reference[name][0], atol=tolerance)
            np.testing.assert_array_equal(classes, reference[name][1])


def test_voc_pixel_convention_is_the_devkits(tmp_path):
    """A box covering pixels 1..10 (VOC, inclusive) is COCO x 0, w 10: area 100 as the devkit counts."""
    dataset = {
        "images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 20}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    images = tmp_path / "src"
    images.mkdir()
    from tests.data.conftest import encode

    (images / "a.png").write_bytes(encode(np.zeros((20, 20, 3), np.uint8)))
    write_voc(dataset, images, tmp_path / "voc", "train")
    xml = (tmp_path / "voc" / "Annotations" / "a.xml").read_text()
    assert "<xmin>1.0</xmin>" in xml and "<xmax>10.0</xmax>" in xml
    converted, _, _ = voc.to_coco(tmp_path / "voc", "train", ["thing"])
    assert converted["annotations"][0]["bbox"] == [0.0, 0.0, 10.0, 10.0]
    assert converted["annotations"][0]["area"] == 100.0


def test_the_same_images_through_coco_voc_and_yolo_give_identical_training_batches(sources):
    batches = {}
    for dataset in ("coco", "voc", "yolo"):
        config = _config(sources, dataset, "train.batch_size=4")
        batches[dataset] = [next(iter(data_tasks.train_dataset(config)))]
    reference = batches["coco"][0]
    for dataset in ("voc", "yolo"):
        images, targets = batches[dataset][0]
        np.testing.assert_allclose(images.numpy(), reference[0].numpy(), atol=1e-5)
        for key in reference[1]:
            atol = 1e-6 if dataset == "voc" else 2e-3  # YOLO's normalized text carries 10 digits
            np.testing.assert_allclose(np.asarray(targets[key]), np.asarray(reference[1][key]), atol=atol, err_msg=key)


def test_evaluating_a_voc_or_yolo_split_equals_pycocotools_on_the_coco_json(sources):
    # VOC and YOLO hold no object areas: their boxes' areas are pycocotools' size ranges, so the
    # COCO json they convert to is the shapes json with area = w * h
    truth = json.loads(pathlib.Path(sources["coco"]["val"][0]).read_text())
    for annotation in truth["annotations"]:
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    annotations = sources["root"] / "boxes_area.json"
    annotations.write_text(json.dumps(truth))
    rng = np.random.default_rng(0)
    by_name = {image["id"]: image["file_name"] for image in truth["images"]}
    detections = [
        {
            "file": by_name[a["image_id"]],
            "category_id": a["category_id"],
            "score": float(rng.uniform(0.1, 1)),
            "bbox": [float(v + rng.normal(0, 2)) for v in a["bbox"]],
        }
        for a in truth["annotations"]
    ]
    expected = coco_metrics(
        annotations,
        [
            {
                "image_id": next(i for i, n in by_name.items() if n == d["file"]),
                **{k: d[k] for k in ("category_id", "score", "bbox")},
            }
            for d in detections
        ],
    )
    for dataset in ("voc", "yolo"):
        info = data_tasks.dataset_info(_config(sources, dataset), "val")
        ids = {pathlib.Path(img["file_name"]).name: img["id"] for img in info.annotations.dataset["images"]}
        records = [
            {"image_id": ids[d["file"]], **{k: d[k] for k in ("category_id", "score", "bbox")}} for d in detections
        ]
        got = coco_metrics(info.annotations, records)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-6), (dataset, name)


def test_voc_faults_are_counted_exactly(sources, tmp_path):
    root = tmp_path / "voc"
    annotations = root / "Annotations"
    annotations.mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    images = root / "JPEGImages"
    images.mkdir()
    from tests.data.conftest import encode

    for stem in ("a", "b", "c", "e"):
        (images / f"{stem}.png").write_bytes(encode(np.zeros((40, 50, 3), np.uint8)))

    def obj(name, box, difficult=0):
        inner = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{inner}</bndbox></object>"

    size = "<size><width>50</width><height>40</height></size>"
    (annotations / "a.xml").write_text(
        f"<annotation><filename>a.png</filename>{size}{obj('cat', (1, 1, 10, 10))}{obj('cat', (5, 5, 20, 20), 1)}"
        f"{obj('dog', (1, 1, 10, 10))}{obj('cat', (30, 30, 20, 20))}{obj('cat', (60, 50, 70, 60))}"
        "<object><name>cat</name><bndbox><xmin>1</xmin></bndbox></object></annotation>"
    )
    (annotations / "b.xml").write_text("<annotation><filename>b.png</filename")  # malformed
    (annotations / "c.xml").write_text(f"<annotation><filename>c.png</filename>{size}</annotation>")  # a negative
    (annotations / "d.xml").write_text(f"<annotation><filename>d.png</filename>{size}</annotation>")  # no image
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\nc\nd\ne\n")  # e: no xml
    source = voc.load_voc(root, "train", ["cat"])
    counts = {key: value for key, value in source.counts.items() if value}
    assert counts == {
        "unreadable_annotation_files": 2,  # b malformed, e missing
        "malformed_boxes": 1,
        "unknown_category_boxes": 1,  # dog
        "crowd_boxes": 1,  # the difficult cat
        "degenerate_boxes": 1,  # xmax < xmin
        "outside_boxes": 1,
        "unreadable_images": 1,  # d.png
        "images_without_boxes": 1,  # c
    }
    assert len(source) == 3 and len(source.usable_rows) == 2
    assert sum("b.xml" in p for p in source.problems) == 1 and sum("e.xml" in p for p in source.problems) == 1
    trained = voc.load_voc(root, "train", ["cat"], train_difficult=True)
    assert trained.counts["crowd_boxes"] == 0 and trained.num_boxes == source.num_boxes + 1
    (root / "ImageSets" / "Main" / "broken.txt").write_text("b\ne\n")
    with pytest.raises(voc.VocError, match="no annotation file of image set 'broken' could be read"):
        voc.load_voc(root, "broken", ["cat"])
    with pytest.raises(voc.VocError, match=r"no such image set file; .* has the image sets \['broken', 'train'\]"):
        voc.load_voc(root, "val", ["cat"])


def test_yolo_faults_are_counted_exactly(tmp_path):
    from tests.data.conftest import encode

    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    for stem in ("a", "b", "c"):
        (tmp_path / "images" / "train" / f"{stem}.png").write_bytes(encode(np.zeros((40, 80, 3), np.uint8)))
    (tmp_path / "images" / "train" / "d.png").write_bytes(b"not an image")
    (tmp_path / "labels" / "train" / "a.txt").write_text(
        "0 0.5 0.5 0.25 0.5\n"  # kept: x 30..50, y 10..30
        "1 0.1 0.1 0.3 0.1 0.3 0.3\n"  # a polygon: box 8..24 x 4..12
        "7 0.5 0.5 0.1 0.1\n"  # unknown class
        "0 0.5 0.5\n"  # malformed
        "x 0.5 0.5 0.1 0.1\n"  # malformed
        "0 0.5 0.5 0 0.2\n"  # degenerate
    )
    (tmp_path / "labels" / "train" / "d.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/train\nnames: {0: cat, 1: dog}\n")
    source = yolo.load_yolo(tmp_path / "data.yaml", "train")
    counts = {key: value for key, value in source.counts.items() if value}
    assert counts == {
        "images_without_label_file": 2,  # b, c
        "malformed_label_lines": 2,
        "unknown_category_boxes": 1,
        "degenerate_boxes": 1,
        "undecodable_images": 1,  # d
        "images_without_boxes": 2,
    }
    boxes = _by_file(source)["a.png"][0]
    np.testing.assert_allclose(boxes, [[30, 10, 50, 30], [8, 4, 24, 12]], atol=1e-4)
    assert source.class_names == ["cat", "dog"]
    with pytest.raises(yolo.YoloError, match="defines no 'test' split"):
        yolo.load_yolo(tmp_path / "data.yaml", "test")
    (tmp_path / "bad.yaml").write_text("train: images/train\n")
    with pytest.raises(yolo.YoloError, match="names must list the class names"):
        yolo.load_yolo(tmp_path / "bad.yaml", "train")


def test_a_yolo_list_file_and_the_label_rule(tmp_path):
    assert yolo.label_path(pathlib.Path("/d/images/x/images/train/a.jpg")) == pathlib.Path(
        "/d/images/x/labels/train/a.txt"
    )
    from tests.data.conftest import encode

    (tmp_path / "pics" / "images").mkdir(parents=True)
    (tmp_path / "pics" / "images" / "z.png").write_bytes(encode(np.zeros((8, 8, 3), np.uint8)))
    (tmp_path / "list.txt").write_text("./pics/images/z.png\n")
    (tmp_path / "data.yaml").write_text("train: list.txt\nval: list.txt\nnames: [a]\n")
    assert yolo.split_images(tmp_path / "data.yaml", "train") == [tmp_path / "pics" / "images" / "z.png"]


def test_voc_class_names_come_from_the_files_when_the_config_has_none(sources):
    config = _config(sources, "voc")
    config.data.class_names = []
    files = data_tasks.split_files(config, "train")
    assert isinstance(files, pipeline.VocFiles) and list(files.class_names) == sorted(NAMES)
    named = data_tasks.split_files(_config(sources, "voc", "data.class_names=[a, b, c]"), "val")
    assert named.class_names == ("a", "b", "c") and not named.train_difficult
    assert dataclasses.replace(named, train_difficult=True) != named


def test_evaluating_a_voc_split_adds_vocs_own_map(sources, capsys):
    from cornernet_tf.tasks.evaluation import evaluate_model
    from cornernet_tf.tasks.model import build_model
    from cornernet_tf.utils.voc_metrics import voc_metrics

    config = _config(sources, "voc", "detection.flip=false")
    metrics, records = evaluate_model(build_model(config.model), config)
    info = data_tasks.dataset_info(config, "val")
    expected = voc_metrics(info.annotations, records, info.image_ids)
    assert metrics["mAP_voc"] == pytest.approx(expected["mAP_voc"])
    eleven = voc_metrics(info.annotations, records, info.image_ids, use_07_metric=True)["mAP_voc"]
    assert metrics["mAP_voc07"] == pytest.approx(eleven)
    assert {f"AP_voc/{name}" for name in NAMES} <= set(metrics)
    assert "VOC2007 11-point mAP" in capsys.readouterr().out
