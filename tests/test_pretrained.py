"""Named presets end to end without the internet: a local HTTP server on 127.0.0.1 is the mirror
($CORNERNET_TF_WEIGHTS_MIRROR) serving checkpoint files that PyTorch wrote (tests/fixtures/pretrained,
the official and the mmdetection layout, random weights of a toy network), PyTorch itself blocked.

A preset fetched, converted and used by `Detector`, `ObjectDetector.from_preset`, `predict --weights`
and `train --init_weights` gives what the manual `convert` route gives; the second use asks the
server nothing; a truncated download, a wrong checksum, an unreachable server, a checkpoint of
another network and a misspelt name each give their one line and leave the cache as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import pathlib
import sys
import threading

import numpy as np
import pytest

from cornernet_tf import convert, predict
from cornernet_tf.api import pretrained
from cornernet_tf.api.detector import Detector
from cornernet_tf.tasks import official_weights

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "pretrained"
TINY_CONFIG = str(FIXTURES / "tiny.yaml")
CLASS_NAMES = ("rectangle", "ellipse", "triangle")


class Mirror(http.server.ThreadingHTTPServer):
    """Serves FIXTURES' files by name; counts requests; `truncate` names files sent half-way."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.truncate: set[str] = set()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                mirror.requests.append(name)
                path = FIXTURES / name
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in mirror.truncate else body)

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def mirror():
    server = Mirror()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _sha256(name: str) -> str:
    return hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()


def _preset(name: str, file_name: str, **fields) -> pretrained.PretrainedPreset:
    return pretrained.PretrainedPreset(
        name=name,
        config=fields.pop("config", TINY_CONFIG),
        file_name=file_name,
        sources=("https://weights.example.invalid/" + file_name,),  # the mirror is asked instead
        box_ap=1.0,
        ap_note="a toy",
        parameters=1,
        class_names=CLASS_NAMES,
        **fields,
    )


