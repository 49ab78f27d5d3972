"""Hole masks: the families and hole-ratio buckets that inpainting papers evaluate on, and presets.

Masks are bool [H, W] with True = hole (white in a mask PNG).

Families (`FAMILIES`, also the values of `jax-inpaint masks --family`):

  center          a centred box with the image's aspect ratio (the Context Encoder / "center" hole).
  boxes           several random boxes (sides 10-50 % of the image's), the LaMa/CoModGAN box masks.
  half            a half mask (RePaint "half"): the hole starts at a random one of the left, right, top,
                  bottom edges and its inner edge is moved until the hole has the requested ratio.
  strokes-thin    free-form brush strokes in the DeepFill v2 / CoModGAN style (zig-zag polylines with
  strokes-medium  round joints, segments up to a quarter of the diagonal), brush width 2-5 %, 6-12 %
  strokes-thick   and 15-30 % of the shorter side: LaMa's thin / medium / thick (RePaint uses thin, thick).
  lines           every second row is a hole (RePaint "alternating lines"); ratio 0.5 by construction.
  sr              super-resolution: one pixel (the top-left one) of every s x s cell is kept, so the hole
                  ratio is 1 - 1/s^2 (0.75, 0.889, 0.9375, ...); s is the one nearest the target.
  expand          only a centred box (image aspect) is kept: outpainting (RePaint "expand").
  eyes, nose,     a fixed box over that feature of an FFHQ-aligned face; the boxes are fractions of the
  mouth           frame, so they fit any resolution (see `FACE_REGIONS`).

Hole-ratio buckets (CoModGAN): `BUCKETS` = [0, 0.2], (0.2, 0.4], (0.4, 0.6], (0.6, 0.8], (0.8, 1]. A mask
made for a target ratio r has its hole fraction inside bucket_of(r), as close to r as the family allows:
the free-form families (center, boxes, half, strokes-*, expand) reach every bucket and land within a
few pixels of r (boxes and strokes only approach r = 1.0, to within about 1 %: the last gaps between
random shapes are rarely hit); lines reaches only bucket 2, sr buckets 3-4, the face regions bucket 0
(their ratio is fixed: about 0.050 eyes, 0.021 nose, 0.028 mouth). A target in a bucket the family
cannot reach is an InputError; `family_buckets(family)` lists the reachable ones. Sizes: 16 to 8192
pixels a side, any aspect; the reachable buckets above hold from 32 pixels up.

Determinism: the random choices come from numpy's PCG64 seeded with (crc32 of the family name, seed) and
drawn only as uniform doubles; trigonometry uses Python's math module. The target ratio and the size
are deliberately not part of the seed: the same seed gives the same layout at every size (scaled), and
its masks are nested as the ratio grows (the shapes are laid down in the same order, the last one grown
only as far as needed), so hole size can be varied with everything else fixed.
"""
from __future__ import annotations

import math
import os
import re
import zlib
from typing import Callable, Iterator

import numpy as np

from jax_inpaint.errors import InputError
from jax_inpaint.images import mask_to_u8, save_png

FAMILIES: tuple[str, ...] = ("center", "boxes", "half", "strokes-thin", "strokes-medium", "strokes-thick",
                             "lines", "sr", "expand", "eyes", "nose", "mouth")

# CoModGAN's hole-ratio ranges. A ratio belongs to the first bucket whose upper bound it does not
# exceed: [0, 0.2], (0.2, 0.4], (0.4, 0.6], (0.6, 0.8], (0.8, 1.0].
BUCKETS: tuple[tuple[float, float], ...] = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))

