"""The FFHQ alignment recipe, reimplemented from its description, and the transform it makes.

FFHQ (and CelebA-HQ, MetFaces) faces were cut from photos by one recipe on five points: the two eye
centres and the two mouth corners. From them:

    eye_to_eye   = eye_right - eye_left           (eye_left: the eye on the image's left)
    eye_to_mouth = mouth_avg - eye_avg
    x  = eye_to_eye - rot90(eye_to_mouth)         (rot90(x, y) = (-y, x): eye_to_mouth turned onto the eye line)
    x *= max(|eye_to_eye| * 2.0, |eye_to_mouth| * 1.8) / |x|
    y  = rot90(x)
    c  = eye_avg + eye_to_mouth * 0.1
    quad = (c - x - y, c - x + y, c + x + y, c + x - y)   (top-left, bottom-left, bottom-right, top-right)

and the image is resampled so that the quad becomes the output square: first shrunk (Lanczos) by
an integer factor while the quad stays over twice the output size, cropped to the quad plus a
border, padded where the quad leaves the photo (reflected, blurred towards the edges with a
Gaussian of 2 % of the quad size and blended into the median colour), then the quad is mapped onto
a square 4x the output size (bilinear) and that is reduced to the output size (Lanczos).

The whole chain is one affine map, kept as a 3x3 matrix `aligned_to_photo` (and its inverse):
homogeneous pixel coordinates, x = column and y = row, pixel centres at whole numbers (dlib's and
numpy's convention; PIL's pixel centres are at +0.5, converted here).

Where the recipe puts the eyes (`recipe_positions`): with eye_to_mouth perpendicular to the eye line,
|eye_to_eye| = a and |eye_to_mouth| = b, the frame is s = max(2a, 1.8b) wide and, as fractions of the
output size, the eyes are at x = 0.5 -+ a / (4s), y = 0.5 - 0.05 b / s, the mouth centre at
x = 0.5, y = 0.5 + 0.45 b / s. For a face with b = a (typical of FFHQ) that is (0.375, 0.475) and
(0.625, 0.475), mouth (0.5, 0.725): at 1024 pixels, eyes at (384, 486) and (640, 486), mouth (512, 742);
for b >= a / 0.9 (a long face), s = 1.8b: eyes at y = 0.4722, mouth at y = 0.75, x = 0.5 -+ a / (7.2b).

Numpy, scipy and PIL only (no face detector here: jax_inpaint.align.landmarks finds the points).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

from jax_inpaint.errors import InputError

SUPERSAMPLE = 4  # the quad is mapped onto a square this many times the output size, then reduced (FFHQ: 4096 -> 1024)
FORMAT = "jax-inpaint-alignment"
FORMAT_VERSION = 1
POINT_NAMES = ("eye_left", "eye_right", "mouth_left", "mouth_right")  # *_left: on the image's left


def _rot90(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]], np.float64)


def _points(points) -> np.ndarray:
    p = np.asarray(points, np.float64)
    if p.shape != (4, 2) or not np.isfinite(p).all():
        raise ValueError(f"expected the 4 points (eyes, mouth corners) as a [4, 2] array of numbers, got {p.shape}")
    return p


def recipe_frame(points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(c, x, y) of the recipe for the points [eye_left, eye_right, mouth_left, mouth_right] (x, y)."""
    p = _points(points)
    eye_left, eye_right, mouth_left, mouth_right = p
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    norm = math.hypot(*x)
    scale = max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8)
    if norm < 1e-9 or scale < 1e-9:
        raise InputError("the face's landmarks are degenerate (eyes and mouth on one point): cannot align it")
    x = x / norm * scale
    y = _rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    return c, x, y


