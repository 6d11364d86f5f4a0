"""The gRPC API of `python -m cornernet_tf.serve`, called with the official `tensorflow-serving-api`
stubs, on the stand-in SavedModel: answers compared with calling the SavedModel directly and with
REST, status codes of bad requests, and server-side batching compared with no batching."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests import serving_helpers
from tests.serving_helpers import b64, call, png_bomb

MODEL = "standin"
TIMEOUT_S = 60
GRPC_TIMEOUT_MS = 3000


def _pixels(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


IMAGES = [
    tf.io.encode_jpeg(_pixels(24, 32, 0)).numpy(),
    tf.io.encode_png(_pixels(17, 11, 1)).numpy(),
    tf.io.encode_jpeg(_pixels(40, 9, 2)).numpy(),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return serving_helpers.standin_base(tmp_path_factory, "grpc")


@pytest.fixture(scope="module")
def direct(base):
    return tf.saved_model.load(str(base / "1")).signatures


@pytest.fixture(scope="module")
def server(base):
    flags = ("--file_system_poll_wait_seconds", "0", "--grpc_timeout_in_ms", str(GRPC_TIMEOUT_MS))
    with serving_helpers.running(base, MODEL, *flags, grpc=True) as server:
        yield server


@pytest.fixture(scope="module")
def stubs(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield (
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )


def predict_request(inputs: dict, signature: str = "", version: int | None = None, name: str = MODEL):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(
            value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
        )
    return request


def outputs_of(response) -> dict[str, np.ndarray]:
    return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}


def test_predict_matches_the_saved_model_and_rest(server, stubs, direct):
    prediction, _ = stubs
    response = prediction.Predict(predict_request({"images": IMAGES}), timeout=TIMEOUT_S)
    assert response.model_spec.name == MODEL and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    got = outputs_of(response)
    want = {key: value.numpy() for key, value in direct["serving_default"](images=tf.constant(IMAGES)).items()}
    assert set(got) == set(want)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value)
    status, answer = call(server.url + ":predict", "POST", {"inputs": {"images": [b64(data) for data in IMAGES]}})
    assert status == 200
    for key, value in answer["outputs"].items():
        np.testing.assert_allclose(np.array(value, np.float32), got[key], atol=1e-5)

    pixels = np.stack([_pixels(5, 7, 3), _pixels(5, 7, 4)])
    response = prediction.Predict(predict_request({"images": pixels}, "serving_tensor", version=1), timeout=TIMEOUT_S)
    np.testing.assert_array_equal(
        tf.make_ndarray(response.outputs["detection_scores"]),
        direct["serving_tensor"](images=tf.constant(pixels))["detection_scores"].numpy(),
    )
    request = predict_request({"payload_bytes": [bytes(range(256))], "label": ["héllo".encode()]}, "echo")
    request.output_filter.append("length")
    assert {k: v.tolist() for k, v in outputs_of(prediction.Predict(request, timeout=TIMEOUT_S)).items()} == {
        "length": [256]
    }


def test_metadata_and_status(base, stubs):
    prediction, model = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = prediction.GetModelMetadata(request, timeout=TIMEOUT_S)
    assert response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((base / "1" / "saved_model.pb").read_bytes())
    assert dict(signature_map.signature_def) == dict(saved.meta_graphs[0].signature_def)

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    (version,) = model.GetModelStatus(status_request, timeout=TIMEOUT_S).model_version_status
    assert version.version == 1 and version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version.status.error_code == 0 and version.status.error_message == ""


def _huge_broadcast() -> tensor_pb2.TensorProto:
    proto = tf.make_tensor_proto(np.zeros([1, 1, 1, 3], np.uint8))
    proto.tensor_shape.dim[0].size = 10**6
    proto.tensor_shape.dim[1].size = 10**6
    del proto.int_val[:]
    proto.tensor_content = b""
    proto.int_val.append(0)
    return proto


@pytest.mark.parametrize(
    "request_args, code, says",
    [
        (({"images": [IMAGES[0]]}, "", None, "other"), grpc.StatusCode.NOT_FOUND, "other"),
        (({"images": [IMAGES[0]]}, "", 7), grpc.StatusCode.NOT_FOUND, "7"),
        (({"images": [IMAGES[0]]}, "nope"), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
        (({"images": np.zeros([1], np.float32)},), grpc.StatusCode.INVALID_ARGUMENT, "DT_STRING"),
        (({"images": [[IMAGES[0]]]},), grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        (({"pictures": [IMAGES[0]]},), grpc.StatusCode.INVALID_ARGUMENT, "signature inputs"),
        (({"images": [b"not an image"]},), grpc.StatusCode.INVALID_ARGUMENT, ""),
        (({"images": [png_bomb(20000, 20000)]},), grpc.StatusCode.INVALID_ARGUMENT, "--max_image_pixels"),
        (({"images": _huge_broadcast()}, "serving_tensor"), grpc.StatusCode.INVALID_ARGUMENT, "elements"),
        (({"micros": np.int64(60_000_000)}, "wait"), grpc.StatusCode.DEADLINE_EXCEEDED, "--grpc_timeout_in_ms"),
    ],
)
def test_bad_requests_get_grpc_status_codes(server, stubs, request_args, code, says):
    prediction, _ = stubs
    before = server.peak_memory_bytes()
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Predict(predict_request(*request_args), timeout=TIMEOUT_S)
    assert caught.value.code() == code, caught.value.details()
    assert says in caught.value.details()
    assert server.peak_memory_bytes() - before < 500 * 2**20
    assert prediction.Predict(predict_request({"images": [IMAGES[0]]}), timeout=TIMEOUT_S).outputs


def test_batching_gives_the_answers_of_no_batching(base, direct):
    """8 concurrent gRPC clients and 4 REST ones, of 1 to 3 images each, one of them bad: batched
    calls happen (the `rows` signature sees more rows than a request sends), every good request
    gets what the SavedModel answers it alone, and only the bad one fails."""
    flags = (
        "--file_system_poll_wait_seconds",
        "0",
        "--enable_batching",
        "--max_batch_size",
        "8",
        "--batch_timeout_micros",
        "300000",
        "--num_batch_threads",
        "1",
        "--max_in_flight_requests",
        "16",
    )
    requests = [IMAGES[: 1 + i % 3] for i in range(8)]
    requests[5] = [IMAGES[0], b"not an image"]
    with (
        serving_helpers.running(base, MODEL, *flags, grpc=True) as server,
        grpc.insecure_channel(server.grpc_address) as channel,
    ):
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        prediction.Predict(predict_request({"images": IMAGES}), timeout=TIMEOUT_S)  # warm up
        results: dict = {}

        def grpc_client(index: int) -> None:
            try:
                results[index] = outputs_of(
                    prediction.Predict(predict_request({"images": requests[index]}), timeout=TIMEOUT_S)
                )
            except grpc.RpcError as err:
                results[index] = err.code()

        def rows_client(index: int) -> None:
            results[f"rows{index}"] = call(
                server.url + ":predict", "POST", {"signature_name": "rows", "instances": [float(index)] * (1 + index)}
            )

        threads = [threading.Thread(target=grpc_client, args=(i,)) for i in range(len(requests))]
        threads += [threading.Thread(target=rows_client, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    for index, images in enumerate(requests):
        if index == 5:
            assert results[index] == grpc.StatusCode.INVALID_ARGUMENT
            continue
        want = direct["serving_default"](images=tf.constant(images))
        for key, value in want.items():
            np.testing.assert_array_equal(results[index][key], value.numpy())
    rows = []
    for index in range(3):
        status, answer = results[f"rows{index}"]
        assert status == 200, answer
        assert [row["values"] for row in answer["predictions"]] == [2.0 * index] * (1 + index)
        rows.append(answer["predictions"][0]["rows"])
    assert max(rows) == 1 + 2 + 3  # the three REST requests ran as one batch
