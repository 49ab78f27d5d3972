"""Sample images from a generator: seeds -> PNGs and a grid (and re-render saved latents)."""
from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np

from jax_inpaint import images
from jax_inpaint.errors import InputError
from jax_inpaint.stylegan2 import Generator


def seed_z(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """z for each seed exactly as NVIDIA's generate.py draws it: RandomState(seed).randn(1, z_dim)."""
    return np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)


def class_vector(G: Generator, class_idx: int | None, n: int) -> np.ndarray | None:
    if G.c_dim == 0:
        if class_idx is not None:
            raise InputError("--class given, but the generator is not conditional")
        return None
    if class_idx is None:
        raise InputError(f"the generator is conditional: choose a class with --class (0..{G.c_dim - 1})")
    if not 0 <= class_idx < G.c_dim:
        raise InputError(f"--class must be in 0..{G.c_dim - 1}, got {class_idx}")
    c = np.zeros((n, G.c_dim), np.float32)
    c[:, class_idx] = 1
    return c


def generate(G: Generator, seeds: Sequence[int], *, truncation_psi: float = 1.0,
             truncation_cutoff: int | None = None, class_idx: int | None = None, noise_mode: str = "const",
             batch: int = 8, out: str | None = None) -> dict:
    """Render one image per seed. Returns {'images': uint8 [N,H,W,C], 'ws': [N,num_ws,w_dim]}; with `out`,
    writes seed####.png per seed and grid.png there."""
    seeds = list(seeds)
    z = seed_z(seeds, G.z_dim)
    c = class_vector(G, class_idx, len(seeds))
    imgs, wss = [], []
    for i in range(0, len(seeds), batch):
        sl = slice(i, i + batch)
        ws = G.mapping(z[sl], None if c is None else c[sl], truncation_psi, truncation_cutoff)
        if noise_mode == "random":  # each seed its own noise, whatever the batch it falls in
            per_seed = [G.random_noise(jax.random.key(s), 1) for s in seeds[sl]]
            noise = {k: np.concatenate([p[k] for p in per_seed]) for k in G.config.noise_shapes}
            img = G.synthesis(ws, noise=noise)
        else:
            img = G.synthesis(ws, noise_mode=noise_mode)
        imgs.append(images.to_uint8(np.asarray(img)))
        wss.append(np.asarray(ws))
    result = {"images": np.concatenate(imgs), "ws": np.concatenate(wss), "seeds": seeds}
    if out is not None:
        _write(out, result["images"], [f"seed{s:04d}" for s in seeds])
    return result


def render_latents(G: Generator, path: str, *, out: str | None = None) -> dict:
    """Re-render the `ws` (and `noise/*`, when saved) of a latents.npz written by `inpaint` or `generate`."""
    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable latents file ({e})") from None
    if "ws" not in data.files:
        raise InputError(f"{path}: has no 'ws' array")
    ws = data["ws"]
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise InputError(f"{path}: ws has shape {ws.shape}, this generator needs [N, {G.num_ws}, {G.w_dim}]")
    noise = {k[len("noise/"):]: data[k] for k in data.files if k.startswith("noise/")} or None
    imgs = images.to_uint8(np.asarray(G.synthesis(ws, noise=noise)))
    names = [f"latent{i:04d}" for i in range(len(ws))]
    if "seeds" in data.files:
        names = [f"seed{int(s):04d}" for s in data["seeds"]]
    if out is not None:
        _write(out, imgs, names)
    return {"images": imgs, "ws": ws}


def _write(out: str, imgs: np.ndarray, names: list[str]) -> None:
    os.makedirs(out, exist_ok=True)
    for img, name in zip(imgs, names):
        images.save_png(os.path.join(out, f"{name}.png"), img)
    images.save_png(os.path.join(out, "grid.png"), images.image_grid(list(imgs)))
