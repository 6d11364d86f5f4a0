"""`python -m cornernet_tf.serve` against TF Serving's REST contract, on a tiny stand-in
SavedModel (no CornerNet): the server runs in a subprocess on a loopback port, and every answer
is compared with calling the same SavedModel directly."""

from __future__ import annotations

import json
import pathlib
import signal
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import serving_helpers
from tests.serving_helpers import b64, call, write_model

MODEL = "standin"
MAX_REQUEST_BYTES = 1_000_000
TIMEOUT_MS = 2000


SERVE_FLAGS = ("--rest_api_num_threads", "4", "--max_request_bytes", str(MAX_REQUEST_BYTES))


def start_server(base: pathlib.Path, *extra: str) -> serving_helpers.Server:
    return serving_helpers.Server(base, MODEL, *SERVE_FLAGS, *extra)


def running(base: pathlib.Path, *extra: str):
    return serving_helpers.running(base, MODEL, *SERVE_FLAGS, *extra)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> pathlib.Path:
    return serving_helpers.standin_base(tmp_path_factory, "serve")


@pytest.fixture(scope="module")
def server(base):
    with running(base, "--file_system_poll_wait_seconds", "0", "--rest_api_timeout_in_ms", str(TIMEOUT_MS)) as server:
        yield server


@pytest.fixture(scope="module")
def direct(base):
    return tf.saved_model.load(str(base / "1")).signatures


