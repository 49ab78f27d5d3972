"""convert_weights.pickle_reader: torch-free, code-free readers for the checkpoints users hold.

References: the fixtures' own npz exports (bit-identical), and torch 2.13's loader
(`torch.load(weights_only=True)`), which these tests may import. Exact equality everywhere
(tolerance 0): reading a checkpoint must not change a bit.
"""
import argparse
import builtins
import collections
import io
import json
import os
import pickle
import shlex
import types
import zipfile

import ml_dtypes
import numpy as np
import pytest
import torch

from convert_weights import pickle_reader as pr
from convert_weights.pickle_reader import (CheckpointFormatError, PersistentModule, UnsafeCheckpointError,
                                           load_network_pickle, load_state_dict, load_torch, sniff_format)
from pickle_tools import _Call, _Ref, _record, _redump, _StandInEasyDict, _walk_calls, _meta

SG2 = "stylegan2"
ROS = "rosinality"
STRIPPED = "tiny_network_stripped.pkl"


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (bit-identical, NaN-safe)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _assert_same_state(actual: dict, expected) -> None:
    names = list(expected.files) if hasattr(expected, "files") else list(expected)
    assert list(actual) == names
    for name in names:
        assert _same(actual[name], expected[name]), name
        assert actual[name].flags.c_contiguous


def _torch_to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.contiguous().numpy()


@pytest.fixture(scope="module")
def stripped(data_dir):
    return load_network_pickle(data_dir / SG2 / STRIPPED)


# --------------------------------------------------------------------------------------------
# NVIDIA network pickles.
# --------------------------------------------------------------------------------------------

def test_stripped_pickle_matches_reference_state(stripped, data_dir):
    g_ref, d_ref = np.load(data_dir / SG2 / "tiny_G_state.npz"), np.load(data_dir / SG2 / "tiny_D_state.npz")
    assert list(stripped) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    assert stripped["training_set_kwargs"] is None and stripped["augment_pipe"] is None
    for key, ref, cls in [("G", g_ref, "training.networks.Generator"), ("G_ema", g_ref, "training.networks.Generator"),
                          ("D", d_ref, "training.networks.Discriminator")]:
        net = stripped[key]
        assert isinstance(net, PersistentModule) and net.class_name == cls
        _assert_same_state(net.state_dict, ref)
    g_cfg = json.loads((data_dir / SG2 / "tiny_G_config.json").read_text())
    d_cfg = json.loads((data_dir / SG2 / "tiny_D_config.json").read_text())
    assert (stripped["G"].class_name, stripped["D"].class_name) == (g_cfg["class_name"], d_cfg["class_name"])
    assert stripped["G"].init_kwargs == g_cfg["init_kwargs"] and stripped["D"].init_kwargs == d_cfg["init_kwargs"]
    assert type(stripped["G"].init_kwargs["mapping_kwargs"]) is dict   # EasyDict -> dict
    assert sniff_format(data_dir / SG2 / STRIPPED) == "nvidia-pkl"


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_redumped_with_each_protocol_loads_the_same(protocol, stripped, data_dir, tmp_path):
    path = _redump(_record(data_dir), tmp_path / "net.pkl", protocol)
    raw = path.read_bytes()
    assert raw[:2] == bytes([0x80, protocol])
    if protocol == 2:   # what Python 3 writes for sets and bytes at protocol 2
        assert b"c__builtin__\nset\n" in raw and b"c_codecs\nencode\n" in raw
    if protocol == 3:
        assert b"cbuiltins\nset\n" in raw
    loaded = load_network_pickle(path)
    assert list(loaded) == list(stripped)
    for key in ["G", "D", "G_ema"]:
        assert loaded[key].class_name == stripped[key].class_name
        assert loaded[key].init_kwargs == stripped[key].init_kwargs
        _assert_same_state(loaded[key].state_dict, stripped[key].state_dict)


