"""Read PyTorch and NVIDIA StyleGAN checkpoints as data, without torch and without running their code.

Every pickle is read by a restricted unpickler: a global (``module.name``) resolves only if it is
in one of the tables below, where it maps to a local stand-in that builds plain Python / numpy
values. Anything else raises `UnsafeCheckpointError` naming the global. Beyond `find_class`, the
opcodes that call objects (REDUCE, NEWOBJ, INST, OBJ) may only call stand-ins of the table, and
BUILD may only fill a few known container types, so no stand-in can be re-purposed either.

Formats, as told by `sniff_format` from the first bytes of the file:

* ``'torch-zip'``: a zip archive holding ``<folder>/data.pkl`` (``torch.save``, torch >= 1.6).
  Storages are the records ``<folder>/data/<key>``; the folder name is arbitrary.
* ``'torch-legacy'``: a pickle whose first value is torch's magic number: ``torch.save(...,
  _use_new_zipfile_serialization=False)`` and every torch < 1.6. Five pickles (magic, protocol
  1001, sys-info, the object, the storage keys), then per storage an int64 count and raw data.
* ``'nvidia-pkl'``: a pickle (protocol 2-5) whose first 4 MiB mention ``torch_utils.persistence``:
  NVIDIA stylegan2-ada training snapshots (``network-snapshot-*.pkl``). Tensors live in the pickle itself as
  ``torch.storage._load_from_bytes`` blobs (each a small torch-legacy file). The Python source
  embedded in each persistent object (``module_src``) is dropped unread: never executed,
  compiled or written anywhere.
* ``'pickle'``: any other pickle of protocol 2-5 (e.g. ``pickle.dump`` of a state dict).
* ``'npz'``: a zip of ``.npy`` members; ``'safetensors'``: 8-byte header length + JSON header.

`load_torch` reads torch-zip / torch-legacy / plain pickles, `load_network_pickle` NVIDIA
pickles, `load_state_dict` any of them down to a flat ``{name: np.ndarray}``.

Limits. A hostile file must not make the reader hang or exhaust memory, so every read of one
file (its nested storage blobs and archive members included) has a budget, and going over it is
a `CheckpointFormatError` that names the limit, within seconds:

* ``MAX_OPS`` (10 million, about 2.5 s of reading) pickle opcodes executed, all pickles of the
  file together: each builds at most one value, so this bounds the number of objects, the
  containers' sizes and the memo.
* bytes: storage blobs parsed, storage records and legacy storages read, declared data.pkl
  sizes and tensors built, together at most ``4 x the file's size + 1 GiB``
  (``BYTES_PER_FILE_BYTE``, ``MIN_BYTES``): a real checkpoint counts each stored byte at most
  three times (an NVIDIA pickle: the blob, the storage inside it, the tensor), so FFHQ 1024's
  380 MB pickle uses ~1.1 GB of its 2.5 GB.
* ``MAX_MEMBER`` (1 GiB): the uncompressed size a compressed archive member may declare,
  checked before it is read (a stored member cannot be larger than the file). Storage records
  are read in chunks up to the size the pickle needs; data.pkl is streamed into the unpickler,
  never inflated whole, so a zip bomb is refused by its declared size, or by its first bad
  opcode, or by MAX_OPS.
* ``MAX_NODES`` (1 million) values visited when walking what was loaded (constructor kwargs,
  state dicts, the whole object a torch file holds) with shared references counted every time
  they are reached, and ``MAX_DEPTH`` (100) levels of nesting: a small pickle of lists that share
  references (a DAG with 2^60 leaves when walked) is refused instead of walked for ever. Dict
  keys and set elements (hashing a tuple walks it) may hold at most 10,000 values each.
* ``MAX_TENSORS`` (100,000) tensors in one persistent network's state dict.

Real checkpoints stay far below every limit: a network pickle needs a few dozen opcodes and
values per tensor (FFHQ 1024 config-F: ~1,200 tensors in G, D and G_ema), the data.pkl of a
torch file is kilobytes to megabytes (the tensors are separate members).
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import io
import json
import math
import os
import pickle
import re
import struct
import types
import zipfile
from typing import Any, Callable, Mapping, NamedTuple

import ml_dtypes
import numpy as np

from jax_inpaint.errors import InputError, brief


class UnsafeCheckpointError(InputError):
    """A pickle references a global that is not on the allow-list (the message names it)."""


class CheckpointFormatError(InputError):
    """The file is empty, truncated, corrupt or not a checkpoint format this module reads."""


class _Refused(Exception):
    """Internal: a global (or call) off the allow-list; `_reading` adds the file name."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what
        self.where = "the pickle"


class _Corrupt(Exception):
    """Internal: malformed content; `_reading` adds the file name."""


# --------------------------------------------------------------------------------------------
# Limits (see the module docstring): one budget per file read, shared by its nested readers.
# --------------------------------------------------------------------------------------------

MAX_OPS = 10_000_000
MAX_NODES = 1_000_000
MAX_DEPTH = 100
MAX_TENSORS = 100_000
MAX_MEMBER = 1 << 30
MIN_BYTES = 1 << 30
BYTES_PER_FILE_BYTE = 4
_KEY_NODES = 10_000  # a dict key or set element (hashed by walking it) may hold at most this many values


