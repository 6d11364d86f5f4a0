"""Image sizes and EXIF orientation read from encoded bytes with TensorFlow ops, so a SavedModel
can refuse an image before decoding it and turn a photo as training does, inside the graph, where
`tensorflow_model_server` runs no Python.

`image_header.read_header` is the Python reading of the same headers (and the reference the
tests compare with). Here the fields are the ones `tf.io.decode_image`'s decoders allocate from:
the first JPEG start-of-frame, PNG's IHDR, GIF's logical screen, BMP's 32-bit width and height
(what TensorFlow's BMP decoder reads, whatever the DIB header kind) and the WebP canvas (VP8,
VP8L or VP8X), i.e. every format `decode_image` accepts. A decompression bomb (a small file
declaring a huge image) is thus seen from its first bytes, before any pixel buffer exists.
"""

from __future__ import annotations

import tensorflow as tf

from cornernet_tf.data import image_header as image_header_lib
from cornernet_tf.data.image_header import SOF_MARKERS, STANDALONE_MARKERS

UNKNOWN = -1  # height and width of bytes whose size cannot be read
# JPEG segments walked before the frame header: real files need a handful (APPn, DQT, DHT);
# a file of endless fill bytes or empty segments must not keep a request busy.
MAX_JPEG_SEGMENTS = 1024
MAX_EXIF_ENTRIES = 128  # IFD0 entries read when looking for the orientation
ORIENTATION_TAG = image_header_lib.EXIF_ORIENTATION_TAG


def _text_at(data: tf.Tensor, position: tf.Tensor | int, count: int) -> tf.Tensor:
    """Up to `count` bytes of the scalar string `data` from `position` (empty past the end:
    `tf.strings.substr` itself refuses a position beyond the end)."""
    start = tf.clip_by_value(tf.cast(position, tf.int32), 0, tf.strings.length(data))
    return tf.strings.substr(data, start, count)


def _bytes_at(data: tf.Tensor, position: tf.Tensor | int, count: int) -> tf.Tensor:
    """`count` bytes of the scalar string `data` from `position`, int64, zeros past the end."""
    raw = tf.cast(tf.io.decode_raw(_text_at(data, position, count), tf.uint8), tf.int64)
    return tf.ensure_shape(tf.pad(raw, [[0, count - tf.shape(raw)[0]]]), [count])


def _big_endian(raw: tf.Tensor) -> tf.Tensor:
    """The unsigned integer of bytes [n] (static n <= 4), most significant first."""
    return tf.reduce_sum(raw * tf.constant([256**k for k in reversed(range(raw.shape[0]))], tf.int64))


def _little_endian(raw: tf.Tensor) -> tf.Tensor:
    return _big_endian(tf.reverse(raw, [0]))


def _signed32(value: tf.Tensor) -> tf.Tensor:
    return tf.where(value >= 2**31, value - 2**32, value)


def _member(value: tf.Tensor, members: set[int]) -> tf.Tensor:
    return tf.reduce_any(tf.equal(value, tf.constant(sorted(members), tf.int64)))


def _numbers(raw: tf.Tensor, little: tf.Tensor) -> tf.Tensor:
    """The unsigned integers of bytes [..., n] (static n <= 4) in the byte order `little` says."""
    count = raw.shape[-1]
    weights = tf.where(
        little,
        tf.constant([256**k for k in range(count)], tf.int64),
        tf.constant([256**k for k in reversed(range(count))], tf.int64),
    )
    return tf.reduce_sum(raw * weights, axis=-1)


