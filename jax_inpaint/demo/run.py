"""`jax-inpaint demo`: the shipped demo models at work on a face they have never seen.

A face from a held-out render set (`DEMO_DATA_SEED`, which no training run used) loses its mouth; the
demo generator fills the hole K ways four times: freely, with the demo classifier asking for
Smiling = 1, asking for Smiling = 0, and with the demo CLIP asked for a text prompt (`DEMO_PROMPT`
unless another is given; a prompt about eyeglasses gets an eyes hole instead). One labelled grid
(rows: free / Smiling=1 / Smiling=0 / prompt; columns: the ground truth, the masked input, the K
completions with the classifier's Smiling probability, or on the prompt row the probability of the
attribute the prompt names) and the result folders of `save_result` are written to `out`.

The search options are `DEMO_OPTIONS`, the `demo` preset (configs/demo.yaml, also usable as
`--config demo` with every command): MSE only, no LPIPS. LPIPS runs VGG16
on every step, which at 32 pixels costs several times the generator itself on a CPU; on faces this
simple the masked MSE alone finds good completions, and the demo must finish in about a minute.
"""
from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

from jax_inpaint import images

DEMO_DATA_SEED = 7        # the held-out faces: render_dataset(seed=7); training used seed 0, accuracy seed 1
DEMO_MODEL = "demo-faces"

def _demo_options() -> dict:
    """The `demo` preset (configs/demo.yaml): the options `jax-inpaint demo` adds to the defaults."""
    import yaml

    from jax_inpaint.inversion.config import find_preset

    return dict(yaml.safe_load(find_preset("demo").read_text()))


DEMO_OPTIONS = _demo_options()
ROWS = (("free", None), ("smiling", {"Smiling": 1.0}), ("not_smiling", {"Smiling": 0.0}))
PROMPT_ROW = "prompt"     # the folder of the prompt row
DEMO_PROMPT = "a face with an open mouth"
# Words of a prompt -> the classifier attribute shown on the prompt row (the first that occurs) and the face
# region its hole covers; a prompt naming none of them shows the CLIP similarity instead, on the mouth hole.
PROMPT_ATTRIBUTES = (("lipstick", "Wearing_Lipstick", "mouth"), ("open", "Mouth_Slightly_Open", "mouth"),
                     ("smil", "Smiling", "mouth"), ("moustache", "Mustache", "mouth"),
                     ("mustache", "Mustache", "mouth"), ("goatee", "Goatee", "mouth"),
                     ("glasses", "Eyeglasses", "eyes"))
TILE = 96                 # grid tiles are the 32-pixel images scaled up (nearest) to this size


def demo_face(index: int = 0, size: int = 32) -> tuple[np.ndarray, dict[str, bool]]:
    """Face `index` of the held-out demo set (uint8 [size, size, 3]) and its true labels."""
    from jax_inpaint.demo import faces

    spec = faces.sample_spec(faces.face_rng(DEMO_DATA_SEED, index))
    return faces.render(spec, size), faces.labels(spec)


def face_hole(region: str, size: int, grow: int = 1) -> np.ndarray:
    """bool [size, size]: the box of a face region ('eyes', 'nose', 'mouth') of the face masks, grown by
    `grow` pixels on every side (at 32 pixels the mouth box itself is 8 x 3 pixels, too tight to redraw a
    mouth in)."""
    from jax_inpaint.demo.faces import region_box

    x0, y0, x1, y1 = region_box(region, size)
    hole = np.zeros((size, size), bool)
    hole[max(y0 - grow, 0):y1 + grow, max(x0 - grow, 0):x1 + grow] = True
    return hole


def mouth_hole(size: int, grow: int = 1) -> np.ndarray:
    """The demo's hole: `face_hole('mouth', size, grow)`."""
    return face_hole("mouth", size, grow)


def prompt_attribute(prompt: str) -> tuple[str | None, str]:
    """(the classifier attribute a prompt is about, or None; the face region of its hole): PROMPT_ATTRIBUTES."""
    text = prompt.lower()
    return next(((attr, region) for word, attr, region in PROMPT_ATTRIBUTES if word in text), (None, "mouth"))


