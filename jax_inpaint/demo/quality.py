"""What can be measured about the demo models without Inception weights: the classifier's held-out
accuracy, how plausible generated faces are (the renderer's oracle and the classifier), inpainting
against the biharmonic baseline on held-out renders, and how often an attribute target is met.

Used by tests/test_demo.py (few faces, few steps) and bench/demo_model.py (the numbers of
bench/RESULTS.md).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_inpaint import images
from jax_inpaint.errors import InputError

HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")


def held_out_faces(n: int, *, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """n renders of a data set seed that training did not use: uint8 [n,size,size,3], bool labels [n, L]."""
    from jax_inpaint.demo import faces
    from jax_inpaint.demo.train_classifier import TRAIN_DATA_SEED

    if seed == TRAIN_DATA_SEED:
        raise InputError(f"data set seed {seed} is the training set: choose another")
    imgs, labels, _ = faces.render_dataset(n, seed=seed, size=size)
    return imgs, labels


def sample_faces(G, n: int, *, key: jax.Array, truncation_psi: float = 1.0, batch: int = 64) -> np.ndarray:
    """n generated faces (z ~ N(0, I), the fixed noise) as uint8 [n, R, R, 3]."""
    out = []
    for i in range(0, n, batch):
        z = jax.random.normal(jax.random.fold_in(key, i), (min(batch, n - i), G.z_dim))
        out.append(images.to_uint8(np.asarray(G(z, truncation_psi=truncation_psi))))
    return np.concatenate(out)


def label_rules(decisions: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Whether each row of attribute decisions [N, L] (bool) obeys the renderer's rules: at most one hair
    colour; a bald face has no hair colour, bangs or hat; No_Beard exactly when there is no goatee,
    moustache or sideburns, and sideburns only with both; beards on men, lipstick on women. -> bool [N]."""
    d = {name: np.asarray(decisions)[:, j].astype(bool) for j, name in enumerate(labels)}
    colours = sum(d[c].astype(int) for c in HAIR_COLOURS)
    beard = d["Goatee"] | d["Mustache"] | d["Sideburns"]
    ok = colours <= 1
    ok &= ~d["Bald"] | ((colours == 0) & ~d["Bangs"] & ~d["Wearing_Hat"])
    ok &= d["No_Beard"] == ~beard
    ok &= ~d["Sideburns"] | (d["Goatee"] & d["Mustache"])
    ok &= ~beard | d["Male"]
    ok &= ~d["Wearing_Lipstick"] | ~d["Male"]
    return ok


def plausibility_report(imgs_u8: np.ndarray, classifier=None, confident: float = 0.8, undecided: int = 2) -> dict:
    """Fractions of images [N,R,R,3] (uint8) that pass the renderer's plausibility oracle (overall and per
    check) and, with a classifier: the fraction whose attribute decisions obey `label_rules`, the fraction
    of attribute probabilities that are decided (p <= 1 - confident or p >= confident), and the fraction
    of images that obey the rules with at most `undecided` undecided attributes."""
    from jax_inpaint.demo import faces

    checks = [faces.plausibility(im) for im in imgs_u8]
    out = {"n": len(imgs_u8), "oracle_plausible": float(np.mean([c["plausible"] for c in checks]))}
    for name in ("smooth", "face_blob", "background", "eyes", "mouth"):
        out[f"oracle_{name}"] = float(np.mean([c[name] for c in checks]))
    if classifier is not None:
        from jax_inpaint.demo.train_classifier import predict

        p = predict(classifier, imgs_u8)
        rules = label_rules(p >= 0.5, classifier.labels)
        decided = (p >= confident) | (p <= 1 - confident)
        sure = (~decided).sum(axis=1) <= undecided
        out.update(classifier_rules=float(rules.mean()), classifier_confident=float(decided.mean()),
                   classifier_plausible=float((rules & sure).mean()),
                   attribute_rates={name: float(np.mean(p[:, j] >= 0.5)) for j, name in enumerate(classifier.labels)})
    return out


def centre_hole(size: int) -> np.ndarray:
    from jax_inpaint.masks import preset_mask
    return preset_mask("center", size)


def inpainting_vs_biharmonic(G, faces_u8: np.ndarray, hole: np.ndarray, *, seeds: Sequence[int], lpips_model,
                             progress: bool = False, **options) -> dict:
    """Hole LPIPS (both images times the hole mask, as `jax-inpaint evaluate`'s lpips_hole) and hole PSNR
    of the demo inpainting (mean over seeds, then over faces) and of biharmonic inpainting.
    Returns {'gan': {...}, 'biharmonic': {...}, 'gan_wins': fraction of faces with lower hole LPIPS}."""
    from jax_inpaint.inversion.inpainter import Inpainter
    from jax_inpaint.study.baselines import biharmonic
    from jax_inpaint.study.metrics import masked_psnr

    dist = jax.jit(lambda a, b: lpips_model.masked_input_distance(lpips_model.params, a, b,
                                                                    jnp.asarray(hole, jnp.float32)))
    inpainter = Inpainter(G, **options)
    gan_lp, bh_lp, gan_psnr, bh_psnr = [], [], [], []
    for img in faces_u8:
        gt = images.to_float(img)
        res = inpainter(img, hole, seeds, progress=progress)
        comp = res.completions
        gan_lp.append(float(np.mean(np.asarray(dist(jnp.asarray(comp), jnp.broadcast_to(gt, comp.shape))))))
        gan_psnr.append(float(np.mean(masked_psnr(comp, np.broadcast_to(gt, comp.shape),
                                                  np.broadcast_to(hole, comp.shape[:3])))))
        bh = biharmonic(gt, hole)
        bh_lp.append(float(np.asarray(dist(jnp.asarray(bh)[None], jnp.asarray(gt)[None]))[0]))
        bh_psnr.append(float(masked_psnr(bh, gt, hole)))
    gan_lp, bh_lp = np.asarray(gan_lp), np.asarray(bh_lp)
    return {"gan": {"lpips_hole": float(gan_lp.mean()), "psnr_hole": float(np.mean(gan_psnr))},
            "biharmonic": {"lpips_hole": float(bh_lp.mean()), "psnr_hole": float(np.mean(bh_psnr))},
            "gan_wins": float(np.mean(gan_lp < bh_lp)), "faces": len(faces_u8), "seeds": len(list(seeds))}


def attribute_control(G, classifier, faces_u8: np.ndarray, hole: np.ndarray, *, attribute: str,
                      seeds: Sequence[int], progress: bool = False, **options) -> dict:
    """Inpaint each face with attribute = 1 and attribute = 0: the classifier's probability of it per
    face and seed, and the success rates (p > 0.5 for the target 1, p < 0.5 for 0)."""
    from jax_inpaint.inversion.inpainter import Inpainter

    inpainter = Inpainter(G, classifier=classifier, **options)  # two objectives: the targets 1 and 0
    probs = {1: [], 0: []}
    for img in faces_u8:
        for target in (1, 0):
            res = inpainter(img, hole, seeds, attributes={attribute: float(target)}, progress=progress)
            probs[target].append([e["attributes"][attribute] for e in res.metrics["seeds"]])
    p1, p0 = np.asarray(probs[1]), np.asarray(probs[0])
    return {"p_target1": p1.tolist(), "p_target0": p0.tolist(),
            "success_target1": float(np.mean(p1 > 0.5)), "success_target0": float(np.mean(p0 < 0.5)),
            "faces": len(faces_u8), "seeds": len(list(seeds))}
