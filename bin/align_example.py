#!/usr/bin/env python
"""Draw docs/align_example.png: a real photo (scikit-image's `data.astronaut()`, a NASA portrait in the
public domain), its face aligned by the FFHQ recipe, a hole drawn on the photo over the mouth, and
completions pasted back into the photo, made with the demo generator that ships with jax-inpaint
(`inpaint --align --generator demo-faces --config demo`). The demo model knows only 32x32 drawn faces:
its content is a toy; the geometry (the crop, the warp there and back, the seam) is the point.

    python bin/align_example.py                      # -> docs/align_example.png (about a minute on 2 CPU cores)
    python bin/align_example.py --out /tmp/a.png --steps 20

Needs the extra: pip install "jax-inpaint[align]".
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TILE = 256


def mouth_hole(face, shape) -> np.ndarray:
    """An ellipse over the mouth: from corner to corner and a bit beyond, as high as half that."""
    p = face.points
    centre = (p[2] + p[3]) / 2
    half = 0.75 * np.hypot(*(p[3] - p[2]))
    img = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(img).ellipse([centre[0] - half, centre[1] - half * 0.55, centre[0] + half, centre[1] + half * 0.6],
                                fill=255)
    return np.asarray(img) >= 128


def zoom(img: np.ndarray, box) -> np.ndarray:
    return np.asarray(Image.fromarray(img).crop(box).resize((TILE, TILE), Image.Resampling.LANCZOS))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "align_example.png"))
    ap.add_argument("--steps", type=int, default=None, help="search steps (default: the demo preset's)")
    ap.add_argument("--seeds", default="0-3")
    args = ap.parse_args(argv)

    from skimage import data

    from jax_inpaint import images
    from jax_inpaint.align import ffhq
    from jax_inpaint.align.landmarks import detect_faces
    from jax_inpaint.align.photo import inpaint_photo
    from jax_inpaint.cli import parse_seeds

    photo = data.astronaut()
    face = detect_faces(photo)[0]
    hole = mouth_hole(face, photo.shape)
    options = {} if args.steps is None else {"steps": args.steps}
    res = inpaint_photo(photo, hole, "demo-faces", config="demo", seeds=parse_seeds(args.seeds), **options)

    # 1: the photo with the FFHQ crop (its top edge thicker); 2: the face aligned (at TILE pixels, as a
    # 256 generator would see it) with the recipe's eye positions; 3, 4: the hole and the completions,
    # zoomed onto the face.
    quad = ffhq.ffhq_quad(face.points)
    shown = Image.fromarray(photo)
    draw = ImageDraw.Draw(shown)
    corners = [tuple(c) for c in quad]
    draw.line(corners + [corners[0]], fill=(255, 255, 0), width=2)
    draw.line([corners[3], corners[0]], fill=(255, 255, 0), width=5)
    tiles = [np.asarray(shown.resize((TILE, TILE), Image.Resampling.LANCZOS))]
    aligned, _ = ffhq.align_image(photo, face.points, TILE)
    a = Image.fromarray(aligned)
    draw = ImageDraw.Draw(a)
    for (x, y) in (v for k, v in ffhq.recipe_positions(face.points, TILE).items() if k.startswith("eye")):
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=(255, 255, 0), width=2)
    tiles.append(np.asarray(a))
    x0, y0, x1, y1 = face.box
    c, s = ((x0 + x1) / 2, (y0 + y1) / 2), 0.75 * max(x1 - x0, y1 - y0)
    box = (int(c[0] - s), int(c[1] - s), int(c[0] + s), int(c[1] + s))
    from jax_inpaint.inversion.outputs import masked_preview

    tiles.append(zoom(masked_preview(images.to_float(photo), hole), box))
    tiles += [zoom(res.photo(i, photo), box) for i in range(min(2, len(res.seeds)))]
    labels = ["photo: the FFHQ crop", "aligned (FFHQ recipe)", "hole, drawn on the photo"]
    labels += [f"pasted back (seed {s})" for s in res.seeds[:2]]
    grid = images.image_grid(tiles, ncols=len(tiles), labels=labels)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    images.save_png(args.out, grid)
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
