"""Detections and heatmaps drawn onto RGB images, for notebooks, debugging and reports.

Images are uint8 RGB [H, W, 3] throughout; OpenCV (BGR) is only an implementation detail.
"""

from __future__ import annotations

import collections
import colorsys
import os
import pathlib
from collections.abc import Sequence

import cv2
import numpy as np

from cornernet_tf.utils.files import atomic_write_bytes

_FONT, _FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.4


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, saturated RGB colour per class (golden-ratio hue steps keep neighbours apart)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    class_names: Sequence[str] = (),
    score_threshold: float = 0.3,
    thickness: int = 2,
    legend: bool = False,
) -> np.ndarray:
    """Draw boxes [N, 4] (x1, y1, x2, y2, image pixels) with "name 0.87" labels on a copy.

    Args:
        image: uint8 RGB [H, W, 3]; left unchanged.
        boxes: [N, 4] (x1, y1, x2, y2) in image pixels.
        scores: [N] scores.
        classes: [N] 0-based indices into `class_names`.
        class_names: Class names; the index itself is printed when a name is missing.
        score_threshold: Rows with a lower score are skipped.
        thickness: Line width of the boxes in pixels.
        legend: Add a `draw_legend` of the classes drawn in the top-right corner.

    Returns:
        uint8 [H, W, 3].
    """
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    width = canvas.shape[1]
    drawn: list[int] = []
    for box, score, cls in zip(np.asarray(boxes), np.asarray(scores), np.asarray(classes)):
        if score < score_threshold:
            continue
        cls = int(cls)
        drawn.append(cls)
        color = class_color(cls)
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = f"{_class_name(cls, class_names)} {score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, _FONT, _FONT_SCALE, 1)
        # Label above the box, or inside it when the box touches the top edge.
        top = y1 - text_h - baseline if y1 - text_h - baseline >= 0 else y1
        left = min(max(x1, 0), max(width - text_w, 0))
        cv2.rectangle(canvas, (left, top), (left + text_w, top + text_h + baseline), color, -1)
        cv2.putText(canvas, label, (left, top + text_h), _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return draw_legend(canvas, drawn, class_names) if legend else canvas


def _class_name(class_id: int, class_names: Sequence[str]) -> str:
    return class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)


def draw_legend(image: np.ndarray, classes: Sequence[int], class_names: Sequence[str] = ()) -> np.ndarray:
    """A copy of `image` with a legend in its top-right corner: a colour swatch and "name (count)"
    per distinct class of `classes` (0-based), in class order; "no detections" when empty."""
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    counts = collections.Counter(int(c) for c in classes)
    entries = [(cls, f"{_class_name(cls, class_names)} ({counts[cls]})") for cls in sorted(counts)]
    entries = entries or [(None, "no detections")]
    sizes = [cv2.getTextSize(text, _FONT, _FONT_SCALE, 1) for _, text in entries]
    line = max(h + b for (_, h), b in sizes) + 4
    swatch = line - 4
    panel_w = max(w for (w, _), _ in sizes) + swatch + 12
    width = canvas.shape[1]
    left, top = max(width - panel_w - 4, 0), 4
    region = canvas[top : top + line * len(entries) + 4, left : left + panel_w]
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken, keep the picture visible
    for row, ((cls, text), ((_, text_h), _)) in enumerate(zip(entries, sizes)):
        y = top + 4 + row * line
        if cls is not None:
            cv2.rectangle(canvas, (left + 4, y), (left + 4 + swatch, y + swatch), class_color(cls), -1)
        cv2.putText(canvas, text, (left + swatch + 8, y + text_h), _FONT, _FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a heatmap [h, w, C] of probabilities (max over classes) over image [H, W, 3].

    The map is resized to the image (bilinear), coloured with the JET colormap and blended with
    weight `alpha`. Returns uint8 [H, W, 3].
    """
    image = np.asarray(image, dtype=np.uint8)
    peak = np.asarray(heatmap, dtype=np.float32).max(axis=-1)
    peak = cv2.resize(peak, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    levels = np.clip(peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    colored = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1.0 - alpha, colored, alpha, 0.0)


def save_image(path: str | os.PathLike, image: np.ndarray, file_format: str | None = None) -> pathlib.Path:
    """Write an RGB uint8 image atomically (temporary file, then rename) in `file_format` (".png",
    ".jpg", ".bmp", ... as OpenCV encodes them; default the suffix of `path`); returns the path."""
    path = pathlib.Path(path)
    file_format = file_format or path.suffix
    ok, encoded = cv2.imencode(file_format, cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"image for {path}: OpenCV could not encode it as {file_format!r} (shape {np.shape(image)})")
    return atomic_write_bytes(path, encoded.tobytes())


def save_png(path: str | os.PathLike, image: np.ndarray) -> pathlib.Path:
    """`save_image` as PNG, whatever the suffix of `path`."""
    return save_image(path, image, ".png")
