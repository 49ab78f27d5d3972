#!/usr/bin/env python
"""Measure the shipped demo models (the numbers of bench/RESULTS.md, section "Demo model").

    python bench/demo_model.py --out /tmp/demo_bench    # writes demo_model.json, prints the RESULTS.md section

Everything is measured on renders of data set seeds that no training used (--seed, default 21) and
on generated faces: the classifier's accuracy per attribute; the fraction of generated faces that the
renderer's oracle (faces.plausibility) and the classifier (label rules, confidence) find plausible,
with the same measured on renders as the reference; centre-hole inpainting against biharmonic (hole
LPIPS and PSNR); and Smiling = 1 / 0 success on the mouth hole. Timings are of this machine.
"""
import argparse
import json
import os
import time

import jax

from jax_inpaint import images
from jax_inpaint.demo import quality
from jax_inpaint.demo.run import DEMO_OPTIONS, mouth_hole
from jax_inpaint.demo.train_classifier import attribute_accuracy
from jax_inpaint.models.lpips import load_lpips
from jax_inpaint.models.stylegan2 import load_generator
from jax_inpaint.models.vit import load_classifier


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=21, help="data set seed of the held-out renders")
    p.add_argument("--accuracy-images", type=int, default=2000)
    p.add_argument("--samples", type=int, default=500, help="generated faces for plausibility")
    p.add_argument("--faces", type=int, default=10, help="held-out faces for the inpainting measurements")
    p.add_argument("--seeds", type=int, default=4, help="completions per face")
    p.add_argument("--steps", type=int, default=DEMO_OPTIONS["steps"])
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    G, clf = load_generator("demo-faces"), load_classifier("demo-faces")
    res = {"machine": f"{os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()})", "args": vars(a)}

    t = time.time()
    imgs, labels = quality.held_out_faces(a.accuracy_images, seed=a.seed, size=G.img_resolution)
    res["classifier_accuracy"] = attribute_accuracy(clf, imgs, labels)
    res["renders_plausibility"] = quality.plausibility_report(imgs[:a.samples], clf)
    samples = quality.sample_faces(G, a.samples, key=jax.random.key(a.seed))
    res["generated_plausibility"] = quality.plausibility_report(samples, clf)
    grid = images.image_grid([images.display_tile(im, 2 * G.img_resolution) for im in samples[:64]], ncols=8, pad=2)
    images.save_png(os.path.join(a.out, "generated_faces.png"), grid)   # to look at
    samples07 = quality.sample_faces(G, a.samples, key=jax.random.key(a.seed), truncation_psi=0.7)
    res["generated_plausibility_psi0.7"] = quality.plausibility_report(samples07, clf)
    res["seconds_plausibility"] = time.time() - t
    print(json.dumps({k: res[k] for k in ("classifier_accuracy", "generated_plausibility")}, indent=1), flush=True)

    options = dict(DEMO_OPTIONS, steps=a.steps, chunk=min(DEMO_OPTIONS["chunk"], a.steps))
    test_faces = imgs[:a.faces]
    seeds = list(range(a.seeds))
    t = time.time()
    res["centre_hole"] = quality.inpainting_vs_biharmonic(G, test_faces, quality.centre_hole(G.img_resolution),
                                                          seeds=seeds, lpips_model=load_lpips(), **options)
    res["seconds_centre_hole"] = time.time() - t
    print(json.dumps(res["centre_hole"], indent=1), flush=True)
    t = time.time()
    res["smiling_control"] = quality.attribute_control(G, clf, test_faces, mouth_hole(G.img_resolution),
                                                       attribute="Smiling", seeds=seeds, **options)
    res["seconds_smiling"] = time.time() - t
    print(json.dumps({k: v for k, v in res["smiling_control"].items() if not k.startswith("p_")}, indent=1))
    with open(os.path.join(a.out, "demo_model.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(markdown(res))
    print(f"wrote {os.path.join(a.out, 'demo_model.json')}")


def markdown(res: dict) -> str:
    """The section of bench/RESULTS.md that these measurements fill."""
    acc = res["classifier_accuracy"]
    lines = [f"Machine: {res['machine']}; held-out data set seed {res['args']['seed']}.", "",
             f"Classifier accuracy on {res['args']['accuracy_images']} held-out renders: mean "
             f"{sum(acc.values()) / len(acc):.3f}, min {min(acc.values()):.3f} ({min(acc, key=acc.get)}); "
             + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()), "",
             "| images | oracle plausible | classifier: label rules | decided attributes | rules and <= 2 undecided |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, key in (("held-out renders", "renders_plausibility"), ("generated, psi 1", "generated_plausibility"),
                      ("generated, psi 0.7", "generated_plausibility_psi0.7")):
        r = res[key]
        lines.append(f"| {name} (n={r['n']}) | {r['oracle_plausible']:.3f} | {r['classifier_rules']:.3f} | "
                     f"{r['classifier_confident']:.3f} | {r['classifier_plausible']:.3f} |")
    c, s = res["centre_hole"], res["smiling_control"]
    lines += ["", f"Centre hole, {c['faces']} held-out faces x {c['seeds']} seeds: hole LPIPS "
              f"{c['gan']['lpips_hole']:.4f} (GAN) vs {c['biharmonic']['lpips_hole']:.4f} (biharmonic); hole PSNR "
              f"{c['gan']['psnr_hole']:.2f} vs {c['biharmonic']['psnr_hole']:.2f} dB; the GAN wins on "
              f"{100 * c['gan_wins']:.0f}% of faces ({res['seconds_centre_hole']:.0f} s).",
              f"Mouth hole with Smiling = 1: p(Smiling) > 0.5 on {100 * s['success_target1']:.0f}% of "
              f"{s['faces']} x {s['seeds']} completions; with Smiling = 0: p < 0.5 on "
              f"{100 * s['success_target0']:.0f}% ({res['seconds_smiling']:.0f} s)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
