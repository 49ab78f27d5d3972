"""`jax-inpaint demo`: the shipped demo models at work on a face they have never seen.

A face from a held-out render set (`DEMO_DATA_SEED`, which no training run used) loses its mouth; the
demo generator fills the hole K ways three times: freely, with the demo classifier asking for
Smiling = 1, and asking for Smiling = 0. One labelled grid (rows: free / Smiling=1 / Smiling=0; columns:
the ground truth, the masked input, the K completions with the classifier's Smiling probability) and
the three result folders of `save_result` are written to `out`.

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
TILE = 96                 # grid tiles are the 32-pixel images scaled up (nearest) to this size


def demo_face(index: int = 0, size: int = 32) -> tuple[np.ndarray, dict[str, bool]]:
    """Face `index` of the held-out demo set (uint8 [size, size, 3]) and its true labels."""
    from jax_inpaint.demo import faces

    spec = faces.sample_spec(faces.face_rng(DEMO_DATA_SEED, index))
    return faces.render(spec, size), faces.labels(spec)


def mouth_hole(size: int, grow: int = 1) -> np.ndarray:
    """bool [size, size]: the mouth box of the face masks, grown by `grow` pixels on every side
    (at 32 pixels the box itself is 8 x 3 pixels, too tight to redraw a mouth in)."""
    from jax_inpaint.demo.faces import mouth_box

    x0, y0, x1, y1 = mouth_box(size)
    hole = np.zeros((size, size), bool)
    hole[max(y0 - grow, 0):y1 + grow, max(x0 - grow, 0):x1 + grow] = True
    return hole


def run_demo(out: str | os.PathLike, *, seeds: Sequence[int] = range(4), steps: int | None = None, face: int = 0,
             generator=DEMO_MODEL, classifier=DEMO_MODEL, progress: bool = True) -> dict:
    """Inpaint the mouth of a held-out face K = len(seeds) ways: free, Smiling = 1 and Smiling = 0.

    Writes `out/grid.png` and the result folders `out/free`, `out/smiling`, `out/not_smiling`.
    Returns {'grid': path, 'folders': {row: path}, 'smiling': {row: [p per seed]},
    'truth': {label: bool}, 'seconds': float}.
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
    inpainter = Inpainter(generator, classifier=classifier, **options)  # the models, loaded once for the 3 rows
    size = inpainter.G.img_resolution
    img, truth = demo_face(face, size)
    hole = mouth_hole(size)
    tiles, labels, folders, probs = [], [], {}, {}
    for row, attributes in ROWS:
        res = inpainter(img, hole, seeds, attributes=attributes, progress=progress)
        folders[row] = os.path.join(out, row)
        save_result(res, folders[row])
        p = [e["attributes"]["Smiling"] for e in res.metrics["seeds"]]
        probs[row] = p
        tiles += [images.display_tile(img, TILE), images.display_tile(masked_preview(res.target, res.hole), TILE)]
        labels += ["ground truth", "masked: " + ("free" if attributes is None else f"Smiling={attributes['Smiling']:g}")]
        tiles += [images.display_tile(c, TILE) for c in res.completions]
        labels += [f"seed {s}: smile {q:.2f}" for s, q in zip(res.seeds, p)]
        blank = len(seeds) - len(res.seeds)   # seeds whose loss became NaN are dropped: keep the columns
        tiles += [np.full((TILE, TILE, 3), 255, np.uint8)] * blank
        labels += ["(dropped)"] * blank
    grid = images.image_grid(tiles, ncols=2 + len(seeds), labels=labels, pad=4)
    path = os.path.join(out, "grid.png")
    images.save_png(path, grid)
    return {"grid": path, "folders": folders, "smiling": probs, "truth": truth, "seconds": time.time() - t0}
