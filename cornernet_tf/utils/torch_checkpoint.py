"""Read the tensors of a PyTorch checkpoint (.pkl / .pth / .pt) into numpy, without PyTorch.

Why: converting the official CornerNet / CenterNet / CornerNet-Lite checkpoints or mmdetection's
.pth files used to need `import torch`: PyTorch is about 800 MB installed (even the CPU-only
build), only to read a few hundred MB of weights. This module reads the files with the standard
library and numpy alone. It is also safer than `torch.load`: a checkpoint is a pickle, and
unpickling can run any code the file names; here nothing the file names is imported or called.

It follows PyTorch's documented serialization formats (the "Serialization semantics" notes, and
torch/serialization.py that writes them):

- the zip format, torch.save's default since PyTorch 1.6: `<archive>/data.pkl` pickles the object,
  each tensor storage is the raw record `<archive>/data/<key>`, and `<archive>/byteorder` says the
  byte order of those records (little-endian when absent: older files have none);
- the legacy format of PyTorch before 1.6 (and of `_use_new_zipfile_serialization=False`):
  consecutive pickles of the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a
  sys_info dict, the object, and the list of storage keys, then for each of those keys an 8-byte
  element count and the storage's raw bytes. The storage views of PyTorch 0.4 files are honoured.

The pickles are read by a restricted unpickler that knows only the names a checkpoint needs
(`collections.OrderedDict`, torch's tensor and parameter rebuild functions, the `torch.*Storage`
types, `torch` dtypes, `set` / `frozenset` / `complex` and latin-1 `_codecs.encode`), and for those
it uses functions of its own here, never torch's. Any other name the file pickles (numpy scalars in
mmdetection's "meta", a pickled nn.Module, `os.system`, ...) becomes an inert placeholder: it is
never imported or called. Placeholders outside the state_dict (meta, optimizer state) are ignored;
one at or in place of the state_dict is refused with a ValueError naming it. Before a pickle is
unpickled, its opcodes are walked with pickletools (which runs nothing) so that the sizes and memo
indices it holds cannot make the unpickler allocate more than the file holds.

What it refuses, each with a one-line ValueError naming the file: files that are not PyTorch
checkpoints; truncated or damaged files (zip entries missing, a legacy stream that ends early, a
storage shorter than declared, a tensor reaching past its storage); checkpoints without a
state_dict; state_dict entries that are not tensors; a pickled nn.Module (`torch.save(model)`);
TorchScript archives; the tar format of the earliest PyTorch releases; and tensor types that have
no numpy counterpart (float8, complex32, quantized, sparse or conj/neg-bit tensors).

bfloat16 tensors are returned as float32 (numpy has no bfloat16): exactly, since every bfloat16
value is a float32 value.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

__all__ = ["read_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"
# how torch.save (pickle protocol 2) starts a legacy file
_LEGACY_START = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
_REFUSED_HINT = (
    "it was not run; if you trust the file, load it with torch and save its state_dict "
    "(torch.save(model.state_dict()) or numpy.savez)"
)


class _Invalid(Exception):
    """What is wrong with the file; read_state_dict reports it as a ValueError naming the file."""


class _Tampered(_Invalid):
    """The pickle tries to modify the reader's own objects."""


