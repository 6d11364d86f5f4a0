"""The built-in dataset: determinism, COCO validity, boxes that match the drawn objects, balance."""

import collections
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from cornernet_tf.data import shapes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes") / "ds"
    return root, shapes.ensure_dataset(root, num_train=60, num_val=10, image_size=96, seed=3)


def test_pycocotools_loads_both_splits(dataset):
    _, layout = dataset
    for split, count in (("train", 60), ("val", 10)):
        coco = COCO(str(layout[split][0]))
        assert len(coco.getImgIds()) == count
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(shapes.CLASS_NAMES)
        assert len(coco.getAnnIds()) >= count


def test_generation_is_deterministic_and_cached(dataset, tmp_path):
    root, layout = dataset
    other = shapes.ensure_dataset(tmp_path / "again", 60, 10, 96, seed=3)
    assert layout["train"][0].read_text() == other["train"][0].read_text()
    first = sorted(layout["train"][1].iterdir())[0]
    assert first.read_bytes() == (other["train"][1] / first.name).read_bytes()
    stamp = layout["train"][0].stat().st_mtime_ns
    shapes.ensure_dataset(root, 60, 10, 96, seed=3)
    assert layout["train"][0].stat().st_mtime_ns == stamp  # reused, not regenerated
    different = shapes.ensure_dataset(tmp_path / "seed4", 60, 10, 96, seed=4)
    assert different["train"][0].read_text() != layout["train"][0].read_text()


def test_boxes_lie_inside_images_and_match_the_drawn_objects(dataset):
    _, layout = dataset
    annotations, images_dir = layout["train"]
    data = json.loads(annotations.read_text())
    by_image = collections.defaultdict(list)
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    for info in data["images"]:
        image = cv2.imread(str(images_dir / info["file_name"]))[..., ::-1]
        rng = np.random.default_rng([3, 0, info["id"] - 1])
        redrawn, objects = shapes.render_image(rng, 96)
        np.testing.assert_array_equal(image, redrawn)
        anns = by_image[info["id"]]
        assert len(anns) == len(objects)
        for ann, obj in zip(anns, objects):
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= info["width"] and y + h <= info["height"]
            assert w >= 1 and h >= 1
            ys, xs = np.nonzero(obj.mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
            assert ann["category_id"] == obj.class_index + 1
        # each object's visible pixels carry its colour, and it stays at least half visible
        owner = np.full(image.shape[:2], -1)
        for i, obj in enumerate(objects):
            owner[obj.mask] = i
        for i, obj in enumerate(objects):
            visible = owner == i
            assert visible.sum() >= shapes.MIN_VISIBLE_FRACTION * obj.mask.sum()
            assert (image[visible] == obj.color).all()


def test_classes_are_balanced(dataset):
    _, layout = dataset
    data = json.loads(layout["train"][0].read_text())
    counts = collections.Counter(a["category_id"] for a in data["annotations"])
    mean = sum(counts.values()) / 3
    assert set(counts) == {1, 2, 3}
    assert all(abs(c - mean) <= 0.3 * mean for c in counts.values()), counts


def test_cli_writes_dataset(tmp_path, capsys):
    shapes.main(["--out", str(tmp_path / "cli"), "--train", "3", "--val", "2", "--size", "64"])
    assert "train:" in capsys.readouterr().out
    assert len(list((tmp_path / "cli" / "val").glob("*.png"))) == 2
    with pytest.raises(SystemExit):
        shapes.main(["--out", str(tmp_path / "bad"), "--train", "0"])


def test_large_images_with_small_objects(tmp_path, capsys):
    """The generator's Saccade setting: many objects whose sides stay inside object_size, recorded
    in the manifest so a dataset of other sizes is not reused for it."""
    layout = shapes.ensure_dataset(tmp_path / "small", 12, 2, image_size=256, max_objects=12, object_size=(10, 30))
    data = json.loads(layout["train"][0].read_text())
    sides = np.array([ann["bbox"][2:] for ann in data["annotations"]])
    assert sides.max() <= 30 and np.median(sides) >= 8  # the tight box of a drawn shape, at most its draw box
    per_image = collections.Counter(ann["image_id"] for ann in data["annotations"])
    assert max(per_image.values()) <= 12 and np.mean(list(per_image.values())) > 4
    manifest = json.loads((tmp_path / "small" / "manifest.json").read_text())
    assert manifest["object_size"] == [10, 30] and manifest["max_objects"] == 12
    default = shapes.ensure_dataset(tmp_path / "small", 12, 2, image_size=256)  # other parameters: regenerated
    sides = [ann["bbox"][2] for ann in json.loads(default["train"][0].read_text())["annotations"]]
    assert max(sides) > 30
    with pytest.raises(SystemExit):
        shapes.main(["--out", str(tmp_path / "bad"), "--size", "64", "--object_size", "20", "80"])
    assert "object sizes must be MIN MAX with 4 <= MIN <= MAX <= the image size 64" in capsys.readouterr().err
