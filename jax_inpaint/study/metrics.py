"""Image-quality metrics: PSNR and SSIM (whole image, hole only, known region only) and diversity.

Images are float RGB in [-1, 1], HWC (one image: the functions return a float) or NHWC (a batch:
they return one value per image, [N]); the peak-to-peak data range is therefore 2 (`DATA_RANGE`).
Regions are bool [H, W] (or [N, H, W]) masks, True = the pixels to score; for a hole mask `hole`,
`region=hole` scores the completed part and `region=~hole` the known part.

PSNR = 10 log10(data_range^2 / MSE), the MSE averaged over the selected pixels and all channels; it is
skimage.metrics.peak_signal_noise_ratio(a, b, data_range=2) for the whole image (inf for equal images).

SSIM follows Wang et al. 2004 as scikit-image computes it with
structural_similarity(a, b, channel_axis=-1, data_range=2, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False): an 11-tap Gaussian window (sigma 1.5, truncated at 3.5 sigma) applied
separably with mirror ('reflect', d c b a | a b c d) padding, K1 = 0.01, K2 = 0.03, population (not
sample) covariances, the SSIM map averaged over channels and over the pixels at least 5 (the window
radius) from the border. Masked SSIM averages the same map over the region's pixels inside that
border; a region lying entirely within the border strip is averaged over all of its pixels. Images
must be at least 11 x 11. Computed in float64 whatever the input dtype.

`masked_mse_jax` / `masked_psnr_jax` are the same MSE/PSNR in jax.numpy, for use inside jit.
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence, TypeVar

import jax.numpy as jnp
import numpy as np

DATA_RANGE = 2.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5: an 11-tap window

T = TypeVar("T")


def _pair(a, b) -> tuple[np.ndarray, np.ndarray, bool]:
    """Both images as float64 NHWC, and whether the input was a single HWC image."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images of different shapes: {a.shape} and {b.shape}")
    if a.ndim not in (3, 4):
        raise ValueError(f"expected an HWC or NHWC image, got shape {a.shape}")
    single = a.ndim == 3
    return (a[None], b[None], True) if single else (a, b, False)


def _region(region, shape: tuple[int, ...]) -> np.ndarray:
    """bool [H, W] or [N, H, W] -> bool [N, H, W] for NHWC images of `shape`."""
    n, h, w = shape[:3]
    r = np.asarray(region, bool)
    if r.shape == (h, w):
        r = np.broadcast_to(r, (n, h, w))
    if r.shape != (n, h, w):
        raise ValueError(f"region of shape {r.shape} does not match images of shape {shape}")
    if not r.reshape(n, -1).any(axis=1).all():
        raise ValueError("empty region: no pixel selected")
    return r


def _out(values: np.ndarray, single: bool):
    return float(values[0]) if single else values


def _psnr_from_mse(mse: np.ndarray, data_range: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range ** 2 / mse)


# ---------------------------------------------------------------------------------------------
# PSNR.

def mse(a, b, region=None):
    """Mean squared error over all pixels and channels, or over the pixels of `region`."""
    a, b, single = _pair(a, b)
    sq = np.square(a - b).mean(axis=-1)  # [N, H, W]
    if region is None:
        return _out(sq.reshape(len(sq), -1).mean(axis=1), single)
    r = _region(region, a.shape)
    return _out((sq * r).reshape(len(sq), -1).sum(axis=1) / r.reshape(len(r), -1).sum(axis=1), single)


def psnr(a, b, *, data_range: float = DATA_RANGE):
    """PSNR in dB of HWC (-> float) or NHWC (-> [N]) images."""
    return masked_psnr(a, b, None, data_range=data_range)


def masked_psnr(a, b, region, *, data_range: float = DATA_RANGE):
    """PSNR with the MSE averaged over the pixels of `region` (bool [H, W] or [N, H, W]; None: all)."""
    v = _psnr_from_mse(np.asarray(mse(a, b, region), np.float64), data_range)
    return float(v) if v.ndim == 0 else v


# ---------------------------------------------------------------------------------------------
# SSIM.