class _Sealed:
    """Base of the objects the unpickler hands out: a pickle's BUILD opcode cannot modify them."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        raise _Tampered("the pickle tries to modify one of the reader's objects (damaged or crafted file)")


class _DType(_Sealed):
    """A torch dtype: its numpy dtype (little-endian), and whether it is bfloat16 (stored as uint16)."""

    __slots__ = ("name", "np", "bfloat16")

    def __init__(self, name: str, np_dtype: str, bfloat16: bool = False) -> None:
        self.name, self.np, self.bfloat16 = name, np.dtype(np_dtype), bfloat16

    @property
    def itemsize(self) -> int:
        return self.np.itemsize


_FLOAT32 = _DType("float32", "<f4")
_FLOAT64 = _DType("float64", "<f8")
_FLOAT16 = _DType("float16", "<f2")
_BFLOAT16 = _DType("bfloat16", "<u2", bfloat16=True)
_INT64 = _DType("int64", "<i8")
_INT32 = _DType("int32", "<i4")
_INT16 = _DType("int16", "<i2")
_INT8 = _DType("int8", "i1")
_UINT8 = _DType("uint8", "u1")
_BOOL = _DType("bool", "?")
_COMPLEX64 = _DType("complex64", "<c8")
_COMPLEX128 = _DType("complex128", "<c16")
_UINT16 = _DType("uint16", "<u2")
_UINT32 = _DType("uint32", "<u4")
_UINT64 = _DType("uint64", "<u8")

# `torch.<name>` dtype objects (pickled by newer files, e.g. as _rebuild_tensor_v3's dtype)
_DTYPES = {
    **{d.name: d for d in (_FLOAT32, _FLOAT64, _FLOAT16, _BFLOAT16, _INT64, _INT32, _INT16, _INT8, _UINT8)},
    **{d.name: d for d in (_BOOL, _COMPLEX64, _COMPLEX128, _UINT16, _UINT32, _UINT64)},
    "float": _FLOAT32,
    "double": _FLOAT64,
    "half": _FLOAT16,
    "long": _INT64,
    "int": _INT32,
    "short": _INT16,
    "cfloat": _COMPLEX64,
    "cdouble": _COMPLEX128,
}


class _StorageType(_Sealed):
    """`torch.FloatStorage` and the like, as the storages' persistent ids name them."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: _DType | None) -> None:
        self.name, self.dtype = name, dtype


_STORAGE_TYPES = {
    name: _StorageType(name, dtype)
    for name, dtype in {
        "FloatStorage": _FLOAT32,
        "DoubleStorage": _FLOAT64,
        "HalfStorage": _FLOAT16,
        "BFloat16Storage": _BFLOAT16,
        "LongStorage": _INT64,
        "IntStorage": _INT32,
        "ShortStorage": _INT16,
        "CharStorage": _INT8,
        "ByteStorage": _UINT8,
        "BoolStorage": _BOOL,
        "ComplexFloatStorage": _COMPLEX64,
        "ComplexDoubleStorage": _COMPLEX128,
        # an untyped storage holds bytes (torch.load reads it as uint8 too)
        "UntypedStorage": _UINT8,
        "TypedStorage": None,
    }.items()
}


class _Storage(_Sealed):
    """A storage a persistent id refers to: `numel` elements of `dtype` from element `offset` of the
    root storage `key` (offset > 0 only for the storage views of PyTorch 0.4 files)."""

    __slots__ = ("key", "dtype", "offset", "numel")

    def __init__(self, key: str, dtype: _DType, offset: int, numel: int) -> None:
        self.key, self.dtype, self.offset, self.numel = key, dtype, offset, numel

    @property
    def byte_range(self) -> tuple[int, int]:
        start = self.offset * self.dtype.itemsize
        return start, start + self.numel * self.dtype.itemsize


class _Tensor(_Sealed):
    """A tensor as pickled, not read yet: its arguments are checked when it is read."""

    __slots__ = ("storage", "offset", "shape", "stride", "dtype", "metadata")

    def __init__(self, storage: Any, offset: Any, shape: Any, stride: Any, dtype: Any, metadata: Any) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride
        self.dtype, self.metadata = dtype, metadata


