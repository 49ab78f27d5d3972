"""Differentiable image resizing (NHWC), shared by LPIPS (NVIDIA's projector's area resize) and the
Hugging Face image preprocessing of the CLIP and ViT models (`transformer.preprocess`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] averaging weights of torch's adaptive average pooling (F.interpolate 'area')."""
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def area_resize(x: Array, size: tuple[int, int]) -> Array:
    """[N,H,W,C] -> [N,h,w,C] as torch's F.interpolate(mode='area') (a box filter for integer factors)."""
    h, w = size
    if x.shape[1:3] == (h, w):
        return x
    mh, mw = _area_matrix(x.shape[1], h), _area_matrix(x.shape[2], w)
    return jnp.einsum("nhwc,ih,jw->nijc", x, mh, mw, precision=jax.lax.Precision.HIGHEST)


def resize(x: Array, size: tuple[int, int], method: str) -> Array:
    """[N,H,W,C] -> [N,h,w,C], antialiased when downsampling (like PIL); differentiable. `method`:
    'area' (`area_resize`) or a jax.image.resize method ('cubic', 'linear', 'lanczos3', 'nearest', ...)."""
    size = (int(size[0]), int(size[1]))
    if x.shape[1:3] == size:
        return x
    if method == "area":
        return area_resize(x, size)
    return jax.image.resize(x, (x.shape[0],) + size + (x.shape[3],), method=method,
                            antialias=method != "nearest", precision=jax.lax.Precision.HIGHEST)
