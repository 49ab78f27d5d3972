"""Sample images from a generator: seeds -> PNGs and a grid (and re-render saved latents)."""
from __future__ import annotations

import math
import numbers
import os
import stat
from typing import Sequence

import jax
import numpy as np

from jax_inpaint import images
from jax_inpaint.errors import InputError
from jax_inpaint.inversion.config import check_seeds
from jax_inpaint.models.stylegan2 import Generator, class_vector, seed_z


def generate(G: Generator, seeds: Sequence[int], *, truncation_psi: float = 1.0,
             truncation_cutoff: int | None = None, class_idx: int | None = None, noise_mode: str = "const",
             batch: int = 8, out: str | None = None) -> dict:
    """Render one image per seed. Returns {'images': uint8 [N,H,W,C], 'ws': [N,num_ws,w_dim]}; with `out`,
    writes seed####.png per seed and grid.png there (only when every image is finite)."""
    seeds = check_seeds(seeds)
    if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, numbers.Real) \
            or not math.isfinite(truncation_psi):
        raise InputError(f"--trunc must be a finite number (got {truncation_psi!r})")
    if truncation_cutoff is not None and (isinstance(truncation_cutoff, bool) or
                                          not isinstance(truncation_cutoff, numbers.Integral) or truncation_cutoff < 0):
        raise InputError(f"--trunc-cutoff must be a whole number >= 0 (got {truncation_cutoff!r})")
    if noise_mode not in ("const", "random", "none"):
        raise InputError(f"--noise-mode must be one of const, random, none (got {noise_mode!r})")
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
        imgs.append(_finite_u8(img, seeds[sl], "seed", f"--trunc {truncation_psi:g}"))
        wss.append(np.asarray(ws))
    result = {"images": np.concatenate(imgs), "ws": np.concatenate(wss), "seeds": seeds}
    if out is not None:
        _write(out, result["images"], [f"seed{s:04d}" for s in seeds])
    return result


def _finite_u8(img, labels, kind: str, cause: str) -> np.ndarray:
    """Rendered images [N,H,W,C] in [-1, 1] -> uint8; NaN / inf pixels (which would be written as black)
    are an error naming the first bad image."""
    img = np.asarray(img)
    bad = ~np.isfinite(img).reshape(len(img), -1).all(axis=1)
    if bad.any():
        raise InputError(f"{kind} {labels[int(np.argmax(bad))]}: the generator produced NaN/inf pixels ({cause}); "
                         "nothing was written")
    return images.to_uint8(img)


MAX_LATENTS = 100_000
MAX_LATENTS_BYTES = 1 << 31


