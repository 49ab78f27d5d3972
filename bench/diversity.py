"""The joint diversity term on the shipped demo model: diversity against the fit to the known pixels.

    python bench/diversity.py --faces 10 --weights 0,0.02,0.05,0.1

For each held-out demo face (data seed 21, which no training used) and each mask (`center`, and the
face's `mouth` box), K = 4 seeds are inpainted with the `demo` preset and each diversity weight. Printed
per weight and mask, means over the faces: diversity (mean pairwise LPIPS of the completions inside the
hole, the metric `inpaint` reports), known-region PSNR, and the fraction of completions the renderer's
oracle finds plausible (`faces.plausibility`).
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

from jax_inpaint.demo import faces
from jax_inpaint.demo.run import face_hole
from jax_inpaint.inversion.inpainter import Inpainter

DATA_SEED = 21


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=10)
    ap.add_argument("--weights", default="0,0.05")
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    runners = {w: Inpainter("demo-faces", config="demo", diversity=w) for w in weights}
    rows = {}
    for i in range(args.faces):
        spec = faces.sample_spec(faces.face_rng(DATA_SEED, i))
        img = faces.render(spec, 32)
        for mask in ("center", "mouth"):
            hole = "center" if mask == "center" else face_hole("mouth", 32)
            for w, run in runners.items():
                r = run(img, hole, range(args.seeds), progress=False)
                m = r.metrics
                uint8 = np.clip((r.completions + 1) * 127.5, 0, 255).round().astype(np.uint8)
                plausible = np.mean([faces.plausibility(x)["plausible"] for x in uint8])
                psnr = statistics.mean(e["known_psnr"] for e in m["seeds"])
                rows.setdefault((mask, w), []).append((m["diversity_hole_lpips"], psnr, plausible))
    print(f"demo-faces, `demo` preset, K = {args.seeds}, {args.faces} held-out faces (data seed {DATA_SEED})")
    print(f"{'mask':<8} {'weight':>7} {'diversity':>10} {'x w=0':>6} {'known PSNR':>11} {'plausible':>10}")
    for mask in ("center", "mouth"):
        base = statistics.mean(d for d, _, _ in rows[(mask, weights[0])])
        for w in weights:
            d, p, q = (statistics.mean(x[j] for x in rows[(mask, w)]) for j in range(3))
            print(f"{mask:<8} {w:>7g} {d:>10.4f} {d / base:>6.2f} {p:>11.2f} {q:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