# Face feature boxes as (x0, y0, x1, y1) fractions of an FFHQ-aligned frame (x to the right, y down).
# Derived from the standard 5-point landmark template of FFHQ-aligned faces (facexlib's, for 512 x 512:
# eye centres (0.377, 0.469) and (0.621, 0.469), nose tip (0.501, 0.613), mouth corners (0.393, 0.725)
# and (0.611, 0.725)), its dlib eye-corner version for 1024 x 1024 (eyes about 0.1 of the frame wide,
# base of the nose at y = 0.663), and FFHQ's own alignment, which puts the eye midpoint 0.1 of the
# eye-to-mouth distance above the frame centre. Each box adds a margin so that typical faces, which
# scatter a little around the template, are still covered.
FACE_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "eyes": (0.29, 0.41, 0.71, 0.53),   # both eyes, the bridge between them, the brows' lower edge: ~0.050
    "nose": (0.43, 0.53, 0.57, 0.68),   # from below the eyes box down to the nostrils: ~0.021
    "mouth": (0.36, 0.68, 0.64, 0.78),  # both lips, corner to corner: ~0.028
}
# The three boxes do not overlap.

# Brush width ranges of the stroke families, as fractions of the shorter image side.
STROKE_WIDTHS: dict[str, tuple[float, float]] = {
    "strokes-thin": (0.02, 0.05),
    "strokes-medium": (0.06, 0.12),
    "strokes-thick": (0.15, 0.30),
}

_ALL = (0, 1, 2, 3, 4)
_REACHABLE: dict[str, tuple[int, ...]] = {
    "center": _ALL, "boxes": _ALL, "half": _ALL, "strokes-thin": _ALL, "strokes-medium": _ALL,
    "strokes-thick": _ALL, "expand": _ALL, "lines": (2,), "sr": (3, 4), "eyes": (0,), "nose": (0,), "mouth": (0,),
}
_MIN_SIDE, _MAX_SIDE = 16, 8192
# Random shapes laid down before a free-form family gives up on a target it cannot quite reach
# (ratio 1.0 with strokes: the last uncovered pixels are hit ever more rarely).
_MAX_SHAPES = 3000


def bucket_of(ratio: float) -> int:
    """Index into BUCKETS of a hole ratio in [0, 1]: [0, 0.2] -> 0, (0.2, 0.4] -> 1, ... (0.8, 1] -> 4."""
    r = float(ratio)
    if not 0.0 <= r <= 1.0:
        raise InputError(f"a hole ratio must lie in [0, 1], got {ratio}")
    for i, (_, hi) in enumerate(BUCKETS):
        if r <= hi:
            return i
    raise AssertionError("unreachable")


def bucket_label(index: int) -> str:
    lo, hi = BUCKETS[index]
    return f"{'[' if index == 0 else '('}{lo:g}, {hi:g}]"


def family_buckets(family: str) -> tuple[int, ...]:
    """The buckets a family can reach (for sizes of 32 pixels and more)."""
    _check_family(family)
    return _REACHABLE[family]


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise InputError(f"unknown mask family {family!r}; choose from {', '.join(FAMILIES)}")


def _hw(size: int | tuple[int, int], lo: int = _MIN_SIDE, hi: int = _MAX_SIDE) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise InputError(f"size must be an int or (height, width), got {size!r}") from None
    if not (lo <= h <= hi and lo <= w <= hi):
        raise InputError(f"mask size {w}x{h} (width x height): both sides must be {lo} to {hi} pixels")
    return h, w


def _rng(family: str, seed: int) -> np.random.Generator:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"the mask seed must be a non-negative integer, got {seed!r}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([zlib.crc32(family.encode()), int(seed)])))


def _in_bucket(count: int, total: int, bucket: int) -> bool:
    return count > 0 and bucket_of(count / total) == bucket


# ---------------------------------------------------------------------------------------------
# Deterministic families.

