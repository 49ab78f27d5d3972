"""Model folders: a JSON description plus one orbax checkpoint per named tree.

A model folder written by `convert_weights` looks like::

    DEST/
      model.json        {"format": "jax-inpaint", "format_version": 1, "kind": "...",
                         "config": {...}, "trees": ["G", "D"], "source": {...}}
      G/                orbax checkpoint of a nested dict of float32 arrays
      D/                (optional further trees)

Loading is strict: `check_tree` compares a loaded tree with the shapes a module expects and
raises one error that lists every missing, unexpected and mis-shaped entry.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
import types
import typing
from typing import Any, Iterable, Mapping

import numpy as np

FORMAT = "jax-inpaint"
FORMAT_VERSION = 1
META_FILE = "model.json"

Tree = Mapping[str, Any]


from jax_inpaint import files
from jax_inpaint.errors import InputError, brief


class ModelFolderError(InputError):
    """A model folder is missing, incomplete or of the wrong kind."""


MAX_JSON_BYTES = 64 << 20


def load_json(path: str | os.PathLike):
    """A small JSON file (model.json, config.json, constructor kwargs) read safely: a regular file (a
    FIFO would block), at most 64 MiB, nesting that json can parse. Raises OSError or ValueError
    (with the reason) for the caller to turn into its one-line error."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError("not a regular file")
    with open(path, "rb") as f:
        data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"larger than {MAX_JSON_BYTES >> 20} MiB")
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def flatten(tree: Tree, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b.c': leaf}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{'a.b.c': leaf} -> nested dict."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def check_tree(expected: Tree, actual: Tree, what: str) -> None:
    """Raise if `actual` lacks, adds or mis-shapes any entry of `expected` (shape-bearing leaves)."""
    exp = {k: tuple(np.shape(v)) for k, v in flatten(expected).items()}
    act = {k: tuple(np.shape(v)) for k, v in flatten(actual).items()}
    missing = sorted(set(exp) - set(act))
    unexpected = sorted(set(act) - set(exp))
    shapes = sorted(f"{k}: expected {exp[k]}, got {act[k]}" for k in set(exp) & set(act) if exp[k] != act[k])
    if missing or unexpected or shapes:
        lines = [f"{what}: parameters do not match the architecture"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(unexpected))
        if shapes:
            lines.append(f"  wrong shape ({len(shapes)}): " + "; ".join(shapes))
        raise ModelFolderError(lines[0] + ": " + "; ".join(line.strip() for line in lines[1:]))


def write_model_folder(dest: str | os.PathLike, *, kind: str, config: dict, trees: Mapping[str, Tree],
                       source: dict | None = None, overwrite: bool = False,
                       keep: Iterable[str | os.PathLike] = ()) -> str:
    """Write `trees` (name -> nested dict of arrays) and `config` to `dest`, atomically.

    Everything is written into a temporary sibling folder that is renamed to `dest` only when
    complete, so an interrupted or failed conversion leaves nothing behind. An existing `dest` is
    replaced only if `check_destination` allows it (`keep`: the source paths, never replaced).
    """
    import orbax.checkpoint as ocp

    dest = check_destination(dest, overwrite=overwrite, keep=keep)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.tmp-", dir=parent)
    try:
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "config": config,
                "trees": sorted(trees), "source": source or {}}
        with ocp.StandardCheckpointer() as ckpt:
            for name, tree in trees.items():
                arrays = {k: np.asarray(v) for k, v in flatten(tree).items()}
                ckpt.save(os.path.join(tmp, name), unflatten(arrays))
            ckpt.wait_until_finished()
        files.write_json(os.path.join(tmp, META_FILE), meta, sort_keys=True)
        replace_folder(tmp, dest, overwrite=overwrite, keep=keep)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# ---------------------------------------------------------------------------------------------
# Replacing a model folder: only one we wrote, never anything else.

# What an orbax checkpoint folder holds (StandardCheckpointer, OCDBT): anything else in a tree
# folder was not written by us.
_ORBAX_ENTRY = re.compile(r"_[A-Z_]+|commit_success\.txt|manifest\.ocdbt|d|ocdbt\.process_\d+|array_metadatas|"
                          r"_sharding|descriptor")
