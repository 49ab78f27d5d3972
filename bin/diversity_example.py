"""docs/diversity.png: one held-out demo face, its mouth hole, K = 6 completions without (top) and with
(bottom) the joint diversity term (`--config demo` against `--config demo-diverse`).

    python bin/diversity_example.py [--out docs/diversity.png] [--face 3] [--mask center]
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from jax_inpaint.demo.run import demo_face, face_hole
from jax_inpaint.files import atomic_write
from jax_inpaint.images import to_uint8
from jax_inpaint.inversion.inpainter import inpaint
from jax_inpaint.inversion.outputs import masked_preview
from jax_inpaint.masks import preset_mask


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/diversity.png")
    ap.add_argument("--face", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--mask", default="mouth", choices=("mouth", "center"))
    args = ap.parse_args()
    img, _ = demo_face(args.face)
    hole = face_hole("mouth", 32) if args.mask == "mouth" else preset_mask("center", 32)
    rows = []
    for preset in ("demo", "demo-diverse"):
        r = inpaint(img, hole, "demo-faces", seeds=range(args.seeds), config=preset, progress=False)
        tiles = [masked_preview(r.target, r.hole)] + [to_uint8(c) for c in r.completions]
        row = np.concatenate(tiles, axis=1)
        rows.append(row)
        print(f"{preset}: diversity (mean pairwise hole LPIPS) {r.metrics['diversity_hole_lpips']:.4f}")
    grid = np.concatenate(rows, axis=0)
    picture = Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST)
    atomic_write(args.out, lambda tmp: picture.save(tmp, format="PNG"), suffix=".png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
