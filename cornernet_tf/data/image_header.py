"""Image size and EXIF orientation read from a file's header, without decoding its pixels.

The COCO reader and the TFRecord writer use it to account for every image before any pixel is
decoded: a missing or empty file, a file that is not a JPEG, PNG, GIF or BMP (what
`tf.io.decode_image` reads), and a header whose size disagrees with the annotation json are
found up front and named, instead of failing one sample at a time inside the input pipeline.

The EXIF orientation (JPEG APP1, tag 0x0112) matters because the original reads images with
`cv2.imread`, which applies it, while `tf.io.decode_image` does not; `orient` applies it in
the graph.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from typing import BinaryIO

import tensorflow as tf

# Orientations 5..8 swap width and height (the stored image is transposed or turned by 90°).
_TRANSPOSING = (5, 6, 7, 8)
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
EXIF_ORIENTATION_TAG = 0x0112


class UnreadableImageError(OSError):
    """The file cannot be read: missing, not a regular file, no permission, or empty."""


class UndecodableImageError(ValueError):
    """The bytes are not an image `tf.io.decode_image` can read (or its header is corrupt)."""


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """`format` ("jpeg", "png", "gif", "bmp"), the stored `height` and `width`, and the EXIF
    `orientation` (1..8, 1 = as stored; always 1 for formats other than JPEG)."""

    format: str
    height: int
    width: int
    orientation: int = 1

    @property
    def displayed_size(self) -> tuple[int, int]:
        """(height, width) once the orientation is applied, as `cv2.imread` returns the image."""
        if self.orientation in _TRANSPOSING:
            return self.width, self.height
        return self.height, self.width


def _read_exact(stream: BinaryIO, count: int, what: str) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise UndecodableImageError(f"truncated {what}")
    return data


def _exif_orientation(payload: bytes) -> int:
    """The orientation tag of an APP1 payload, 1 when it is not EXIF or has no such tag."""
    if not payload.startswith(b"Exif\0\0") or len(payload) < 14:
        return 1
    tiff = payload[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    (ifd_offset,) = struct.unpack(order + "I", tiff[4:8])
    if ifd_offset + 2 > len(tiff):
        return 1
    (entries,) = struct.unpack(order + "H", tiff[ifd_offset : ifd_offset + 2])
    for entry in range(entries):
        start = ifd_offset + 2 + 12 * entry
        if start + 12 > len(tiff):
            break
        tag, kind, _count = struct.unpack(order + "HHI", tiff[start : start + 8])
        if tag == EXIF_ORIENTATION_TAG and kind == 3:  # SHORT
            (value,) = struct.unpack(order + "H", tiff[start + 8 : start + 10])
            return value if 1 <= value <= 8 else 1
    return 1


def _jpeg_header(stream: BinaryIO) -> ImageHeader:
    orientation = 1
    while True:
        if _read_exact(stream, 1, "JPEG marker") != b"\xff":
            raise UndecodableImageError("corrupt JPEG: a segment does not start with a marker")
        marker = _read_exact(stream, 1, "JPEG marker")[0]
        while marker == 0xFF:  # fill bytes
            marker = _read_exact(stream, 1, "JPEG marker")[0]
        if marker in STANDALONE_MARKERS:
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before it
            raise UndecodableImageError("corrupt JPEG: no frame header")
        (length,) = struct.unpack(">H", _read_exact(stream, 2, "JPEG segment length"))
        if length < 2:
            raise UndecodableImageError("corrupt JPEG: bad segment length")
        if marker in SOF_MARKERS:
            frame = _read_exact(stream, 5, "JPEG frame header")
            height, width = struct.unpack(">HH", frame[1:5])
            if height == 0 or width == 0:
                raise UndecodableImageError(f"JPEG frame header declares {width}x{height} pixels")
            return ImageHeader("jpeg", height, width, orientation)
        if marker == 0xE1 and orientation == 1:
            orientation = _exif_orientation(_read_exact(stream, length - 2, "JPEG APP1 segment"))
        else:
            stream.seek(length - 2, os.SEEK_CUR)


def _png_header(stream: BinaryIO) -> ImageHeader:
    chunk = _read_exact(stream, 16, "PNG header")  # after the 8-byte signature: length, type, size
    if chunk[4:8] != b"IHDR":
        raise UndecodableImageError("corrupt PNG: the first chunk is not IHDR")
    width, height = struct.unpack(">II", chunk[8:16])
    return ImageHeader("png", height, width)


def _gif_header(stream: BinaryIO) -> ImageHeader:
    width, height = struct.unpack("<HH", _read_exact(stream, 4, "GIF screen descriptor"))
    return ImageHeader("gif", height, width)


def _bmp_header(stream: BinaryIO) -> ImageHeader:
    header = _read_exact(stream, 16, "BMP header")  # after "BM": file header rest, DIB size, size
    (dib_size,) = struct.unpack("<I", header[12:16])
    if dib_size == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", _read_exact(stream, 4, "BMP header"))
    else:
        width, height = struct.unpack("<ii", _read_exact(stream, 8, "BMP header"))
    return ImageHeader("bmp", abs(height), abs(width))  # negative height: rows stored top-down


_SIGNATURES = (
    (b"\xff\xd8", _jpeg_header),
    (b"\x89PNG\r\n\x1a\n", _png_header),
    (b"GIF87a", _gif_header),
    (b"GIF89a", _gif_header),
    (b"BM", _bmp_header),
)


def read_header(stream: BinaryIO) -> ImageHeader:
    """The header of the image at the start of `stream` (a binary file or BytesIO).

    Raises UnreadableImageError for an empty stream, UndecodableImageError for anything that
    is not a JPEG, PNG, GIF or BMP with a readable size.
    """
    start = stream.read(8)
    if not start:
        raise UnreadableImageError("empty file")
    for signature, parse in _SIGNATURES:
        if start.startswith(signature):
            stream.seek(len(signature) - len(start), os.SEEK_CUR)
            header = parse(stream)
            if header.height <= 0 or header.width <= 0:
                raise UndecodableImageError(f"{header.format} header declares {header.width}x{header.height} pixels")
            return header
    raise UndecodableImageError("not a JPEG, PNG, GIF or BMP file")


def header_of_bytes(data: bytes) -> ImageHeader:
    """`read_header` of encoded bytes held in memory."""
    return read_header(io.BytesIO(data))


def probe_file(path: str | os.PathLike) -> ImageHeader:
    """`read_header` of a file; reading it reads only the header (a few hundred bytes to the
    end of the EXIF segment), never the pixels. OS errors become UnreadableImageError."""
    try:
        with open(path, "rb") as stream:
            return read_header(stream)
    except UnreadableImageError:
        raise
    except OSError as err:
        raise UnreadableImageError(err.strerror or str(err)) from None


def orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Apply an EXIF orientation (1..8, scalar int tensor) to an image [H, W, C], the way
    `cv2.imread` does: the result is the image as it is meant to be displayed."""
    transposed = lambda: tf.transpose(image, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: image,  # 1: as stored
        lambda: tf.reverse(image, [1]),  # 2: mirrored left-right
        lambda: tf.reverse(image, [0, 1]),  # 3: turned 180°
        lambda: tf.reverse(image, [0]),  # 4: mirrored top-bottom
        transposed,  # 5: mirrored along the main diagonal
        lambda: tf.reverse(transposed(), [1]),  # 6: stored turned 90° counter-clockwise
        lambda: tf.reverse(transposed(), [0, 1]),  # 7: mirrored along the anti-diagonal
        lambda: tf.reverse(transposed(), [0]),  # 8: stored turned 90° clockwise
    ]
    index = tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7)
    return tf.switch_case(index, branches)
