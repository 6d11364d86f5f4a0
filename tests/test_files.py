"""Atomic writes (cornernet_tf/utils/files.py): content lands whole, or the old file stays and no temporary is left."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from cornernet_tf.utils.files import atomic_path, atomic_write_bytes, atomic_write_text
from tests.conftest import REPO_ROOT


def _names(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_text_and_bytes_are_written_into_new_folders(tmp_path):
    text_path = atomic_write_text(tmp_path / "a" / "b" / "config.yaml", "model: ü\n")
    bytes_path = atomic_write_bytes(str(tmp_path / "c" / "image.png"), b"\x89PNG\x00\xff")
    assert text_path == tmp_path / "a" / "b" / "config.yaml"
    assert text_path.read_bytes() == "model: ü\n".encode()
    assert bytes_path == tmp_path / "c" / "image.png" and bytes_path.read_bytes() == b"\x89PNG\x00\xff"
    assert _names(text_path.parent) == ["config.yaml"] and _names(bytes_path.parent) == ["image.png"]


def test_an_existing_file_is_replaced_whole(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _names(tmp_path) == ["results.json"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"old")
    with pytest.raises(type(error)), atomic_path(path) as temp:
        temp.write_bytes(b"half of the new")
        raise error
    assert path.read_bytes() == b"old" and _names(tmp_path) == ["weights.h5"]


def test_the_temporary_is_a_hidden_sibling_that_keeps_the_suffix(tmp_path):
    path = tmp_path / "out" / "model.weights.h5"
    with atomic_path(path, suffix=".weights.h5") as temp:
        assert temp.parent == path.parent and temp.name.startswith(".model.weights.h5.")
        assert temp.name.endswith(".tmp.weights.h5") and not temp.exists()
        temp.write_bytes(b"weights")
        assert _names(path.parent) == [temp.name]  # the target appears only when the block ends
    assert path.read_bytes() == b"weights" and _names(path.parent) == ["model.weights.h5"]
    with atomic_path(path) as temp:
        assert temp.name.endswith(".tmp")
        temp.write_bytes(b"x")


def test_two_writers_of_one_target_get_different_temporaries(tmp_path):
    with atomic_path(tmp_path / "x.json") as first, atomic_path(tmp_path / "x.json") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "x.json").read_text() == "1" and _names(tmp_path) == ["x.json"]


def test_a_writer_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "never.txt"):
        pass
    assert _names(tmp_path) == []


def test_importing_it_loads_no_tensorflow():
    code = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('files', sys.argv[1]); "
        "spec.loader.exec_module(importlib.util.module_from_spec(spec)); print('tensorflow' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(REPO_ROOT / "cornernet_tf" / "utils" / "files.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "False"
