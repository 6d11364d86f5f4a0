"""COCO json reading: class mapping, box filtering and clipping, counts, unusable image files."""

import logging

import numpy as np
import pytest

from cornernet_tf.data import coco
from tests.data.conftest import with_exif_orientation


@pytest.fixture
def grey_png(encode_image):
    return lambda h, w: encode_image(np.full((h, w, 3), 128, np.uint8))


@pytest.fixture
def source(coco_writer, grey_png):
    images = [("a.png", grey_png(40, 60), 40, 60), ("b.png", grey_png(30, 30), 30, 30), ("gone.png", None, 30, 30)]
    annotations = [
        (1, 7, [10, 5, 20, 10], 0),  # kept as is
        (1, 3, [50, 30, 20, 20], 0),  # clipped to the image: x2 70 -> 60, y2 50 -> 40
        (1, 3, [0, 0, 60, 40], 1),  # crowd
        (1, 10, [5, 5, 0, 4], 0),  # degenerate: zero width
        (1, 10, [70, 5, 4, 4], 0),  # wholly right of the image
        (1, 99, [1, 1, 4, 4], 0),  # unknown category
        (3, 7, [1, 1, 4, 4], 0),  # on the missing image
    ]
    path, images_dir = coco_writer(images, annotations, [(10, "ten"), (3, "three"), (7, "seven")])
    return coco.load_coco(path, images_dir)


def test_categories_map_to_contiguous_indices_in_id_order(source):
    assert source.category_ids == [3, 7, 10]
    assert source.class_names == ["three", "seven", "ten"]


def test_boxes_are_xyxy_clipped_and_filtered(source):
    assert list(source.image_ids) == [1, 2, 3]
    np.testing.assert_array_equal(source.image_sizes, [[40, 60], [30, 30], [30, 30]])
    np.testing.assert_allclose(source.boxes[0], [[10, 5, 30, 15], [50, 30, 60, 40]])
    np.testing.assert_array_equal(source.classes[0], [1, 0])
    assert source.boxes[0].dtype == np.float32 and source.classes[0].dtype == np.int32


def test_image_without_objects_is_kept(source):
    assert source.boxes[1].shape == (0, 4) and source.classes[1].shape == (0,)
    assert source.image_paths[1].endswith("b.png")


def test_counts_and_summary(source):
    assert source.counts == {
        "unreadable_images": 1,
        "undecodable_images": 0,
        "size_mismatch_images": 0,
        "reoriented_images": 0,
        "exif_ignored_images": 0,
        "images_without_boxes": 1,
        "crowd_boxes": 1,
        "unknown_category_boxes": 1,
        "degenerate_boxes": 1,
        "outside_boxes": 1,
        "clipped_boxes": 1,
        # what only the converting readers (VOC, YOLO) can meet
        "unreadable_annotation_files": 0,
        "malformed_boxes": 0,
        "images_without_label_file": 0,
        "malformed_label_lines": 0,
    }
    assert source.num_boxes == 3  # the missing image's box stays ground truth for evaluation
    assert list(source.status) == [coco.USABLE, coco.USABLE, coco.UNREADABLE]
    np.testing.assert_array_equal(source.usable_rows, [0, 1])
    line = source.summary()
    assert "3 images (2 usable, 1 skipped)" in line and "crowd boxes 1" in line and "unreadable images 1" in line


def test_missing_files_are_named_in_a_warning(coco_writer, grey_png, caplog):
    images = [("here.png", grey_png(8, 8), 8, 8), ("lost.png", None, 8, 8)]
    path, images_dir = coco_writer(images, [], [(1, "x")])
    with caplog.at_level(logging.WARNING):
        source = coco.load_coco(path, images_dir)
    assert len(source) == 2 and source.num_skipped == 1
    assert "lost.png: unreadable (No such file" in caplog.text and "1 of 2 images cannot be used" in caplog.text
    assert source.problems == [source.problems[0]] and source.problems[0].startswith("lost.png: unreadable")


def test_every_unusable_image_is_counted_at_any_position(coco_writer, grey_png, encode_image):
    """Bad files first, in the middle and last: each is found, counted under its reason and named."""
    good = grey_png(20, 30)
    jpeg = encode_image(np.full((20, 30, 3), 90, np.uint8), ".jpg")
    images = [
        ("empty.png", b"", 20, 30),  # first
        ("ok1.png", good, 20, 30),
        ("text.jpg", b"not an image at all", 20, 30),
        ("ok2.png", good, 20, 30),
        ("wrong_size.png", good, 30, 30),
        ("turned.jpg", with_exif_orientation(jpeg, 6), 30, 20),  # the json describes the turned image
        ("stored.jpg", with_exif_orientation(jpeg, 8), 20, 30),  # the json describes the stored pixels
        ("cut.jpg", jpeg[:40], 20, 30),  # last: cut inside its header
    ]
    path, images_dir = coco_writer(images, [], [(1, "x")])
    source = coco.load_coco(path, images_dir)
    assert list(source.status) == [
        coco.UNREADABLE,
        coco.USABLE,
        coco.UNDECODABLE,
        coco.USABLE,
        coco.SIZE_MISMATCH,
        coco.USABLE,
        coco.USABLE,
        coco.UNDECODABLE,
    ]
    assert list(source.orientation) == [1, 1, 1, 1, 1, 6, 1, 1]
    counts = source.counts
    assert (counts["unreadable_images"], counts["undecodable_images"], counts["size_mismatch_images"]) == (1, 2, 1)
    assert (counts["reoriented_images"], counts["exif_ignored_images"]) == (1, 1)
    assert [p.split(":")[0] for p in source.problems] == ["empty.png", "text.jpg", "wrong_size.png", "cut.jpg"]
    assert "the file is 30x20, the json says 30x30" in source.problems[2]


def test_all_files_missing_is_an_error_naming_the_folder(coco_writer):
    path, images_dir = coco_writer([("lost.png", None, 8, 8)], [], [(1, "x")])
    with pytest.raises(FileNotFoundError, match="none of its 1 image files"):
        coco.load_coco(path, images_dir / "wrong")
