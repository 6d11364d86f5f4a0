"""What a request may cost: image sizes read in-graph from headers (against the Python header
parser and the decoder itself), decompression bombs refused before decoding with the server's
memory measured, the in-flight bound under 16 concurrent slow requests, and a timed-out
request freeing its slot and its thread."""

from __future__ import annotations

import io
import struct
import threading

import cv2
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from cornernet_tf.data import image_header, image_header_tf
from cornernet_tf.serving import limits
from tests import serving_helpers
from tests.serving_helpers import b64, black_jpeg, call, call_with_headers, png_bomb

MODEL = "standin"
MEMORY_GROWTH_LIMIT = 500 * 2**20
IN_FLIGHT = 4


def _pixels(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _gif(height: int, width: int) -> bytes:
    out = io.BytesIO()
    PIL.Image.fromarray(_pixels(height, width)).save(out, format="GIF")
    return out.getvalue()


def _encoded(ext: str, height: int, width: int, *params: int) -> bytes:
    ok, data = cv2.imencode(ext, _pixels(height, width), list(params))
    assert ok
    return data.tobytes()


ENCODED = {
    "jpeg": tf.io.encode_jpeg(_pixels(37, 53)).numpy(),
    "jpeg_progressive": _encoded(".jpg", 41, 29, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "jpeg_exif": tf.io.encode_jpeg(_pixels(23, 61)).numpy()[:2]
    + b"\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00\x00\x08"
    + tf.io.encode_jpeg(_pixels(23, 61)).numpy()[2:],
    "png": tf.io.encode_png(_pixels(17, 90)).numpy(),
    "gif": _gif(33, 12),
    "bmp": _encoded(".bmp", 19, 21),
    "webp_lossy": _encoded(".webp", 31, 47, cv2.IMWRITE_WEBP_QUALITY, 80),
    "webp_lossless": _encoded(".webp", 15, 64, cv2.IMWRITE_WEBP_QUALITY, 101),
}
image_size = tf.function(image_header_tf.image_size, input_signature=[tf.TensorSpec([], tf.string)])


@pytest.mark.parametrize("kind", sorted(ENCODED))
def test_header_size_is_what_the_decoder_decodes(kind):
    data = ENCODED[kind]
    decoded = tf.io.decode_image(data, channels=3, expand_animations=False).shape[:2]
    assert tuple(image_size(data).numpy()) == tuple(decoded)
    assert limits.image_size(data) == tuple(decoded)  # the server's pre-check
    if not kind.startswith("webp"):  # the Python parser does not read WebP
        header = image_header.header_of_bytes(data)
        assert (header.height, header.width) == tuple(decoded)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"\xff\xd8",
        b"\xff\xd8\xff\xda\x00\x02",
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a\x01",
        b"BM",
        b"RIFF",
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
        b"not an image",
        b"\xff\xd8" + b"\xff" * 5000,
        ENCODED["png"][:20],
        ENCODED["jpeg"][:100],
    ],
)
def test_unreadable_headers_have_no_size(data):
    assert tuple(image_size(data).numpy()) == (image_header_tf.UNKNOWN, image_header_tf.UNKNOWN)
    assert limits.image_size(data) is None


header_tf = tf.function(image_header_tf.image_header, input_signature=[tf.TensorSpec([], tf.string)])


def _exif_cases() -> dict[str, bytes]:
    """JPEGs whose EXIF orientation the in-graph reader must find as the Python reader does."""
    from tests.data.conftest import with_exif_orientation

    jpeg = tf.io.encode_jpeg(_pixels(23, 61)).numpy()
    cases = {f"{order}{value}": with_exif_orientation(jpeg, value, order) for order in "<>" for value in range(1, 9)}
    # the orientation behind other IFD0 entries, in ascending tag order
    ifd = struct.pack("<H", 3) + b"".join(
        struct.pack("<HHIHH", tag, 3, 1, value, 0) for tag, value in ((0x010F, 0), (0x0110, 0), (0x0112, 6))
    )
    payload = b"Exif\0\0" + b"II" + struct.pack("<HI", 42, 8) + ifd + struct.pack("<I", 0)
    cases["third_entry"] = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
    cases["xmp_then_exif"] = jpeg[:2] + b"\xff\xe1\x00\x06http" + cases["<8"][2:]
    cases["out_of_range_value"] = with_exif_orientation(jpeg, 9)
    cases["long_instead_of_short"] = cases["<6"].replace(struct.pack("<HH", 0x0112, 3), struct.pack("<HH", 0x0112, 4))
    # two entries announced, the segment ends after the first: the orientation behind it is not read
    ifd = struct.pack("<H", 2) + struct.pack("<HHIHH", 0x010F, 3, 1, 0, 0)
    payload = b"Exif\0\0" + b"II" + struct.pack("<HI", 42, 8) + ifd
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    cases["entry_past_the_segment"] = (
        jpeg[:2] + segment + b"\xff\xe1\x00\x0e" + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + jpeg[2:]
    )
    cases["no_exif"] = ENCODED["jpeg_exif"]
    return cases


EXIF_CASES = _exif_cases()


@pytest.mark.parametrize("name", sorted(EXIF_CASES))
def test_in_graph_orientation_is_the_python_readers(name):
    data = EXIF_CASES[name]
    size, orientation = header_tf(data)
    expected = image_header.header_of_bytes(data)
    assert int(orientation) == expected.orientation
    assert tuple(size.numpy()) == (expected.height, expected.width)


