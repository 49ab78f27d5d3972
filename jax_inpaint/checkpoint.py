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

import json
import os
import shutil
import tempfile
from typing import Any, Mapping

import numpy as np

FORMAT = "jax-inpaint"
FORMAT_VERSION = 1
META_FILE = "model.json"

Tree = Mapping[str, Any]


from jax_inpaint.errors import InputError


class ModelFolderError(InputError):
    """A model folder is missing, incomplete or of the wrong kind."""


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
        raise ModelFolderError("\n".join(lines))


def write_model_folder(dest: str | os.PathLike, *, kind: str, config: dict, trees: Mapping[str, Tree],
                       source: dict | None = None, overwrite: bool = False) -> str:
    """Write `trees` (name -> nested dict of arrays) and `config` to `dest`, atomically.

    Everything is written into a temporary sibling folder that is renamed to `dest` only when
    complete, so an interrupted or failed conversion leaves nothing behind.
    """
    import orbax.checkpoint as ocp

    dest = os.path.abspath(os.fspath(dest))
    if os.path.exists(dest) and not overwrite:
        raise ModelFolderError(f"{dest} already exists (use --overwrite to replace it)")
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
        with open(os.path.join(tmp, META_FILE), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


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
        with open(path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{path}: unreadable ({e})") from e
    if meta.get("format") != FORMAT:
        raise ModelFolderError(f"{path}: not a jax-inpaint model description")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFolderError(f"{path}: written by a newer jax-inpaint (format {meta['format_version']})")
    if kind is not None and meta.get("kind") != kind:
        raise ModelFolderError(f"{folder}: holds a {meta.get('kind')!r} model, expected {kind!r}")
    return meta


def read_tree(folder: str | os.PathLike, name: str) -> dict:
    """Restore one named tree of a model folder as a nested dict of numpy arrays."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.path.join(os.fspath(folder), name))
    if not os.path.isdir(path):
        raise ModelFolderError(f"{folder}: has no {name!r} weights")
    try:
        with ocp.StandardCheckpointer() as ckpt:
            tree = ckpt.restore(path)
    except Exception as e:  # orbax raises a variety of errors for damaged folders
        raise ModelFolderError(f"{path}: could not restore weights ({type(e).__name__}: {e})") from e
    return unflatten({k: np.asarray(v) for k, v in flatten(tree).items()})


def load_params_folder(folder, kind: str, parse_config, expected_params, what: str):
    """Read a single-tree model folder ('params'): its config (via `parse_config(meta['config'])`) and
    weights, checked strictly against `expected_params(config)`. Returns (config, params)."""
    meta = read_model_meta(folder, kind)
    try:
        cfg = parse_config(meta["config"])
    except InputError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFolderError(f"{folder}: bad {what} config in {META_FILE} ({type(e).__name__}: {e})") from None
    params = read_tree(folder, "params")
    check_tree(expected_params(cfg), params, f"{folder}: params")
    return cfg, params
