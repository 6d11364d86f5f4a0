"""visualize.py: boxes land on their border pixels only, heatmap overlays keep the image geometry."""

import cv2
import numpy as np

from cornernet_tf.utils import visualize


def test_draw_detections_marks_the_box_border_only():
    image = np.full((120, 160, 3), 40, np.uint8)
    boxes = np.array([[40.0, 50.0, 120.0, 100.0], [5.0, 5.0, 30.0, 30.0]])
    out = visualize.draw_detections(image, boxes, np.array([0.87, 0.1]), np.array([1, 0]), ["a", "b"], 0.3)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert (image == 40).all(), "the input must not be modified"
    changed = (out != image).any(axis=-1)
    color = visualize.class_color(1)
    assert tuple(out[75, 40]) == color and tuple(out[75, 120]) == color  # left and right edges
    assert tuple(out[100, 80]) == color  # bottom edge
    assert changed[50, 60:100].any()  # top edge (or the label drawn over it)
    assert not changed[60:90, 50:110].any(), "the box interior stays untouched"
    assert not changed[105:, :].any() and not changed[:, 125:].any(), "nothing far from the box"
    assert not changed[5:31, 5:31].any(), "a box under the score threshold is not drawn"
    assert changed[30:50, 40:120].any(), "the label sits above the box"


def test_draw_detections_label_near_the_top_edge_and_unknown_class_name():
    image = np.zeros((64, 64, 3), np.uint8)
    out = visualize.draw_detections(image, np.array([[2.0, 0.0, 60.0, 60.0]]), np.array([0.9]), np.array([7]))
    assert (out != 0).any(axis=-1)[1:12, 3:40].any(), "label drawn inside the box when no room above"


def test_overlay_heatmap_shape_dtype_and_hot_spot():
    image = np.full((96, 128, 3), 128, np.uint8)
    heat = np.zeros((24, 32, 3), np.float32)
    heat[12, 8, 2] = 1.0
    out = visualize.overlay_heatmap(image, heat)
    assert out.shape == image.shape and out.dtype == np.uint8
    hot = out[48:52, 32:36].astype(int)
    cold = out[5, 120].astype(int)
    assert hot[..., 0].max() > cold[0] and cold[2] > cold[0], "JET: hot is red, cold is blue"


def test_save_png_writes_a_readable_file_atomically(tmp_path):
    image = np.zeros((10, 12, 3), np.uint8)
    image[..., 0] = 255  # red in RGB
    path = visualize.save_png(tmp_path / "sub" / "out.png", image)
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, image)