class _Function(_Sealed):
    """One of the reader's functions, standing in for the pickled name of a torch function."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


class _Unknown:
    """Stands in for a name the reader does not know (numpy scalars in mmdetection meta, a pickled
    nn.Module, os.system, ...). Calling, building or filling it does nothing."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Unknown:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Unknown:
        return type(self)()

    def __setstate__(self, state: object) -> None:
        pass

    def append(self, item: object) -> None:
        pass

    def extend(self, items: object) -> None:
        pass

    def add(self, item: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass


def _unknown_name(obj: object) -> str | None:
    """The pickled name an object stands in for, if it is a placeholder (or the placeholder class)."""
    if isinstance(obj, _Unknown):
        return type(obj).qualname
    if isinstance(obj, type) and issubclass(obj, _Unknown):
        return obj.qualname
    return None


def _refused(name: str, where: str = "") -> _Invalid:
    return _Invalid(f"the checkpoint pickles {name}{where}, which a weights file should not hold; {_REFUSED_HINT}")


# --- the functions that stand in for torch's -----------------------------------------------------


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride, None, None)


def _rebuild_tensor_v2(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, metadata: Any = None
) -> _Tensor:
    return _Tensor(storage, offset, size, stride, None, metadata)


def _rebuild_tensor_v3(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> _Tensor:
    return _Tensor(storage, offset, size, stride, dtype, metadata)


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any, state: Any = None) -> Any:
    return data


def _codecs_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # protocol-2 pickles write bytes as _codecs.encode(<latin-1 text>, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _Invalid("the pickle calls _codecs.encode with arguments no checkpoint uses (damaged or crafted file)")
    return text.encode("latin-1")