def run_demo(out: str | os.PathLike, *, seeds: Sequence[int] = range(4), steps: int | None = None, face: int = 0,
             generator=DEMO_MODEL, classifier=DEMO_MODEL, clip=DEMO_MODEL, prompt: str | None = DEMO_PROMPT,
             progress: bool = True) -> dict:
    """Inpaint the mouth of a held-out face K = len(seeds) ways: free, Smiling = 1, Smiling = 0 and, unless
    `prompt` is None or empty, with the CLIP `clip` asked for `prompt`.

    Writes `out/grid.png` and the result folders `out/free`, `out/smiling`, `out/not_smiling` and
    `out/prompt`. Returns {'grid': path, 'folders': {row: path}, 'smiling': {row: [p per seed]} (the
    classifier rows), 'prompt': {'text', 'attribute' (or None), 'probs' (of that attribute, per seed),
    'similarity' (CLIP, per seed)} or None, 'truth': {label: bool}, 'seconds': float}.
    """
    from jax_inpaint.inversion.config import check_seeds
    from jax_inpaint.inversion.inpainter import Inpainter
    from jax_inpaint.inversion.outputs import masked_preview, save_result

    t0 = time.time()
    out = os.fspath(out)
    seeds = check_seeds(seeds)
    os.makedirs(out, exist_ok=True)
    options = dict(DEMO_OPTIONS)
    if steps is not None:
        options["steps"] = int(steps)
    options["chunk"] = min(options["chunk"], options["steps"])
    prompt = prompt.strip() if prompt else None
    # The models, loaded once for all rows (the CLIP only for a prompt row).
    inpainter = Inpainter(generator, classifier=classifier, clip=clip if prompt else None, **options)
    size = inpainter.G.img_resolution
    img, truth = demo_face(face, size)
    hole = mouth_hole(size)
    tiles, labels, folders, probs = [], [], {}, {}
    prompt_info = None
    rows = [(row, attributes, None) for row, attributes in ROWS] + ([(PROMPT_ROW, None, prompt)] if prompt else [])
    for row, attributes, text in rows:
        attr, region = prompt_attribute(text) if text else (None, "mouth")
        row_hole = hole if region == "mouth" else face_hole(region, size)
        res = inpainter(img, row_hole, seeds, attributes=attributes, prompts=[text] if text else None,
                        progress=progress)
        folders[row] = os.path.join(out, row)
        save_result(res, folders[row])
        tiles += [images.display_tile(img, TILE), images.display_tile(masked_preview(res.target, res.hole), TILE)]
        if text is None:
            p = [e["attributes"]["Smiling"] for e in res.metrics["seeds"]]
            probs[row] = p
            labels += ["ground truth", "masked: " + ("free" if attributes is None else
                                                     f"Smiling={attributes['Smiling']:g}")]
            labels += [f"seed {s}: smile {q:.2f}" for s, q in zip(res.seeds, p)]
        else:
            sims = [e["clip_similarity"][text] for e in res.metrics["seeds"]]
            p = [e["attributes"][attr] for e in res.metrics["seeds"]] if attr else None
            prompt_info = {"text": text, "attribute": attr, "probs": p, "similarity": sims}
            labels += ["ground truth", "masked: prompt"]
            if attr:
                short = attr.replace("Wearing_", "").replace("Mouth_Slightly_", "").lower()[:8]
                labels += [f"seed {s}: {short} {q:.2f}" for s, q in zip(res.seeds, p)]
            else:
                labels += [f"seed {s}: clip {q:.2f}" for s, q in zip(res.seeds, sims)]
        tiles += [images.display_tile(c, TILE) for c in res.completions]
        blank = len(seeds) - len(res.seeds)   # seeds whose loss became NaN are dropped: keep the columns
        tiles += [np.full((TILE, TILE, 3), 255, np.uint8)] * blank
        labels += ["(dropped)"] * blank
    grid = images.image_grid(tiles, ncols=2 + len(seeds), labels=labels, pad=4)
    path = os.path.join(out, "grid.png")
    images.save_png(path, grid)
    return {"grid": path, "folders": folders, "smiling": probs, "prompt": prompt_info, "truth": truth,
            "seconds": time.time() - t0}
