"""Image files in and out, and picture grids.

Conventions used across jax-inpaint:
  * images inside the library are float32 NHWC (or HWC) RGB in [-1, 1];
  * files are read as uint8 RGB (grayscale expanded to three channels, alpha dropped);
  * masks are bool [H, W] with True = hole (white in a mask PNG).
"""
from __future__ import annotations

import os
import re
import stat
import struct
import warnings
import zlib
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from jax_inpaint.errors import InputError


# The one reader of image files (photos, masks, references): every image jax-inpaint reads goes
# through `read_rgb` / `read_gray`.
MAX_PIXELS = 100_000_000
"""Images declaring more pixels than this (100 megapixels) are refused from their header, before any
decoding: a small file can declare a huge picture (a decompression bomb)."""
FORMATS = ("PNG", "JPEG", "MPO", "BMP", "GIF", "TIFF", "WEBP", "PPM", "TGA", "AVIF", "JPEG2000")
"""File formats read (PIL's names); others (EPS, which PIL renders with Ghostscript, PDF, PSD, ...) are refused."""
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""The file name endings (lower case) taken for images when a folder is read (`evaluate --images`,
`inpaint-batch --images / --masks`)."""


def _formats() -> list[str]:
    Image.init()
    return [f for f in FORMATS if f in Image.OPEN]


def _open(path) -> Image.Image:
    """Open an image file lazily, checking what it declares (format, size) before decoding anything."""
    shown = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{shown}: no such file") from None
    except OSError as e:
        raise InputError(f"{shown}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{shown}: is a folder, not an image")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
        raise InputError(f"{shown}: not a regular file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path, formats=_formats())
        except Image.DecompressionBombError as e:
            m = re.search(r"(\d+) pixels", str(e))
            n = f"{int(m.group(1)) / 1e6:.0f} megapixels" if m else "too many pixels"
            raise InputError(f"{shown}: the image declares {n}; images above {MAX_PIXELS // 1_000_000} megapixels "
                             "are refused") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise InputError(f"{shown}: the image declares {w}x{h} pixels ({w * h / 1e6:.0f} megapixels); images above "
                         f"{MAX_PIXELS // 1_000_000} megapixels are refused")
    if w < 1 or h < 1:
        im.close()
        raise InputError(f"{shown}: the image is empty ({w}x{h} pixels)")
    return im


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (a phone photo is shown, and should be read, upright)."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # a malformed EXIF block: keep the pixels as stored
        return im


def _high_bit_gray(im: Image.Image, shown: str, fmt: str | None) -> np.ndarray | None:
    """uint8 [H, W] of a 16-bit / 32-bit integer or float grey image (PIL's `convert('L')` clips those:
    a 16-bit PNG would read as white); None for other modes.

    Integer images are 16-bit (0..65535) when PIL says so (I;16*) or the file is a PNG, or when a value
    exceeds 255; else 8-bit. Float images are in [0, 1] when no value exceeds 1, else in [0, 255]."""
    if not (im.mode.startswith("I") or im.mode == "F"):
        return None
    a = np.asarray(im)
    if im.mode == "F":
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise InputError(f"{shown}: the image has NaN or infinite pixels")
        top = 1.0 if a.max(initial=0) <= 1.0 else 255.0
    else:
        a = a.astype(np.int64)
        top = 65535.0 if (im.mode.startswith("I;16") or fmt == "PNG" or a.max(initial=0) > 255) else 255.0
    return np.rint(np.clip(a, 0, top) * (255.0 / top)).astype(np.uint8)


def _read(path, gray: bool) -> np.ndarray:
    shown = os.fspath(path)
    try:
        with _open(path) as im:
            im.load()
            fmt = im.format
            im = _upright(im)
            g = _high_bit_gray(im, shown, fmt)
            if g is not None:
                return g if gray else np.repeat(g[..., None], 3, -1)
            if gray and im.mode in ("1", "L"):
                return np.asarray(im.convert("L"), dtype=np.uint8).copy()
            if gray and im.mode in ("LA", "La"):
                return np.asarray(im.getchannel(0), dtype=np.uint8).copy()
            if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA").convert("RGB")  # alpha dropped: the colours as stored
            elif im.mode != "RGB":
                im = im.convert("RGB")
            if gray:
                im = im.convert("L")
            return np.asarray(im, dtype=np.uint8).copy()
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError,
            EOFError, MemoryError, struct.error, zlib.error) as e:
        raise InputError(f"{shown}: not a readable image ({' '.join(str(e).split()) or type(e).__name__})") from None


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3], upright (EXIF orientation applied): grey (8 or 16 bit,
    integer or float) is expanded, palettes and CMYK converted, alpha dropped. Refused with a one-line
    InputError: a missing / unreadable file, a format not in FORMATS, more than MAX_PIXELS pixels."""
    return _read(path, gray=False)


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 luminance [H, W] (masks), as `read_rgb` does (a 16-bit mask is scaled,
    not clipped; alpha, if any, is ignored)."""
    return _read(path, gray=True)


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
    """Save uint8 or [-1, 1] float HWC (or HW) as PNG, atomically (files.atomic_write)."""
    from jax_inpaint.files import atomic_write

    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = to_uint8(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    atomic_write(path, lambda tmp: Image.fromarray(img).save(tmp, format="PNG"), suffix=".png")


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