@pytest.fixture()
def presets(mirror, tmp_path, monkeypatch):
    """Toy presets in an empty cache, the mirror in the environment, PyTorch not importable."""
    monkeypatch.setenv(pretrained.HOME_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setenv(pretrained.MIRROR_VARIABLE, mirror.url)
    monkeypatch.setitem(sys.modules, "torch", None)
    toys = {
        "toy_official": _preset("toy_official", "tiny_official.pkl"),
        "toy_mmdet": _preset("toy_mmdet", "tiny_mmdet.pth", sha256=_sha256("tiny_mmdet.pth")[:8]),
    }
    for name, preset in toys.items():
        monkeypatch.setitem(pretrained.PRESETS, name, preset)
    mirror.truncate.clear()
    return toys


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Four 64 x 64 scenes with shapes on texture (random weights still give varied boxes)."""
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)


def _manual_route(checkpoint: str, tmp_path: pathlib.Path) -> Detector:
    out = tmp_path / "manual.weights.h5"
    argv = ["--config", TINY_CONFIG, "--checkpoint", str(FIXTURES / checkpoint), "--out", str(out)]
    argv += ["--set", f"data.class_names={json.dumps(list(CLASS_NAMES))}"]
    assert convert.main(argv) == 0
    return Detector.from_weights(out, config=TINY_CONFIG)


def _assert_same_detections(got, want) -> None:
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)


@pytest.mark.parametrize("name, checkpoint", [("toy_official", "tiny_official.pkl"), ("toy_mmdet", "tiny_mmdet.pth")])
def test_a_preset_gives_the_boxes_of_the_manual_convert_route(presets, mirror, images, tmp_path, name, checkpoint):
    mirror.requests.clear()
    by_name = Detector.from_weights(name)
    assert mirror.requests == [checkpoint]
    folder = pretrained.cached_folder(name)
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "model.weights.h5", "source.json"]
    assert json.loads((folder / "source.json").read_text())["sha256"] == _sha256(checkpoint)
    assert [p.name for p in folder.parent.iterdir()] == [name]  # no scratch folder left
    found = by_name.predict(images)
    assert sum(len(f.scores) for f in found) > 0
    assert found[0].all_class_names == CLASS_NAMES
    _assert_same_detections(found, _manual_route(checkpoint, tmp_path).predict(images))
    again = Detector.from_weights(name)  # cached: no request, no conversion
    assert mirror.requests == [checkpoint]
    _assert_same_detections(again.predict(images), found)


def test_object_detector_predict_and_train_take_a_preset_name(presets, mirror, images, tmp_path):
    from cornernet_tf import ObjectDetector, train

    reference = Detector.from_weights("toy_official").predict(images)
    requests = len(mirror.requests)
    detector = ObjectDetector.from_preset("toy_official", bounding_box_format="xyxy")
    out = detector.predict(images, verbose=0)
    for row, want in enumerate(reference):
        count = int(out["num_detections"][row])
        np.testing.assert_allclose(np.asarray(out["boxes"][row][:count]), want.boxes, atol=1e-3)
    image = tmp_path / "probe.png"
    import cv2

    cv2.imwrite(str(image), images[0][..., ::-1])
    assert predict.main([str(image), "--weights", "toy_official", "--out", str(tmp_path / "out")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "probe.png.jsonl").read_text().splitlines()]
    assert len(rows[0]["detections"]) == int((reference[0].scores >= 0.3).sum())
    assert train.init_weights_file("toy_official") == str(pretrained.cached_folder("toy_official") / "model.weights.h5")
    assert len(mirror.requests) == requests  # every use after the first reads the cache


def test_an_original_checkpoint_file_is_converted_on_the_fly(presets, images, tmp_path):
    path = tmp_path / "CornerNet_toy.pkl"
    path.write_bytes((FIXTURES / "tiny_official.pkl").read_bytes())
    state = official_weights.read_state_dict(path)
    assert pretrained.config_for_checkpoint(state) == "cornernet_hg104_coco"  # its keys: an official CornerNet
    folder = pretrained.convert_checkpoint(path, config=TINY_CONFIG)
    assert folder.parent == pretrained.home() / "converted" and (folder / "model.weights.h5").is_file()
    assert pretrained.convert_checkpoint(path, config=TINY_CONFIG) == folder  # cached by content and config
    # what the commands do with --weights FILE.pkl --config: the same folder, then the usual loading
    detector = Detector.from_weights(path, config=TINY_CONFIG)
    assert pretrained.resolve(path, TINY_CONFIG) == str(folder) and detector.description.endswith("model.weights.h5")
    _assert_same_detections(detector.predict(images), _manual_route("tiny_official.pkl", tmp_path).predict(images))


@pytest.mark.parametrize(
    "make_it_fail, message",
    [
        (lambda mirror, toys, monkeypatch: mirror.truncate.add("tiny_official.pkl"), "retrieval incomplete"),
        (
            lambda mirror, toys, monkeypatch: monkeypatch.setitem(
                pretrained.PRESETS, "toy_official", _preset("toy_official", "tiny_official.pkl", sha256="0badc0de")
            ),
            "does not match the published 0badc0de",
        ),
        (
            lambda mirror, toys, monkeypatch: monkeypatch.setenv(pretrained.MIRROR_VARIABLE, "http://127.0.0.1:9"),
            "could not download tiny_official.pkl (http://127.0.0.1:9/tiny_official.pkl",
        ),
        (
            lambda mirror, toys, monkeypatch: monkeypatch.setitem(
                pretrained.PRESETS, "toy_official", _preset("toy_official", "missing.pkl")
            ),
            "404",
        ),
        (
            lambda mirror, toys, monkeypatch: monkeypatch.setitem(
                pretrained.PRESETS,
                "toy_official",
                _preset("toy_official", "tiny_official.pkl", config=str(FIXTURES / "other.yaml")),
            ),
            "is not a checkpoint of",
        ),
    ],
    ids=["truncated", "checksum", "unreachable", "missing", "another_network"],
)
def test_a_failed_fetch_is_one_line_and_leaves_the_cache_as_it_was(
    presets, mirror, tmp_path, capsys, monkeypatch, make_it_fail, message
):
    pretrained.fetch("toy_mmdet")  # something cached already, which must stay
    before = sorted(str(p.relative_to(pretrained.home())) for p in pretrained.home().rglob("*"))
    make_it_fail(mirror, presets, monkeypatch)
    image = tmp_path / "probe.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    assert predict.main([str(image), "--weights", "toy_official", "--out", str(tmp_path / "out")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], errors
    if "could not download" in errors[0]:
        file_name = pretrained.PRESETS["toy_official"].file_name
        assert pretrained.MIRROR_VARIABLE in errors[0] and f"--weights {file_name}" in errors[0]
    assert sorted(str(p.relative_to(pretrained.home())) for p in pretrained.home().rglob("*")) == before


def test_a_half_written_cache_entry_is_rebuilt_and_old_scratch_is_swept(presets, mirror):
    folder = pretrained.cached_folder("toy_official")
    folder.mkdir(parents=True)
    (folder / "model.weights.h5").write_bytes(b"half")  # a folder from before atomic writes, or by hand
    stale = folder.parent / ".0123456789ab.partial"  # what a kill -9 leaves
    stale.mkdir()
    import os

    os.utime(stale, (0, 0))
    assert pretrained.fetch("toy_official") == folder
    assert (folder / "source.json").is_file() and not stale.exists()


def test_names_near_a_preset_are_suggested_and_the_listing_shows_the_cache(presets, capsys):
    with pytest.raises(pretrained.PretrainedError, match="did you mean toy_official"):
        pretrained.resolve("toy_oficial")
    assert pretrained.resolve("shapes_tiny") == "shapes_tiny"  # a bundled config name is left alone
    assert pretrained.resolve("cornernet_hg104_coco") == "cornernet_hg104_coco"
    from cornernet_tf import presets as presets_command

    pretrained.fetch("toy_mmdet")
    assert presets_command.main([]) == 0
    listing = capsys.readouterr().out.splitlines()
    row = next(line for line in listing if line.startswith("toy_mmdet "))
    assert " yes " in row
    assert any(line.startswith("cornernet_squeeze_coco ") and " no " in line for line in listing)
    assert set(pretrained.PRESETS) >= {
        "cornernet_hourglass104_coco",
        "centernet_hourglass104_coco",
        "centernet_hourglass52_coco",
        "cornernet_squeeze_coco",
        "cornernet_saccade_coco",
        "cornernet_hourglass104_mmdet_coco_10x5",
        "cornernet_hourglass104_mmdet_coco_8x6",
        "cornernet_hourglass104_mmdet_coco_32x3",
    }


def test_each_published_preset_names_a_bundled_config_of_its_network():
    """Every preset's config builds, and the parameter count it declares is that network's."""
    from cornernet_tf.config import load_config

    for preset in pretrained.PRESETS.values():
        config = load_config(preset.config)
        assert config.model.num_classes == len(preset.class_names) == 80, preset.name
        if preset.sha256:  # mmdetection publishes the start of the sha256 in the file name
            assert preset.file_name.endswith(f"-{preset.sha256}.pth")


def test_google_drive_sources_go_through_gdown(presets, monkeypatch, capsys):
    """Without a mirror, a `gdrive:<id>` source is gdown's (a stand-in here: no network in tests);
    without gdown installed, one line says which extra brings it."""
    import types

    monkeypatch.delenv(pretrained.MIRROR_VARIABLE)
    calls = []

    def download(id: str, output: str, quiet: bool) -> str:
        calls.append(id)
        pathlib.Path(output).write_bytes((FIXTURES / "tiny_official.pkl").read_bytes())
        return output

    drive = _preset("toy_drive", "tiny_official.pkl")
    monkeypatch.setitem(pretrained.PRESETS, "toy_drive", dataclasses.replace(drive, sources=("gdrive:0toy",)))
    monkeypatch.setitem(sys.modules, "gdown", None)
    with pytest.raises(pretrained.PretrainedError, match=r'pip install "cornernet-tf\[pretrained\]"'):
        pretrained.fetch("toy_drive")
    assert not pretrained.cached_folder("toy_drive").exists()
    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=download))
    assert (pretrained.fetch("toy_drive") / "model.weights.h5").is_file() and calls == ["0toy"]
