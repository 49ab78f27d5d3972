"""Where the K completions' diversity comes from, on the shipped demo model: the joint diversity term
(`--diversity`) and the other parts of a recipe, against the fit to the known pixels and plausibility.

    python bench/diversity.py --faces 10 --weights 0,0.002          # the diversity weight (table 1)
    python bench/diversity.py --faces 20 --weights 0,0.0013 --space lpips   # ... with the LPIPS distance
    python bench/diversity.py --first 20 --faces 20 --weights 0,0.0013 --space lpips --power 1   # other faces, exponent
    python bench/diversity.py --faces 10 --recipes                  # one recipe change at a time (table 2)

For each held-out demo face (data seed 21, which no training used) and each mask (`center`, and the
face's `mouth` box), K = 4 seeds are inpainted with the `demo` preset (noise 'random', init w_avg + jitter
0.5, W+) changed as a row says. Printed per row and mask, means over the faces:

  diversity     mean pairwise LPIPS of the K completions inside the hole (the metric `inpaint` reports)
  hole LPIPS    LPIPS of each completion to the ground truth inside the hole (lower = closer to the truth)
  known PSNR    PSNR of the raw outputs over the known pixels (the fit the search is asked for)
  oracle        fraction of completions the renderer's plausibility oracle accepts (faces.plausibility)
  rules         fraction whose attribute decisions by the shipped classifier obey the renderer's label
                rules (quality.label_rules: one hair colour, beards on men, ...), as bench/demo_model.py

Writes the tables as markdown to --out (default: print only).
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

from jax_inpaint import images
from jax_inpaint.demo import faces, quality
from jax_inpaint.demo.run import face_hole
from jax_inpaint.inversion import search
from jax_inpaint.inversion.inpainter import Inpainter
from jax_inpaint.models.lpips import load_lpips
from jax_inpaint.models.vit import load_classifier
from jax_inpaint.study.scoring import Scorer

DATA_SEED = 21
MASKS = ("center", "mouth")
# (row name, InpaintConfig overrides of the `demo` preset): each changes one thing of the recipe.
RECIPES = (("demo preset (noise random, w_avg + jitter, W+)", {}),
           ("noise const", {"noise": "const"}),
           ("no jitter (w_avg)", {"init_jitter": 0.0}),
           ("no jitter, noise const", {"init_jitter": 0.0, "noise": "const"}),
           ("init z", {"init": "z"}),
           ("space W", {"space": "w"}),
           ("diversity 0.002, pixel distance", {"diversity": 0.002}),
           ("diversity 0.0013, LPIPS distance (demo-diverse)", {"diversity": 0.0013, "diversity_space": "lpips"}),
           ("init z + diversity 0.0013, LPIPS distance", {"init": "z", "diversity": 0.0013, "diversity_space": "lpips"}))


def measure(rows: dict[str, dict], n_faces: int, k: int, first: int = 0) -> dict[tuple[str, str], dict[str, float]]:
    """{(row, mask): {metric: mean over faces first .. first + n_faces - 1}} for the rows {name: overrides
    of the demo preset}."""
    lp = load_lpips()
    clf = load_classifier("demo-faces")
    scorer = Scorer(lp, k)
    runners = {name: Inpainter("demo-faces", config="demo", lpips_model=lp, **over) for name, over in rows.items()}
    acc: dict[tuple[str, str], list[dict]] = {}
    for i in range(first, first + n_faces):
        img = faces.render(faces.sample_spec(faces.face_rng(DATA_SEED, i)), 32)
        truth = img.astype(np.float32) / 127.5 - 1.0
        for mask in MASKS:
            hole = quality.centre_hole(32) if mask == "center" else face_hole("mouth", 32)
            for name, run in runners.items():
                r = run(img, hole, range(k), progress=False)
                u8 = images.to_uint8(r.completions)
                plaus = quality.plausibility_report(u8, clf)
                scores = scorer(r.completions, truth, hole)
                acc.setdefault((name, mask), []).append({
                    "diversity": r.metrics["diversity_hole_lpips"],
                    "hole_lpips": float(np.mean(scores["lpips_hole"])),
                    "known_psnr": statistics.mean(e["known_psnr"] for e in r.metrics["seeds"]),
                    "oracle": plaus["oracle_plausible"], "rules": plaus["classifier_rules"]})
    return {key: {m: statistics.mean(v[m] for v in vals) for m in vals[0]} for key, vals in acc.items()}


def table(res: dict, rows: list[str], base: str) -> str:
    lines = ["| mask | recipe | diversity | x first row | hole LPIPS to truth | known PSNR dB | oracle plausible | "
             "classifier rules |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mask in MASKS:
        b = res[(base, mask)]["diversity"]
        for name in rows:
            r = res[(name, mask)]
            lines.append(f"| {mask} | {name} | {r['diversity']:.4f} | {r['diversity'] / b:.2f} | {r['hole_lpips']:.4f} | "
                         f"{r['known_psnr']:.2f} | {r['oracle']:.3f} | {r['rules']:.3f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=10, help="how many held-out faces")
    ap.add_argument("--first", type=int, default=0, help="the first face's index (faces first .. first + faces - 1)")
    ap.add_argument("--weights", default="0,0.002", help="diversity weights (table 1; the first is the base)")
    ap.add_argument("--recipes", action="store_true", help="table 2: RECIPES instead of the weights")
    ap.add_argument("--only", default=None, help="with --recipes: the first recipe and those whose name contains this")
    ap.add_argument("--space", default="pixels", choices=("pixels", "lpips"),
                    help="the diversity term's distance (diversity_space) for the weights' rows")
    ap.add_argument("--power", type=float, default=search.LPIPS_DIVERSITY_POWER,
                    help="the LPIPS distance's exponent in the term (search.LPIPS_DIVERSITY_POWER)")
    ap.add_argument("--seeds", type=int, default=4, help="K")
    ap.add_argument("--out", default=None, help="also write the table (markdown) here")
    args = ap.parse_args()
    search.LPIPS_DIVERSITY_POWER = args.power  # read when the search is traced
    if args.recipes:
        rows = dict(r for i, r in enumerate(RECIPES) if i == 0 or args.only is None or args.only in r[0])
    else:
        weights = [float(w) for w in args.weights.split(",")]
        space = "" if args.space == "pixels" else f" ({args.space}^{args.power:g})"
        rows = {f"diversity {w:g}{space if w else ''}": {"diversity": w, "diversity_space": args.space} for w in weights}
    res = measure(rows, args.faces, args.seeds, args.first)
    head = (f"demo-faces, `demo` preset, K = {args.seeds}, {args.faces} held-out faces {args.first}-"
            f"{args.first + args.faces - 1} (data seed {DATA_SEED}), "
            "means over the faces")
    text = head + "\n\n" + table(res, list(rows), next(iter(rows)))
    print(text, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
