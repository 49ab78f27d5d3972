"""The targets of a study (the ground truth): the images of a folder, or samples of the generator.

`image_targets`: every image file of a folder (`images.IMAGE_EXTENSIONS`; hidden files left out), sorted
by name, centre-cropped and resized to the generator's resolution, as `inpaint` does.
`gan_targets`: n images of the generator itself: target i is G.synthesis(G.mapping(z_i, psi)) with z_i
drawn as `jax-inpaint generate --seeds i` draws it and the checkpoint's constant noise, kept as float
(not rounded, not clipped), so its exact completion is in the search space.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from jax_inpaint import files as fileio
from jax_inpaint import images as imio
from jax_inpaint.errors import InputError
from jax_inpaint.study.records import digest


@dataclasses.dataclass
class Target:
    name: str  # unique, file-name safe
    image: np.ndarray  # [R, R, 3] float32, nominally [-1, 1]
    source: str  # the file, or 'seed i, psi p'
    digest: str  # of the pixels


def image_targets(images: str | os.PathLike | Sequence[str | os.PathLike], resolution: int, *,
                  limit: int | None = None) -> list[Target]:
    """The images of a folder (or a list of files), centre-cropped and resized to resolution, as targets."""
    if isinstance(images, (str, os.PathLike)):
        folder = os.fspath(images)
        if not os.path.isdir(folder):
            raise InputError(f"--images {folder}: no such folder")
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                       if f.lower().endswith(imio.IMAGE_EXTENSIONS) and not f.startswith("."))
        if not paths:
            raise InputError(f"--images {folder}: no image files ({', '.join(imio.IMAGE_EXTENSIONS)}) in the folder")
    else:
        paths = [os.fspath(p) for p in images]
        if not paths:
            raise InputError("no target images given")
    if limit is not None:
        paths = paths[:limit]
    out, seen = [], set()
    for path in paths:
        name = fileio.safe_name(os.path.basename(path), "image")
        while name in seen:
            name += "_"
        seen.add(name)
        img = imio.to_float(imio.center_crop_resize(imio.read_rgb(path), resolution))
        out.append(Target(name, img, path, digest(img)))
    return out


def gan_targets(G, n: int, *, truncation_psi: float = 0.7, class_idx: int | None = None,
                batch: int = 8) -> list[Target]:
    """n in-domain targets G(mapping(z_i, psi)), i = 0..n-1, z_i as `generate --seeds i` draws it, with
    the checkpoint's constant noise; float [R, R, 3], not quantised or clipped."""
    from jax_inpaint.models.stylegan2 import class_vector, seed_z

    if n < 1:
        raise InputError(f"--gan-samples must be at least 1, got {n}")
    z = seed_z(range(n), G.z_dim)
    c = class_vector(G, class_idx, n)
    imgs = []
    for i in range(0, n, batch):
        ws = G.mapping(z[i:i + batch], None if c is None else c[i:i + batch], truncation_psi)
        imgs.append(np.asarray(G.synthesis(ws, noise_mode="const"), np.float32))
    imgs = np.concatenate(imgs)
    if imgs.shape[-1] != 3:
        raise InputError(f"the generator makes {imgs.shape[-1]}-channel images; evaluate needs RGB")
    return [Target(f"sample{i:04d}", imgs[i], f"seed {i}, psi {truncation_psi:g}", digest(imgs[i]))
            for i in range(n)]
