"""The record schema of `jax-inpaint evaluate` (what evaluate writes and the report reads), and the
fingerprint helpers that say what a result depends on (also used by `inpaint-batch`).

Rows: one per (case, method), with the columns of `COLUMNS` (+ constraint_success_rate, dropped_seeds,
includes_compile where present); the metrics of `METRICS` come as <metric>_best and <metric>_mean.
`HIGHER_IS_BETTER` says which way each metric (and each extra column) improves.
"""
from __future__ import annotations

import hashlib
import json
from typing import Mapping

import numpy as np

from jax_inpaint import files as fileio

METRICS = ("psnr_hole", "ssim_hole", "lpips_hole", "lpips")
HIGHER_IS_BETTER = {"psnr_hole": True, "ssim_hole": True, "lpips_hole": False, "lpips": False,
                    "psnr_known": True, "diversity": True, "constraint_success_rate": True, "seconds": False}
COLUMNS = (("case", "target", "family", "ratio", "hole_ratio", "bucket", "method", "k")
           + tuple(f"{m}_{s}" for m in METRICS for s in ("best", "mean"))
           + ("psnr_known", "diversity", "seconds", "grid"))
FORMAT_VERSION = 1


def jsonable(x):
    """Plain Python for JSON (numpy scalars and arrays converted), NaN / inf as None: how records are stored."""
    return fileio.jsonable(x, nan_to_null=True)


def write_json(path: str, data) -> None:
    """A record or result file: written atomically (files.write_json), NaN / inf as null."""
    fileio.write_json(path, data, nan_to_null=True)


# ---------------------------------------------------------------------------------------------
# Fingerprints.

def digest(*arrays_or_text) -> str:
    """16 hex digits of sha256 over arrays (dtype, shape and bytes) and texts (str() of anything else)."""
    h = hashlib.sha256()
    for a in arrays_or_text:
        if isinstance(a, np.ndarray):
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(str(a).encode())
    return h.hexdigest()[:16]


def tree_digest(tree) -> str:
    """16 hex digits of sha256 over a pytree's leaves (path, dtype, shape, bytes), in path order."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    h = hashlib.sha256()
    for path, leaf in sorted(leaves, key=lambda pl: jax.tree_util.keystr(pl[0])):
        a = np.asarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def model_id(model) -> str | None:
    """'<class name>:<digest of its params and buffers>' (None for no model): the weights a result used."""
    if model is None:
        return None
    return f"{type(model).__name__}:{tree_digest({'params': model.params, 'buffers': getattr(model, 'buffers', {})})}"


def fingerprint_hash(fingerprint: Mapping) -> str:
    """The digest of a fingerprint as stored (JSON, keys sorted)."""
    return digest(json.dumps(jsonable(fingerprint), sort_keys=True))


def flat(d: Mapping, prefix: str = "") -> dict:
    """Nested mappings -> {'a.b.c': value} (empty mappings kept as values)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def short(v, n: int = 60) -> str:
    """A value as JSON text, cut to n characters."""
    text = json.dumps(v)
    return text if len(text) <= n else text[:n - 3] + "..."


def differences(old: Mapping, new: Mapping, n: int = 60) -> list[str]:
    """'key: old -> new' for every (flattened) key whose value differs, sorted by key."""
    fo, fn = flat(old), flat(new)
    return [f"{k}: {short(fo.get(k), n)} -> {short(fn.get(k), n)}"
            for k in sorted(set(fo) | set(fn)) if fo.get(k) != fn.get(k)]