def _exif_orientation(data: tf.Tensor, position: tf.Tensor, segment: tf.Tensor) -> tf.Tensor:
    """The orientation tag (1..8) of the APP1 segment at `position` (its marker) of `segment`
    bytes (the length field's value); 1 when it is not EXIF or holds no valid orientation.

    As `image_header._exif_orientation`: the IFD0 entries are read in one block of
    MAX_EXIF_ENTRIES (IFD0 lists tags in ascending order, and 0x0112 comes among the first),
    an entry counts only if it lies inside the segment, the first SHORT 0x0112 entry wins.
    """
    payload = position + 4
    tiff = payload + 6
    tiff_length = segment - 2 - 6
    order = _text_at(data, tiff, 2)
    little = tf.equal(order, "II")
    exif = tf.equal(_text_at(data, payload, 6), b"Exif\0\0") & (segment - 2 >= 14) & (little | tf.equal(order, "MM"))
    ifd = _numbers(_bytes_at(data, tiff + 4, 4), little)
    count = _numbers(_bytes_at(data, tiff + ifd, 2), little)
    entries = tf.reshape(_bytes_at(data, tiff + ifd + 2, 12 * MAX_EXIF_ENTRIES), [MAX_EXIF_ENTRIES, 12])
    index = tf.range(MAX_EXIF_ENTRIES, dtype=tf.int64)
    inside = (index < count) & (ifd + 2 + 12 * index + 12 <= tiff_length)
    match = (
        inside
        & tf.equal(_numbers(entries[:, 0:2], little), ORIENTATION_TAG)
        & tf.equal(_numbers(entries[:, 2:4], little), 3)  # SHORT
    )
    value = tf.gather(_numbers(entries[:, 8:10], little), tf.argmax(tf.cast(match, tf.int32)))
    valid = exif & (ifd + 2 <= tiff_length) & tf.reduce_any(match) & (value >= 1) & (value <= 8)
    return tf.where(valid, value, tf.constant(1, tf.int64))


