"""Image headers: sizes equal what tf.io.decode_image decodes, EXIF orientation as cv2.imread
applies it, and every unusable file named with its reason."""

import io

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cornernet_tf.data import image_header
from tests.data.conftest import with_exif_orientation


def _pattern(height: int, width: int) -> np.ndarray:
    """An RGB image whose every turn and mirror differs: coloured blocks by quadrant."""
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2, : width // 3] = (250, 20, 20)
    image[: height // 2, width // 3 :] = (20, 250, 20)
    image[height // 2 :, : 2 * width // 3] = (20, 20, 250)
    image[height // 2 :, 2 * width // 3 :] = (240, 240, 30)
    return image


def _pillow(image: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["jpeg", "png", "gif", "bmp"])
def test_header_size_is_the_decoded_size(fmt, encode_image):
    image = _pattern(37, 53)
    data = encode_image(image, ".jpg" if fmt == "jpeg" else ".png") if fmt in ("jpeg", "png") else _pillow(image, fmt)
    header = image_header.header_of_bytes(data)
    decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
    assert header.format == fmt and header.orientation == 1
    assert (header.height, header.width) == tuple(decoded.shape[:2]) == (37, 53)


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_turns_the_image_as_cv2_imread_does(tmp_path, encode_image, orientation, byte_order):
    data = with_exif_orientation(encode_image(_pattern(24, 36), ".jpg"), orientation, byte_order)
    path = tmp_path / "turned.jpg"
    path.write_bytes(data)
    header = image_header.probe_file(path)
    assert header.orientation == orientation and (header.height, header.width) == (24, 36)

    decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
    turned = {k: image_header.orient(decoded, k).numpy().astype(int) for k in range(1, 9)}
    original = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1].astype(int)  # the official reader, BGR -> RGB
    assert turned[orientation].shape == original.shape and original.shape[:2] == header.displayed_size
    # the two JPEG decoders differ by a few levels along colour edges; any other turn by far more
    differences = {k: np.abs(t - original).mean() for k, t in turned.items() if t.shape == original.shape}
    assert differences[orientation] < 2 and min(d for k, d in differences.items() if k != orientation) > 30


def test_a_truncated_jpeg_keeps_its_header(encode_image):
    """Cut in the middle of its pixel data, a JPEG still has a readable header: the decoding in
    the input pipeline is what finds it, and counts it."""
    data = encode_image(_pattern(64, 64), ".jpg")
    header = image_header.header_of_bytes(data[: len(data) // 2])
    assert (header.format, header.height, header.width) == ("jpeg", 64, 64)


@pytest.mark.parametrize(
    "content, error, reason",
    [
        (b"", image_header.UnreadableImageError, "empty file"),
        (b"just some text, no image", image_header.UndecodableImageError, "not a JPEG, PNG, GIF or BMP"),
        (b"\xff\xd8\xff\xe0\x00", image_header.UndecodableImageError, "truncated"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDX" + bytes(8), image_header.UndecodableImageError, "IHDR"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + bytes(8), image_header.UndecodableImageError, "0x0 pixels"),
    ],
)
def test_unusable_files_raise_with_their_reason(tmp_path, content, error, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(error, match=reason):
        image_header.probe_file(path)


def test_a_missing_file_is_unreadable(tmp_path):
    with pytest.raises(image_header.UnreadableImageError, match="No such file"):
        image_header.probe_file(tmp_path / "nowhere.png")