def _npz_headers(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """name -> (shape, dtype) of every array in an .npz, read from the headers only (no data, no pickles)."""
    import zipfile

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise InputError(f"{path}: not a regular file")
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise InputError(f"{path}: not a latents .npz file ({e})") from None
    out = {}
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise InputError(f"{path}: {info.filename!r} is not a numpy array: not a latents .npz file")
            try:
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        raise ValueError(f"unsupported .npy version {version}")
                    shape, _, dtype = read(f, max_header_size=10000)
            except (OSError, ValueError, SyntaxError, zipfile.BadZipFile, EOFError) as e:
                raise InputError(f"{path}: {info.filename}: not a readable array ({e})") from None
            out[info.filename[:-4]] = (tuple(int(n) for n in shape), np.dtype(dtype))
    return out


def read_latents(G: Generator, path: str) -> dict:
    """{'ws': float32 [N, num_ws, w_dim], 'noise': {name: [N, H, W]} or None, 'names': [N file stems]} of
    a latents.npz (as `inpaint` writes it), checked against the generator before any data is read:
    no pickles (object arrays), numbers only, the generator's shapes, finite values."""
    path = os.fspath(path)
    heads = _npz_headers(path)
    if "ws" not in heads:
        raise InputError(f"{path}: has no 'ws' array (a latents.npz written by `jax-inpaint inpaint`)")
    for name, (shape, dtype) in heads.items():
        if dtype.kind not in "fiu" or dtype.hasobject:
            raise InputError(f"{path}: '{name}' holds {dtype} values, not numbers")
    total = sum(int(np.prod(s, dtype=np.float64)) * d.itemsize for s, d in heads.values())
    if total > MAX_LATENTS_BYTES:
        raise InputError(f"{path}: {total / 2**30:.1f} GiB of arrays: too large for a latents file")
    ws_shape = heads["ws"][0]
    if len(ws_shape) != 3 or ws_shape[1:] != (G.num_ws, G.w_dim) or heads["ws"][1].kind != "f":
        raise InputError(f"{path}: ws is {heads['ws'][1]} {list(ws_shape)}, this generator needs float "
                         f"[N, {G.num_ws}, {G.w_dim}]")
    n = ws_shape[0]
    if not 1 <= n <= MAX_LATENTS:
        raise InputError(f"{path}: {n} latents; between 1 and {MAX_LATENTS:,} can be rendered")
    noise_names = sorted(k[len("noise/"):] for k in heads if k.startswith("noise/"))
    unexpected = sorted(k for k in heads if k not in ("ws", "seeds") and not k.startswith("noise/"))
    if unexpected:
        raise InputError(f"{path}: unexpected arrays {unexpected} (a latents file holds ws, seeds, noise/*)")
    shapes = G.config.noise_shapes
    if noise_names and sorted(shapes) != noise_names:
        missing, extra = sorted(set(shapes) - set(noise_names)), sorted(set(noise_names) - set(shapes))
        raise InputError(f"{path}: its noise maps do not fit this generator (missing {missing}, unexpected {extra})")
    for k in noise_names:
        shape = heads[f"noise/{k}"][0]
        if shape != (n,) + tuple(shapes[k]):
            raise InputError(f"{path}: noise/{k} is {list(shape)}, this generator needs {[n, *shapes[k]]}")
    if "seeds" in heads and (heads["seeds"][0] != (n,) or heads["seeds"][1].kind not in "iu"):
        raise InputError(f"{path}: seeds is {heads['seeds'][1]} {list(heads['seeds'][0])}, expected {n} integers")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in heads}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path}: not a readable latents file ({e})") from None
    for k, v in arrays.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise InputError(f"{path}: '{k}' holds NaN or infinite values")
    names = [f"latent{i:04d}" for i in range(n)]
    if "seeds" in arrays:
        seeds = [int(s) for s in arrays["seeds"]]
        if len(set(seeds)) != n or min(seeds) < 0:
            raise InputError(f"{path}: its seeds are not distinct non-negative numbers")
        names = [f"seed{s:04d}" for s in seeds]
    noise = {k: arrays[f"noise/{k}"].astype(np.float32) for k in noise_names} or None
    return {"ws": arrays["ws"].astype(np.float32), "noise": noise, "names": names}


def render_latents(G: Generator, path: str, *, out: str | None = None, batch: int = 8) -> dict:
    """Re-render the `ws` (and `noise/*`, when saved) of a latents.npz written by `inpaint` or `generate`."""
    lat = read_latents(G, path)
    ws, noise, names = lat["ws"], lat["noise"], lat["names"]
    imgs = []
    for i in range(0, len(ws), batch):
        sl = slice(i, i + batch)
        img = G.synthesis(ws[sl], noise=None if noise is None else {k: v[sl] for k, v in noise.items()})
        imgs.append(_finite_u8(img, names[sl], "latent", f"the latents in {path}"))
    imgs = np.concatenate(imgs)
    if out is not None:
        _write(out, imgs, names)
    return {"images": imgs, "ws": ws}


def _write(out: str, imgs: np.ndarray, names: list[str]) -> None:
    """Every PNG and grid.png, all together or none (a full disk or Ctrl-C leaves --out as it was)."""
    from jax_inpaint.files import output_folder, staged

    with output_folder(out), staged(out) as stage:
        for img, name in zip(imgs, names):
            images.save_png(os.path.join(stage, f"{name}.png"), img)
        images.save_png(os.path.join(stage, "grid.png"), images.image_grid(list(imgs)))