def _jpeg_header(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Walk the segments after SOI up to the first start-of-frame: ([height, width] or UNKNOWN,
    the EXIF orientation of the first APP1 segment that has one, else 1)."""
    unknown = tf.constant([UNKNOWN, UNKNOWN], tf.int64)
    length = tf.cast(tf.strings.length(data), tf.int64)

    def searching(position, size, orientation, steps, done):
        return tf.logical_not(done) & (steps < MAX_JPEG_SEGMENTS) & (position + 4 <= length)

    def step(position, size, orientation, steps, done):
        head = _bytes_at(data, position, 9)
        marker = head[1]
        segment = _big_endian(head[2:4])
        corrupt = tf.not_equal(head[0], 0xFF) | _member(marker, {0xD8, 0xD9, 0xDA})
        fill = tf.equal(marker, 0xFF)
        standalone = _member(marker, STANDALONE_MARKERS)
        frame = _member(marker, SOF_MARKERS) & (position + 9 <= length)
        corrupt |= tf.logical_not(fill | standalone | frame) & (segment < 2)
        advance = tf.where(fill, tf.constant(1, tf.int64), tf.where(standalone, tf.constant(2, tf.int64), 2 + segment))
        found = tf.stack([_big_endian(head[5:7]), _big_endian(head[7:9])])
        size = tf.where(frame & tf.logical_not(corrupt), found, size)
        exif = tf.equal(marker, 0xE1) & tf.equal(orientation, 1) & tf.logical_not(corrupt)
        orientation = tf.cond(exif, lambda: _exif_orientation(data, position, segment), lambda: orientation)
        return position + advance, size, orientation, steps + 1, corrupt | frame

    start = (tf.constant(2, tf.int64), unknown, tf.constant(1, tf.int64), tf.constant(0), tf.constant(False))
    _, size, orientation, _, _ = tf.while_loop(searching, step, start)
    return size, orientation


def _webp_size(data: tf.Tensor) -> tf.Tensor:
    head = _bytes_at(data, 0, 30)
    kind = _text_at(data, 12, 4)
    lossy = tf.stack([_little_endian(head[28:30]), _little_endian(head[26:28])]) % 2**14
    lossless_bits = _little_endian(head[21:25])
    lossless = tf.stack([tf.bitwise.right_shift(lossless_bits, 14) % 2**14, lossless_bits % 2**14]) + 1
    extended = tf.stack([_little_endian(head[27:30]), _little_endian(head[24:27])]) + 1
    return tf.case(
        [
            (tf.equal(kind, "VP8 ") & tf.equal(_big_endian(head[23:26]), 0x9D012A), lambda: lossy),
            (tf.equal(kind, "VP8L") & tf.equal(head[20], 0x2F), lambda: lossless),
            (tf.equal(kind, "VP8X"), lambda: extended),
        ],
        default=lambda: tf.constant([UNKNOWN, UNKNOWN], tf.int64),
    )


def image_header(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """([height, width] int64 that `tf.io.decode_image(data)` would decode, the EXIF orientation
    1..8 int64) read from the header of the scalar string `data`: [UNKNOWN, UNKNOWN] when it is
    not a JPEG, PNG, GIF, BMP or WebP with a readable size, orientation 1 but for a JPEG whose
    EXIF says otherwise. Only the first bytes are read (the JPEG segments up to the frame)."""
    data = tf.convert_to_tensor(data, tf.string)
    head = _bytes_at(data, 0, 26)
    prefix = _text_at(data, 0, 8)
    png = tf.equal(prefix, b"\x89PNG\r\n\x1a\n") & tf.equal(_text_at(data, 12, 4), "IHDR")
    gif = tf.equal(_text_at(data, 0, 6), "GIF87a") | tf.equal(_text_at(data, 0, 6), "GIF89a")
    webp = tf.equal(_text_at(data, 0, 4), "RIFF") & tf.equal(_text_at(data, 8, 4), "WEBP")
    length = tf.strings.length(data)
    one = tf.constant(1, tf.int64)
    size, orientation = tf.case(
        [
            (tf.equal(_text_at(data, 0, 2), b"\xff\xd8"), lambda: _jpeg_header(data)),
            (png & (length >= 24), lambda: (tf.stack([_big_endian(head[20:24]), _big_endian(head[16:20])]), one)),
            (gif & (length >= 10), lambda: (tf.stack([_little_endian(head[8:10]), _little_endian(head[6:8])]), one)),
            (
                tf.equal(_text_at(data, 0, 2), "BM") & (length >= 26),
                lambda: (
                    tf.stack([tf.abs(_signed32(_little_endian(head[22:26]))), _signed32(_little_endian(head[18:22]))]),
                    one,
                ),
            ),
            (webp & (length >= 30), lambda: (_webp_size(data), one)),
        ],
        default=lambda: (tf.constant([UNKNOWN, UNKNOWN], tf.int64), one),
    )
    return tf.where(tf.reduce_all(size > 0), size, tf.constant([UNKNOWN, UNKNOWN], tf.int64)), orientation


def image_size(data: tf.Tensor) -> tf.Tensor:
    """The [height, width] of `image_header` (as stored, before any EXIF orientation)."""
    return image_header(data)[0]


def decode_bounded(data: tf.Tensor, max_pixels: int, channels: int = 3) -> tf.Tensor:
    """`tf.io.decode_image(data, channels, expand_animations=False)` (uint8 [H, W, channels])
    for an image of at most `max_pixels` pixels, turned by its EXIF orientation as training,
    `evaluate` and `Detector` turn it (`image_header.orient`, what `cv2.imread` does);
    InvalidArgument, before any decoding, for a larger image and for bytes whose size cannot be
    read from their header."""
    size, orientation = image_header(data)
    readable = tf.debugging.Assert(
        tf.reduce_all(size > 0),
        ["not a JPEG, PNG, GIF, BMP or WebP image with a readable size in its header"],
    )
    with tf.control_dependencies([readable]):
        pixels = size[0] * size[1]
        message = tf.strings.format(
            "image of {} x {} pixels (width x height) exceeds export.max_image_pixels = {}",
            (size[1], size[0], max_pixels),
        )
        small_enough = tf.debugging.Assert(pixels <= max_pixels, [message])
    with tf.control_dependencies([small_enough]):
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    return image_header_lib.orient(image, orientation)
