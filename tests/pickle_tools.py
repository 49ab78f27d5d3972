"""Test helpers: re-dump NVIDIA's stripped network pickle with stand-ins (no NVIDIA code is used)
and build hostile pickles, for the reader tests and the converter's CLI tests."""
import collections
import pickle

SG2 = "stylegan2"
STRIPPED = "tiny_network_stripped.pkl"


# A faithful re-dumper for the stripped NVIDIA pickle, built from stand-ins (no NVIDIA code):
# every global is recorded as a _Ref and every call as a _Call, then written back by name.

class _Ref:
    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        return _Call(self, args)


class _Call:
    def __init__(self, ref, args):
        self.ref, self.args, self.state = ref, args, None

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):
        return (self.ref, self.args) + (() if self.state is None else (self.state,))


class _StandInEasyDict(dict):
    pass


class _Recorder(pickle._Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("dnnlib.util", "EasyDict"):
            return _StandInEasyDict
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        return _Ref(module, name)


class _Repickler(pickle._Pickler):
    def __init__(self, file, protocol, rename):
        super().__init__(file, protocol)
        self.rename = rename

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Ref):
            target = self.rename.get((obj.module, obj.name), (obj.module, obj.name))
        elif obj is _StandInEasyDict:
            target = ("dnnlib.util", "EasyDict")
        else:
            return super().save(obj, save_persistent_id)
        self.framer.commit_frame()
        memo = self.memo.get(id(obj))
        if memo is not None:
            self.write(self.get(memo[0]))
            return
        if self.proto >= 4:
            self.save(target[0])
            self.save(target[1])
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{target[0]}\n{target[1]}\n".encode())
        self.memoize(obj)


def _record(data_dir):
    with open(data_dir / SG2 / STRIPPED, "rb") as f:
        return _Recorder(f).load()


def _redump(tree, path, protocol, rename=None):
    with open(path, "wb") as f:
        _Repickler(f, protocol, rename or {}).dump(tree)
    return path


def _meta(call: _Call) -> dict:
    assert call.ref.name == "_reconstruct_persistent_obj"
    return call.args[0]


def _walk_calls(obj, seen=None):
    """Every _Call in the recorded tree."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, _Call):
        yield obj
        children = list(obj.args)
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    else:
        children = []
    for child in children:
        yield from _walk_calls(child, seen)




def evil_pickle(module: str, name: str, args: tuple) -> bytes:
    """Protocol 2: GLOBAL module.name, the args tuple, REDUCE (what plain pickle would run)."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + pickle.dumps(args, protocol=2)[2:-1] + b"R."


def with_module_src(data_dir, source: str, path, protocol: int = 4):
    """The stripped network pickle with every embedded module source replaced by `source`."""
    tree = _record(data_dir)
    for call in _walk_calls(tree):
        if call.ref.name == "_reconstruct_persistent_obj":
            call.args[0]["module_src"] = source
    return _redump(tree, path, protocol)


# Hostile files that are small on disk but explode when read or walked (issue 11).

def dag(depth: int = 60, kind=list):
    """Nested containers that share references: `depth` levels, 2**depth leaves when walked."""
    node = kind()
    for _ in range(depth):
        node = kind([node, node])
    return node


def minimal_network_pickle(init_kwargs, path, state=None):
    """An NVIDIA network pickle {'G_ema': Generator} whose constructor kwargs are `init_kwargs`."""
    meta = {"type": "class", "version": 4, "module_src": "", "class_name": "Generator",
            "state": {"_init_kwargs": init_kwargs, **(state or {})}}
    tree = {"G_ema": _Ref("torch_utils.persistence", "_reconstruct_persistent_obj")(meta)}
    return _redump(tree, path, 2)


def with_init_kwargs(data_dir, path, class_name: str, edit, protocol: int = 4):
    """The stripped network pickle with `edit(init_kwargs)` applied to its `class_name` networks (e.g.
    'Discriminator': the epilogue_kwargs / block_kwargs EasyDicts are plain dicts here, edited in place)."""
    tree = _record(data_dir)
    for call in _walk_calls(tree):
        if call.ref.name == "_reconstruct_persistent_obj" and _meta(call)["class_name"] == class_name:
            edit(_meta(call)["state"]["_init_kwargs"])
    return _redump(tree, path, protocol)


def edited_rosinality_pt(data_dir, path, g_ema=None, d=None):
    """tests/data/rosinality/res32_g_ema.pt re-saved by torch.save with `g_ema(state)` / `d(state)` applied to
    its generator / discriminator state dicts ({name: numpy array}, edited in place)."""
    import numpy as np
    import torch

    from convert_weights.pickle_reader import load_torch

    ckpt = load_torch(str(data_dir / "rosinality" / "res32_g_ema.pt"))
    out = {}
    for key, edit in (("g_ema", g_ema), ("d", d)):
        state = {k: np.array(v) for k, v in ckpt[key].items()}
        if edit is not None:
            edit(state)
        out[key] = {k: torch.from_numpy(v) for k, v in state.items()}
    torch.save(out, path)
    return path


def torch_zip(path, data_pkl: bytes, records=None, compress: bool = False):
    """A torch.save-style zip: archive/data.pkl (+ archive/data/<key> records)."""
    import zipfile

    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", mode) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        for key, raw in (records or {}).items():
            zf.writestr(f"archive/data/{key}", raw)
    return path


def zip_bomb_pt(path, inflated: int = 2 << 30, member: str = "archive/data.pkl"):
    """A ~2 MB .pt whose data.pkl inflates to `inflated` bytes of zeros (an honest zip: real sizes and
    CRC), written without compressing gigabytes: one deflated 16 MiB block of zeros, repeated."""
    import struct
    import zlib

    block = 1 << 24
    assert inflated % block == 0
    zeros = bytes(block)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush()
    crc = 0
    for _ in range(inflated // block):
        crc = zlib.crc32(zeros, crc)
    n = inflated // block
    comp_size = len(chunk) * n + len(tail)
    name = member.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, comp_size, inflated, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, comp_size, inflated,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    with open(path, "wb") as f:
        f.write(local)
        for _ in range(n):
            f.write(chunk)
        f.write(tail)
        cd_offset = f.tell()
        f.write(central)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), cd_offset, 0))
    return path


def dict_with_key_pickle(key) -> bytes:
    """Protocol 2 pickle of {key: 1}, written without hashing `key` (a DAG tuple never finishes hashing)."""
    body = pickle.dumps(key, protocol=2)[2:-1]
    return b"\x80\x02}" + body + b"K\x01s."
