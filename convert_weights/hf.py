"""Shared pieces of the transformer converters: reading Hugging Face folders and state-dict files,
writing model folders with extra files. (Tensor names are mapped by `convert_weights.names`.)
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterable, Mapping

import numpy as np

from jax_inpaint.models import folders as checkpoint
from jax_inpaint.errors import InputError

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"


# ---------------------------------------------------------------------------------------------
# Reading sources.

def read_json(path: str, what: str) -> dict:
    try:
        data = checkpoint.load_json(path)
    except FileNotFoundError:
        raise InputError(f"{what}: no {os.path.basename(path)} in {os.path.dirname(path) or '.'}") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable JSON ({str(e)[:200]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def read_weights_file(path: str) -> dict[str, np.ndarray]:
    """{name: array} of one .safetensors (safetensors' numpy API) or torch / npz state-dict file."""
    from convert_weights import pickle_reader

    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        try:
            return dict(load_file(path))
        except Exception:  # e.g. bfloat16, which plain numpy lacks: read it with ml_dtypes instead
            return pickle_reader.load_state_dict(path)
    if path.endswith(".npz"):
        return pickle_reader.load_state_dict(path)
    obj = pickle_reader.load_torch(path)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # training checkpoints (open_clip's epoch_N.pt, lightning)
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise InputError(f"{path}: not a flat state dict (entries that are not tensors: {', '.join(bad[:8])})")
    return dict(obj)


def strip_prefix(state: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Drop `prefix` from every name when all names carry it (DataParallel's 'module.')."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def read_hf_folder(src: str, what: str) -> tuple[dict, dict[str, np.ndarray], list[str]]:
    """A Hugging Face checkpoint folder -> (config.json, {name: array}, weight files read)."""
    src = os.fspath(src)
    if not os.path.isdir(src):
        raise InputError(f"{src}: not a folder (expected a Hugging Face checkpoint folder with config.json)")
    config = read_json(os.path.join(src, CONFIG_FILE), what)
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if os.path.isfile(os.path.join(src, single)):
            files = [single]
            break
        if os.path.isfile(os.path.join(src, index)):
            weight_map = read_json(os.path.join(src, index), what).get("weight_map", {})
            files = sorted(set(weight_map.values()))
            break
    else:
        raise InputError(f"{src}: no model.safetensors or pytorch_model.bin (nor a sharded index of either)")
    state: dict[str, np.ndarray] = {}
    for name in files:
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            raise InputError(f"{src}: the index names {name}, which is missing")
        state.update(read_weights_file(path))
    return config, state, files


def read_preprocessor(folder: str | None) -> dict | None:
    """preprocessor_config.json of a folder, or None when the folder has none."""
    if folder is None:
        return None
    path = os.path.join(folder, PREPROCESSOR_FILE)
    return read_json(path, folder) if os.path.isfile(path) else None


def processor_size(value, what: str):
    """HF `size` / `crop_size` -> ('shortest_edge', edge) or ('exact', (h, w))."""
    if isinstance(value, (int, float)):
        return "scalar", int(value)
    if isinstance(value, Mapping):
        if "shortest_edge" in value:
            return "shortest_edge", int(value["shortest_edge"])
        if "height" in value and "width" in value:
            return "exact", (int(value["height"]), int(value["width"]))
    raise InputError(f"{what}: unsupported size {value!r} in {PREPROCESSOR_FILE}")


# ---------------------------------------------------------------------------------------------
# Writing.

def write_folder(dest, *, kind: str, config: dict, params: Mapping, source: dict, overwrite: bool = False,
                 extra_files: Mapping[str, str] | None = None, keep=()) -> str:
    """write_model_folder plus extra files ({relative dest path: source path}), atomically.

    An existing `dest` is replaced only if `checkpoint.check_destination` allows it (`keep`: the
    source paths, which are never replaced or removed)."""
    dest = checkpoint.check_destination(dest, overwrite=overwrite, keep=keep)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    staging_root = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.staging-", dir=parent)
    try:
        staging = checkpoint.write_model_folder(os.path.join(staging_root, "model"), kind=kind, config=config,
                                                trees={"params": params}, source=source)
        for rel, path in (extra_files or {}).items():
            target = os.path.join(staging, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(path, target)
        checkpoint.replace_folder(staging, dest, overwrite=overwrite, keep=keep)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    return dest


def files_present(folder: str, names: Iterable[str]) -> list[str]:
    return [n for n in names if os.path.isfile(os.path.join(folder, n))]


def checked_preprocess(parse, pp, image_size, what):
    """`parse(pp, image_size, what)` (a preprocessor_config.json -> ImagePreprocess), with a bad value in
    the file reported as one line naming it."""
    try:
        return parse(pp, image_size, what)
    except InputError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        raise InputError(f"{what}: {PREPROCESSOR_FILE}: bad value ({type(e).__name__}: {str(e)[:200]})") from None