def ffhq_quad(points) -> np.ndarray:
    """The recipe's crop quad [4, 2] (top-left, bottom-left, bottom-right, top-right corners of the aligned
    image, in the photo's pixel coordinates)."""
    c, x, y = recipe_frame(points)
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_matrix(quad, size: int) -> np.ndarray:
    """aligned_to_photo for a quad: the aligned pixel (u, v) -> the photo pixel (x, y), both with pixel
    centres at whole numbers (the quad's corners are the corners of the aligned image, not pixel centres)."""
    q = np.asarray(quad, np.float64)
    a = (q[3] - q[0]) / size  # one aligned pixel to the right, in the photo
    b = (q[1] - q[0]) / size  # one aligned pixel down
    t = q[0] + 0.5 * (a + b)  # the centre of aligned pixel (0, 0)
    return np.array([[a[0], b[0], t[0]], [a[1], b[1], t[1]], [0.0, 0.0, 1.0]])


def apply(matrix: np.ndarray, xy) -> np.ndarray:
    """Transform points [..., 2] (x, y) by a 3x3 matrix."""
    xy = np.asarray(xy, np.float64)
    m = np.asarray(matrix, np.float64)
    return xy @ m[:2, :2].T + m[:2, 2]


def pixel_scale(matrix: np.ndarray) -> float:
    """Photo pixels per aligned pixel (the length of one aligned pixel's side in the photo)."""
    m = np.asarray(matrix, np.float64)
    return float(math.sqrt(abs(np.linalg.det(m[:2, :2]))))


def recipe_positions(points, size: int = 1) -> dict[str, np.ndarray]:
    """Where the recipe puts the eyes and the mouth centre in the aligned image (x, y): as fractions of its
    side for size=1, else in pixels of a size x size image (pixel centres at whole numbers). They depend
    only on the shape of the face (its eye and mouth vectors), not on where or how it lies in the photo."""
    p = _points(points)
    c, x, y = recipe_frame(p)
    out = {}
    for name, q in (("eye_left", p[0]), ("eye_right", p[1]), ("mouth", (p[2] + p[3]) / 2)):
        d = q - c
        frac = np.array([0.5 + d @ x / (2 * (x @ x)), 0.5 + d @ y / (2 * (y @ y))])
        out[name] = frac if size == 1 else frac * size - 0.5
    return out


def canonical_positions(ratio: float = 1.0) -> dict[str, np.ndarray]:
    """The recipe's positions (fractions of the side) for an upright face whose eye-to-mouth distance is
    `ratio` times its eye-to-eye distance (perpendicular to the eyes' line). ratio 1: eyes (0.375, 0.475)
    and (0.625, 0.475), mouth (0.5, 0.725)."""
    return recipe_positions([[-0.5, 0.0], [0.5, 0.0], [-0.4, ratio], [0.4, ratio]])


# ---------------------------------------------------------------------------------------------
# The aligned image.