class _Budget:
    """What one read of a file may still do: opcodes, bytes, values walked."""

    def __init__(self, file_size: int = 0):
        self.ops = MAX_OPS
        self.bytes = MIN_BYTES + BYTES_PER_FILE_BYTE * max(int(file_size), 0)
        self.bytes_total = self.bytes
        self.nodes = MAX_NODES

    def take_ops(self, n: int) -> None:
        self.ops -= n
        if self.ops < 0:
            raise _Corrupt(f"refused: the pickle runs more than {MAX_OPS:,} opcodes, the reader's limit "
                           "(a hostile or corrupt file?)")

    def take_bytes(self, n: int, what: str) -> None:
        self.bytes -= n
        if self.bytes < 0:
            raise _Corrupt(f"refused: {what} takes the data read from this file past {self.bytes_total:,} bytes "
                           "(4 x its size + 1 GiB), the reader's limit (a hostile or corrupt file?)")

    def take_nodes(self, n: int = 1) -> None:
        self.nodes -= n
        if self.nodes < 0:
            raise _Corrupt(f"refused: the checkpoint holds more than {MAX_NODES:,} values when walked (counting "
                           "shared references each time they are reached), the reader's limit (a hostile "
                           "or corrupt file?)")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("pickle_reader_budget", default=None)


def _budget() -> _Budget:
    b = _BUDGET.get()
    if b is None:   # only the readers below run without one, and they set one up: a bug
        raise RuntimeError("pickle_reader: reading outside _budget_for")
    return b


@contextlib.contextmanager
def _budget_for(path=None):
    """One budget for everything read from the file `path` (reused when a reading is already under way)."""
    if _BUDGET.get() is not None:
        yield _BUDGET.get()
        return
    size = 0
    if path is not None:
        try:
            size = os.path.getsize(path)
        except OSError:
            pass
    token = _BUDGET.set(_Budget(size))
    try:
        yield _BUDGET.get()
    finally:
        _BUDGET.reset(token)


def _walk(obj, budget: _Budget | None = None, depth: int = 0) -> None:
    """Visit `obj` like any later consumer would (shared references expanded), within the budget."""
    if depth > MAX_DEPTH:
        raise _Corrupt(f"refused: values nested deeper than {MAX_DEPTH} levels")
    budget = budget or _budget()
    budget.take_nodes()
    if isinstance(obj, (str, bytes, bytearray, int, float, complex, bool, type(None), np.ndarray, np.generic)):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _walk(k, budget, depth + 1)
            _walk(v, budget, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _walk(v, budget, depth + 1)
    elif isinstance(obj, types.SimpleNamespace):
        _walk(vars(obj), budget, depth + 1)


class _KeyBudget(_Budget):
    def __init__(self):
        super().__init__()
        self.nodes = _KEY_NODES

    def take_nodes(self, n: int = 1) -> None:
        self.nodes -= n
        if self.nodes < 0:
            raise _Corrupt(f"refused: a dict key or set element holds more than {_KEY_NODES:,} values (counting "
                           "shared references each time), the reader's limit (a hostile or corrupt file?)")


def _check_key(key) -> None:
    """Hashing a tuple walks it: refuse keys that are (shared-reference) giants before hashing them."""
    if isinstance(key, tuple):
        _walk(key, _KeyBudget())





# --------------------------------------------------------------------------------------------
# Stand-ins: what each allowed global becomes.
# --------------------------------------------------------------------------------------------

class _StorageType(NamedTuple):
    """A torch storage class (``torch.FloatStorage``, ``torch.UntypedStorage``...)."""
    name: str
    dtype: np.dtype
    untyped: bool = False


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64, "ComplexDoubleStorage": np.complex128,
}

# torch dtypes (pickled as the global ``torch.<name>``) that numpy / ml_dtypes can hold.
_TORCH_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
    "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16, "uint8": np.uint8, "bool": np.bool_,
    "complex64": np.complex64, "complex128": np.complex128,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2,
    "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz, "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
    "float8_e8m0fnu": ml_dtypes.float8_e8m0fnu,
}


class _PendingStorage(NamedTuple):
    """First pass over a legacy file: the storage data comes after the pickle."""
    dtype: np.dtype


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 0 for v in value):
        raise _Corrupt(f"tensor {what} is not a tuple of non-negative ints: {brief(value)}")
    return tuple(value)


