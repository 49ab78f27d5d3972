"""Shared pieces of the transformer converters: reading Hugging Face folders, name tables, folders out.

A conversion table goes from OUR parameter names to the source's: each rule is
``(our name regex, source name template(s), transform)``. For every parameter the architecture
expects, the first matching rule names the source tensor (the first template present, when a
layout has several spellings); its shape is checked against what the transform needs, then it is
transformed. Every source tensor must be used (or be on the short ignore list of the converter),
and every parameter filled; otherwise one InputError lists every missing, unused and mis-shaped
tensor by its SOURCE name.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from jax_inpaint.models import folders as checkpoint
from jax_inpaint.errors import InputError

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"


# ---------------------------------------------------------------------------------------------
# Transforms: source layout -> ours, and the source shape a given parameter shape needs.

@dataclasses.dataclass(frozen=True)
class Transform:
    name: str
    apply: Callable[[np.ndarray], np.ndarray]
    source_shape: Callable[[tuple], tuple]


SAME = Transform("same", lambda a: a, lambda s: tuple(s))
DENSE = Transform("transpose", lambda a: a.T, lambda s: tuple(reversed(s)))  # torch Linear [out, in] -> [in, out]
CONV = Transform("OIHW->HWIO", lambda a: a.transpose(2, 3, 1, 0), lambda s: (s[3], s[2], s[0], s[1]))


def squeeze_leading(k: int) -> Transform:
    """[1, ..., 1, *shape] -> shape (e.g. ViT's cls_token [1, 1, D] -> [D])."""
    return Transform(f"squeeze{k}", lambda a: a.reshape(a.shape[k:]), lambda s: (1,) * k + tuple(s))


def chunk(i: int, n: int, inner: Transform = SAME) -> Transform:
    """Part i of n along axis 0, then `inner` (OpenAI's fused in_proj_weight [3D, D] -> q, k, v)."""
    def apply(a):
        size = a.shape[0] // n
        return inner.apply(a[i * size:(i + 1) * size])

    def source_shape(s):
        part = inner.source_shape(s)
        return (part[0] * n,) + tuple(part[1:])

    return Transform(f"chunk{i}/{n}+{inner.name}", apply, source_shape)


Rule = tuple  # (our name regex, str | tuple[str, ...] source template(s), Transform)


def convert_state(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple], rules: Sequence[Rule], what: str,
                  ignore: Mapping[str, Callable[[str, np.ndarray], str | None]] | None = None) -> dict[str, np.ndarray]:
    """Fill every expected parameter {our.dotted.name: shape} from `state` through `rules`.

    ignore: {source name regex: check(name, array) -> None if fine, else a complaint}: tensors the
    architecture does not use (buffers such as position_ids), accepted only if their check passes.
    Returns {our name: float32 array}; raises InputError listing every problem.
    """
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()
    missing, wrong = [], []
    for name, shape in expected.items():
        for pattern, templates, transform in rules:
            m = re.fullmatch(pattern, name)
            if m:
                break
        else:
            raise RuntimeError(f"{what}: no conversion rule for parameter {name}")  # a bug of the table, not input
        candidates = [m.expand(t) for t in ((templates,) if isinstance(templates, str) else templates)]
        src = next((c for c in candidates if c in state), None)
        if src is None:
            missing.append(candidates[0] + (f" (or {', '.join(candidates[1:])})" if len(candidates) > 1 else ""))
            continue
        value = np.asarray(state[src])
        want = transform.source_shape(tuple(shape))
        used.add(src)
        if value.shape != want:
            wrong.append(f"{src}: shape {value.shape}, expected {want}")
            continue
        out[name] = np.array(transform.apply(value), dtype=np.float32, order="C")  # (0-d stays 0-d)
    unused, bad_ignored = [], []
    for src in sorted(set(state) - used):
        check = next((fn for p, fn in (ignore or {}).items() if re.fullmatch(p, src)), None)
        if check is None:
            unused.append(src)
        elif (complaint := check(src, np.asarray(state[src]))) is not None:
            bad_ignored.append(f"{src}: {complaint}")
    if missing or wrong or unused or bad_ignored:
        lines = [f"{what}: the tensors do not match the architecture its config describes"]
        if missing:
            lines.append(f"  missing tensors ({len(missing)}): " + ", ".join(missing))
        if wrong:
            lines.append(f"  wrong shape ({len(wrong)}): " + "; ".join(wrong))
        if unused:
            lines.append(f"  unexpected tensors ({len(unused)}): " + ", ".join(unused))
        if bad_ignored:
            lines.append("  bad buffers: " + "; ".join(bad_ignored))
        raise InputError(lines[0] + ": " + "; ".join(line.strip() for line in lines[1:]))
    return out


def expected_shapes(tree) -> dict[str, tuple]:
    """Nested dict of arrays / ShapeDtypeStructs -> {'a.b.c': shape}."""
    return {k: tuple(v.shape) for k, v in checkpoint.flatten(tree).items()}


def arange_buffer(name: str, value: np.ndarray) -> str | None:
    """Check for HF's position_ids buffers: [1, L] (or [L]) equal to 0 .. L-1."""
    flat = value.reshape(-1)
    if value.ndim in (1, 2) and np.array_equal(flat, np.arange(flat.size)):
        return None
    return f"expected 0, 1, ..., {flat.size - 1}"


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