def test_decode_bounded_turns_a_photo_as_training_does(tmp_path):
    from cornernet_tf.api.detector import load_image

    decode = tf.function(
        lambda data: image_header_tf.decode_bounded(data, 10_000_000), input_signature=[tf.TensorSpec([], tf.string)]
    )
    for name in ("<1", "<3", "<6", ">8", "third_entry", "no_exif"):
        path = tmp_path / f"{name.strip('<>')}.jpg"
        path.write_bytes(EXIF_CASES[name])
        np.testing.assert_array_equal(decode(EXIF_CASES[name]).numpy(), load_image(path), err_msg=name)
    for kind in ("png", "gif", "webp_lossy"):
        assert int(header_tf(ENCODED[kind])[1]) == 1


def test_decode_bounded_refuses_a_bomb_before_decoding():
    decode = tf.function(
        lambda data: image_header_tf.decode_bounded(data, 10_000_000), input_signature=[tf.TensorSpec([], tf.string)]
    )
    np.testing.assert_array_equal(decode(ENCODED["png"]), tf.io.decode_png(ENCODED["png"], channels=3))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"20000 x 20000 pixels .* export\.max_image_pixels = 10000000"
    ):
        decode(png_bomb(20000, 20000))
    with pytest.raises(tf.errors.InvalidArgumentError, match="readable size"):
        decode(b"not an image")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return serving_helpers.standin_base(tmp_path_factory, "limits")


@pytest.fixture(scope="module")
def server(base):
    flags = (
        "--file_system_poll_wait_seconds",
        "0",
        "--max_in_flight_requests",
        str(IN_FLIGHT),
        "--rest_api_num_threads",
        "16",
        "--max_request_bytes",
        str(64 * 2**20),
    )
    with serving_helpers.running(base, MODEL, *flags) as server:
        assert call(server.url + ":predict", "POST", {"instances": [b64(ENCODED["jpeg"])]})[0] == 200
        yield server


def _nested(value, depth: int):
    for _ in range(depth):
        value = [value]
    return value


def test_bombs_and_deep_nesting_get_400_without_the_memory(server):
    before = server.peak_memory_bytes()
    bombs = {"png": png_bomb(20000, 20000), "jpeg": black_jpeg(12000, 12000)}
    for kind, data in bombs.items():
        status, answer = call(server.url + ":predict", "POST", {"instances": [b64(ENCODED["png"]), b64(data)]})
        assert status == 400, (kind, answer)
        assert "over --max_image_pixels=40000000" in answer["error"] and "element 1" in answer["error"]
    for key in ("instances", "inputs"):
        status, answer = call(server.url + ":predict", "POST", {key: _nested(b64(bombs["png"]), 70)})
        assert status == 400 and "nested more than" in answer["error"], answer
    assert server.peak_memory_bytes() - before < MEMORY_GROWTH_LIMIT
    assert call(server.url + ":predict", "POST", {"instances": [b64(ENCODED["jpeg"])]})[0] == 200


def test_concurrent_slow_requests_never_exceed_the_in_flight_bound(server):
    clients = 16
    barrier = threading.Barrier(clients)
    answers: list = [None] * clients

    def client(index: int) -> None:
        barrier.wait()
        answers[index] = call_with_headers(
            server.url + ":predict", "POST", {"signature_name": "wait", "inputs": {"micros": 1_000_000}}
        )

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * IN_FLIGHT + [503] * (clients - IN_FLIGHT), statuses
    for status, answer, headers in answers:
        if status == 503:
            assert headers["Retry-After"] == "1" and "--max_in_flight_requests" in answer["error"]
        else:
            assert answer == {"outputs": [1_000_000]}
    assert call(server.url + ":predict", "POST", {"instances": [b64(ENCODED["jpeg"])]})[0] == 200


def test_request_pixel_budget_and_a_timed_out_request_frees_its_slot_and_thread(base):
    """One thread and one slot: after a 504 the next request is served within its own deadline,
    which needs the slot back and the thread's 60 s TensorFlow call cancelled."""
    small = ENCODED["png"]  # 90 x 17 = 1530 pixels
    flags = (
        "--file_system_poll_wait_seconds",
        "0",
        "--max_in_flight_requests",
        "1",
        "--rest_api_num_threads",
        "1",
        "--rest_api_timeout_in_ms",
        "3000",
        "--max_image_pixels",
        "1600",
        "--max_request_pixels",
        "2500",
    )
    with serving_helpers.running(base, MODEL, *flags) as server:
        status, answer = call(server.url + ":predict", "POST", {"instances": [b64(small), b64(small)]})
        assert status == 400 and "--max_request_pixels=2500" in answer["error"], answer
        status, answer = call(server.url + ":predict", "POST", {"instances": [b64(ENCODED["jpeg"])]})
        assert status == 400 and "53 x 37" in answer["error"] and "--max_image_pixels=1600" in answer["error"]
        status, answer = call(
            server.url + ":predict", "POST", {"signature_name": "wait", "inputs": {"micros": 60_000_000}}
        )
        assert status == 504 and "Deadline exceeded" in answer["error"]
        status, answer = call(server.url + ":predict", "POST", {"signature_name": "wait", "inputs": {"micros": 1000}})
        assert (status, answer) == (200, {"outputs": [1000]})
