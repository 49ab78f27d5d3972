"""Test helpers of the model parity tests: reference vectors, layouts, edited checkpoints."""
import shutil

import numpy as np
from safetensors.numpy import load_file, save_file


def load_vectors(path) -> dict:
    """A reference .npz (written by the reference implementation) as a dict of arrays, file closed."""
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def nhwc(a: np.ndarray) -> np.ndarray:
    """Torch's NCHW images as ours (NHWC)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def edited_checkpoint(src, dst, edit):
    """Copy the folder `src` to `dst` and apply `edit(state)` to its model.safetensors: a dict of numpy
    arrays, changed in place. Returns dst."""
    shutil.copytree(src, dst)
    (dst / "model.safetensors").chmod(0o644)
    state = load_file(src / "model.safetensors")
    edit(state)
    save_file(state, dst / "model.safetensors")
    return dst