def align_image(photo: np.ndarray, points, size: int, *, padding: bool = True,
                supersample: int = SUPERSAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """(aligned uint8 [size, size, 3], aligned_to_photo 3x3) of a uint8 RGB photo [H, W, 3] whose face has
    the points [eye_left, eye_right, mouth_left, mouth_right] (photo pixels), by the FFHQ recipe."""
    from scipy.ndimage import gaussian_filter

    if size < 1:
        raise InputError(f"--size must be at least 1, got {size}")
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"align_image needs a uint8 RGB photo [H, W, 3], got {photo.dtype} {photo.shape}")
    quad = ffhq_quad(points)
    matrix = quad_matrix(quad, size)
    q = quad + 0.5  # PIL's continuous coordinates (pixel centres at +0.5)
    qsize = math.hypot(*(q[3] - q[0]))  # the quad's side
    img = Image.fromarray(photo)

    # Shrink: keep the quad more than twice the output size (the final reduction takes it from there).
    shrink = int(math.floor(qsize / size * 0.5))
    if shrink > 1:
        w, h = img.size
        rsize = (max(1, int(round(w / shrink))), max(1, int(round(h / shrink))))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        q = q * np.array([rsize[0] / w, rsize[1] / h])  # the exact ratio (rsize is rounded)
        qsize = math.hypot(*(q[3] - q[0]))

    # Crop to the quad and a border.
    border = max(int(round(qsize * 0.1)), 3)
    lo, hi = np.floor(q.min(0)).astype(int), np.ceil(q.max(0)).astype(int)
    w, h = img.size
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, w), min(hi[1] + border, h))
    if crop[2] - crop[0] < w or crop[3] - crop[1] < h:
        if crop[2] <= crop[0] or crop[3] <= crop[1]:
            raise InputError("the face lies outside the photo: cannot align it")
        img = img.crop(crop)
        q = q - np.array(crop[:2], np.float64)

    # Pad where the quad leaves the photo: reflect, blur towards the edges, fade into the median colour.
    w, h = img.size
    lo, hi = np.floor(q.min(0)).astype(int), np.ceil(q.max(0)).astype(int)
    pad = [max(-lo[0] + border, 0), max(-lo[1] + border, 0), max(hi[0] - w + border, 0), max(hi[1] - h + border, 0)]
    if padding and max(pad) > border - 4:
        pad = [max(p, int(round(qsize * 0.3))) for p in pad]
        a = np.pad(np.asarray(img, np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")
        ph, pw = a.shape[:2]
        yy, xx = np.ogrid[:ph, :pw]
        xx, yy = xx.astype(np.float32), yy.astype(np.float32)
        edge = np.maximum(1.0 - np.minimum(xx / pad[0], (pw - 1 - xx) / pad[2]),
                          1.0 - np.minimum(yy / pad[1], (ph - 1 - yy) / pad[3]))[..., None]
        blur = qsize * 0.02
        a += (gaussian_filter(a, [blur, blur, 0]) - a) * np.clip(edge * 3.0 + 1.0, 0.0, 1.0)
        a += (np.median(a, axis=(0, 1)) - a) * np.clip(edge, 0.0, 1.0)
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")
        q = q + np.array(pad[:2], np.float64)

    # The quad onto a square (supersampled), reduced to the output size.
    big = max(size, size * int(supersample))
    img = img.transform((big, big), Image.Transform.QUAD, tuple(q.flatten()), Image.Resampling.BILINEAR)
    if big > size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, np.uint8).copy(), matrix


def sample(src: np.ndarray, matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, order: int = 1,
           cval: float = np.nan) -> np.ndarray:
    """src [H, W(, C)] read at matrix @ (cols, rows): bilinear (order 1) or nearest (order 0); cval outside."""
    from scipy.ndimage import map_coordinates

    xy = apply(matrix, np.stack([cols, rows], -1).astype(np.float64))
    coords = [xy[..., 1], xy[..., 0]]
    if src.ndim == 2:
        return map_coordinates(src, coords, order=order, mode="constant", cval=cval)
    return np.stack([map_coordinates(src[..., c], coords, order=order, mode="constant", cval=cval)
                     for c in range(src.shape[-1])], -1)


def unalign(aligned: np.ndarray, matrix: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The aligned image (float [S, S, C]) put back into the photo's frame over the box (x0, y0, x1, y1) of
    photo pixels: float [y1 - y0, x1 - x0, C], bilinear, NaN where the aligned image does not reach.
    Reduced first (Gaussian) where the aligned image is finer than the photo."""
    from scipy.ndimage import gaussian_filter

    aligned = np.asarray(aligned, np.float32)
    finer = 1.0 / pixel_scale(matrix)  # aligned pixels per photo pixel
    if finer > 1.0:
        sigma = 0.5 * math.sqrt(finer * finer - 1.0)
        aligned = gaussian_filter(aligned, [sigma, sigma, 0][:aligned.ndim], mode="nearest")
    x0, y0, x1, y1 = box
    rows, cols = np.mgrid[y0:y1, x0:x1]
    inverse = np.linalg.inv(matrix)
    out = sample(aligned, inverse, rows, cols, order=1)
    # map_coordinates' 'constant' mode blends cval in over the last half pixel: reach = the pixel centres' hull
    uv = apply(inverse, np.stack([cols, rows], -1))
    size = aligned.shape[0]
    inside = np.all((uv >= 0) & (uv <= size - 1), axis=-1)
    out[~inside] = np.nan
    return out


def hole_to_aligned(hole: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The photo's hole (bool [H, W]) in the aligned frame (bool [size, size]): every aligned pixel whose
    area covers any hole pixel, grown by one pixel (the resampling kernels reach that far)."""
    from scipy.ndimage import binary_dilation, map_coordinates

    k = int(min(max(1, math.ceil(pixel_scale(matrix))), 16, max(1, 4096 // size)))
    offsets = (np.arange(k) + 0.5) / k - 0.5
    vv, uu = np.mgrid[0:size, 0:size]
    hit = np.zeros((size, size), bool)
    src = hole.astype(np.uint8)
    for dv in offsets:
        for du in offsets:
            xy = apply(matrix, np.stack([uu + du, vv + dv], -1))
            hit |= map_coordinates(src, [xy[..., 1], xy[..., 0]], order=0, mode="constant", cval=0) > 0
    return binary_dilation(hit, np.ones((3, 3), bool)) if hit.any() else hit


# ---------------------------------------------------------------------------------------------
# The transform, kept: JSON.

@dataclasses.dataclass
class Alignment:
    """One face of a photo, aligned: the transform and what it was made from."""
    size: int  # the aligned image's side
    matrix: np.ndarray  # aligned_to_photo, 3x3
    points: np.ndarray  # [4, 2]: eye_left, eye_right, mouth_left, mouth_right in the photo
    photo_size: tuple[int, int]  # (width, height)
    face: int = 0  # which face of the photo (0 = the largest)
    faces: int = 1  # how many were found
    box: tuple[float, float, float, float] | None = None  # the face's landmark box in the photo (x0, y0, x1, y1)

    @property
    def inverse(self) -> np.ndarray:
        """photo_to_aligned, 3x3."""
        return np.linalg.inv(self.matrix)

    @property
    def quad(self) -> np.ndarray:
        return ffhq_quad(self.points)

    def to_json(self) -> dict:
        pos = recipe_positions(self.points, self.size)
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "coordinates": "pixels: x = column, y = row, pixel centres at whole numbers; homogeneous 3x3 matrices",
            "size": int(self.size),
            "photo_size": [int(v) for v in self.photo_size],
            "face": int(self.face), "faces": int(self.faces),
            "aligned_to_photo": self.matrix.tolist(),
            "photo_to_aligned": self.inverse.tolist(),
            "photo_pixels_per_aligned_pixel": pixel_scale(self.matrix),
            "quad": self.quad.tolist(),
            "landmarks": {n: [float(v) for v in p] for n, p in zip(POINT_NAMES, self.points)},
            "aligned_landmarks": {n: [float(v) for v in p] for n, p in pos.items()},
            "box": None if self.box is None else [float(v) for v in self.box],
        }

    @classmethod
    def from_json(cls, d: dict) -> "Alignment":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InputError("not an alignment file written by jax-inpaint (format 'jax-inpaint-alignment')")
        try:
            matrix = np.asarray(d["aligned_to_photo"], np.float64)
            points = np.asarray([d["landmarks"][n] for n in POINT_NAMES], np.float64)
            out = cls(int(d["size"]), matrix, points, tuple(int(v) for v in d["photo_size"]), int(d.get("face", 0)),
                      int(d.get("faces", 1)), None if d.get("box") is None else tuple(float(v) for v in d["box"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"a damaged alignment file ({type(e).__name__}: {e})") from None
        if matrix.shape != (3, 3) or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-12:
            raise InputError("a damaged alignment file (aligned_to_photo is not an invertible 3x3 matrix)")
        return out


def read_alignment(path) -> Alignment:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            return Alignment.from_json(json.load(f))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None
