"""cornernet_tf.utils.torch_checkpoint: PyTorch checkpoints read without PyTorch.

The fixtures were written by real PyTorch (tests/fixtures/torch_checkpoints/make.py, run in a
separate environment); this suite never imports torch. Damaged and crafted files are made here:
pickles that name torch's globals are written with a small pickler that emits the names without
importing them.
"""

import collections
import io
import os
import pathlib
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest

from cornernet_tf.utils import torch_checkpoint
from cornernet_tf.utils.torch_checkpoint import read_state_dict

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "torch_checkpoints"
EXPECTED = dict(np.load(FIXTURES / "expected.npz"))
MODULE_KEYS = [k for k in EXPECTED if k.startswith("module.")]
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

FILES = {  # fixture: the expected.npz keys it holds, and how its state_dict names them
    "cornernet_legacy.pkl": (MODULE_KEYS, lambda k: k),
    "cornernet_zip.pkl": (MODULE_KEYS, lambda k: k),
    "mmdet_legacy.pth": (MODULE_KEYS, lambda k: k.removeprefix("module.")),
    "mmdet_zip.pth": (MODULE_KEYS, lambda k: k.removeprefix("module.")),
    "legacy_storage_views.pkl": ([k for k in EXPECTED if k.startswith("views.")], lambda k: k),
}