def _gaussian_taps() -> np.ndarray:
    x = np.arange(-_RADIUS, _RADIUS + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return g / g.sum()


def _blur(x: np.ndarray) -> np.ndarray:
    """Separable Gaussian window over H and W of [N, H, W, C], mirror padding."""
    taps = _gaussian_taps()
    for axis in (1, 2):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (_RADIUS, _RADIUS)
        xp = np.pad(x, pad, mode="symmetric")
        n = x.shape[axis]
        x = sum(t * np.take(xp, np.arange(k, k + n), axis=axis) for k, t in enumerate(taps))
    return x


def ssim_map(a, b, *, data_range: float = DATA_RANGE) -> np.ndarray:
    """The SSIM map averaged over channels: [H, W] for HWC images, [N, H, W] for NHWC."""
    a, b, single = _pair(a, b)
    if min(a.shape[1:3]) < 2 * _RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * _RADIUS + 1}x{2 * _RADIUS + 1}, got {a.shape[1:3]}")
    ux, uy = _blur(a), _blur(b)
    vx = _blur(a * a) - ux * ux
    vy = _blur(b * b) - uy * uy
    vxy = _blur(a * b) - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    s = s.mean(axis=-1)
    return s[0] if single else s


def ssim(a, b, *, data_range: float = DATA_RANGE):
    """Mean SSIM of HWC (-> float) or NHWC (-> [N]) images, as scikit-image computes it (see above)."""
    return masked_ssim(a, b, None, data_range=data_range)


def masked_ssim(a, b, region, *, data_range: float = DATA_RANGE):
    """Mean of the SSIM map over the pixels of `region` (bool [H, W] or [N, H, W]; None: all) that lie
    at least the window radius from the border (all of the region's pixels if none does)."""
    single = np.ndim(a) == 3
    s = ssim_map(a, b, data_range=data_range)
    s = s[None] if single else s
    n, h, w = s.shape
    r = np.ones((n, h, w), bool) if region is None else _region(region, s.shape + (1,))
    inner = np.zeros((h, w), bool)
    inner[_RADIUS:h - _RADIUS, _RADIUS:w - _RADIUS] = True
    sel = r & inner
    empty = ~sel.reshape(n, -1).any(axis=1)
    sel[empty] = r[empty]
    vals = (s * sel).reshape(n, -1).sum(axis=1) / sel.reshape(n, -1).sum(axis=1)
    return _out(vals, single)


# ---------------------------------------------------------------------------------------------
# Summaries and diversity.

def region_scores(pred, target, hole) -> dict[str, float]:
    """PSNR and SSIM of one HWC completion against the original: whole image, hole, known region."""
    hole = np.asarray(hole, bool)
    out = {"psnr": psnr(pred, target), "ssim": ssim(pred, target),
           "psnr_hole": masked_psnr(pred, target, hole), "ssim_hole": masked_ssim(pred, target, hole)}
    if (~hole).any():
        out["psnr_known"] = masked_psnr(pred, target, ~hole)
        out["ssim_known"] = masked_ssim(pred, target, ~hole)
    return {k: float(v) for k, v in out.items()}


def mean_pairwise(dist_fn: Callable[[T, T], float], items: Sequence[T]) -> float:
    """Mean of dist_fn(items[i], items[j]) over all pairs i < j (diversity of K completions)."""
    items = list(items)
    if len(items) < 2:
        raise ValueError(f"mean_pairwise needs at least two items, got {len(items)}")
    return float(np.mean([float(dist_fn(x, y)) for x, y in itertools.combinations(items, 2)]))


# ---------------------------------------------------------------------------------------------
# JAX versions (usable inside jit / vmap).

def masked_mse_jax(a, b, region=None):
    """a, b: [N, H, W, C]; region: [H, W] or [N, H, W] (bool or 0/1 weights), None = all -> MSE [N]."""
    sq = jnp.mean(jnp.square(a - b), axis=-1)  # [N, H, W]
    if region is None:
        return jnp.mean(sq, axis=(1, 2))
    r = jnp.broadcast_to(jnp.asarray(region, sq.dtype), sq.shape)
    return jnp.sum(sq * r, axis=(1, 2)) / jnp.sum(r, axis=(1, 2))


def masked_psnr_jax(a, b, region=None, *, data_range: float = DATA_RANGE):
    """PSNR [N] in dB from masked_mse_jax."""
    return 10.0 * jnp.log10(data_range ** 2 / masked_mse_jax(a, b, region))