_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _Function(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Function(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor_v3"): _Function(_rebuild_tensor_v3),
    ("torch._utils", "_rebuild_parameter"): _Function(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Function(_rebuild_parameter),
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _Function(_codecs_encode),
}
_MODULE_ALIASES = {"__builtin__": "builtins"}  # Python 2 pickles


# --- unpickling ----------------------------------------------------------------------------------


class _Storages:
    """The storages the persistent ids of one checkpoint declare."""

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        # root key -> (dtype, numel) of its first persistent id: the legacy format writes the
        # storage's element count in that dtype
        self.roots: dict[str, tuple[_DType, int]] = {}

    def declare(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or not pid:
            raise _Invalid(f"unexpected persistent id {type(pid).__name__} in the pickle (damaged file?)")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":
            raise _Invalid(
                "it is a pickled nn.Module (torch.save(model)), not a state_dict; it names its classes, "
                "which this reader does not run: save model.state_dict() instead"
            )
        if kind != "storage" or len(pid) != (6 if self.legacy else 5):
            raise _Invalid(f"unexpected persistent id {str(kind)[:40]!r} in the pickle (damaged file?)")
        storage_type, key, _location, numel = pid[1:5]
        name = _unknown_name(storage_type)
        if name is not None:
            raise _Invalid(f"a storage of type {name}, which this reader does not read")
        if not isinstance(storage_type, _StorageType) or storage_type.dtype is None:
            raise _Invalid("a storage without a known element type (damaged file?)")
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if not isinstance(key, str) or not _is_count(numel):
            raise _Invalid("a storage persistent id with a bad key or size (damaged file?)")
        dtype = storage_type.dtype
        self.roots.setdefault(key, (dtype, numel))
        view = pid[5] if self.legacy else None
        if view is None:
            return _Storage(key, dtype, 0, numel)
        # PyTorch 0.4: (view key, offset, size) of a view into the root storage, in elements
        if not (isinstance(view, tuple) and len(view) == 3 and _is_count(view[1]) and _is_count(view[2])):
            raise _Invalid("a storage view with bad metadata (damaged file?)")
        return _Storage(key, dtype, view[1], view[2])


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, storages: _Storages | None) -> None:
        super().__init__(file, encoding="utf-8")
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        module = _MODULE_ALIASES.get(module, module)
        found = _GLOBALS.get((module, name))
        if found is None and module in ("torch", "torch.storage"):
            found = _STORAGE_TYPES.get(name)
        if found is None and module == "torch":
            found = _DTYPES.get(name)
        if found is None:
            # a fresh class each time, so that nothing the pickle does to one affects another
            found = type("_Unknown", (_Unknown,), {"qualname": f"{module}.{name}"[:200]})
        return found

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise pickle.UnpicklingError("a persistent id outside the checkpoint's object")
        return self._storages.declare(pid)


# Opcodes no checkpoint needs: out-of-band buffers, a bytearray allocated at a size read from the
# file before its bytes are, and the copyreg extension registry.
_REFUSED_OPCODES = {"BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER", "EXT1", "EXT2", "EXT4"}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_ENDS_EARLY = ("exhausted", "remain", "not enough data", "no newline found")


def _check_opcodes(file: Any, what: str) -> None:
    """Walk the pickle's opcodes (pickletools, which runs nothing) before it is unpickled, so that
    the sizes it holds are known to fit in the file and its memo indices are in range: the
    unpickler allocates what they say before it reads."""
    try:
        for count, (opcode, arg, _) in enumerate(pickletools.genops(file), 1):
            if opcode.name in _REFUSED_OPCODES:
                raise _Invalid(
                    f"the {what} uses the pickle opcode {opcode.name}, which no checkpoint uses (damaged file?)"
                )
            if opcode.name in _MEMO_PUTS and not (isinstance(arg, int) and 0 <= arg < count):
                raise _Invalid(f"the {what} has a memo index out of range (damaged file?)")
    except _Invalid:
        raise
    except Exception as e:  # what pickletools raises on bytes it cannot parse
        if any(words in str(e) for words in _ENDS_EARLY):
            raise _Invalid(f"the {what} ends early: the file is truncated (a partial download?)") from None
        raise _Invalid(f"the {what} cannot be unpickled ({type(e).__name__}: {_first_line(e)}): damaged file") from None


def _unpickle(file: Any, storages: _Storages | None, what: str) -> Any:
    start = file.tell()
    _check_opcodes(file, what)
    file.seek(start)
    try:
        return _Unpickler(file, storages).load()
    except _Invalid:
        raise
    except EOFError:
        raise _Invalid(f"the {what} ends early: the file is truncated (a partial download?)") from None
    except Exception as e:  # anything else the unpickler raises on bytes it cannot read
        if isinstance(e, pickle.UnpicklingError) and "truncated" in str(e):
            raise _Invalid(f"the {what} ends early: the file is truncated (a partial download?)") from None
        raise _Invalid(f"the {what} cannot be unpickled ({type(e).__name__}: {_first_line(e)}): damaged file") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""


class _BoundedReader:
    """A file for the unpickler, whose reads never ask for more than the file holds (the sizes in
    damaged pickles would otherwise be allocated) and which keeps the file position exact."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f, self._size = f, size
        self.pos = f.tell()

    def read(self, n: int = -1) -> bytes:
        left = max(self._size - self.pos, 0)
        data = self._f.read(left if n is None or n < 0 or n > left else n)
        self.pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        line = self._f.readline(limit)
        self.pos += len(line)
        return line

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int) -> None:
        self.pos = self._f.seek(pos)


# --- choosing the state_dict ---------------------------------------------------------------------


def _select_state_dict(obj: Any) -> dict[str, _Tensor]:
    name = _unknown_name(obj)
    if name is not None:
        raise _refused(name)
    if not isinstance(obj, dict):
        raise _Invalid(f"it holds a {type(obj).__name__}, not a dict of tensors: no state_dict inside")
    if "state_dict" in obj:
        state, where = obj["state_dict"], "its 'state_dict' entry"
        name = _unknown_name(state)
        if name is not None:
            raise _refused(name, " as its state_dict")
        if not isinstance(state, dict):
            raise _Invalid(f"{where} is a {type(state).__name__}, not a dict of tensors")
    elif any(isinstance(v, _Tensor) for v in obj.values()):
        state, where = obj, "its top-level dict"
    else:
        keys = ", ".join(repr(k) for k in list(obj)[:8]) + (", ..." if len(obj) > 8 else "")
        raise _Invalid(f"no state_dict inside: no 'state_dict' entry and no tensors at the top level (keys: {keys})")
    if not any(isinstance(v, _Tensor) for v in state.values()):
        raise _Invalid(f"{where} holds no tensors")
    for key, value in state.items():
        if not isinstance(key, str):
            raise _Invalid(f"{where} has a key {key!r} that is not a string")
        if isinstance(value, _Tensor):
            continue
        name = _unknown_name(value)
        if name is not None:
            raise _refused(name, f" at state_dict key {key!r}")
        raise _Invalid(f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
    return state


# --- tensors -------------------------------------------------------------------------------------


def _int_tuple(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, tuple | list) and all(_is_count(v) for v in value):
        return tuple(value)
    return None


def _tensor_array(key: str, t: _Tensor, raw: np.ndarray, byteorder: str, last_use: bool) -> np.ndarray:
    """The array of tensor `t` from `raw`, the bytes of its root storage."""
    storage = t.storage
    if not isinstance(storage, _Storage):
        raise _Invalid(f"tensor {key!r} has no storage (damaged file?)")
    dtype = storage.dtype if t.dtype is None else t.dtype
    name = _unknown_name(dtype)
    if name is not None:
        raise _Invalid(f"tensor {key!r} has dtype {name}, which has no numpy counterpart")
    if not isinstance(dtype, _DType):
        raise _Invalid(f"tensor {key!r} has no dtype (damaged file?)")
    if t.metadata:
        raise _Invalid(f"tensor {key!r} is a lazy conj/neg view ({t.metadata!r}), which this reader does not read")
    shape, stride, offset = _int_tuple(t.shape), _int_tuple(t.stride), t.offset
    if shape is None or stride is None or len(shape) != len(stride) or not _is_count(offset):
        raise _Invalid(f"tensor {key!r} has a bad shape, stride or offset (damaged file?)")
    start, end = storage.byte_range
    if end > raw.size:
        raise _Invalid(
            f"the storage of tensor {key!r} holds {max(raw.size - start, 0)} bytes, shorter than the "
            f"{end - start} declared: the file is truncated or damaged"
        )
    np_dtype = dtype.np.newbyteorder(byteorder)
    count = (end - start) // np_dtype.itemsize
    typed = raw[start : start + count * np_dtype.itemsize].view(np_dtype)
    if 0 in shape:
        out = np.empty(shape, np_dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if last >= count:
            raise _Invalid(f"tensor {key!r} reaches past the end of its storage: the file is damaged")
        contiguous = all(s == math.prod(shape[i + 1 :]) for i, (n, s) in enumerate(zip(shape, stride)) if n > 1)
        if last_use and contiguous and offset == 0 and math.prod(shape) == count and start == 0 and end == raw.size:
            out = typed.reshape(shape)  # the whole storage, used by no other tensor: no copy
        else:
            itemsize = np_dtype.itemsize
            out = np.lib.stride_tricks.as_strided(
                typed[offset:], shape, tuple(s * itemsize for s in stride), writeable=False
            ).copy()
    if dtype.bfloat16:
        return (out.astype(np.uint32) << 16).view(np.float32)
    if dtype is _BOOL:
        return out.view(np.uint8) != 0
    if not np_dtype.isnative:
        return out.astype(np_dtype.newbyteorder("="))
    return out


def _materialize(
    state: dict[str, _Tensor], fetch: Callable[[str], np.ndarray], byteorder: str
) -> dict[str, np.ndarray]:
    """The arrays of the state_dict's tensors; `fetch(key)` gives the bytes of root storage `key`,
    which are dropped after their last tensor is read."""
    uses = collections.Counter(t.storage.key for t in state.values() if isinstance(t.storage, _Storage))
    buffers: dict[str, np.ndarray] = {}
    out = {}
    for key, tensor in state.items():
        root = tensor.storage.key if isinstance(tensor.storage, _Storage) else None
        raw = np.empty(0, np.uint8)
        if root is not None:
            if root not in buffers:
                buffers[root] = fetch(root)
            raw = buffers[root]
            uses[root] -= 1
            if uses[root] == 0:
                del buffers[root]
        out[key] = _tensor_array(key, tensor, raw, byteorder, root is not None and uses[root] == 0)
    return out


def _needed_bytes(state: dict[str, _Tensor]) -> dict[str, int]:
    """For each root storage the state_dict uses, the bytes its tensors' storages reach."""
    need: dict[str, int] = {}
    for t in state.values():
        if isinstance(t.storage, _Storage):
            need[t.storage.key] = max(need.get(t.storage.key, 0), t.storage.byte_range[1])
    return need


# --- the two formats -----------------------------------------------------------------------------


def _read_zip(f: BinaryIO) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(f)
    except Exception as e:  # BadZipFile, or NotImplementedError, ValueError... from a damaged directory
        raise _Invalid(
            f"a zip archive whose directory cannot be read ({_first_line(e)}): "
            "the file is truncated (a partial download?) or damaged"
        ) from None
    with archive:
        names = set(archive.namelist())
        pickles = sorted(n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1))
        if not pickles:
            hint = " (a numpy .npz? read it with numpy.load)" if any(n.endswith(".npy") for n in names) else ""
            raise _Invalid(f"a zip archive without data.pkl: not a PyTorch checkpoint{hint}")
        if len(pickles) > 1:
            raise _Invalid(f"a zip archive with several data.pkl ({', '.join(pickles)}): not a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
            raise _Invalid("a TorchScript archive (torch.jit.save), not a checkpoint of tensors")
        byteorder = "<"
        if prefix + "byteorder" in names:
            mark = _read_record(archive, prefix + "byteorder")
            if mark not in (b"little", b"big"):
                raise _Invalid(f"the byteorder record says {mark[:20]!r}, neither little nor big (damaged file?)")
            byteorder = "<" if mark == b"little" else ">"
        storages = _Storages(legacy=False)
        state = _select_state_dict(_unpickle(io.BytesIO(_read_record(archive, pickles[0])), storages, "data.pkl"))
        need = _needed_bytes(state)

        def fetch(key: str) -> np.ndarray:
            return _read_record(archive, f"{prefix}data/{key}", need[key])

        return _materialize(state, fetch, byteorder)


def _read_record(archive: zipfile.ZipFile, name: str, nbytes: int | None = None) -> Any:
    """Record `name` of the archive: all of it as bytes, or its first `nbytes` as a uint8 array."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _Invalid(f"{name} is missing from the archive: the file is truncated or damaged") from None
    if nbytes is not None and info.file_size < nbytes:
        raise _Invalid(
            f"{name} holds {info.file_size} bytes, shorter than the {nbytes} declared: the file is truncated or damaged"
        )
    try:
        with archive.open(info) as member:
            if nbytes is None:
                return member.read()
            buf = np.empty(nbytes, np.uint8)
            view, done = memoryview(buf), 0
            while done < nbytes:
                n = member.readinto(view[done:])
                if not n:
                    raise _Invalid(f"{name} ends early: the file is truncated or damaged")
                done += n
            return buf
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise _Invalid(f"{name} cannot be read ({_first_line(e)}): the file is truncated or damaged") from None
    except Exception as e:  # zlib.error and the like, from a compressed record
        raise _Invalid(f"{name} cannot be read ({type(e).__name__}): the file is damaged") from None


def _read_legacy(f: BinaryIO, size: int) -> dict[str, np.ndarray]:
    reader = _BoundedReader(f, size)
    try:
        magic = _unpickle(reader, None, "first pickle")
    except _Tampered:
        raise
    except _Invalid:
        raise _Invalid("not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save file)") from None
    name = _unknown_name(magic)
    if name is not None:
        raise _refused(name)
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise _Invalid(f"not a PyTorch checkpoint (a pickle of a {type(magic).__name__}, not torch.save output)")
    protocol = _unpickle(reader, None, "legacy header")
    if protocol != _LEGACY_PROTOCOL:
        raise _Invalid(f"a legacy torch.save header with protocol version {protocol!r}, not {_LEGACY_PROTOCOL}")
    sys_info = _unpickle(reader, None, "legacy header")
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True) is not False
    byteorder = "<" if little else ">"
    storages = _Storages(legacy=True)
    state = _select_state_dict(_unpickle(reader, storages, "pickled checkpoint"))
    keys = _unpickle(reader, None, "list of storage keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Invalid("the list of storage keys after the object is not a list of strings (damaged file?)")
    need = _needed_bytes(state)
    buffers: dict[str, np.ndarray] = {}
    pos = reader.pos
    count_format = "<q" if little else ">q"
    for key in keys:
        if key not in storages.roots:
            raise _Invalid(f"storage {key!r} is listed but no tensor uses it (damaged file?)")
        dtype, numel = storages.roots[key]
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            raise _Invalid(f"the file ends before storage {key!r}: it is truncated (a partial download?)")
        (count,) = struct.unpack(count_format, header)
        if count != numel:
            raise _Invalid(f"storage {key!r} holds {count} elements, not the {numel} declared (damaged file?)")
        nbytes = count * dtype.itemsize
        pos += 8
        if pos + nbytes > size:
            raise _Invalid(
                f"storage {key!r} is shorter than declared ({size - pos} of {nbytes} bytes): "
                "the file is truncated (a partial download?)"
            )
        if key in need:
            buf = np.empty(nbytes, np.uint8)
            if f.readinto(memoryview(buf)) != nbytes:
                raise _Invalid(f"storage {key!r} ends early: the file is truncated")
            buffers[key] = buf
        pos += nbytes
    missing = sorted(set(need) - set(buffers))
    if missing:
        raise _Invalid(f"storage {missing[0]!r} of the state_dict is not in the file (damaged file?)")
    return _materialize(state, buffers.pop, byteorder)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The flat {name: array} of a PyTorch checkpoint (.pkl / .pth / .pt), read without PyTorch.

    The checkpoint holds either the state_dict itself (a dict or OrderedDict of tensors, as the
    official CornerNet / CenterNet checkpoints do, keys perhaps prefixed `module.`) or a dict with a
    "state_dict" entry (mmdetection, Lightning); the rest of such a dict ("meta", "optimizer") is not
    returned. Keys are kept as they are; `num_batches_tracked` counters come back as int64 scalars.
    Arrays have the tensors' shapes and dtypes (bfloat16 as float32, numpy having no bfloat16);
    non-contiguous tensors and tensors sharing a storage are copied out as their own arrays.

    Raises ValueError (one line, naming the file) when the file is not a PyTorch checkpoint, is
    truncated or damaged, holds no state_dict or non-tensor state_dict entries, or pickles anything
    a weights file should not hold (that is never run; see the module docstring).
    """
    shown = os.fspath(path)
    try:
        return _read(shown)
    except _Invalid as e:
        message = " ".join(str(e).splitlines())
        raise ValueError(f"{shown}: {message}") from None


def _read(path: str) -> dict[str, np.ndarray]:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise _Invalid("no such file") from None
    except OSError as e:
        raise _Invalid(f"cannot be read ({e.strerror or type(e).__name__})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(512)
        f.seek(0)
        if not head:
            raise _Invalid("an empty file, not a PyTorch checkpoint")
        if len(head) < len(_LEGACY_START) and (_LEGACY_START.startswith(head) or _ZIP_MAGIC.startswith(head)):
            raise _Invalid(f"only {len(head)} bytes: the file is truncated (a partial download?)")
        if head.startswith(_ZIP_MAGIC):
            return _read_zip(f)
        if len(head) >= 262 and head[257:262] == b"ustar":
            raise _Invalid(
                "a tar archive: the checkpoint format of the earliest PyTorch releases, which this reader "
                "does not read (load it with that PyTorch and torch.save it again)"
            )
        return _read_legacy(f, size)
