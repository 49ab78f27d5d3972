"""Classical hole fills, for comparison with the generator on exactly the same (image, mask).

Every baseline takes a float HWC RGB image in [-1, 1] and a bool [H, W] hole mask (True = hole) and
returns a float32 HWC image in [-1, 1] whose known pixels are the input's, bit for bit.

  mean_fill   every hole pixel gets the mean colour of the known region.
  biharmonic  scikit-image's inpaint_biharmonic (smooth, the classic PDE fill), per channel.
  telea       OpenCV's cv2.inpaint with INPAINT_TELEA (fast marching, radius 3) on the 8-bit image;
              only when OpenCV (`cv2`) can be imported: it is not a dependency of jax-inpaint, and
              `available_baselines()` leaves it out when it is missing.
"""
from __future__ import annotations

import importlib.util
import sys
from typing import Callable

import numpy as np

from jax_inpaint.errors import InputError

TELEA_RADIUS = 3


def _check(image, hole) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image, np.float32)
    hole = np.asarray(hole)
    if img.ndim != 3 or img.shape[-1] not in (1, 3):
        raise InputError(f"a baseline fill needs one HWC image (1 or 3 channels), got shape {img.shape}")
    if hole.shape != img.shape[:2]:
        raise InputError(f"the mask's shape {hole.shape} does not match the image's {img.shape[:2]}")
    hole = hole.astype(bool)
    if hole.all():
        raise InputError("the mask covers the whole image: a classical fill needs some known pixels")
    return img, hole


def _paste(img: np.ndarray, fill: np.ndarray, hole: np.ndarray) -> np.ndarray:
    return np.where(hole[..., None], np.clip(fill, -1.0, 1.0), img).astype(np.float32)


def mean_fill(image, hole) -> np.ndarray:
    """[H, W, C] in [-1, 1], bool [H, W] -> the hole painted with the known region's mean colour."""
    img, hole = _check(image, hole)
    return _paste(img, img[~hole].mean(axis=0, dtype=np.float64).astype(np.float32), hole)


def biharmonic(image, hole) -> np.ndarray:
    """[H, W, C] in [-1, 1], bool [H, W] -> skimage.restoration.inpaint_biharmonic(channel_axis=-1).
    Slow for large holes at high resolution (a sparse solve per connected hole region)."""
    from skimage.restoration import inpaint_biharmonic

    img, hole = _check(image, hole)
    if not hole.any():
        return img.copy()
    fill = inpaint_biharmonic(img.astype(np.float64), hole, channel_axis=-1)
    return _paste(img, fill, hole)


def telea(image, hole) -> np.ndarray:
    """[H, W, C] in [-1, 1], bool [H, W] -> cv2.inpaint(..., TELEA_RADIUS, cv2.INPAINT_TELEA) on the
    uint8 image. Raises InputError when OpenCV is not installed."""
    if not _has_cv2():
        raise InputError("the telea baseline needs OpenCV: pip install opencv-python-headless")
    import cv2

    from jax_inpaint.images import to_float, to_uint8

    img, hole = _check(image, hole)
    if not hole.any():
        return img.copy()
    u8 = np.ascontiguousarray(to_uint8(img))
    filled = np.asarray(cv2.inpaint(u8, hole.astype(np.uint8) * 255, TELEA_RADIUS, cv2.INPAINT_TELEA))
    return _paste(img, to_float(filled.reshape(img.shape)), hole)


def _has_cv2() -> bool:
    if "cv2" in sys.modules:
        return sys.modules["cv2"] is not None
    return importlib.util.find_spec("cv2") is not None


BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean_fill": mean_fill, "biharmonic": biharmonic, "telea": telea,
}


def available_baselines() -> tuple[str, ...]:
    """Names of the baselines that can run here (telea only with OpenCV)."""
    return tuple(name for name in BASELINES if name != "telea" or _has_cv2())


def run_baseline(name: str, image, hole) -> np.ndarray:
    """Apply the baseline `name` (one of BASELINES) to a [-1, 1] HWC image and bool hole mask."""
    if name not in BASELINES:
        raise InputError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    if name not in available_baselines():
        raise InputError(f"the {name} baseline is not available here (it needs OpenCV: "
                         f"pip install opencv-python-headless)")
    return BASELINES[name](image, hole)
