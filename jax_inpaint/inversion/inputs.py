"""What an inpainting run is given: the image and its hole mask, read, checked and brought to the
generator's resolution (`prepare_inputs`), and attribute targets as the command line spells them."""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Sequence

import numpy as np
from PIL import Image

from jax_inpaint import images
from jax_inpaint.errors import InputError
from jax_inpaint.inversion.config import check_attributes
from jax_inpaint.masks import PRESETS, preset_mask


@dataclasses.dataclass
class Inputs:
    target: np.ndarray  # [R, R, 3] float32 in [-1, 1]
    hole: np.ndarray  # [R, R] bool, True = missing
    notices: list[str]


def _is_preset(spec: str) -> bool:
    return spec in PRESETS or spec.startswith("rect:")


def load_mask(mask, shape: tuple[int, int], *, invert: bool = False) -> np.ndarray:
    """A mask file (white = hole), a preset ('center', 'left', 'rect:x,y,w,h', ...) or a bool array,
    as a bool [H, W] hole mask of the image's shape."""
    if isinstance(mask, (str, os.PathLike)):
        spec = os.fspath(mask)
        if os.path.exists(spec) or not _is_preset(spec):
            gray = images.read_gray(spec)
            if gray.shape != tuple(shape):
                raise InputError(f"{spec}: the mask is {gray.shape[1]}x{gray.shape[0]} pixels, the image "
                                 f"{shape[1]}x{shape[0]}: they must match")
            hole = gray >= 128
        else:
            hole = preset_mask(spec, tuple(shape))
    else:
        hole = np.asarray(mask)
        if hole.shape != tuple(shape):
            raise InputError(f"mask of shape {hole.shape} does not match the image ({shape})")
        hole = hole.astype(bool) if hole.dtype == bool else hole > 0.5
    return ~hole if invert else hole


def prepare_inputs(image, mask, resolution: int, *, invert_mask: bool = False) -> Inputs:
    """Read/convert the image and mask and bring both to the generator's resolution."""
    notices = []
    if isinstance(image, (str, os.PathLike)):
        img = images.read_rgb(image)
    else:  # uint8 [H,W(,C)], or float [H,W(,C)] in [-1, 1] used without quantisation
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, -1)
        if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
            raise InputError(f"image array must be [H, W, 3], got {img.shape}")
        img = np.repeat(img, 3, -1) if img.shape[-1] == 1 else img[..., :3]
        if img.dtype.kind not in "uif" or (img.dtype.kind == "f" and not np.isfinite(img).all()):
            raise InputError(f"image array must hold finite numbers, got {img.dtype}"
                             + (" with NaN/inf" if img.dtype.kind == "f" else ""))
    h, w = img.shape[:2]
    hole = load_mask(mask, (h, w), invert=invert_mask)
    if (h, w) != (resolution, resolution):
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        notices.append(f"the image is {w}x{h}: centre-cropped to {s}x{s} and resized to the generator's "
                       f"{resolution}x{resolution} (Lanczos; the mask: nearest)")
        if img.dtype != np.uint8:
            img = images.to_uint8(img)
        img = images.center_crop_resize(img, resolution)
        m = Image.fromarray(hole[top:top + s, left:left + s].astype(np.uint8) * 255)
        hole = np.asarray(m.resize((resolution, resolution), Image.NEAREST)) >= 128
    if not hole.any():
        raise InputError("the mask has no hole (no white pixels): nothing to fill "
                         "(use --invert-mask if black marks the hole)")
    if hole.all():
        raise InputError("the hole covers the whole image: no known pixels to match")
    target = images.to_float(img) if img.dtype == np.uint8 else img.astype(np.float32)
    return Inputs(target, hole, notices)


def parse_attributes(specs: Sequence[str]) -> dict[str, float]:
    """['Smiling=1', 'Eyeglasses=0'] -> {'Smiling': 1.0, 'Eyeglasses': 0.0}.

    P must be a probability in [0, 1]; a name given twice must ask for the same P (config.check_attributes)."""
    pairs = []
    for spec in specs:
        m = re.fullmatch(r"\s*([A-Za-z0-9_]+)\s*=\s*(\S+)\s*", str(spec))
        if not m:
            raise InputError(f"--attribute {spec!r}: expected NAME=VALUE, e.g. Smiling=1 (VALUE: a probability)")
        try:
            p = float(m.group(2))
        except ValueError:
            raise InputError(f"--attribute {spec!r}: {m.group(2)!r} is not a number (targets are "
                             "probabilities in [0, 1])") from None
        pairs.append((m.group(1), p))
    return dict(check_attributes(pairs))
