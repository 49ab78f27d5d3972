#!/usr/bin/env python
"""Measure the shipped demo CLIP (`--clip demo-faces`): the numbers of bench/RESULTS.md, section "Demo CLIP".

    python bench/demo_clip.py --out /tmp/demo_clip_bench      # writes demo_clip.json and prompts.png, prints the section

Everything is measured on renders of a data set seed that no training used (--seed, default 31):

1. With/without accuracy: for every attribute, how often the CLIP scores the true one of "a face with X" /
   "a face without X" higher (jax_inpaint.demo.train_clip.PROMPT_PAIRS), on --accuracy-images renders;
   also the balanced accuracy (the mean over faces with and without X), as most attributes are rare.
2. Prompt steering: CLIP-constrained inpainting (the `demo` preset, `--clip demo-faces --prompt ...`) of
   --faces held-out faces x --seeds seeds for each task of TASKS (a prompt, a face-region hole, the attribute
   it asks for): the fraction of completions that the shipped *classifier* (an independent model) judges to
   have the attribute (p >= 0.5), with the prompt and in the same run without it. The faces of a task are the
   first ones of the held-out set that lack the attribute (and can have it: lipstick only on women, as the
   renderer draws it), so a completion that has it was made so by the prompt, not copied from the truth.
   Also the known-region PSNR and the renderer's plausibility oracle of the completions, with and without.

Options: --clip-weight / --steps override the `demo` preset's (to tune them); --select any takes the first
faces whatever their attributes.
"""
import argparse
import json
import os
import time

import numpy as np

from jax_inpaint import images
from jax_inpaint.demo import faces
from jax_inpaint.demo.run import DEMO_OPTIONS, TILE, face_hole
from jax_inpaint.demo.train_clip import PROMPT_PAIRS, heldout_accuracy

# (name, prompt, face region of the hole, classifier attribute the prompt asks for)
TASKS = (("smiling", "a face with a smile", "mouth", "Smiling"),
         ("lipstick", "a face with lipstick", "mouth", "Wearing_Lipstick"),
         ("eyeglasses", "a face with eyeglasses", "eyes", "Eyeglasses"),
         ("open_mouth", "a face with an open mouth", "mouth", "Mouth_Slightly_Open"))


def select_faces(seed: int, n: int, attribute: str, select: str, limit: int = 2000) -> list[int]:
    """Indices of the first n faces of the data set `seed` for a task (see the module docstring)."""
    out = []
    for i in range(limit):
        lab = faces.labels(faces.sample_spec(faces.face_rng(seed, i)))
        if select == "any" or (not lab[attribute] and not (attribute == "Wearing_Lipstick" and lab["Male"])):
            out.append(i)
            if len(out) == n:
                return out
    raise RuntimeError(f"fewer than {n} faces for {attribute} among the first {limit}")


def render(seed: int, index: int, size: int) -> np.ndarray:
    return faces.render(faces.sample_spec(faces.face_rng(seed, index)), size)


def steering(inpainter, task, seed: int, n_faces: int, seeds, select: str, size: int) -> dict:
    name, prompt, region, attribute = task
    hole = face_hole(region, size)
    idx = select_faces(seed, n_faces, attribute, select)
    out = {"prompt": prompt, "region": region, "attribute": attribute, "faces": idx}
    tiles = []
    for mode, prompts in (("with", [prompt]), ("without", None)):
        probs, psnr, plaus, sims = [], [], [], []
        for k, i in enumerate(idx):
            img = render(seed, i, size)
            res = inpainter(img, hole, seeds, prompts=prompts, progress=False)
            probs.append([e["attributes"][attribute] for e in res.metrics["seeds"]])
            psnr.append([e["known_psnr"] for e in res.metrics["seeds"]])
            plaus.append([bool(faces.plausibility(images.to_uint8(c))["plausible"]) for c in res.completions])
            if prompts:
                sims.append([e["clip_similarity"][prompt] for e in res.metrics["seeds"]])
            if k < 3:
                tiles.append((k, mode, img, res.completions))
        p = np.asarray(probs)
        out[mode] = {"has_attribute": float(np.mean(p >= 0.5)), "mean_probability": float(p.mean()),
                     "faces_with_any": float(np.mean((p >= 0.5).any(axis=1))),
                     "known_psnr": float(np.mean(psnr)), "oracle_plausible": float(np.mean(plaus)),
                     "p": p.round(4).tolist()}
        if sims:
            out[mode]["clip_similarity"] = float(np.mean(sims))
    out["gain_points"] = 100 * (out["with"]["has_attribute"] - out["without"]["has_attribute"])
    out["tiles"] = tiles
    return out


def picture(results: list[dict], path: str, k: int) -> None:
    """Rows: per task, its first faces without then with the prompt (truth, K completions)."""
    tiles, labels = [], []
    for r in results:
        for face, mode, img, comps in sorted(r["tiles"], key=lambda t: (t[0], t[1] == "with")):
            tiles.append(images.display_tile(img, TILE))
            labels.append(f"{r['attribute'][:12]} #{r['faces'][face]}")
            for j, c in enumerate(comps[:k]):
                tiles.append(images.display_tile(c, TILE))
                labels.append("prompt" if mode == "with" else "no prompt")
    images.save_png(path, images.image_grid(tiles, ncols=1 + k, labels=labels, pad=4))