def test_2021_style_pickle(data_dir, tmp_path):
    """Protocol 3, numpy 1.x scalar path, _rebuild_parameter_with_state, a dict
    training_set_kwargs with an EasyDict inside, and an AugmentPipe persistent object."""
    tree = _record(data_dir)
    tree["training_set_kwargs"] = {
        "class_name": "training.dataset.ImageFolderDataset", "path": "ffhq.zip", "use_labels": False,
        "max_size": 70000, "xflip": True, "resolution": 32,
        "extra": _StandInEasyDict(a=1, nested=_StandInEasyDict(b=[1, 2])),
    }
    g_meta = _meta(tree["G"])
    mapping_state = _meta(g_meta["state"]["_modules"]["mapping"])["state"]
    w_avg = mapping_state["_buffers"]["w_avg"]
    fc0_bias = _meta(mapping_state["_modules"]["fc0"])["state"]["_parameters"]["bias"]
    aug_state = {
        "training": False, "_parameters": {"unused": None},
        "_buffers": {"p": w_avg, "tmp": w_avg, "Hz_geom": fc0_bias},
        "_non_persistent_buffers_set": {"tmp"}, "_modules": {},
        "_init_kwargs": _StandInEasyDict(xflip=1, rotate90=1), "_init_args": (),
    }
    meta = dict(g_meta, class_name="AugmentPipe", state=aug_state)
    tree["augment_pipe"] = _Call(tree["G"].ref, (meta,))
    n_params = 0
    for call in _walk_calls(tree):
        if call.ref.name == "_rebuild_parameter":
            call.ref = _Ref("torch._utils", "_rebuild_parameter_with_state")
            call.args = call.args + (({"_is_param": True}, None),)
            n_params += 1
    assert n_params > 100
    rename = {("numpy._core.multiarray", "scalar"): ("numpy.core.multiarray", "scalar")}
    path = _redump(tree, tmp_path / "network-snapshot-000000.pkl", 3, rename)
    raw = path.read_bytes()
    assert b"numpy.core.multiarray\nscalar" in raw and b"numpy._core" not in raw
    assert b"_rebuild_parameter_with_state" in raw and b"cbuiltins\nset\n" in raw

    loaded = load_network_pickle(path)
    g_ref = np.load(data_dir / SG2 / "tiny_G_state.npz")
    _assert_same_state(loaded["G_ema"].state_dict, g_ref)
    _assert_same_state(loaded["D"].state_dict, np.load(data_dir / SG2 / "tiny_D_state.npz"))
    assert loaded["training_set_kwargs"]["extra"] == {"a": 1, "nested": {"b": [1, 2]}}
    assert type(loaded["training_set_kwargs"]["extra"]["nested"]) is dict
    aug = loaded["augment_pipe"]
    assert aug.class_name == "training.augment.AugmentPipe" and aug.init_kwargs == {"xflip": 1, "rotate90": 1}
    assert list(aug.state_dict) == ["p", "Hz_geom"]   # non-persistent 'tmp' and None 'unused' left out
    assert _same(aug.state_dict["p"], g_ref["mapping.w_avg"])
    assert _same(aug.state_dict["Hz_geom"], g_ref["mapping.fc0.bias"])


# --------------------------------------------------------------------------------------------
# torch.save files.
# --------------------------------------------------------------------------------------------

def _torch_reference(path):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, weights_only=True, map_location="cpu")