# Folders a converter adds beside the trees ({kind: {name: allowed file names}}).
EXTRA_FOLDERS = {"clip": {"tokenizer": {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "added_tokens.json"}}}


def _inside(path: str, folder: str) -> bool:
    """Is `path` equal to `folder` or inside it (both real, absolute paths)?"""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_destination(dest: str | os.PathLike, *, overwrite: bool, keep: Iterable[str | os.PathLike] = (),
                      what: str = "DEST") -> str:
    """May a model folder be written at `dest`? Returns its absolute path, or raises a one-line error.

    A missing `dest` may always be written (its nearest existing parent must be a writable folder).
    An existing one only with `overwrite`, and only if it is a model folder written by jax-inpaint
    (`model.json` of our format, and nothing but the trees and folders we write); never a
    symbolic link, the root or home folder, the current folder or one above it, nor a folder that
    is or holds one of `keep` (the source, the tokenizer ...). Nothing is touched here.
    """
    dest = os.path.abspath(os.fspath(dest))
    if not os.path.lexists(dest):
        parent = os.path.dirname(dest)
        while not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise ModelFolderError(f"{what} {dest}: {parent} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ModelFolderError(f"{what} {dest}: cannot write in {parent} (permission denied)")
        return dest
    if not overwrite:
        raise ModelFolderError(f"{dest} already exists (use --overwrite to replace it)")
    refuse = f"refusing to replace {what} {dest}"
    if os.path.islink(dest):
        raise ModelFolderError(f"{refuse}: it is a symbolic link")
    if not os.path.isdir(dest):
        raise ModelFolderError(f"{refuse}: it is a file, not a model folder")
    real = os.path.realpath(dest)
    home = os.path.realpath(os.path.expanduser("~"))
    if real == os.path.realpath(os.sep):
        raise ModelFolderError(f"{refuse}: it is the root folder")
    if _inside(home, real):
        raise ModelFolderError(f"{refuse}: it {'is' if real == home else 'holds'} the home folder")
    if _inside(os.path.realpath(os.getcwd()), real):
        raise ModelFolderError(f"{refuse}: it is the current folder or one above it")
    for k in keep:
        if k is not None and _inside(os.path.realpath(os.fspath(k)), real):
            same = os.path.realpath(os.fspath(k)) == real
            raise ModelFolderError(f"{refuse}: it {'is' if same else 'holds'} the source {os.fspath(k)}")
    meta_path = os.path.join(dest, META_FILE)
    try:
        meta = load_json(meta_path)
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFolderError(f"{refuse}: it is not a jax-inpaint model folder (no {META_FILE} of ours); "
                               "choose a new folder")
    trees = meta.get("trees") if isinstance(meta.get("trees"), list) else []
    extra = EXTRA_FOLDERS.get(meta.get("kind"), {}) if isinstance(meta.get("kind"), str) else {}
    foreign = []
    for entry in sorted(os.listdir(dest)):
        path = os.path.join(dest, entry)
        if entry == META_FILE and os.path.isfile(path) and not os.path.islink(path):
            continue
        if entry in trees and os.path.isdir(path) and not os.path.islink(path):
            inner = os.listdir(path)
            foreign += [f"{entry}/{e}" for e in sorted(inner) if not _ORBAX_ENTRY.fullmatch(e)]
            continue
        if entry in extra and os.path.isdir(path) and not os.path.islink(path):
            foreign += [f"{entry}/{e}" for e in sorted(os.listdir(path))
                        if e not in extra[entry] or not os.path.isfile(os.path.join(path, e))]
            continue
        foreign.append(entry)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ModelFolderError(f"{refuse}: it holds files jax-inpaint did not write ({shown}); "
                               "move them away or choose a new folder")
    return dest


def replace_folder(staging: str, dest: str, *, overwrite: bool, keep: Iterable[str | os.PathLike] = ()) -> None:
    """Move the complete folder `staging` to `dest`; an existing `dest` (checked again by
    `check_destination` first) is set aside and removed only once the new one is in place."""
    check_destination(dest, overwrite=overwrite, keep=keep)
    old = None
    if os.path.lexists(dest):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.old-", dir=os.path.dirname(dest))
        os.rmdir(old)
        os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except BaseException:
        if old is not None:
            os.rename(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_model_meta(folder: str | os.PathLike, kind: str | None = None) -> dict:
    """Read `model.json` of a model folder, checking its format and (optionally) kind."""
    folder = os.fspath(folder)
    path = os.path.join(folder, META_FILE)
    if not os.path.isdir(folder):
        raise ModelFolderError(f"{folder}: no such model folder")
    if not os.path.isfile(path):
        raise ModelFolderError(f"{folder}: not a jax-inpaint model folder (no {META_FILE}); "
                               "convert a checkpoint first with `jax-inpaint convert`")
    try:
        meta = load_json(path)
    except (OSError, ValueError) as e:
        raise ModelFolderError(f"{path}: unreadable ({str(e)[:200]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFolderError(f"{path}: not a jax-inpaint model description")
    version = meta.get("format_version", 0)
    if type(version) is not int:
        raise ModelFolderError(f"{path}: format_version must be an integer, got {brief(version)}")
    if version > FORMAT_VERSION:
        raise ModelFolderError(f"{path}: written by a newer jax-inpaint (format {version})")
    if kind is not None and meta.get("kind") != kind:
        raise ModelFolderError(f"{folder}: holds a {brief(meta.get('kind'))} model, expected {kind!r}")
    if not isinstance(meta.get("config"), dict):
        raise ModelFolderError(f"{path}: 'config' must be a JSON object, got {brief(meta.get('config'))}")
    return meta


def config_entry(meta: dict, key: str, folder, what: str) -> dict:
    """meta['config'][key] of a model.json read by `read_model_meta`, which must be an object."""
    value = meta["config"].get(key)
    if not isinstance(value, dict):
        raise ModelFolderError(f"{os.path.join(os.fspath(folder), META_FILE)}: config.{key} (the {what}) must be a "
                               f"JSON object, got {brief(value)}")
    return value


# ---------------------------------------------------------------------------------------------
# Configs from model.json: every field's type checked against the dataclass, one error per problem.




def parse_config(cls, data, what: str, *, path: str = ""):
    """Build the (frozen) dataclass `cls` from the JSON value `data`, checking every field.

    A field annotated int must be a JSON integer in [0, 2**31), float a finite number, bool a
    boolean, str a string, tuple[X, ...] / tuple[X, Y] a list of such values, X | None either,
    and a nested dataclass an object. Missing fields (without a default) and unknown fields are
    errors. Raises ModelFolderError naming `what` and the field path, one line.
    """
    where = f"{what}: {path or 'config'}"
    if not isinstance(data, Mapping):
        raise ModelFolderError(f"{where} must be a JSON object, got {brief(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ModelFolderError(f"{where}: unknown fields {', '.join(unknown[:8])}")
    values = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ModelFolderError(f"{what}: {sub} is missing")
            continue
        values[name] = _parse_value(hints[name], data[name], what, sub)
    try:
        return cls(**values)
    except InputError as e:
        raise ModelFolderError(f"{what}: {e}") from None
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
        raise ModelFolderError(f"{what}: {path or 'config'} is invalid ({type(e).__name__}: {e})") from None


def _parse_value(hint, value, what: str, path: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _parse_value(options[0], value, what, path)
        raise RuntimeError(f"{path}: unsupported annotation {hint}")  # a bug of the dataclass, not input
    if dataclasses.is_dataclass(hint):
        return parse_config(hint, value, what, path=path)
    if origin is tuple:
        if not isinstance(value, list):
            raise ModelFolderError(f"{what}: {path} must be a list, got {brief(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            kinds = [args[0]] * len(value)
        else:
            if len(value) != len(args):
                raise ModelFolderError(f"{what}: {path} must be a list of {len(args)} values, got {brief(value)}")
            kinds = list(args)
        return tuple(_parse_value(k, v, what, f"{path}[{i}]") for i, (k, v) in enumerate(zip(kinds, value)))
    if hint is bool:
        if type(value) is not bool:
            raise ModelFolderError(f"{what}: {path} must be true or false, got {brief(value)}")
        return value
    if hint is int:
        if type(value) is not int or not 0 <= value < 2 ** 31:
            raise ModelFolderError(f"{what}: {path} must be an integer in [0, 2^31), got {brief(value)}")
        return value
    if hint is float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ModelFolderError(f"{what}: {path} must be a finite number, got {brief(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ModelFolderError(f"{what}: {path} must be a string, got {brief(value)}")
        return value
    raise RuntimeError(f"{path}: unsupported annotation {hint}")  # a bug of the dataclass, not input


# ---------------------------------------------------------------------------------------------
# Weights.

def read_tree(folder: str | os.PathLike, name: str, expected: Tree | None = None) -> dict:
    """Restore one named tree of a model folder as a nested dict of numpy arrays.

    Read synchronously, array by array, with tensorstore from the orbax checkpoint (OCDBT + zarr)
    that `write_model_folder` wrote: orbax's own restore reads every array concurrently on an
    asyncio loop, and when one read fails (damaged bytes) it closes the loop while the others are
    still in flight, which then print "Event loop is closed" tracebacks. `expected` (shapes, as
    for `check_tree`) is checked before any data is read. float16 arrays are returned as float32.
    """
    import tensorstore as ts

    path = os.path.abspath(os.path.join(os.fspath(folder), name))
    if not os.path.isdir(path):
        raise ModelFolderError(f"{folder}: has no {name!r} weights")
    try:
        tree_meta = load_json(os.path.join(path, "_METADATA"))["tree_metadata"]
        keys = [".".join(str(k["key"]) for k in entry["key_metadata"]) for entry in tree_meta.values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelFolderError(f"{path}: not a readable weights folder (_METADATA: {type(e).__name__}: "
                               f"{str(e)[:200]})") from None
    if os.path.isfile(os.path.join(path, "manifest.ocdbt")):
        kvstore = {"driver": "ocdbt", "base": {"driver": "file", "path": path + os.sep}}
    else:
        kvstore = {"driver": "file", "path": path + os.sep}
    context = ts.Context()
    arrays, flat = {}, {}
    try:
        for key in keys:
            spec = {"driver": "zarr", "kvstore": {**kvstore, "path": key + "/"}, "fill_missing_data_reads": False}
            arrays[key] = ts.open(spec, open=True, read=True, context=context).result()
        if expected is not None:
            check_tree(expected, unflatten({k: _Shape(a.shape) for k, a in arrays.items()}), f"{folder}: {name}")
        for key, arr in arrays.items():
            value = np.asarray(arr.read().result())
            # Half-precision storage (the shipped demo CLIP) is computed in float32, as it was trained.
            flat[key] = value.astype(np.float32) if value.dtype == np.float16 else value
    except ModelFolderError:
        raise
    except Exception as e:  # noqa: BLE001 -- tensorstore raises ValueError / RuntimeError for damaged data
        detail = str(e).split(" [tensorstore_spec=")[0].splitlines()[0][:300] if str(e) else ""
        raise ModelFolderError(f"{path}: could not restore weights ({type(e).__name__}: {detail})") from None
    return unflatten(flat)


class _Shape:
    """A stand-in with only a shape (for checking shapes before reading data)."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def load_params_folder(folder, kind: str, config_type, expected_params, what: str):
    """Read a single-tree model folder ('params'), or the shipped model of that name: its config
    (`config_type.from_dict(...).validate(...)`) and weights, checked strictly against
    `expected_params(config)`. Returns (the folder's path, config, params)."""
    from jax_inpaint.models.shipped import resolve_model

    folder = resolve_model(folder, kind)
    meta = read_model_meta(folder, kind)
    try:
        cfg = config_type.from_dict(meta["config"], f"{folder}: {META_FILE}").validate(str(folder))
    except InputError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFolderError(f"{folder}: bad {what} config in {META_FILE} ({type(e).__name__}: {e})") from None
    params = read_tree(folder, "params", expected_params(cfg))
    return os.fspath(folder), cfg, params