def main():
    from jax_inpaint.inversion.inpainter import Inpainter
    from jax_inpaint.models.clip import load_clip
    from jax_inpaint.models.vit import load_classifier
    import jax

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--clip", default="demo-faces", help="CLIP model folder or shipped name")
    p.add_argument("--seed", type=int, default=31, help="data set seed of the held-out renders")
    p.add_argument("--accuracy-images", type=int, default=2000)
    p.add_argument("--faces", type=int, default=10)
    p.add_argument("--seeds", type=int, default=4, help="completions per face")
    p.add_argument("--steps", type=int, default=None, help="default: the demo preset's")
    p.add_argument("--clip-weight", type=float, default=None, help="default: the demo preset's")
    p.add_argument("--tasks", default=",".join(t[0] for t in TASKS))
    p.add_argument("--select", choices=("absent", "any"), default="absent")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    clip, clf = load_clip(a.clip), load_classifier("demo-faces")
    res = {"machine": f"{os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()})", "args": vars(a)}

    t = time.time()
    if a.accuracy_images:
        res["with_without"] = heldout_accuracy(clip, a.accuracy_images, a.seed)
        res["seconds_accuracy"] = time.time() - t
        for name, r in res["with_without"].items():
            print(f"{name:22s} accuracy {r['accuracy']:.3f}  balanced {r['balanced']:.3f}  ({r['positives']} with)",
                  flush=True)

    options = dict(DEMO_OPTIONS)
    if a.steps is not None:
        options.update(steps=a.steps, chunk=min(options["chunk"], a.steps))
    if a.clip_weight is not None:
        options["clip_weight"] = a.clip_weight
    res["options"] = options
    inpainter = Inpainter("demo-faces", clip=clip, classifier=clf, **options)
    seeds = list(range(a.seeds))
    res["steering"] = []
    wanted = a.tasks.split(",")
    for task in TASKS:
        if task[0] not in wanted:
            continue
        t = time.time()
        r = steering(inpainter, task, a.seed, a.faces, seeds, a.select, inpainter.G.img_resolution)
        r["seconds"] = time.time() - t
        res["steering"].append(r)
        print(f"{task[0]:11s} {task[1]!r}: with the prompt {r['with']['has_attribute']:.3f}, without "
              f"{r['without']['has_attribute']:.3f} ({r['gain_points']:+.0f} points); known PSNR "
              f"{r['with']['known_psnr']:.2f} / {r['without']['known_psnr']:.2f} dB; oracle plausible "
              f"{r['with']['oracle_plausible']:.2f} / {r['without']['oracle_plausible']:.2f} ({r['seconds']:.0f} s)",
              flush=True)
    picture(res["steering"], os.path.join(a.out, "prompts.png"), a.seeds)
    for r in res["steering"]:
        del r["tiles"]
    with open(os.path.join(a.out, "demo_clip.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(markdown(res))
    print(f"wrote {os.path.join(a.out, 'demo_clip.json')} and {os.path.join(a.out, 'prompts.png')}")


def markdown(res: dict) -> str:
    """The section of bench/RESULTS.md that these measurements fill."""
    a = res["args"]
    lines = [f"Machine: {res['machine']}; held-out data set seed {a['seed']}.", ""]
    if "with_without" in res:
        ww = res["with_without"]
        acc = [v["accuracy"] for v in ww.values()]
        bal = [v["balanced"] for v in ww.values()]
        lines += [f"**With/without accuracy** on {a['accuracy_images']} held-out renders (\"a face with X\" against "
                  f"\"a face without X\"): mean {np.mean(acc):.3f} (balanced {np.mean(bal):.3f}), min "
                  f"{min(acc):.3f} ({min(ww, key=lambda k: ww[k]['accuracy'])}).", "",
                  "| attribute | prompt | accuracy | balanced |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {k} | {PROMPT_PAIRS[k][0]} | {v['accuracy']:.3f} | {v['balanced']:.3f} |" for k, v in ww.items()]
        lines.append("")
    o = res["options"]
    lines += [f"**Prompt steering** (`demo` preset: {o['steps']} steps, clip_weight {o.get('clip_weight', 1.0)}; "
              f"{a['faces']} held-out faces lacking the attribute x {a['seeds']} seeds): the fraction of completions "
              "the classifier judges to have the attribute.", "",
              "| prompt | hole | attribute | with the prompt | without | gain | known PSNR with / without | "
              "oracle plausible with / without |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["steering"]:
        lines.append(f"| {r['prompt']} | {r['region']} | {r['attribute']} | {r['with']['has_attribute']:.3f} | "
                     f"{r['without']['has_attribute']:.3f} | {r['gain_points']:+.0f} pts | "
                     f"{r['with']['known_psnr']:.2f} / {r['without']['known_psnr']:.2f} dB | "
                     f"{r['with']['oracle_plausible']:.2f} / {r['without']['oracle_plausible']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