def test_rosinality_zip_and_legacy_match_torch(data_dir):
    zip_path, legacy_path = data_dir / ROS / "res32_g_ema.pt", data_dir / ROS / "res32_convert_weight_legacy.pt"
    assert sniff_format(zip_path) == "torch-zip" and sniff_format(legacy_path) == "torch-legacy"
    with zipfile.ZipFile(zip_path) as zf:
        assert b"cuda:0" in zf.read("res32_g_ema/data.pkl")
    ckpt, legacy = load_torch(zip_path), load_torch(legacy_path)
    ref_ckpt, ref_legacy = _torch_reference(zip_path), _torch_reference(legacy_path)

    assert list(ckpt) == list(ref_ckpt) == ["g", "d", "g_ema", "args", "ada_aug_p"]
    for key in ["g", "d", "g_ema"]:
        assert isinstance(ckpt[key], collections.OrderedDict)
        _assert_same_state(ckpt[key], {k: _torch_to_numpy(v) for k, v in ref_ckpt[key].items()})
    assert isinstance(ckpt["args"], types.SimpleNamespace)   # argparse itself is not needed
    assert vars(ckpt["args"]) == vars(ref_ckpt["args"]) and ckpt["args"].path == "DATASET.lmdb"
    assert ckpt["ada_aug_p"] == 0.0

    # The legacy file stores 21 tensors with permuted strides: honouring them is the point.
    assert sum(not t.is_contiguous() for t in ref_legacy["g_ema"].values()) == 21
    _assert_same_state(legacy["g_ema"], {k: _torch_to_numpy(v) for k, v in ref_legacy["g_ema"].items()})
    _assert_same_state(legacy["g_ema"], ckpt["g_ema"])
    assert _same(legacy["latent_avg"], _torch_to_numpy(ref_legacy["latent_avg"]))
    assert _same(legacy["latent_avg"], np.load(data_dir / ROS / "res32_vectors.npz")["mean_latent"][0])


