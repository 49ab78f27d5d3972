"""Test helper: a Hugging Face checkpoint folder with its tensors edited (strict-conversion tests)."""
import shutil

from safetensors.numpy import load_file, save_file


def edited_checkpoint(src, dst, edit):
    """Copy the folder `src` to `dst` and apply `edit(state)` to its model.safetensors: a dict of numpy
    arrays, changed in place. Returns dst."""
    shutil.copytree(src, dst)
    (dst / "model.safetensors").chmod(0o644)
    state = load_file(src / "model.safetensors")
    edit(state)
    save_file(state, dst / "model.safetensors")
    return dst