def _strided_copy(elements, offset, size, stride) -> np.ndarray:
    """A C-contiguous copy of the tensor view (offset, size, stride) of a 1-D storage array."""
    if isinstance(elements, _PendingStorage):
        return np.empty(0, elements.dtype)
    if not isinstance(elements, np.ndarray) or elements.ndim != 1:
        raise _Corrupt(f"tensor storage is not a storage: {type(elements).__name__}")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if type(offset) is not int or offset < 0 or len(size) != len(stride):
        raise _Corrupt(f"bad tensor layout: offset {brief(offset)}, size {brief(size)}, stride {brief(stride)}")
    if 0 in size:
        return np.zeros(size, elements.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= elements.size:
        raise _Corrupt(f"tensor (offset {offset}, size {size}, stride {stride}) reaches past the end "
                       f"of its storage of {elements.size} elements")
    count = math.prod(size)
    if count > elements.size and count * elements.itemsize > 2**31:
        raise _Corrupt(f"tensor of size {size} expands a storage of {elements.size} elements past 2 GiB")
    _budget().take_bytes(count * elements.itemsize, f"a tensor of size {size}")
    item = elements.itemsize
    view = np.lib.stride_tricks.as_strided(elements[offset:], shape=size, strides=[s * item for s in stride],
                                           writeable=False)
    return np.array(view, order="C", copy=True)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _strided_copy(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _strided_copy(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    """Tensor over an UntypedStorage (bytes) with an explicit dtype (uint16/32/64, float8 ...)."""
    np_dtype = _np_dtype_of_torch(dtype)
    if isinstance(storage, _PendingStorage):
        return np.empty(0, np_dtype)
    if not isinstance(storage, np.ndarray) or storage.dtype != np.uint8 or storage.ndim != 1:
        raise _Corrupt("_rebuild_tensor_v3 needs an UntypedStorage")
    usable = storage.size - storage.size % np_dtype.itemsize
    return _strided_copy(storage[:usable].view(np_dtype), storage_offset, size, stride)


def _np_dtype_of_torch(dtype) -> np.dtype:
    name = dtype[len("torch."):] if isinstance(dtype, str) and dtype.startswith("torch.") else None
    if name not in _TORCH_DTYPES:
        raise _Corrupt(f"unsupported tensor dtype {brief(dtype)}")
    return np.dtype(_TORCH_DTYPES[name])


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, np.ndarray):
        raise _Corrupt(f"a Parameter holds a {type(data).__name__}, not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data)   # the state holds Python attributes of the Parameter: dropped


def _load_from_bytes(blob):
    """``torch.storage._load_from_bytes``: a storage saved on its own (a torch-legacy file)."""
    if not isinstance(blob, (bytes, bytearray)):
        raise _Corrupt(f"storage blob is a {type(blob).__name__}, not bytes")
    _budget().take_bytes(len(blob), "a storage blob (torch.storage._load_from_bytes)")
    try:
        if bytes(blob[:4]) == b"PK\x03\x04":
            storage = _load_zip(io.BytesIO(blob), STORAGE_BLOB_GLOBALS)
        else:
            storage = _load_legacy(io.BytesIO(blob), STORAGE_BLOB_GLOBALS)
    except _Refused as e:
        e.where = "a storage blob (torch.storage._load_from_bytes) inside the pickle"
        raise
    if not isinstance(storage, np.ndarray):
        raise _Corrupt("a storage blob does not hold a storage")
    return storage


class _DtypeSpec:
    """``numpy.dtype``, as numpy pickles it: ``dtype('f8', False, True)`` then a BUILD of its state.

    Kept as a spec (not a live np.dtype, whose __setstate__ would mutate numpy's own dtype
    objects); only plain numeric kinds are accepted.
    """

    def __init__(self, descr, align=False, copy=False):
        if not isinstance(descr, str) or not re.fullmatch(r"[biufc]\d{1,2}", descr):
            raise _Corrupt(f"numpy dtype {brief(descr)} is not a plain numeric type")
        self.dtype = np.dtype(descr)

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2 or any(s is not None for s in state[2:5]):
            raise _Corrupt("numpy dtype state is not that of a plain numeric type")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_scalar(dtype, data=None):
    """``numpy.core.multiarray.scalar(dtype, raw bytes)`` -> a numpy scalar (e.g. np.float64)."""
    if not isinstance(dtype, _DtypeSpec) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise _Corrupt("malformed numpy scalar")
    return np.frombuffer(data, dtype.dtype)[0]


def _codecs_encode(text, encoding="utf-8"):
    """``_codecs.encode``: how protocol-2 pickles from Python 3 spell bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Corrupt("_codecs.encode is only allowed as protocol 2 writes bytes: (str, 'latin1')")
    return text.encode("latin1")


def _empty_bytes(*args):
    """``builtins.bytes``: protocol 2 writes ``bytes()`` for an empty bytes object."""
    if args:
        raise _Corrupt("builtins.bytes is only allowed without arguments")
    return b""


class _EasyDict(dict):
    """``dnnlib.util.EasyDict``: a dict (its attribute access is not needed here)."""


@dataclasses.dataclass(eq=False, repr=False)
class PersistentModule:
    """What NVIDIA's ``torch_utils.persistence`` would rebuild, kept as data (no code is run).

    class_name:  e.g. 'training.networks.Generator' (see PERSISTENT_CLASSES: the pickle itself
                 stores the bare 'Generator' and the module's source text, no module path).
    init_kwargs: the constructor kwargs (EasyDicts -> plain dicts, recursively).
    state_dict:  name -> array, flattened like torch.nn.Module.state_dict(): own parameters (not
                 None), own persistent buffers, then children, '.'-joined, in that order.
    """
    class_name: str
    init_kwargs: dict
    state_dict: dict[str, np.ndarray]

    def __repr__(self):
        return f"PersistentModule({self.class_name!r}, {len(self.state_dict)} tensors)"


# The persistent classes of stylegan2-ada-pytorch (stylegan3's training/networks_stylegan2.py has
# the same ones), by the bare name the pickle stores -> the qualified name we report. A pickle
# keeps no module path (only the module's source text), so the path is the one these classes
# have in stylegan2-ada-pytorch. Other persistent classes are refused.
PERSISTENT_CLASSES = {
    **{name: f"training.networks.{name}" for name in [
        "Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer", "ToRGBLayer",
        "FullyConnectedLayer", "Conv2dLayer", "Discriminator", "DiscriminatorBlock", "DiscriminatorEpilogue",
        "MinibatchStdLayer"]},
    "AugmentPipe": "training.augment.AugmentPipe",
}


def _reconstruct_persistent_obj(meta):
    """``torch_utils.persistence._reconstruct_persistent_obj(meta)`` -> PersistentModule.

    The official version exec()s ``meta['module_src']`` and instantiates the class from it; here
    the source is ignored and the saved ``state`` (the module's __dict__) is kept as data.
    """
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise _Corrupt("malformed torch_utils.persistence object")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise _Corrupt("malformed torch_utils.persistence object (class_name / state)")
    if class_name not in PERSISTENT_CLASSES:
        raise _Refused(f"the persistent class {class_name!r} (a torch_utils.persistence object "
                       f"that is not a known NVIDIA network class)")
    return PersistentModule(class_name=PERSISTENT_CLASSES[class_name],
                            init_kwargs=_plain(state.get("_init_kwargs") or {}),
                            state_dict=_module_state_dict(class_name, state))


def _module_state_dict(class_name: str, state: dict) -> dict[str, np.ndarray]:
    """torch.nn.Module.state_dict() of a pickled module __dict__ whose children are already flat."""
    out: dict[str, np.ndarray] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    groups = [(state.get("_parameters") or {}, ()), (state.get("_buffers") or {}, skip)]
    for group, excluded in groups:
        if not isinstance(group, dict):
            raise _Corrupt(f"{class_name}: _parameters/_buffers is not a dict")
        for name, value in group.items():
            if value is None or name in excluded:
                continue
            if not isinstance(value, np.ndarray):
                raise _Corrupt(f"{class_name}.{name} is a {type(value).__name__}, not a tensor")
            out[name] = value
    children = state.get("_modules") or {}
    if not isinstance(children, dict):
        raise _Corrupt(f"{class_name}: _modules is not a dict")
    total = len(out) + sum(len(c.state_dict) for c in children.values() if isinstance(c, PersistentModule))
    if total > MAX_TENSORS:   # children shared by reference would double it at every level
        raise _Corrupt(f"refused: a {class_name} holds more than {MAX_TENSORS:,} tensors (with its children), "
                       "the reader's limit (a hostile or corrupt file?)")
    _budget().take_nodes(total)
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, PersistentModule):
            raise _Corrupt(f"{class_name}.{name} is a {type(child).__name__}, not a persistent module")
        out.update((f"{name}.{key}", value) for key, value in child.state_dict.items())
    return out


def _plain(obj, depth: int = 0):
    """EasyDict -> dict, recursively through dicts, lists and tuples (within the budget: shared
    references are copied each time they are reached, so a DAG is refused, not expanded)."""
    if depth > MAX_DEPTH:
        raise _Corrupt(f"refused: values nested deeper than {MAX_DEPTH} levels")
    _budget().take_nodes()
    if type(obj) in (dict, collections.OrderedDict, _EasyDict):
        items = ((k, _plain(v, depth + 1)) for k, v in obj.items())
        return collections.OrderedDict(items) if type(obj) is collections.OrderedDict else dict(items)
    if type(obj) in (list, tuple):
        return type(obj)(_plain(v, depth + 1) for v in obj)
    return obj


# --------------------------------------------------------------------------------------------
# The allow-lists: (module, name) -> stand-in.
# --------------------------------------------------------------------------------------------

def _storage_types() -> dict[tuple[str, str], _StorageType]:
    table = {}
    for name, dtype in _STORAGE_DTYPES.items():
        for module in ("torch", "torch.cuda"):
            table[(module, name)] = _StorageType(name, np.dtype(dtype))
    for module in ("torch", "torch.storage"):
        table[(module, "UntypedStorage")] = _StorageType("UntypedStorage", np.dtype(np.uint8), untyped=True)
    return table


STORAGE_BLOB_GLOBALS: dict[tuple[str, str], Any] = _storage_types()

_COMMON_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "set"): set,                  # protocol 2 spells builtins this way
    ("__builtin__", "frozenset"): frozenset,
    ("__builtin__", "bytes"): _empty_bytes,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): _DtypeSpec,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,     # numpy 1.x
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,    # numpy 2.x
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    **STORAGE_BLOB_GLOBALS,
    **{("torch", name): f"torch.{name}" for name in _TORCH_DTYPES},   # dtypes become their names
}

TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    **_COMMON_GLOBALS,
    ("argparse", "Namespace"): types.SimpleNamespace,
}

NETWORK_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    **_COMMON_GLOBALS,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
}

# Types that NEWOBJ may create (argument-less) and that BUILD may fill with attributes.
_NEWOBJ_TYPES = (collections.OrderedDict, types.SimpleNamespace, _EasyDict)
_BUILD_TYPES = (collections.OrderedDict, types.SimpleNamespace, _EasyDict, _DtypeSpec)


class _Unpickler(pickle._Unpickler):
    """Python's pure unpickler with every object-creating path restricted to a table of stand-ins.

    find_class: only table entries. REDUCE / INST / OBJ: only callables of the table.
    NEWOBJ(_EX): only _NEWOBJ_TYPES, without arguments. BUILD: only _BUILD_TYPES. EXT*: refused.
    """
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, allowed: Mapping[tuple[str, str], Any],
                 persistent_load: Callable[[Any], Any] | None = None):
        super().__init__(file, encoding="utf-8")
        self._allowed = allowed
        self._callables = {id(v) for v in allowed.values() if callable(v)}
        self._persistent = persistent_load

    def load(self):
        """pickle._Unpickler.load, counting opcodes against the file's budget (MAX_OPS)."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        read = self.read
        dispatch = self.dispatch
        budget = _budget()
        n = 0
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError
                dispatch[key[0]](self)
                n += 1
                if n == 65536:
                    budget.take_ops(n)
                    n = 0
        except pickle._Stop as stop:
            budget.take_ops(n)
            return stop.value

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"the global '{module}.{name}'") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise _Corrupt("unexpected persistent id in a plain pickle")
        return self._persistent(pid)

    def _call(self, func, args):
        if id(func) not in self._callables:
            raise _Refused(f"a call of a {type(func).__name__} object")
        if not isinstance(args, tuple):
            raise _Corrupt("call arguments are not a tuple")
        if (func is set or func is frozenset or func is collections.OrderedDict) and args:
            if not isinstance(args[0], (list, tuple)) or len(args) > 1:   # they hash what they are given
                raise _Corrupt(f"{func.__name__} called with arguments other than a list")
            for item in args[0]:
                if func is collections.OrderedDict:
                    if not isinstance(item, (tuple, list)) or len(item) != 2:
                        raise _Corrupt("OrderedDict called with something other than (key, value) pairs")
                    item = item[0]
                _check_key(item)
        return func(*args)

    def get_extension(self, code):   # EXT1/2/4: copyreg's registry and cache would bypass find_class
        raise _Refused(f"the extension code {code} (copyreg registry)")

    def _load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)
    dispatch[pickle.REDUCE[0]] = _load_reduce

    def _instantiate(self, klass, args):   # INST, OBJ (protocols 0/1)
        self.append(self._call(klass, tuple(args)))

    def _load_newobj(self):
        args = self.stack.pop()
        self.stack[-1] = self._new(self.stack[-1], args, {})
    dispatch[pickle.NEWOBJ[0]] = _load_newobj

    def _load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        self.stack[-1] = self._new(self.stack[-1], args, kwargs)
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex

    def _new(self, cls, args, kwargs):
        if not any(cls is t for t in _NEWOBJ_TYPES) or id(cls) not in self._callables:
            raise _Refused(f"creating a {getattr(cls, '__name__', type(cls).__name__)} object")
        if args or kwargs:
            raise _Corrupt(f"{cls.__name__} created with arguments")
        return cls()

    # Dict keys and set elements are hashed, and hashing a tuple walks it: bound them first.
    def _load_dict(self):
        items = self.pop_mark()
        for i in range(0, len(items), 2):
            _check_key(items[i])
        self.append({items[i]: items[i + 1] for i in range(0, len(items), 2)})
    dispatch[pickle.DICT[0]] = _load_dict

    def _load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        _check_key(key)
        self.stack[-1][key] = value
    dispatch[pickle.SETITEM[0]] = _load_setitem

    def _load_setitems(self):
        items = self.pop_mark()
        for i in range(0, len(items), 2):
            _check_key(items[i])
        target = self.stack[-1]
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]
    dispatch[pickle.SETITEMS[0]] = _load_setitems

    def _load_additems(self):
        items = self.pop_mark()
        for item in items:
            _check_key(item)
        target = self.stack[-1]
        if isinstance(target, set):
            target.update(items)
        else:
            for item in items:
                target.add(item)
    dispatch[pickle.ADDITEMS[0]] = _load_additems

    def _load_frozenset(self):
        items = self.pop_mark()
        for item in items:
            _check_key(item)
        self.append(frozenset(items))
    dispatch[pickle.FROZENSET[0]] = _load_frozenset

    def _load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) not in _BUILD_TYPES:
            raise _Refused(f"setting the state of a {type(inst).__name__} object")
        if isinstance(inst, _DtypeSpec):
            inst.__setstate__(state)
            return
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if state is None:
            return
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise _Corrupt(f"malformed state for a {type(inst).__name__} object")
        inst.__dict__.update(state)
    dispatch[pickle.BUILD[0]] = _load_build


def _unpickle(file, allowed, persistent_load=None):
    with _budget_for():
        return _Unpickler(file, allowed, persistent_load).load()


# --------------------------------------------------------------------------------------------
# torch.save containers.
# --------------------------------------------------------------------------------------------

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _storage_pid(pid, length: int):
    """('storage', storage type, key, location, numel[, view_metadata]) -> (type, key, numel, view)."""
    if (not isinstance(pid, tuple) or len(pid) != length or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
            or not isinstance(pid[3], str) or type(pid[4]) is not int or pid[4] < 0):
        raise _Corrupt(f"malformed storage reference {brief(pid)}")
    return pid[1], pid[2], pid[4], pid[5] if length == 6 else None


def _storage_array(raw: bytes, stype: _StorageType, numel: int, little_endian: bool, key: str) -> np.ndarray:
    """Raw storage bytes -> 1-D array of the storage's elements in native byte order."""
    dtype = stype.dtype
    need = numel * dtype.itemsize
    if len(raw) < need:
        raise _Corrupt(f"storage {key} holds {len(raw)} bytes, {need} expected (truncated?)")
    if little_endian or dtype.itemsize == 1:
        return np.frombuffer(raw, dtype, count=numel)
    if stype.untyped:
        raise _Corrupt("big-endian files with UntypedStorage are not supported")
    if dtype.kind == "c":   # swap the real and imaginary parts separately
        part = np.dtype(f"f{dtype.itemsize // 2}")
        return np.frombuffer(raw, part.newbyteorder(">"), count=2 * numel).astype(part).view(dtype)
    word = f"u{dtype.itemsize}"
    return np.frombuffer(raw, ">" + word, count=numel).astype("=" + word).view(dtype)


def _zip_folder(names: list[str]) -> str:
    folders = [n[: -len("data.pkl")] for n in names if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if len(folders) != 1:
        raise _Corrupt("a zip archive without exactly one <folder>/data.pkl: not a torch.save file"
                       if not folders else f"a zip archive with several data.pkl files: {folders}")
    return folders[0]


_CHUNK = 1 << 24


def _member_info(zf: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    """An archive member whose declared uncompressed size is within MAX_MEMBER (compressed members)."""
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_MEMBER:
        raise _Corrupt(f"refused: archive member {name} declares {info.file_size:,} bytes uncompressed, more than "
                       f"the reader's limit of {MAX_MEMBER:,} (a zip bomb?)")
    return info


def _read_member(zf: zipfile.ZipFile, name: str, n: int | None = None) -> bytearray:
    """The first `n` bytes (default: all) of an archive member, its declared size checked first
    (MAX_MEMBER for compressed members, the file's byte budget for all), read in chunks."""
    info = _member_info(zf, name)
    n = info.file_size if n is None else n
    if info.file_size < n:
        raise _Corrupt(f"truncated: archive member {name} holds {info.file_size} bytes, {n} needed")
    _budget().take_bytes(n, f"archive member {name}")
    buf = bytearray(n)
    view, pos = memoryview(buf), 0
    with zf.open(info) as f:
        while pos < n:
            chunk = f.read(min(n - pos, _CHUNK))
            if not chunk:
                raise _Corrupt(f"truncated: archive member {name} ends after {pos} of {n} bytes")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
    return buf


def _load_zip(file, allowed) -> Any:
    with _budget_for():
        return _load_zip_budgeted(file, allowed)


def _load_zip_budgeted(file, allowed) -> Any:
    """torch.save zip format: <folder>/data.pkl plus one record <folder>/data/<key> per storage."""
    with zipfile.ZipFile(file) as zf:
        names = zf.namelist()
        folder = _zip_folder(names)
        order = bytes(_read_member(zf, folder + "byteorder")[:16]).strip() if folder + "byteorder" in names \
            else b"little"
        if order not in (b"little", b"big"):
            raise _Corrupt(f"unknown byteorder record {brief(order)}")
        storages: dict[str, np.ndarray] = {}

        def persistent_load(pid):
            stype, key, numel, _ = _storage_pid(pid, 5)
            if key not in storages:
                record = f"{folder}data/{key}"
                if record not in names:
                    raise _Corrupt(f"storage record {record} is missing")
                need = numel * stype.dtype.itemsize
                storages[key] = _storage_array(_read_member(zf, record, need), stype, numel, order == b"little",
                                               key)
            elif storages[key].dtype != stype.dtype:
                raise _Corrupt(f"storage {key} is used with two dtypes")
            return storages[key]

        # data.pkl is streamed (never inflated whole): a bomb of garbage fails at its first bad opcode,
        # one of valid opcodes at MAX_OPS; ZipExtFile stops at the declared size.
        info = _member_info(zf, folder + "data.pkl")
        _budget().take_bytes(info.file_size, f"archive member {info.filename}")
        with zf.open(info) as raw, io.BufferedReader(raw, _CHUNK >> 4) as f:
            return _unpickle(f, allowed, persistent_load)


def _read_exact(f, n: int, what: str) -> bytes:
    if f.seekable():   # never ask for more than is there (read(n) may allocate n bytes first)
        here = f.tell()
        left = f.seek(0, os.SEEK_END) - here
        f.seek(here)
        if left < n:
            raise _Corrupt(f"truncated: {what} needs {n} bytes, only {left} left")
    data = f.read(n)
    if len(data) != n:
        raise _Corrupt(f"truncated: {what} needs {n} bytes, only {len(data)} left")
    return data


def _load_legacy(f, allowed) -> Any:
    with _budget_for():
        return _load_legacy_budgeted(f, allowed)


def _load_legacy_budgeted(f, allowed) -> Any:
    """torch.save legacy format: 5 pickles, then per storage key an int64 count and the raw data.

    The object pickle comes before the storage data, so it is read twice: once to learn each
    storage's dtype and size, once more with the data in place.
    """
    if _unpickle(f, {}) != _TORCH_MAGIC:
        raise _Corrupt("not a torch.save file (bad magic number)")
    protocol = _unpickle(f, {})
    if protocol != _LEGACY_PROTOCOL:
        raise _Corrupt(f"unsupported torch legacy protocol {brief(protocol)}")
    sys_info = _unpickle(f, {})
    little_endian = not isinstance(sys_info, dict) or sys_info.get("little_endian", True) is not False
    start = f.tell()

    found: dict[str, tuple[_StorageType, int]] = {}

    def record(pid):
        stype, key, numel, _ = _storage_pid(pid, 6)
        if found.setdefault(key, (stype, numel)) != (stype, numel):
            raise _Corrupt(f"storage {key} is referenced with two types or sizes")
        return _PendingStorage(stype.dtype)

    _unpickle(f, allowed, record)
    keys = _unpickle(f, {})
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or sorted(keys) != sorted(found):
        raise _Corrupt("the storage key list does not match the storages the pickle uses")
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        stype, numel = found[key]
        (count,) = struct.unpack("<q" if little_endian else ">q", _read_exact(f, 8, f"storage {key} header"))
        if count != numel:
            raise _Corrupt(f"storage {key} has {count} elements, the pickle says {numel}")
        _budget().take_bytes(numel * stype.dtype.itemsize, f"storage {key}")
        raw = _read_exact(f, numel * stype.dtype.itemsize, f"storage {key}")
        storages[key] = _storage_array(raw, stype, numel, little_endian, key)

    def lookup(pid):
        stype, key, _, view = _storage_pid(pid, 6)
        storage = storages[key]
        if view is None:
            return storage
        if (not isinstance(view, tuple) or len(view) != 3 or type(view[1]) is not int
                or type(view[2]) is not int or not 0 <= view[1] <= view[1] + view[2] <= storage.size):
            raise _Corrupt(f"malformed storage view {brief(view)}")
        return storage[view[1]: view[1] + view[2]]

    f.seek(start)
    return _unpickle(f, allowed, lookup)


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _reading(path):
    """Turn everything that goes wrong while reading `path` into one of the two public errors."""
    try:
        yield
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except _Refused as e:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: {e.where} references {e.what}, which is not on the allow-list of "
            f"this reader (checkpoints are read as data; nothing from the file was run)") from None
    except _Corrupt as e:
        raise CheckpointFormatError(f"{path}: {e}") from None
    except EOFError:
        raise CheckpointFormatError(f"{path}: truncated: the file ends in the middle of a pickle") from None
    except FileNotFoundError:
        raise CheckpointFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointFormatError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointFormatError(f"{path}: cannot be read ({e.strerror or e})") from None
    except Exception as e:   # noqa: BLE001 -- a corrupt file can raise anything from the parsers
        detail = str(e).splitlines()[0][:200] if str(e) else ""
        raise CheckpointFormatError(
            f"{path}: corrupt or truncated checkpoint ({type(e).__name__}{': ' if detail else ''}{detail})") from e


FORMATS = ("nvidia-pkl", "torch-zip", "torch-legacy", "npz", "safetensors", "pickle")
_HEAD = 1 << 22   # sniff_format looks for NVIDIA's persistence module in the first 4 MiB


def _is_torch_legacy(head: bytes) -> bool:
    try:
        return _unpickle(io.BytesIO(head[:64]), {}) == _TORCH_MAGIC
    except Exception:   # noqa: BLE001 -- anything that is not the magic number pickle
        return False


def sniff_format(path) -> str:
    """'nvidia-pkl', 'torch-zip', 'torch-legacy', 'npz', 'safetensors' or 'pickle' (see module doc)."""
    path = os.fspath(path)
    with _reading(path):
        with open(path, "rb") as f:
            head = f.read(_HEAD)
            size = f.seek(0, os.SEEK_END)
        if not head:
            raise _Corrupt("empty file")
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            try:
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
            except zipfile.BadZipFile as e:
                raise _Corrupt(f"corrupt or truncated zip archive ({e})") from None
            if any(re.fullmatch(r"[^/]+/data\.pkl", n) for n in names):
                return "torch-zip"
            if names and all(n.endswith(".npy") for n in names):
                return "npz"
            raise _Corrupt("a zip archive without <folder>/data.pkl or .npy members: not a torch.save "
                           "file or .npz archive")
        if len(head) >= 9 and head[8:9] == b"{":
            (header_len,) = struct.unpack("<Q", head[:8])
            if header_len < 100_000_000:
                return "safetensors"
        if head[0] == 0x80 and 2 <= head[1] <= 5:
            if _is_torch_legacy(head):
                return "torch-legacy"
            if b"torch_utils.persistence" in head:
                return "nvidia-pkl"
            return "pickle"
        raise _Corrupt(f"unrecognised format ({size} bytes starting {head[:12]!r}): not a torch.save "
                       "file, NVIDIA network pickle, .npz or .safetensors")


def load_torch(path) -> Any:
    """A torch.save file (zip or legacy) or plain pickle, with tensors as C-contiguous numpy arrays.

    Tensors and Parameters -> np.ndarray (bfloat16 -> ml_dtypes.bfloat16), OrderedDict ->
    OrderedDict, argparse.Namespace -> types.SimpleNamespace, torch dtypes -> 'torch.<name>'.
    Any other global -> UnsafeCheckpointError. Storage device tags ('cuda:0') are ignored.
    """
    path = os.fspath(path)
    fmt = sniff_format(path)
    with _reading(path), _budget_for(path) as budget:
        if fmt in ("torch-zip", "torch-legacy", "pickle"):
            if fmt == "torch-zip":
                obj = _load_zip(path, TORCH_GLOBALS)
            else:
                with open(path, "rb") as f:
                    obj = (_load_legacy if fmt == "torch-legacy" else _unpickle)(f, TORCH_GLOBALS)
            _walk(obj, budget)   # what callers will walk, bounded here once (shared references expanded)
            return obj
    other = "load_network_pickle" if fmt == "nvidia-pkl" else "load_state_dict"
    raise CheckpointFormatError(f"{path}: this is a {fmt!r} file, not a torch.save file (read it with {other})")


def load_network_pickle(path) -> dict:
    """An NVIDIA training pickle -> {'G': PersistentModule, 'D': ..., 'G_ema': ..., ...}.

    Top-level entries are returned as stored: persistent networks as PersistentModule (None where
    the snapshot has none, e.g. 'augment_pipe'), other values (training_set_kwargs) with EasyDicts
    turned into dicts. The embedded module source is never executed, compiled or written.
    """
    path = os.fspath(path)
    fmt = sniff_format(path)
    if fmt not in ("nvidia-pkl", "pickle"):
        raise CheckpointFormatError(f"{path}: this is a {fmt!r} file, not an NVIDIA network pickle")
    with _reading(path), _budget_for(path):
        with open(path, "rb") as f:
            obj = _unpickle(f, NETWORK_PICKLE_GLOBALS)
        if not isinstance(obj, dict) or not any(isinstance(v, PersistentModule) for v in obj.values()):
            raise _Corrupt("not an NVIDIA network pickle (no top-level dict of persistent networks)")
        return {k: v if isinstance(v, PersistentModule) else _plain(v) for k, v in obj.items()}


_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
    "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
}


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", _read_exact(f, 8, "header length"))
        header = json.loads(_read_exact(f, header_len, "JSON header"))
        data = np.memmap(path, np.uint8, mode="r", offset=8 + header_len) if f.read(1) else np.empty(0, np.uint8)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info.get("dtype") not in _SAFETENSORS_DTYPES:
            raise _Corrupt(f"tensor {name}: unsupported dtype {brief(info.get('dtype'))}")
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        shape, (begin, end) = _int_tuple(info["shape"], "shape"), info["data_offsets"]
        if not 0 <= begin <= end <= data.size or end - begin != math.prod(shape) * dtype.itemsize:
            raise _Corrupt(f"tensor {name}: data offsets {begin}..{end} do not fit its shape and the file "
                           "(truncated?)")
        out[name] = np.array(data[begin:end]).view(dtype).reshape(shape)
    return out


def load_state_dict(path, key: str | None = None) -> dict[str, np.ndarray]:
    """A flat {name: np.ndarray} from an npz, safetensors, torch or NVIDIA pickle file.

    key: for a torch file, the top-level entry holding the state dict (e.g. 'g_ema',
    'state_dict'); for an NVIDIA pickle, the network ('G_ema'); for npz / safetensors, a name
    prefix: only entries 'key.xxx' are returned, as 'xxx'.
    """
    path = os.fspath(path)
    fmt = sniff_format(path)
    with _reading(path):
        if fmt in ("npz", "safetensors"):
            if fmt == "npz":
                with zipfile.ZipFile(path) as zf, _budget_for(path):   # an .npz can be a zip bomb too
                    for info in zf.infolist():
                        _budget().take_bytes(_member_info(zf, info.filename).file_size, f"array {info.filename}")
                with np.load(path, allow_pickle=False) as npz:
                    flat = {name: npz[name] for name in npz.files}
            else:
                flat = _load_safetensors(path)
            if key is None:
                return flat
            prefix = key + "."
            return {name[len(prefix):]: v for name, v in flat.items() if name.startswith(prefix)}
        obj = load_network_pickle(path) if fmt == "nvidia-pkl" else load_torch(path)
        if key is not None:
            if not isinstance(obj, Mapping) or key not in obj:
                keys = ", ".join(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
                raise _Corrupt(f"has no entry {key!r} (top level: {keys})")
            obj = obj[key]
        if isinstance(obj, PersistentModule):
            obj = obj.state_dict
        if not isinstance(obj, Mapping) or not obj:
            raise _Corrupt(f"holds a {type(obj).__name__}, not a state dict")
        bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
        if bad:
            hint = "" if key is not None else " (pass key= to pick the entry that holds the state dict)"
            raise _Corrupt(f"is not a flat state dict: entries {', '.join(bad[:8])}"
                           f"{' ...' if len(bad) > 8 else ''} are not tensors{hint}")
        return dict(obj)