def image(height: int, width: int, fmt: str, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    encode = tf.io.encode_jpeg if fmt == "jpeg" else tf.io.encode_png
    return encode(pixels).numpy()


IMAGES = [image(24, 32, "jpeg", 0), image(17, 11, "png", 1), image(40, 9, "jpeg", 2)]


def expected(direct, signature: str, **inputs) -> dict[str, np.ndarray]:
    return {name: tensor.numpy() for name, tensor in direct[signature](**inputs).items()}


def test_status(server):
    assert call(server.url) == (
        200,
        {
            "model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    )
    assert call(server.url + "/versions/1")[0] == 200


def test_metadata(server):
    for url in (server.url + "/metadata", server.url + "/versions/1/metadata"):
        status, answer = call(url)
        assert status == 200
        assert answer["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
        signatures = answer["metadata"]["signature_def"]["signature_def"]
        assert {"serving_default", "serving_tensor", "echo", "wait"} <= set(signatures)
        default = signatures["serving_default"]
        assert default["method_name"] == "tensorflow/serving/predict"
        images = default["inputs"]["images"]
        assert images["dtype"] == "DT_STRING"
        assert images["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
        assert set(default["outputs"]) == {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}
        assert default["outputs"]["detection_boxes"]["tensor_shape"]["dim"][1:] == [
            {"size": "100", "name": ""},
            {"size": "4", "name": ""},
        ]
        assert signatures["serving_tensor"]["inputs"]["images"]["dtype"] == "DT_UINT8"


def test_predict_row_matches_direct_call(server, direct):
    status, answer = call(server.url + ":predict", "POST", {"instances": [b64(data) for data in IMAGES]})
    assert status == 200, answer
    want = expected(direct, "serving_default", images=tf.constant(IMAGES))
    assert len(answer["predictions"]) == len(IMAGES)
    for index, row in enumerate(answer["predictions"]):
        assert set(row) == set(want)
        for name, value in row.items():
            np.testing.assert_array_equal(np.array(value, np.float32), want[name][index])


def test_predict_columnar_and_named_rows(server, direct):
    want = expected(direct, "serving_default", images=tf.constant(IMAGES[:2]))
    status, answer = call(
        server.url + "/versions/1:predict",
        "POST",
        {"signature_name": "serving_default", "inputs": {"images": [b64(d) for d in IMAGES[:2]]}},
    )
    assert status == 200, answer
    for name, value in answer["outputs"].items():
        np.testing.assert_array_equal(np.array(value, np.float32), want[name])
    status, answer = call(server.url + ":predict", "POST", {"instances": [{"images": b64(d)} for d in IMAGES[:2]]})
    assert status == 200, answer
    np.testing.assert_array_equal(
        np.array([row["num_detections"] for row in answer["predictions"]]), want["num_detections"]
    )


def test_predict_tensor_signature(server, direct):
    pixels = np.random.default_rng(3).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    want = expected(direct, "serving_tensor", images=tf.constant(pixels))
    status, answer = call(
        server.url + ":predict", "POST", {"signature_name": "serving_tensor", "instances": pixels.tolist()}
    )
    assert status == 200, answer
    np.testing.assert_array_equal(
        np.array([r["detection_scores"] for r in answer["predictions"]], np.float32), want["detection_scores"]
    )


def test_strings_and_bytes_outputs(server):
    """Named multi-input rows; outputs named *_bytes come back as {"b64": ...}, others as text."""
    payload = bytes(range(256))
    status, answer = call(
        server.url + ":predict",
        "POST",
        {"signature_name": "echo", "instances": [{"payload_bytes": b64(payload), "label": "héllo"}]},
    )
    assert status == 200, answer
    assert answer["predictions"] == [{"payload_bytes": b64(payload), "label": "héllo", "length": 256}]
    status, answer = call(
        server.url + ":predict",
        "POST",
        {"signature_name": "echo", "inputs": {"payload_bytes": ["abc"], "label": ["x"]}},
    )
    assert answer == {"outputs": {"payload_bytes": [b64(b"abc")], "label": ["x"], "length": [3]}}


NOT_AN_IMAGE = {"instances": [b64(b"this is not an image")]}


def nested(value, depth: int):
    for _ in range(depth):
        value = [value]
    return value


DEEP_JSON = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize(
    "method, suffix, body, status",
    [
        ("POST", ":predict", b"{not json", 400),
        ("POST", ":predict", b"", 400),
        ("POST", ":predict", b"[1, 2]", 400),
        ("POST", ":predict", {"signature_name": "serving_default"}, 400),
        ("POST", ":predict", {"instances": [{"b64": "%%%not base64%%%"}]}, 400),
        ("POST", ":predict", NOT_AN_IMAGE, 400),
        ("POST", ":predict", {"instances": []}, 400),
        ("POST", ":predict", {"inputs": {"images": []}}, 400),
        ("POST", ":predict", {"instances": [b64(IMAGES[0])], "inputs": [b64(IMAGES[0])]}, 400),
        ("POST", ":predict", {"signature_name": "nope", "instances": [b64(IMAGES[0])]}, 400),
        ("POST", ":predict", {"instances": [1, 2]}, 400),
        ("POST", ":predict", {"signature_name": "serving_tensor", "instances": [[[[1, 2]]]]}, 400),
        ("POST", ":predict", {"signature_name": "serving_tensor", "instances": [[[[1, 2, 3]], [[1, 2]]]]}, 400),
        ("POST", ":predict", {"signature_name": "serving_tensor", "instances": [[[[1, 2, 300]]]]}, 400),
        ("POST", ":predict", {"signature_name": "echo", "instances": ["a"]}, 400),
        ("POST", ":predict", {"instances": nested(b64(IMAGES[0]), 70)}, 400),
        ("POST", ":predict", {"inputs": nested(b64(IMAGES[0]), 70)}, 400),
        ("POST", ":predict", {"signature_name": "serving_tensor", "instances": nested(7, 70)}, 400),
        ("POST", ":predict", {"signature_name": "serving_tensor", "inputs": nested([1, 2, 3], 6)}, 400),
        ("POST", ":predict", DEEP_JSON, 400),
        ("POST", ":predict", {"instances": [b64(IMAGES[0]), [b64(IMAGES[0])]]}, 400),
        ("POST", ":predict", {"instances": [{"b64": 5}]}, 400),
        ("POST", ":predict", {"instances": {"images": b64(IMAGES[0])}}, 400),
        ("POST", ":predict", {"signature_name": 5, "instances": [b64(IMAGES[0])]}, 400),
        ("POST", ":predict", {"signature_name": "serving_tensor", "instances": [[[[1, 2, "x"]]]]}, 400),
        ("POST", ":predict", {"signature_name": "serving_tensor", "instances": [[[[1.5, 2, 3]]]]}, 400),
        ("POST", ":predict", {"signature_name": "serving_tensor", "instances": [[[[1, 2, 3]]], [[1, 2, 3]]]}, 400),
        ("POST", ":predict", {"signature_name": "wait", "inputs": {"micros": [1, 2]}}, 400),
        ("POST", ":predict", {"signature_name": "wait", "inputs": {"micros": 2**70}}, 400),
        ("POST", ":predict", {"signature_name": "rows", "inputs": {"values": [1e300]}}, 400),
        ("POST", "/labels/stable:predict", {"instances": [b64(IMAGES[0])]}, 400),
        ("POST", "/versions/7:predict", {"instances": [b64(IMAGES[0])]}, 404),
        ("GET", "/versions/7", None, 404),
        ("GET", "/versions/7/metadata", None, 404),
        ("GET", ":predict", None, 405),
        ("POST", "/metadata", b"{}", 405),
        ("GET", "/nothing/here", None, 404),
    ],
)
def test_bad_requests_get_json_errors_and_server_keeps_serving(server, method, suffix, body, status):
    got, answer = call(server.url + suffix, method, body)
    assert got == status, answer
    assert set(answer) == {"error"} and answer["error"]
    assert call(server.url)[0] == 200


def test_unknown_model_is_404(server):
    other = server.url.replace(MODEL, "other")
    for url, method, body in (
        (other, "GET", None),
        (other + "/metadata", "GET", None),
        (other + ":predict", "POST", {"instances": [b64(IMAGES[0])]}),
    ):
        status, answer = call(url, method, body)
        assert status == 404 and "other" in answer["error"]


def test_oversize_body_is_413(server):
    body = json.dumps({"instances": [{"b64": "A" * MAX_REQUEST_BYTES}]}).encode()
    status, answer = call(server.url + ":predict", "POST", body)
    assert status == 413 and "max_request_bytes" in answer["error"]
    assert call(server.url)[0] == 200


def test_slow_prediction_gets_504_and_server_keeps_serving(server):
    status, answer = call(
        server.url + ":predict", "POST", {"signature_name": "wait", "inputs": {"micros": 2 * TIMEOUT_MS * 1000}}
    )
    assert status == 504 and "Deadline exceeded" in answer["error"]
    assert call(server.url)[0] == 200


def test_concurrent_requests(server, direct):
    want = expected(direct, "serving_default", images=tf.constant(IMAGES))["detection_scores"]
    results: list = [None] * 8

    def client(index: int) -> None:
        data = IMAGES[index % len(IMAGES)]
        results[index] = call(server.url + ":predict", "POST", {"instances": [b64(data)]})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for index, (status, answer) in enumerate(results):
        assert status == 200, answer
        np.testing.assert_array_equal(
            np.array(answer["predictions"][0]["detection_scores"], np.float32), want[index % len(IMAGES)]
        )


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


def version_state(server: serving_helpers.Server, version: int) -> dict | None:
    status, answer = call(f"{server.url}/versions/{version}")
    return answer["model_version_status"][0] if status == 200 else None


def test_new_versions_are_picked_up_without_restart(tmp_path):
    base = tmp_path / "models"
    base.mkdir()
    write_model(base, 1, offset=0.0)
    retries = ("--max_num_load_retries", "1000", "--load_retry_interval_micros", "500000")
    with running(base, "--file_system_poll_wait_seconds", "0.2", *retries) as server:
        (base / "3").mkdir()  # incomplete (no saved_model.pb): must be ignored
        (base / "notes").mkdir()
        write_model(base, 2, offset=10.0)
        wait_for(lambda: (version_state(server, 2) or {}).get("state") == "AVAILABLE")
        assert call(server.url)[1]["model_version_status"] == [
            {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
            {"version": "1", "state": "END", "status": {"error_code": "OK", "error_message": ""}},
        ]
        status, answer = call(server.url + ":predict", "POST", {"instances": [b64(IMAGES[0])]})
        assert status == 200 and min(answer["predictions"][0]["detection_scores"]) >= 10.0
        assert call(server.url + "/versions/1:predict", "POST", {"instances": [b64(IMAGES[0])]})[0] == 404
        assert call(server.url + "/metadata")[1]["model_spec"]["version"] == "2"

        (base / "4").mkdir()  # a half-copied export: reported, while version 2 keeps serving
        (base / "4" / "saved_model.pb").write_bytes(b"not a SavedModel yet")
        seen: list[dict] = []  # retries flip it END -> LOADING -> END: keep the END we saw

        def failed() -> bool:
            seen.append(version_state(server, 4) or {})
            return seen[-1].get("state") == "END"

        wait_for(failed)
        assert seen[-1]["status"]["error_code"] != "OK" and "version 4" in seen[-1]["status"]["error_message"]
        assert call(server.url + ":predict", "POST", {"instances": [b64(IMAGES[0])]})[0] == 200
        assert call(server.url + "/metadata")[1]["model_spec"]["version"] == "2"

        (base / "4").rename(tmp_path / "broken")  # the copy completes: the retry loads it
        write_model(base, 4, offset=20.0)
        wait_for(lambda: (version_state(server, 4) or {}).get("state") == "AVAILABLE")
        assert version_state(server, 2)["state"] == "END"
        answer = call(server.url + ":predict", "POST", {"instances": [b64(IMAGES[0])]})[1]
        assert min(answer["predictions"][0]["detection_scores"]) >= 20.0


def test_sigterm_finishes_in_flight_request_and_exits_0(base):
    server = start_server(base, "--file_system_poll_wait_seconds", "0")
    try:
        server.wait_ready()
        answers = []
        worker = threading.Thread(
            target=lambda: answers.append(
                call(server.url + ":predict", "POST", {"signature_name": "wait", "inputs": {"micros": 2_000_000}})
            )
        )
        worker.start()
        time.sleep(0.5)  # the request is now being computed
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        worker.join(timeout=60)
        assert answers == [(200, {"outputs": [2_000_000]})]
        with pytest.raises(OSError):
            call(server.url)
    finally:
        server.stop()