def _small_state_dict():
    """float32/float16/bfloat16/int64/..., a non-contiguous view, views sharing one storage."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=gen)
    param = torch.nn.Parameter(torch.randn(3, generator=gen))
    param.note = "has state"   # -> _rebuild_parameter_with_state
    return collections.OrderedDict([
        ("f32", torch.randn(4, 5, generator=gen)),
        ("f16", torch.randn(7, generator=gen).half()),
        ("bf16", torch.randn(2, 3, generator=gen).bfloat16()),
        ("i64", torch.arange(-5, 5)),
        ("i32", torch.arange(6, dtype=torch.int32).reshape(2, 3)),
        ("i8", torch.tensor([-128, 0, 127], dtype=torch.int8)),
        ("u8", torch.tensor([0, 255], dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("f64", torch.randn(2, generator=gen, dtype=torch.float64)),
        ("u16", torch.tensor([1, 65535], dtype=torch.int32).to(torch.uint16)),   # _rebuild_tensor_v3
        ("scalar", torch.tensor(3.5)),
        ("base", base),
        ("transposed_slice", base.t()[2:5, 1:]),     # non-contiguous, storage offset 10
        ("shared_row", base[3]),                     # shares base's storage, offset 24
        ("empty", torch.zeros(0, 3)),
        ("param", param),
    ])


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pytorch_model_bin_matches_torch(zip_format, tmp_path):
    path = tmp_path / "pytorch_model.bin"
    state = _small_state_dict()
    if not zip_format:
        # torch 2.13 writes uint16 into legacy files (UntypedStorage + _rebuild_tensor_v3) but its own
        # loader cannot read them back: check that tensor against the in-memory value instead.
        u16 = {"u16": state.pop("u16")}
        torch.save(u16, tmp_path / "u16.pt", _use_new_zipfile_serialization=False)
        assert b"_rebuild_tensor_v3" in (tmp_path / "u16.pt").read_bytes()
        assert _same(load_torch(tmp_path / "u16.pt")["u16"], np.array([1, 65535], np.uint16))
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    assert sniff_format(path) == ("torch-zip" if zip_format else "torch-legacy")
    raw = path.read_bytes()
    assert b"_rebuild_parameter_with_state" in raw and b"BFloat16Storage" in raw
    assert (b"_rebuild_tensor_v3" in raw) == zip_format
    ref = torch.load(path, weights_only=True)
    assert not ref["transposed_slice"].is_contiguous() and ref["transposed_slice"].storage_offset() == 10
    assert ref["shared_row"].untyped_storage().data_ptr() == ref["base"].untyped_storage().data_ptr()

    loaded = load_torch(path)
    assert isinstance(loaded, collections.OrderedDict)
    _assert_same_state(loaded, {k: _torch_to_numpy(v.detach()) for k, v in ref.items()})
    assert loaded["bf16"].dtype == ml_dtypes.bfloat16 and loaded["f16"].dtype == np.float16
    loaded["shared_row"][0] = 123.0   # copies: writing one tensor leaves the others alone
    assert loaded["base"][3, 0] != 123.0
    assert load_state_dict(path).keys() == loaded.keys()


def test_big_endian_zip_record(tmp_path):
    """A zip whose byteorder record says 'big' (written on s390x) gives the same values."""
    state = {"a": torch.randn(3, 4), "b": torch.randn(5).t()}
    little = tmp_path / "little.pt"
    torch.save(state, little)
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in name:
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            dst.writestr(name, data)
    loaded = load_torch(big)
    for key, value in state.items():
        assert _same(loaded[key], value.numpy())


def test_state_dict_from_each_format(data_dir, tmp_path):
    npz = data_dir / SG2 / "tiny_G_state.npz"
    _assert_same_state(load_state_dict(npz), np.load(npz))
    assert list(load_state_dict(npz, key="mapping")) == ["w_avg", "fc0.weight", "fc0.bias", "fc1.weight", "fc1.bias"]
    _assert_same_state(load_state_dict(data_dir / SG2 / STRIPPED, key="G_ema"), np.load(npz))

    clip = data_dir / "clip" / "tiny-clip-hf" / "model.safetensors"
    import safetensors.numpy
    assert sniff_format(clip) == "safetensors"
    _assert_same_state(load_state_dict(clip), safetensors.numpy.load_file(str(clip)))

    import safetensors.torch   # bf16 is what safetensors.numpy cannot read
    tensors = {"w": torch.randn(3, 2).bfloat16(), "b": torch.arange(4), "h": torch.randn(2).half()}
    safetensors.torch.save_file(tensors, tmp_path / "m.safetensors")
    loaded = load_state_dict(tmp_path / "m.safetensors")
    assert set(loaded) == set(tensors)
    for name, t in tensors.items():
        assert _same(loaded[name], _torch_to_numpy(t))

    ros = data_dir / ROS / "res32_g_ema.pt"
    assert list(load_state_dict(ros, key="g_ema")) == list(load_torch(ros)["g_ema"])
    with pytest.raises(CheckpointFormatError, match="pass key="):
        load_state_dict(ros)
    with pytest.raises(CheckpointFormatError, match="has no entry 'G_ema'"):
        load_state_dict(ros, key="G_ema")

    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    assert sniff_format(plain) == "pickle" and load_torch(plain) == {"a": 1}


# --------------------------------------------------------------------------------------------
# Security: nothing from a checkpoint runs.
# --------------------------------------------------------------------------------------------

from pickle_tools import evil_pickle as _evil_pickle  # noqa: E402


def _payloads(sentinel):
    quoted = shlex.quote(str(sentinel))
    code = f"open({str(sentinel)!r}, 'w').close()"
    return {
        "os.system": ("os", "system", (f"touch {quoted}",)),
        "posix.system": ("posix", "system", (f"touch {quoted}",)),
        "builtins.eval": ("builtins", "eval", (code,)),
        "builtins.exec": ("builtins", "exec", (code,)),
        "subprocess.Popen": ("subprocess", "Popen", (["touch", str(sentinel)],)),
    }


def _legacy_file(object_pickle: bytes, keys=()) -> bytes:
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join([pickle.dumps(pr._TORCH_MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps(sys_info, 2),
                     object_pickle, pickle.dumps(list(keys), 2)])


def _zip_file(path, data_pkl: bytes, folder="archive"):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{folder}/data.pkl", data_pkl)
        zf.writestr(f"{folder}/byteorder", "little")
        zf.writestr(f"{folder}/version", "3\n")
    return path


def _run_for_real(payload):
    """Positive control: what an unrestricted pickle.loads does with the same bytes."""
    result = pickle.loads(payload)
    if hasattr(result, "wait"):
        result.wait()


@pytest.mark.parametrize("evil", ["os.system", "posix.system", "builtins.eval", "builtins.exec", "subprocess.Popen"])
def test_evil_globals_are_refused_in_every_container(evil, data_dir, tmp_path):
    sentinel = tmp_path / "SENTINEL"
    payload = _evil_pickle(*_payloads(sentinel)[evil])

    files = {}
    files["plain"] = tmp_path / "plain.pkl"
    files["plain"].write_bytes(payload)
    files["zip"] = _zip_file(tmp_path / "model.pt", payload)
    files["legacy"] = tmp_path / "legacy.pt"
    files["legacy"].write_bytes(_legacy_file(payload))
    tree = _record(data_dir)
    _meta(tree["G"])["state"]["evil"] = _Call(_Ref(*evil.rsplit(".", 1)), _payloads(sentinel)[evil][2])
    files["network"] = _redump(tree, tmp_path / "network.pkl", 4)
    tree = _record(data_dir)
    blob_call = next(c for c in _walk_calls(tree["D"]) if c.ref.name == "_load_from_bytes")
    blob_call.args = (_legacy_file(payload),)
    files["storage-blob"] = _redump(tree, tmp_path / "network_blob.pkl", 4)

    for kind, path in files.items():
        loaders = [load_network_pickle] if kind.startswith(("network", "storage")) else [load_torch, load_state_dict]
        for load in loaders:
            with pytest.raises(UnsafeCheckpointError) as info:
                load(path)
            message = str(info.value)
            assert f"'{evil}'" in message and str(path) in message, message
            if kind == "storage-blob":
                assert "storage blob" in message
            assert not sentinel.exists()

    _run_for_real(payload)   # the payload is live: unrestricted unpickling does create the file
    assert sentinel.exists()


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_reduce_based_object_is_refused(protocol, tmp_path):
    sentinel = tmp_path / "SENTINEL"
    evil = _Evil(f"touch {shlex.quote(str(sentinel))}")
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": evil}, protocol=protocol))
    with pytest.raises(UnsafeCheckpointError, match=r"'(posix|nt)\.system'"):
        load_torch(path)
    for zip_format in [True, False]:   # the same object inside a real torch.save file
        torch.save({"w": torch.ones(2), "x": evil}, path, _use_new_zipfile_serialization=zip_format)
        with pytest.raises(UnsafeCheckpointError, match=r"'(posix|nt)\.system'"):
            load_torch(path)
    assert not sentinel.exists()
    torch.load(path, weights_only=False)   # positive control: torch's unrestricted loader runs it
    assert sentinel.exists()


def test_persistent_objects_off_the_list_are_refused(data_dir, tmp_path):
    tree = _record(data_dir)
    _meta(_meta(tree["G"])["state"]["_modules"]["mapping"])["class_name"] = "Backdoor"
    with pytest.raises(UnsafeCheckpointError, match="persistent class 'Backdoor'"):
        load_network_pickle(_redump(tree, tmp_path / "a.pkl", 4))
    tree = _record(data_dir)
    tree["G"].ref = _Ref("torch_utils.persistence", "persistent_class")
    with pytest.raises(UnsafeCheckpointError, match=r"'torch_utils\.persistence\.persistent_class'"):
        load_network_pickle(_redump(tree, tmp_path / "b.pkl", 4))
    with pytest.raises(CheckpointFormatError, match="use load_network_pickle|read it with load_network_pickle"):
        load_torch(data_dir / SG2 / STRIPPED)


def test_embedded_source_is_never_run(data_dir, tmp_path, monkeypatch):
    sentinel = tmp_path / "SENTINEL"
    source = f"open({str(sentinel)!r}, 'w').write('module_src ran')\nclass Generator: pass\n"
    tree = _record(data_dir)
    for call in _walk_calls(tree):
        if call.ref.name == "_reconstruct_persistent_obj":
            call.args[0]["module_src"] = source
    path = _redump(tree, tmp_path / "network.pkl", 4)

    def forbidden(*args, **kwargs):
        raise AssertionError("the reader tried to run code")
    real_exec = builtins.exec
    for name in ["exec", "eval", "compile"]:
        monkeypatch.setattr(builtins, name, forbidden)
    loaded = load_network_pickle(path)
    monkeypatch.undo()
    assert not sentinel.exists()
    _assert_same_state(loaded["G_ema"].state_dict, np.load(data_dir / SG2 / "tiny_G_state.npz"))
    assert all(source not in repr(vars(net)) for net in loaded.values() if net is not None)

    real_exec(source, {})   # positive control: the source does write the file when run
    assert sentinel.exists()


@pytest.mark.parametrize("payload, refused", [
    # BUILD on an allowed stand-in (would re-program it for later loads)
    (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x0c\x00\x00\x00__defaults__)sb.",
     "setting the state of a function"),
    # REDUCE of something that is not an allowed callable
    (b"\x80\x02})R.", "a call of a dict object"),
    # NEWOBJ of an allowed global that is not a plain container
    (b"\x80\x02cnumpy\ndtype\n)\x81.", "creating a _DtypeSpec object"),
    (b"\x80\x02ctorch\nFloatStorage\n)R.", "a call of a _StorageType object"),
    # EXT1: copyreg's extension registry / cache would bypass find_class
    (b"\x80\x02\x82\x01.", "extension code 1"),
])
def test_stand_ins_cannot_be_repurposed(payload, refused, tmp_path):
    defaults = pr._rebuild_tensor_v2.__defaults__
    path = tmp_path / "x.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafeCheckpointError, match=refused):
        load_torch(path)
    assert pr._rebuild_tensor_v2.__defaults__ == defaults


def test_tensor_reaching_past_its_storage_is_refused(data_dir, tmp_path):
    """A size/stride that points outside the storage would read foreign memory through as_strided."""
    tree = _record(data_dir)
    call = next(c for c in _walk_calls(tree["G"]) if c.ref.name == "_rebuild_tensor_v2")
    storage, offset, size, stride, *rest = call.args
    call.args = (storage, offset, size, tuple(s * 1000 for s in stride), *rest)
    with pytest.raises(CheckpointFormatError, match="reaches past the end of its storage"):
        load_network_pickle(_redump(tree, tmp_path / "net.pkl", 4))


# --------------------------------------------------------------------------------------------
# Broken files: only CheckpointFormatError escapes, with the path in a one-line message.
# --------------------------------------------------------------------------------------------

def _broken_files(data_dir, tmp_path):
    files = {"empty": b"", "text": b"hello, this is not a checkpoint\n" * 20,
             "random": np.random.RandomState(1).bytes(4096)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/weights.txt", "no data.pkl here")
    files["zip-without-data.pkl"] = buffer.getvalue()
    sources = {"nvidia": data_dir / SG2 / STRIPPED, "zip": data_dir / ROS / "res32_g_ema.pt",
               "legacy": data_dir / ROS / "res32_convert_weight_legacy.pt",
               "safetensors": data_dir / "clip" / "tiny-clip-hf" / "model.safetensors",
               "npz": data_dir / SG2 / "tiny_G_state.npz"}
    for kind, source in sources.items():
        raw = source.read_bytes()
        for cut in [len(raw) // 2, len(raw) - 3, 20]:
            files[f"{kind}-cut-at-{cut}"] = raw[:cut]
    out = {}
    for name, raw in files.items():
        out[name] = tmp_path / f"{name}.bin"
        out[name].write_bytes(raw)
    out["missing"] = tmp_path / "does-not-exist.pt"
    out["directory"] = tmp_path
    return out


def test_broken_files_raise_format_errors(data_dir, tmp_path):
    files = _broken_files(data_dir, tmp_path)
    assert np.random.RandomState(1).bytes(9)[:1] not in (b"\x80", b"P")   # 'random' is not a pickle/zip
    must_fail_sniff = {"empty", "text", "random", "zip-without-data.pkl", "missing", "directory"}
    for name, path in files.items():
        for load in [load_torch, load_network_pickle, load_state_dict, sniff_format]:
            if load is sniff_format and name not in must_fail_sniff and not name.startswith(("zip-", "npz-")):
                assert sniff_format(path) in pr.FORMATS   # a cut pickle still starts like one: the loaders catch it
                continue
            with pytest.raises(CheckpointFormatError) as info:
                load(path)
            message = str(info.value)
            assert str(path) in message and "\n" not in message, (name, load.__name__, message)
    with pytest.raises(CheckpointFormatError, match="empty file"):
        sniff_format(files["empty"])
    with pytest.raises(CheckpointFormatError, match="without <folder>/data.pkl"):
        load_torch(files["zip-without-data.pkl"])
    cut = next(p for n, p in files.items() if n.startswith("legacy-cut-at-") and not n.endswith("-20"))
    with pytest.raises(CheckpointFormatError, match="truncated"):
        load_torch(cut)


# --------------------------------------------------------------------------------------------
# Limits: small hostile files that would hang the reader or exhaust memory are refused (issue 11).
# --------------------------------------------------------------------------------------------

from pickle_tools import dag, dict_with_key_pickle, minimal_network_pickle, torch_zip, zip_bomb_pt  # noqa: E402


def _containers(tmp_path, obj_pickle: bytes) -> dict:
    """The same object pickle as a torch-zip, torch-legacy and plain pickle file."""
    return {"zip": torch_zip(tmp_path / "a.pt", obj_pickle),
            "legacy": _write(tmp_path / "b.pt", _legacy_file(obj_pickle)),
            "pickle": _write(tmp_path / "c.pkl", obj_pickle)}


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("shape", ["list", "tuple", "dict", "namespace-in-dict", "deep-in-state-dict"])
def test_shared_reference_dag_is_refused_not_walked(shape, tmp_path, monkeypatch):
    """~1 KB pickles whose values share references: 2^60 leaves when walked (json, numpy, repr ...).
    (A lower MAX_NODES keeps this fast; the CLI table runs the default limits in subprocesses.)"""
    monkeypatch.setattr(pr, "MAX_NODES", 50_000)
    d = dag(60, tuple if shape == "tuple" else list)
    if shape == "dict":
        d = {}
        for _ in range(60):
            d = {"a": d, "b": d}
    obj = {"g_ema": {"style.1.weight": d}} if shape == "deep-in-state-dict" else \
        {"args": argparse.Namespace(x=d)} if shape == "namespace-in-dict" else d
    data = pickle.dumps(obj, protocol=2)
    assert len(data) < 2000
    for kind, path in _containers(tmp_path, data).items():
        with pytest.raises(CheckpointFormatError, match="more than 50,000 values when walked"):
            load_torch(path)
        with pytest.raises(CheckpointFormatError, match="values when walked"):
            load_state_dict(path, key="g_ema")


def test_shared_reference_dag_in_nvidia_init_kwargs(tmp_path, monkeypatch):
    monkeypatch.setattr(pr, "MAX_NODES", 50_000)
    path = minimal_network_pickle({"z_dim": 4, "mapping_kwargs": {"x": dag(60)}}, tmp_path / "net.pkl")
    assert path.stat().st_size < 1000 and sniff_format(path) == "nvidia-pkl"
    with pytest.raises(CheckpointFormatError, match="values when walked"):
        load_network_pickle(path)


def test_nesting_deeper_than_the_limit(tmp_path):
    deep = []
    for _ in range(pr.MAX_DEPTH + 5):
        deep = [deep]
    for path in _containers(tmp_path, pickle.dumps({"x": deep}, protocol=2)).values():
        with pytest.raises(CheckpointFormatError, match="nested deeper than 100 levels"):
            load_torch(path)


@pytest.mark.parametrize("how", ["dict-key", "set-reduce", "set-additems", "frozenset"])
def test_dict_keys_and_set_elements_are_bounded_before_hashing(how, tmp_path):
    """Hashing a tuple walks it: a DAG tuple as a key would never finish (pickle.loads hangs on these)."""
    body = pickle.dumps(dag(60, tuple), protocol=2)[2:-1]
    data = {"dict-key": dict_with_key_pickle(dag(60, tuple)),
            "set-reduce": b"\x80\x02c__builtin__\nset\n]" + body + b"a\x85R.",
            "set-additems": b"\x80\x04\x8f(" + body + b"\x90.",
            "frozenset": b"\x80\x04(" + body + b"\x91."}[how]
    for path in _containers(tmp_path, data).values():
        with pytest.raises(CheckpointFormatError, match="a dict key or set element holds more than 10,000 values"):
            load_torch(path)
    small = {"dict-key": {(1, 2): 3}, "set-reduce": {(1, 2)}, "set-additems": {(1, 2)}, "frozenset": frozenset({3})}
    assert load_torch(_write(tmp_path / "ok.pkl", pickle.dumps(small[how], protocol=4))) == small[how]


def test_opcode_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(pr, "MAX_OPS", 100_000)
    path = _write(tmp_path / "ops.pkl", b"\x80\x02" + b"N0" * 60_000 + b"N.")
    with pytest.raises(CheckpointFormatError, match="more than 100,000 opcodes"):
        load_torch(path)
    assert load_torch(_write(tmp_path / "fine.pkl", b"\x80\x02" + b"N0" * 1000 + b"N.")) is None


def test_byte_budget_bounds_tensors_built_from_shared_storage(tmp_path, monkeypatch):
    """100 stride-0 views of one 4-byte storage: 400 MB of tensors from a tiny file."""
    base = torch.zeros(1)
    path = tmp_path / "expand.pt"
    torch.save([base.expand(1_000_000) for _ in range(100)], path)
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(pr, "MIN_BYTES", 64 << 20)
    with pytest.raises(CheckpointFormatError, match="past .* bytes .* the reader's limit"):
        load_torch(path)
    monkeypatch.setattr(pr, "MIN_BYTES", 1 << 30)
    assert len(load_torch(path)) == 100   # within the default budget: read as before


def test_zip_bomb_is_refused_by_its_declared_size(tmp_path):
    path = zip_bomb_pt(tmp_path / "bomb.pt")  # ~2 MB, data.pkl inflates to 2 GiB
    assert path.stat().st_size < 4 << 20 and sniff_format(path) == "torch-zip"
    with pytest.raises(CheckpointFormatError, match="declares 2,147,483,648 bytes uncompressed.*zip bomb"):
        load_torch(path)


def test_zip_bomb_below_the_member_limit_is_streamed_not_inflated(tmp_path, monkeypatch):
    path = zip_bomb_pt(tmp_path / "bomb.pt", inflated=256 << 20)
    inflated = []
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = real_read(self, n)
        inflated.append(len(data))
        return data
    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    with pytest.raises(CheckpointFormatError):   # zeros are not pickle opcodes
        load_torch(path)
    assert sum(inflated) <= 16 << 20


def test_tensor_count_limit_of_a_persistent_network(data_dir, monkeypatch):
    monkeypatch.setattr(pr, "MAX_TENSORS", 10)
    with pytest.raises(CheckpointFormatError, match="holds more than 10 tensors"):
        load_network_pickle(data_dir / SG2 / STRIPPED)