def _box_mask(h: int, w: int, top: int, left: int, bh: int, bw: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[top:top + bh, left:left + bw] = True
    return m


def _centred_box(h: int, w: int, n: int, ok: Callable[[int], bool]) -> tuple[int, int]:
    """(box height, box width) of about n pixels and about the image's aspect ratio, for which ok(bh * bw).
    Scored by |bh * bw - n| / (h * w) + 0.1 * |log(aspect / image aspect)|: a 10 % aspect error weighs
    as much as a 1 % hole-ratio error."""
    if n <= 0:
        return 0, 0
    ideal = round(math.sqrt(n * h / w))

    def best(heights):
        cands = []
        for bh in heights:
            for bw in {min(w, max(1, n // bh)), min(w, max(1, -(-n // bh)))}:
                score = abs(bh * bw - n) / (h * w) + 0.1 * abs(math.log(bh * w / (bw * h)))
                if ok(bh * bw):
                    cands.append((score, bh, bw))
        return min(cands, default=None)

    found = best(range(max(1, ideal - 3), min(h, ideal + 3) + 1)) or best(range(1, h + 1))
    if found is None:
        raise InputError(f"no centred box of about {n} pixels fits a {w}x{h} mask")
    return found[1], found[2]


def _center(h, w, ratio, bucket, rng):
    total = h * w
    bh, bw = _centred_box(h, w, max(1, round(ratio * total)), lambda c: _in_bucket(c, total, bucket))
    return _box_mask(h, w, (h - bh) // 2, (w - bw) // 2, bh, bw)


def _expand(h, w, ratio, bucket, rng):
    total = h * w
    keep = total - max(1, round(ratio * total))
    bh, bw = _centred_box(h, w, keep, lambda c: _in_bucket(total - c, total, bucket))
    return ~_box_mask(h, w, (h - bh) // 2, (w - bw) // 2, bh, bw)


def _half(h, w, ratio, bucket, rng):
    side = int(rng.random() * 4)  # 0 left, 1 right, 2 top, 3 bottom
    n = w if side < 2 else h
    ks = sorted(range(1, n + 1), key=lambda k: abs(k / n - ratio))
    k = next(k for k in ks if bucket_of(k / n) == bucket)
    m = np.zeros((h, w), bool)
    if side == 0:
        m[:, :k] = True
    elif side == 1:
        m[:, w - k:] = True
    elif side == 2:
        m[:k] = True
    else:
        m[h - k:] = True
    return m


def _lines(h, w, ratio, bucket, rng):
    m = np.zeros((h, w), bool)
    m[1::2] = True
    return m


def _sr_hole(h: int, w: int, s: int) -> float:
    return 1.0 - (-(-h // s)) * (-(-w // s)) / (h * w)


def _sr(h, w, ratio, bucket, rng):
    scales = [s for s in range(2, min(h, w) + 1) if bucket_of(_sr_hole(h, w, s)) == bucket]
    s = min(scales, key=lambda s: abs(_sr_hole(h, w, s) - ratio))
    m = np.ones((h, w), bool)
    m[::s, ::s] = False
    return m


def _face(region):
    def make(h, w, ratio, bucket, rng):
        x0, y0, x1, y1 = FACE_REGIONS[region]
        m = np.zeros((h, w), bool)
        m[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)] = True
        return m
    return make


# ---------------------------------------------------------------------------------------------
# Free-form families: random shapes laid down one after the other until the hole is large enough.
# Each shape comes as (bounding box, arrival function): arrival(xs, ys) <= 1 says how far the shape
# must have grown to cover the pixel at (xs, ys) (inf: never), so the last shape can be grown only as
# far as the target pixel count needs, and smaller targets give subsets of larger ones. Arrival is
# evaluated only on the pixels not covered yet, which keeps dense masks cheap.

Shape = tuple[tuple[slice, slice], Callable[[np.ndarray, np.ndarray], np.ndarray]]


def _bbox(h: int, w: int, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
    """Rows and columns of the pixels (x right, y down) of [x0, x1] x [y0, y1] inside the image, or None."""
    i0, i1 = max(0, math.floor(y0)), min(h - 1, math.ceil(y1))
    j0, j1 = max(0, math.floor(x0)), min(w - 1, math.ceil(x1))
    if i1 < i0 or j1 < j0:
        return None
    return slice(i0, i1 + 1), slice(j0, j1 + 1)


def _capsule(h: int, w: int, p0, p1, radius: float) -> Shape | None:
    """The segment p0 -> p1 with round caps of the given radius, growing from p0."""
    (ax, ay), (bx, by) = p0, p1
    box = _bbox(h, w, min(ax, bx) - radius, min(ay, by) - radius, max(ax, bx) + radius, max(ay, by) + radius)
    if box is None:
        return None
    dx, dy = bx - ax, by - ay
    l2 = dx * dx + dy * dy
    r2 = radius * radius

    def arrival(xs, ys):
        qx, qy = xs - ax, ys - ay
        # The start cap grows first, as a disc from p0 (arrival -1 .. 0), then the segment extends (0 .. 1).
        q2 = qx * qx + qy * qy
        disc = np.where(q2 <= r2, np.sqrt(q2) / radius - 1.0, np.inf)
        if l2 == 0.0:
            return disc
        s = (qx * dx + qy * dy) / l2                      # projection of the pixel onto the segment's line
        ex, ey = qx - s * dx, qy - s * dy
        d2 = ex * ex + ey * ey                            # squared distance to that line
        half = np.sqrt(np.maximum(r2 - d2, 0.0) / l2)     # half the covered stretch of the line, in s units
        along = np.maximum(s - half, 0.0)
        never = (d2 > r2) | (s + half < 0.0) | (along > 1.0)
        return np.minimum(disc, np.where(never, np.inf, along))

    return box, arrival


def _grow_box(h: int, w: int, cx: float, cy: float, half_w: float, half_h: float) -> Shape | None:
    """An axis-aligned box centred on (cx, cy), growing from its centre."""
    box = _bbox(h, w, cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    if box is None:
        return None

    def arrival(xs, ys):
        t = np.maximum(np.abs(xs - cx) / half_w, np.abs(ys - cy) / half_h)
        return np.where(t <= 1.0, t, np.inf)

    return box, arrival


def _box_shapes(h: int, w: int, rng: np.random.Generator) -> Iterator[Shape]:
    while True:
        u = rng.random(4)
        bw, bh = (0.1 + 0.4 * u[0]) * w, (0.1 + 0.4 * u[1]) * h
        cx, cy = u[2] * (w - bw) + bw / 2 - 0.5, u[3] * (h - bh) + bh / 2 - 0.5
        shape = _grow_box(h, w, cx, cy, bw / 2, bh / 2)
        if shape is not None:
            yield shape


def _bounce(v: float, hi: float) -> float:
    """Reflect a coordinate that left [0, hi] back inside (strokes bounce off the border)."""
    if v < 0.0:
        v = -v
    elif v > hi:
        v = 2.0 * hi - v
    return min(max(v, 0.0), hi)


def _stroke_shapes(h: int, w: int, rng: np.random.Generator, widths: tuple[float, float]) -> Iterator[Shape]:
    """Zig-zag brush strokes: 4-12 segments turning by 2pi/5 +- 2pi/15 to alternating sides of a random
    heading, lengths up to a quarter of the image diagonal, bouncing off the border, one brush width
    per stroke."""
    avg_radius = math.hypot(h, w) / 8
    side = min(h, w)
    while True:
        u = rng.random(5)
        n_seg = 4 + int(u[0] * 9)
        radius = max(0.75, 0.5 * side * (widths[0] + (widths[1] - widths[0]) * u[1]))
        heading = 2 * math.pi * u[2]
        x, y = u[3] * (w - 1), u[4] * (h - 1)
        v = rng.random((n_seg, 2))
        for k in range(n_seg):
            turn = 2 * math.pi / 5 + (2 * math.pi / 15) * (2 * v[k, 0] - 1)
            angle = heading + (turn if k % 2 else -turn)
            length = avg_radius * (0.25 + 1.75 * v[k, 1])
            nx = _bounce(x + length * math.cos(angle), w - 1.0)
            ny = _bounce(y + length * math.sin(angle), h - 1.0)
            shape = _capsule(h, w, (x, y), (nx, ny), radius)
            if shape is not None:
                yield shape
            x, y = nx, ny


def _lay_down(h: int, w: int, shapes: Iterator[Shape], ratio: float, bucket: int, family: str) -> np.ndarray:
    total = h * w
    target = max(1, round(ratio * total))
    m = np.zeros((h, w), bool)
    count = 0
    for _ in range(_MAX_SHAPES):
        (rows, cols), arrival = next(shapes)
        iy, ix = np.nonzero(~m[rows, cols])
        iy += rows.start
        ix += cols.start
        t = arrival(ix.astype(np.float64), iy.astype(np.float64))  # [pixels not covered yet]
        hit = t <= 1.0
        n_new = int(hit.sum())
        if count + n_new < target:
            m[iy[hit], ix[hit]] = True
            count += n_new
            continue
        # Grow this shape only as far as the target needs: to just below or just past it.
        times = np.sort(t[hit])
        cut = times[target - count - 1]
        under = int(np.searchsorted(times, cut, "left"))
        over = int(np.searchsorted(times, cut, "right"))
        options = [(n, grow) for n, grow in ((under, t < cut), (over, t <= cut))
                   if _in_bucket(count + n, total, bucket)]
        if not options:  # this shape would jump over the whole bucket: leave it out
            continue
        n, grow = min(options, key=lambda o: abs(count + o[0] - target))
        m[iy[grow], ix[grow]] = True
        return m
    if not _in_bucket(count, total, bucket):
        raise InputError(f"{family}: could not reach a hole ratio in {bucket_label(bucket)} "
                         f"(got {count / total:.3f} after {_MAX_SHAPES} shapes)")
    return m


_MAKERS = {
    "center": _center, "expand": _expand, "half": _half, "lines": _lines, "sr": _sr,
    "eyes": _face("eyes"), "nose": _face("nose"), "mouth": _face("mouth"),
}


def make_mask(family: str, ratio: float, *, seed: int, size: int | tuple[int, int]) -> np.ndarray:
    """A bool [H, W] hole mask (True = hole) of `family` whose hole fraction lies in bucket_of(ratio),
    as close to `ratio` as the family allows. size: an int (square) or (height, width), 16 to 8192.
    Same (family, ratio, seed, size) -> same mask; families without randomness (center, lines, sr,
    expand, eyes, nose, mouth) ignore the seed. See the module docstring for the families."""
    _check_family(family)
    h, w = _hw(size)
    r = float(ratio)
    if not 0.0 < r <= 1.0:
        raise InputError(f"the hole ratio must be in (0, 1], got {ratio}")
    bucket = bucket_of(r)
    if bucket not in _REACHABLE[family]:
        reach = ", ".join(bucket_label(b) for b in _REACHABLE[family])
        raise InputError(f"mask family {family!r} cannot reach the hole-ratio bucket {bucket_label(bucket)} "
                         f"of the target {r:g}; it reaches {reach}")
    rng = _rng(family, seed)
    if family == "boxes":
        m = _lay_down(h, w, _box_shapes(h, w, rng), r, bucket, family)
    elif family in STROKE_WIDTHS:
        m = _lay_down(h, w, _stroke_shapes(h, w, rng, STROKE_WIDTHS[family]), r, bucket, family)
    else:
        m = _MAKERS[family](h, w, r, bucket, rng)
    achieved = m.mean()
    if not _in_bucket(int(m.sum()), h * w, bucket):
        raise InputError(f"{family} at {w}x{h}: the hole ratio {achieved:.4f} is outside {bucket_label(bucket)}")
    return m


# ---------------------------------------------------------------------------------------------
# Presets of the inpaint command.

PRESETS = ("center", "left", "right", "top", "bottom", "rect:x,y,w,h")
_NUM = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*"


def preset_mask(spec: str, size: int | tuple[int, int]) -> np.ndarray:
    """A bool [H, W] hole mask from a preset name. size: an int (square) or (height, width).

    center: the centred box of half the height and half the width (a quarter of the image);
    left / right / top / bottom: that half of the image (W // 2 columns or H // 2 rows);
    rect:x,y,w,h: a box with top-left corner (x, y), width w and height h. A number written with a dot
    is a fraction of the image width (x, w) or height (y, h) in [0, 1] ('rect:0.25,0.5,0.5,0.25' is the
    middle half of the lower half); a number without one is pixels ('rect:64,128,128,64'); the two may
    be mixed. The box must lie inside the image and cover at least one pixel.
    """
    h, w = _hw(size, 2, 1 << 20)
    m = np.zeros((h, w), bool)
    spec = spec.strip()
    if spec == "center":
        m[h // 4:h - h // 4, w // 4:w - w // 4] = True
    elif spec == "left":
        m[:, :w // 2] = True
    elif spec == "right":
        m[:, w - w // 2:] = True
    elif spec == "top":
        m[:h // 2] = True
    elif spec == "bottom":
        m[h - h // 2:] = True
    elif spec.startswith("rect:"):
        x0, x1, y0, y1 = _parse_rect(spec, h, w)
        m[y0:y1, x0:x1] = True
    else:
        raise InputError(f"unknown mask preset {spec!r}; presets: {', '.join(PRESETS)}")
    return m


def _parse_rect(spec: str, h: int, w: int) -> tuple[int, int, int, int]:
    match = re.fullmatch(r"rect:" + ",".join([_NUM] * 4), spec)
    if not match:
        raise InputError(f"mask preset {spec!r}: expected rect:x,y,w,h with four non-negative numbers, "
                         f"pixels (64) or fractions of the image written with a dot (0.25)")
    px = []
    for text, extent, name in zip(match.groups(), (w, h, w, h), "xywh"):
        v = float(text)
        if "." in text:
            if v > 1.0:
                raise InputError(f"mask preset {spec!r}: {name}={text} is written as a fraction (with a dot) "
                                 f"but is above 1")
            v *= extent
        px.append(v)
    x, y, bw, bh = px
    x0, x1 = math.floor(x + 0.5), math.floor(x + bw + 0.5)
    y0, y1 = math.floor(y + 0.5), math.floor(y + bh + 0.5)
    if x1 > w or y1 > h:
        raise InputError(f"mask preset {spec!r}: the box (x {x0}..{x1}, y {y0}..{y1}) extends past the "
                         f"{w}x{h} image")
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"mask preset {spec!r}: the box is less than a pixel wide or high")
    return x0, x1, y0, y1


# ---------------------------------------------------------------------------------------------
# Files.

def write_masks(family: str, ratio: float, *, seed: int, size: int | tuple[int, int], out: str) -> list[dict]:
    """Write mask PNGs (white = hole). family: one of FAMILIES, writing the PNG `out`, or 'all', writing
    <family>.png into the folder `out` for every family that reaches the ratio's bucket.
    Returns one entry per family: {'family', 'path', 'ratio', 'bucket'} or {'family', 'skipped': why}."""
    if family == "all":
        if os.path.exists(out) and not os.path.isdir(out):
            raise InputError(f"{out}: exists and is not a folder (--family all writes one PNG per family there)")
        os.makedirs(out, exist_ok=True)
        targets = [(f, os.path.join(out, f"{f}.png")) for f in FAMILIES]
    else:
        _check_family(family)
        if os.path.isdir(out):
            raise InputError(f"{out}: is a folder; give the path of the PNG to write")
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise InputError(f"{out}: the folder {parent} does not exist")
        targets = [(family, out)]
    r = float(ratio)
    bucket = bucket_of(r) if 0.0 < r <= 1.0 else None
    results = []
    for fam, path in targets:
        if family == "all" and bucket is not None and bucket not in _REACHABLE[fam]:
            reach = ", ".join(bucket_label(b) for b in _REACHABLE[fam])
            results.append({"family": fam, "skipped": f"reaches only {reach}"})
            continue
        m = make_mask(fam, r, seed=seed, size=size)
        save_png(path, mask_to_u8(m))
        results.append({"family": fam, "path": path, "ratio": float(m.mean()), "bucket": bucket_of(m.mean())})
    return results