def _raises(path: pathlib.Path, *fragments: str) -> str:
    """read_state_dict(path) raises a one-line ValueError naming the file and saying `fragments`."""
    with pytest.raises(ValueError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- crafted pickles ----------------------------------------------------------------------------


class Global:
    """module.name, pickled as a GLOBAL opcode without importing the module (torch is not here)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError("only pickled")


class Storage:
    def __init__(self, key: str, type_name: str, data: np.ndarray) -> None:
        self.key, self.type_name, self.data = key, type_name, data


class Tensor:
    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple, dtype: str | None = None):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())
        self.func = "_rebuild_tensor_v2"
        if dtype is not None:
            self.args += (Global("torch", dtype),)
            self.func = "_rebuild_tensor_v3"

    def __reduce__(self):
        return Global("torch._utils", self.func), self.args


class Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, legacy: bool, persistent=None) -> None:
        super().__init__(file, protocol=2)
        self.legacy, self.persistent = legacy, persistent or {}

    def save_global_ref(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = save_global_ref

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            numel = obj.data.size if obj.type_name != "UntypedStorage" else obj.data.nbytes
            pid = ("storage", Global("torch", obj.type_name), obj.key, "cpu", numel)
            return pid + (None,) if self.legacy else pid
        return self.persistent.get(id(obj))


def _storages(obj) -> dict[str, Storage]:
    found = {}

    def walk(o):
        if isinstance(o, Tensor):
            found.setdefault(o.args[0].key, o.args[0])
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)

    walk(obj)
    return found


def write_legacy(path: pathlib.Path, obj, little_endian: bool = True, persistent=None) -> pathlib.Path:
    buf = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": little_endian}):
        pickle.dump(header, buf, protocol=2)
    Pickler(buf, legacy=True, persistent=persistent).dump(obj)
    storages = _storages(obj)
    pickle.dump(list(storages), buf, protocol=2)
    for s in storages.values():
        buf.write(struct.pack("<q" if little_endian else ">q", s.data.size) + s.data.tobytes())
    path.write_bytes(buf.getvalue())
    return path


def write_zip(path: pathlib.Path, obj, byteorder: str | None = "little", extra: dict | None = None) -> pathlib.Path:
    buf = io.BytesIO()
    Pickler(buf, legacy=False).dump(obj)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        if byteorder:
            z.writestr("archive/byteorder", byteorder)
        for s in _storages(obj).values():
            z.writestr(f"archive/data/{s.key}", s.data.tobytes())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
        z.writestr("archive/version", "3\n")
    return path


def _floats(n: int = 4) -> Storage:
    return Storage("0", "FloatStorage", np.arange(n, dtype="<f4"))


# --- the fixtures written by PyTorch ------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_fixture_reads_as_torch_does(name):
    keys, rename = FILES[name]
    state = read_state_dict(FIXTURES / name)
    assert list(state) == [rename(k) for k in keys]  # order kept too
    for key in keys:
        got, want = state[rename(key)], EXPECTED[key]
        assert isinstance(got, np.ndarray)
        assert got.dtype == want.dtype and got.shape == want.shape, key
        assert got.tobytes() == want.tobytes(), key  # bitwise


def test_details_of_the_arrays():
    state = read_state_dict(str(FIXTURES / "cornernet_zip.pkl"))  # str paths as well as Path
    assert state["module.bn.num_batches_tracked"].dtype == np.int64
    assert state["module.bn.num_batches_tracked"].shape == ()
    assert state["module.head.bfloat16"].dtype == np.float32
    assert state["module.head.transposed"].shape == (5, 3)
    # tensors that shared one storage come back as arrays of their own
    a, b = state["module.shared.a"], state["module.shared.b"]
    assert not np.shares_memory(a, b) and a.flags.writeable
    a[...] = -1
    assert b[0] == 0.5


def test_mmdetection_state_dict_is_found():
    state = read_state_dict(FIXTURES / "mmdet_legacy.pth")
    assert "conv.weight" in state and not any(k.startswith(("meta", "optimizer", "module.")) for k in state)
    assert set(state) == set(read_state_dict(FIXTURES / "mmdet_zip.pth"))


# --- damaged files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_truncated_file(tmp_path, name):
    data = (FIXTURES / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    _raises(path, "truncated")


@pytest.mark.parametrize(
    ("name", "step"), [("cornernet_legacy.pkl", 13), ("legacy_storage_views.pkl", 3), ("cornernet_zip.pkl", 61)]
)
def test_every_cut_is_reported_as_truncated(tmp_path, name, step):
    data = (FIXTURES / name).read_bytes()
    path = tmp_path / name
    for n in list(range(1, len(data), step)) + [len(data) - 1]:
        path.write_bytes(data[:n])
        _raises(path, "truncated")


def test_storage_shorter_than_declared(tmp_path):
    storage = _floats(4)
    path = write_legacy(tmp_path / "short.pkl", {"w": Tensor(storage, 0, (4,), (1,))})
    path.write_bytes(path.read_bytes()[:-3])
    _raises(path, "storage '0' is shorter than declared (13 of 16 bytes)", "truncated")
    with zipfile.ZipFile(path, "w") as z:  # the same, with a record 4 bytes short
        buf = io.BytesIO()
        Pickler(buf, legacy=False).dump({"w": Tensor(storage, 0, (4,), (1,))})
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/data/0", storage.data.tobytes()[:-4])
    _raises(path, "archive/data/0 holds 12 bytes, shorter than the 16 declared")


def test_zip_with_a_missing_storage(tmp_path):
    path = tmp_path / "missing.pth"
    with zipfile.ZipFile(FIXTURES / "cornernet_zip.pkl") as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if info.filename != "cornernet_zip/data/3":
                dst.writestr(info, src.read(info))
    _raises(path, "cornernet_zip/data/3 is missing", "truncated")


def test_tensor_past_the_end_of_its_storage(tmp_path):
    path = write_legacy(tmp_path / "past.pkl", {"w": Tensor(_floats(4), 1, (2, 2), (2, 1))})
    _raises(path, "tensor 'w' reaches past the end of its storage")


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes(tmp_path, seed):
    path = tmp_path / "random.pth"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _raises(path, "not a PyTorch checkpoint")


def test_not_checkpoints(tmp_path):
    _raises(tmp_path / "absent.pth", "no such file")
    (tmp_path / "empty.pth").write_bytes(b"")
    _raises(tmp_path / "empty.pth", "empty file")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"conv.weight": [1.0, 2.0]}))
    _raises(tmp_path / "plain.pkl", "not a PyTorch checkpoint")
    np.savez(tmp_path / "weights.npz", w=np.ones(3))
    _raises(tmp_path / "weights.npz", "without data.pkl", "numpy.load")
    storage = _floats()
    extra = {"archive/constants.pkl": pickle.dumps(())}
    path = write_zip(tmp_path / "script.pt", {"w": Tensor(storage, 0, (4,), (1,))}, extra=extra)
    _raises(path, "TorchScript")


def test_ancient_tar_format(tmp_path):
    path = tmp_path / "ancient.pkl"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"\x80\x02N."))
    _raises(path, "tar archive")


# --- checkpoints without a state_dict -----------------------------------------------------------


def test_files_without_tensors(tmp_path):
    meta = {"meta": {"epoch": 3, "CLASSES": ("a", "b")}}
    _raises(write_legacy(tmp_path / "meta.pth", meta), "no state_dict inside", "'meta'")
    _raises(write_zip(tmp_path / "meta_zip.pth", meta), "no state_dict inside")
    _raises(write_legacy(tmp_path / "empty_sd.pth", {"state_dict": {}}), "'state_dict' entry holds no tensors")
    _raises(write_legacy(tmp_path / "list.pth", [1, 2]), "holds a list", "no state_dict")


def test_non_tensor_entry_of_a_state_dict(tmp_path):
    obj = {"state_dict": collections.OrderedDict(w=Tensor(_floats(), 0, (4,), (1,)), note="x")}
    _raises(write_legacy(tmp_path / "note.pth", obj), "state_dict entry 'note' is a str, not a tensor")


def test_pickled_module(tmp_path):
    marker = object()
    obj = {"model": marker}
    persistent = {id(marker): ("module", "Net", "net.py", "class Net: ...")}
    _raises(write_legacy(tmp_path / "model.pth", obj, persistent=persistent), "nn.Module", "state_dict")


# --- safety -------------------------------------------------------------------------------------


class Evil:
    def __init__(self, func, arg) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _evils(marker: pathlib.Path):
    return {
        "os.system": Evil(os.system, f"touch {marker}"),
        "eval": Evil(eval, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("kind", ["os.system", "eval"])
@pytest.mark.parametrize("where", ["plain pickle", "legacy state_dict", "zip top level", "zip state_dict"])
def test_code_in_the_pickle_is_refused_not_run(tmp_path, kind, where):
    marker = tmp_path / "pwned"
    evil = _evils(marker)[kind]
    path = tmp_path / "evil.pth"
    if where == "plain pickle":
        path.write_bytes(pickle.dumps(evil, protocol=2))
    elif where == "legacy state_dict":
        write_legacy(path, {"w": Tensor(_floats(), 0, (4,), (1,)), "x": evil})
    elif where == "zip top level":
        write_zip(path, evil)
    else:
        write_zip(path, {"state_dict": {"x": evil, "w": Tensor(_floats(), 0, (4,), (1,))}})
    name = "posix.system" if kind == "os.system" and os.name == "posix" else kind.split(".")[-1]
    _raises(path, name, "which a weights file should not hold")
    assert not marker.exists()


def test_code_in_meta_is_ignored_not_run(tmp_path):
    marker = tmp_path / "pwned"
    obj = {"meta": {"hook": _evils(marker)["os.system"]}, "state_dict": {"w": Tensor(_floats(), 1, (3,), (1,))}}
    state = read_state_dict(write_legacy(tmp_path / "meta.pth", obj))
    assert state["w"].tolist() == [1.0, 2.0, 3.0]
    assert not marker.exists()


def test_pickle_cannot_modify_the_reader(tmp_path):
    # BUILD on the stand-in for torch._utils._rebuild_tensor_v2
    path = tmp_path / "build.pth"
    body = b"ctorch._utils\n_rebuild_tensor_v2\n}X\x02\x00\x00\x00fnN" + pickle.SETITEM + pickle.BUILD + pickle.STOP
    path.write_bytes(b"\x80\x02" + body)
    _raises(path, "modify one of the reader's objects")
    assert torch_checkpoint._GLOBALS[("torch._utils", "_rebuild_tensor_v2")].fn is torch_checkpoint._rebuild_tensor_v2
    assert read_state_dict(FIXTURES / "cornernet_zip.pkl").keys() == set(MODULE_KEYS)


# --- formats and dtypes beyond the fixtures -----------------------------------------------------


def test_big_endian_files(tmp_path):
    data = (np.arange(6) / 4).astype(">f4")
    obj = {"w": Tensor(Storage("0", "FloatStorage", data), 0, (2, 3), (3, 1))}
    for path in (write_zip(tmp_path / "be.pth", obj, byteorder="big"), write_legacy(tmp_path / "be.pkl", obj, False)):
        w = read_state_dict(path)["w"]
        assert w.dtype == np.float32 and w.dtype.isnative and w.tolist() == [[0, 0.25, 0.5], [0.75, 1, 1.25]]


def test_zip_without_byteorder_record_is_little_endian(tmp_path):
    obj = {"w": Tensor(_floats(), 0, (2, 2), (1, 2))}
    assert read_state_dict(write_zip(tmp_path / "old.pth", obj, byteorder=None))["w"].tolist() == [[0, 2], [1, 3]]


def test_untyped_storage_with_a_dtype(tmp_path):
    # how torch >= 2.3 saves uint16 tensors: _rebuild_tensor_v3 on an untyped storage
    storage = Storage("0", "UntypedStorage", np.array([1, 2, 65535, 7], dtype="<u2"))
    state = read_state_dict(write_zip(tmp_path / "u16.pth", {"w": Tensor(storage, 1, (3,), (1,), dtype="uint16")}))
    assert state["w"].dtype == np.uint16 and state["w"].tolist() == [2, 65535, 7]
    path = write_zip(tmp_path / "f8.pth", {"w": Tensor(storage, 0, (8,), (1,), dtype="float8_e4m3fn")})
    _raises(path, "torch.float8_e4m3fn", "no numpy counterpart")
