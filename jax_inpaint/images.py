"""Image files in and out, and picture grids.

Conventions used across jax-inpaint:
  * images inside the library are float32 NHWC (or HWC) RGB in [-1, 1];
  * files are read as uint8 RGB (grayscale expanded to three channels, alpha dropped);
  * masks are bool [H, W] with True = hole (white in a mask PNG).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from jax_inpaint.errors import InputError


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3]; grayscale is expanded and alpha is dropped."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA").convert("RGB")
            elif im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: not a readable image ({e})") from None


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 luminance [H, W] (alpha, if any, is ignored)."""
    rgb = read_rgb(path)
    return np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint8)


def to_float(img_u8: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return img_u8.astype(np.float32) / 127.5 - 1.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float [-1, 1] (any leading dims, channels last) -> uint8, rounded and clipped."""
    img = np.asarray(img, dtype=np.float32)
    return np.clip(np.rint((img + 1.0) * 127.5), 0, 255).astype(np.uint8)


def center_crop_resize(img_u8: np.ndarray, size: int, resample=Image.LANCZOS) -> np.ndarray:
    """Centre-crop to a square and resize to size x size (what NVIDIA's projector does)."""
    h, w = img_u8.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    im = Image.fromarray(img_u8[top:top + s, left:left + s])
    if s != size:
        im = im.resize((size, size), resample)
    return np.asarray(im)


def display_tile(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (or [-1, 1] float) HWC image -> uint8 size x size for looking at: small images are
    enlarged with nearest neighbours (pixels stay sharp), large ones reduced with Lanczos."""
    u8 = np.asarray(img) if np.asarray(img).dtype == np.uint8 else to_uint8(img)
    if u8.shape[0] == size and u8.shape[1] == size:
        return u8
    resample = Image.NEAREST if size > u8.shape[0] else Image.LANCZOS
    return np.asarray(Image.fromarray(u8).resize((size, size), resample))


def save_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Save uint8 or [-1, 1] float HWC (or HW) as PNG, via a temporary file renamed into place."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = to_uint8(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    Image.fromarray(img).save(tmp, format="PNG")
    os.replace(tmp, path)


def mask_to_u8(hole: np.ndarray) -> np.ndarray:
    """bool [H, W] hole mask -> uint8 image (white = hole)."""
    return np.where(np.asarray(hole, bool), 255, 0).astype(np.uint8)


def image_grid(images: Sequence[np.ndarray], ncols: int | None = None, labels: Sequence[str] | None = None,
               pad: int = 2, bg: int = 255, label_height: int | None = None) -> np.ndarray:
    """Tile uint8 (or [-1,1] float) HWC images into one uint8 picture, with optional captions."""
    tiles = [to_uint8(im) if np.asarray(im).dtype != np.uint8 else np.asarray(im) for im in images]
    tiles = [np.repeat(t[..., None], 3, -1) if t.ndim == 2 else t for t in tiles]
    if not tiles:
        raise ValueError("image_grid needs at least one image")
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    n = len(tiles)
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    lh = 0 if not labels else (label_height or 12)
    out = np.full((nrows * (h + lh + pad) + pad, ncols * (w + pad) + pad, 3), bg, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncols)
        y = pad + r * (h + lh + pad) + lh
        x = pad + c * (w + pad)
        out[y:y + t.shape[0], x:x + t.shape[1]] = t[..., :3]
    if labels:
        im = Image.fromarray(out)
        draw = ImageDraw.Draw(im)
        for i, text in enumerate(labels[:n]):
            r, c = divmod(i, ncols)
            draw.text((pad + c * (w + pad) + 1, pad + r * (h + lh + pad) - 1), str(text), fill=(0, 0, 0))
        out = np.asarray(im)
    return out
