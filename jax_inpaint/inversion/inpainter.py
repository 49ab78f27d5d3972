"""`inpaint()`: a photo, a hole and a StyleGAN2 -> K diverse completions, with metrics and pictures."""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from PIL import Image

from jax_inpaint import files, images
from jax_inpaint.errors import InputError
from jax_inpaint.inversion.objective import Constraints, Models, Objective
from jax_inpaint.inversion.config import InpaintConfig, check_seeds, load_config
from jax_inpaint.inversion.search import SearchResult, batches, fit_search, w_statistics


# ---------------------------------------------------------------------------------------------
# Inputs.

@dataclasses.dataclass
class Inputs:
    target: np.ndarray  # [R, R, 3] float32 in [-1, 1]
    hole: np.ndarray  # [R, R] bool, True = missing
    notices: list[str]


def _is_preset(spec: str) -> bool:
    from jax_inpaint.masks import PRESETS
    return spec in PRESETS or spec.startswith("rect:")


def load_mask(mask, shape: tuple[int, int], *, invert: bool = False) -> np.ndarray:
    """A mask file (white = hole), a preset ('center', 'left', 'rect:x,y,w,h', ...) or a bool array,
    as a bool [H, W] hole mask of the image's shape."""
    if isinstance(mask, (str, os.PathLike)):
        spec = os.fspath(mask)
        if os.path.exists(spec) or not _is_preset(spec):
            gray = images.read_gray(spec)
            if gray.shape != tuple(shape):
                raise InputError(f"{spec}: the mask is {gray.shape[1]}x{gray.shape[0]} pixels, the image "
                                 f"{shape[1]}x{shape[0]}: they must match")
            hole = gray >= 128
        else:
            from jax_inpaint.masks import preset_mask
            hole = preset_mask(spec, tuple(shape))
    else:
        hole = np.asarray(mask)
        if hole.shape != tuple(shape):
            raise InputError(f"mask of shape {hole.shape} does not match the image ({shape})")
        hole = hole.astype(bool) if hole.dtype == bool else hole > 0.5
    return ~hole if invert else hole


def prepare_inputs(image, mask, resolution: int, *, invert_mask: bool = False) -> Inputs:
    """Read/convert the image and mask and bring both to the generator's resolution."""
    notices = []
    if isinstance(image, (str, os.PathLike)):
        img = images.read_rgb(image)
    else:  # uint8 [H,W(,C)], or float [H,W(,C)] in [-1, 1] used without quantisation
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, -1)
        if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
            raise InputError(f"image array must be [H, W, 3], got {img.shape}")
        img = np.repeat(img, 3, -1) if img.shape[-1] == 1 else img[..., :3]
        if img.dtype.kind not in "uif" or (img.dtype.kind == "f" and not np.isfinite(img).all()):
            raise InputError(f"image array must hold finite numbers, got {img.dtype}"
                             + (" with NaN/inf" if img.dtype.kind == "f" else ""))
    h, w = img.shape[:2]
    hole = load_mask(mask, (h, w), invert=invert_mask)
    if (h, w) != (resolution, resolution):
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        notices.append(f"the image is {w}x{h}: centre-cropped to {s}x{s} and resized to the generator's "
                       f"{resolution}x{resolution} (Lanczos; the mask: nearest)")
        if img.dtype != np.uint8:
            img = images.to_uint8(img)
        img = images.center_crop_resize(img, resolution)
        m = Image.fromarray(hole[top:top + s, left:left + s].astype(np.uint8) * 255)
        hole = np.asarray(m.resize((resolution, resolution), Image.NEAREST)) >= 128
    if not hole.any():
        raise InputError("the mask has no hole (no white pixels): nothing to fill "
                         "(use --invert-mask if black marks the hole)")
    if hole.all():
        raise InputError("the hole covers the whole image: no known pixels to match")
    target = images.to_float(img) if img.dtype == np.uint8 else img.astype(np.float32)
    return Inputs(target, hole, notices)


# ---------------------------------------------------------------------------------------------
# Results.

@dataclasses.dataclass
class InpaintResult:
    seeds: list[int]  # the seeds that finished (NaN seeds are dropped)
    dropped: list[int]  # seeds whose loss became NaN/inf
    target: np.ndarray  # [R,R,3] in [-1,1]
    hole: np.ndarray  # [R,R] bool
    completions: np.ndarray  # [K,R,R,3] in [-1,1]: known pixels pasted back, feathered seam
    raw: np.ndarray  # [K,R,R,3]: the generator's own output
    ws: np.ndarray  # [K,num_ws,w_dim]
    noise: dict[str, np.ndarray] | None  # {name: [K,H,W]}
    history: dict[str, np.ndarray]  # 'loss' and each term: [steps, K]
    metrics: dict
    config: InpaintConfig
    notices: list[str]


def feather_alpha(hole: np.ndarray, width: float) -> np.ndarray:
    """Weight of the known pixels [R,R]: 0 in the hole, rising to 1 over `width` pixels outside it."""
    known = (~hole).astype(np.float32)
    if width <= 0:
        return known
    from scipy.ndimage import distance_transform_edt
    dist = distance_transform_edt(known)  # distance of each known pixel to the nearest hole pixel
    return np.clip(dist / (width + 1.0), 0.0, 1.0).astype(np.float32) * known


def composite(raw: np.ndarray, target: np.ndarray, hole: np.ndarray, feather: float) -> np.ndarray:
    a = feather_alpha(hole, feather)[..., None]
    return a * target + (1 - a) * raw


def _psnr(mse):
    return float(10 * np.log10(4.0 / max(float(mse), 1e-12)))  # data range 2 ([-1, 1])


_CACHED_JIT: dict = {}


def cached_jit(key, fn):
    """One compiled function per key (model type + config), reused by every later call."""
    if key not in _CACHED_JIT:
        _CACHED_JIT[key] = jax.jit(fn)
    return _CACHED_JIT[key]


# The metrics run on the K final images in calls of a bounded size, so their memory does not grow
# with K: about METRIC_BYTES of activations per call, at PIXEL_BYTES per image pixel (VGG16's LPIPS
# holds ~270 float32 activations per pixel of each of the two images it compares; the generator and
# the ViT/CLIP encoders at their input sizes fewer). The last call is padded: one compile per size.
METRIC_BYTES = 1 << 30
PIXEL_BYTES = 4096
# Diversity is the mean LPIPS over all pairs of completions up to K = 64 (2016 pairs); beyond, over a
# fixed random sample of that many pairs (the number of pairs grows as K^2).
MAX_DIVERSITY_PAIRS = 2016


def metric_chunk(n: int, resolution: int) -> int:
    """Images per metric call: n, or fewer when n images of this size would exceed METRIC_BYTES."""
    return max(1, min(n, METRIC_BYTES // (PIXEL_BYTES * resolution * resolution)))


def chunked(fn, n: int, take, size: int):
    """fn(*take(idx)) over the items 0..n-1 in calls of `size` items (the last call padded by repeating
    its last item, so every call has one shape), outputs cut to n and concatenated along axis 0."""
    outs = []
    for start in range(0, n, size):
        idx = np.arange(start, min(start + size, n))
        padded = np.concatenate([idx, np.full(size - len(idx), idx[-1])]) if len(idx) < size else idx
        out = fn(*take(padded))
        outs.append(jax.tree.map(lambda a, m=len(idx): np.asarray(a)[:m], out))
    return jax.tree.map(lambda *a: np.concatenate(a), *outs)


def diversity_pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) index pairs of the completions compared for diversity: all i < j, or a fixed random
    sample of MAX_DIVERSITY_PAIRS pairs (i != j) when there are more."""
    if k * (k - 1) // 2 <= MAX_DIVERSITY_PAIRS:
        return np.triu_indices(k, 1)
    rng = np.random.default_rng(0)
    i = rng.integers(0, k, MAX_DIVERSITY_PAIRS)
    j = rng.integers(0, k - 1, MAX_DIVERSITY_PAIRS)
    return i, j + (j >= i)


def _lpips_metrics(lp, raw, comp, target, hole):
    """known-region LPIPS of each raw output [K], and LPIPS between completions inside the hole (the
    pairs of `diversity_pairs`), computed in calls of at most `metric_chunk` image pairs."""
    k = raw.shape[0]
    ii, jj = diversity_pairs(k)
    known_f, hole_f = (~hole).astype(np.float32), hole.astype(np.float32)

    def take(idx):  # items 0..k-1: (raw_i, target, known); then (comp_i, comp_j, hole) per pair
        pair = np.maximum(idx - k, 0)
        own = (idx < k)[:, None, None]
        x = np.where(own[..., None], raw[np.minimum(idx, k - 1)], comp[ii[pair]] if len(ii) else 0)
        y = np.where(own[..., None], target[None], comp[jj[pair]] if len(jj) else 0)
        return lp.params, x, y, np.where(own, known_f, hole_f)

    f = cached_jit(("lpips-metrics", lp.config), lp.masked_input_distance)
    n = k + len(ii)
    d = chunked(f, n, take, metric_chunk(n, hole.shape[0]))
    return d[:k], d[k:]


def compute_metrics(objective: Objective, frozen, res: SearchResult, raw: np.ndarray, comp: np.ndarray,
                    target: np.ndarray, hole: np.ndarray) -> dict:
    """Per seed: losses, known-region PSNR and LPIPS, CLIP similarity and attribute probabilities
    with constraint success; across seeds: diversity (mean pairwise LPIPS inside the hole)."""
    m, cons = objective.models, objective.constraints
    known = ~hole
    # Scored as they are saved (PNG): in [-1, 1].
    raw, comp, target = np.clip(raw, -1, 1), np.clip(comp, -1, 1), np.clip(target, -1, 1)
    per_seed = []
    lp_known = pairs = None
    if m.lpips is not None:
        lp_known, pairs = (np.asarray(a) for a in _lpips_metrics(m.lpips, raw, comp, target, hole))
    probs = sims = base_sims = None
    if m.classifier is not None:
        cls = m.classifier
        probs = chunked(cached_jit(("probs", cls.config), cls.probs), len(comp),
                        lambda idx: (cls.params, comp[idx]), metric_chunk(len(comp), hole.shape[0]))
    if cons.prompts:
        fill = np.where(hole[..., None], target[known].mean(axis=0), target)  # the photo with a neutral hole
        both = np.concatenate([comp, fill[None]])
        s = chunked(cached_jit(("clip-sim", m.clip.config), objective.clip_similarity), len(both),
                    lambda idx: (frozen, both[idx]), metric_chunk(len(both), hole.shape[0]))
        sims, base_sims = s[:-1], s[-1]
    for i, seed in enumerate(res.seeds):
        step = int(res.best_step[i])
        known_mse = float(np.mean(np.square(raw[i] - target)[known]))
        entry: dict[str, Any] = {"seed": int(seed), "best_step": step, "best_loss": float(res.best_loss[i]),
                                 "terms": {k: float(v[step, i]) for k, v in res.history.items() if k != "loss"},
                                 "known_psnr": _psnr(known_mse), "known_mse": known_mse}
        if lp_known is not None:
            entry["known_lpips"] = float(lp_known[i])
        constraints = {}
        if probs is not None:
            labels = list(m.classifier.labels)
            entry["attributes"] = {lab: float(probs[i, j]) for j, lab in enumerate(labels)}
            for name, target_p in cons.attributes:
                p = probs[i, labels.index(name)]
                constraints[f"{name}={target_p:g}"] = bool(p >= 0.5) if target_p >= 0.5 else bool(p < 0.5)
        if sims is not None:
            entry["clip_similarity"] = {p: float(sims[i, j]) for j, (p, _) in enumerate(cons.prompts)}
            for j, (p, _) in enumerate(cons.prompts):
                constraints[f"clip:{p}"] = bool(sims[i, j] > base_sims[j])
        if constraints:
            entry["constraints_met"] = constraints
        per_seed.append(entry)
    out: dict[str, Any] = {"seeds": per_seed, "hole_ratio": float(hole.mean())}
    if pairs is not None and pairs.size:
        out["diversity_hole_lpips"] = float(pairs.mean())
        out["diversity_pairs"] = int(pairs.size)  # all pairs, or a fixed sample (diversity_pairs())
    if cons.prompts:
        out["clip_similarity_input"] = {p: float(base_sims[j]) for j, (p, _) in enumerate(cons.prompts)}
    if per_seed and any("constraints_met" in e for e in per_seed):
        met = [all(e["constraints_met"].values()) for e in per_seed]
        out["constraint_success_rate"] = float(np.mean(met))
    return out


# ---------------------------------------------------------------------------------------------
# The library function.

def _load(obj, loader):
    return loader(obj) if isinstance(obj, (str, os.PathLike)) else obj


def build_objective(generator, cfg: InpaintConfig, *, prompts=None, attributes=None, clip=None, classifier=None,
                    discriminator=None, lpips_model=None, class_idx: int | None = None) -> Objective:
    """Load what the options need (models given as objects or folders) and build the objective.

    LPIPS is loaded even when the search does not use it: the metrics (known-region LPIPS, diversity) do.
    """
    from jax_inpaint.models.stylegan2 import load_discriminator, load_generator

    G = _load(generator, load_generator)
    constraints = Constraints.make(attributes, prompts)
    c = None
    if G.c_dim:
        from jax_inpaint.models.stylegan2 import class_vector
        c = class_vector(G, class_idx, 1)[0]
    elif class_idx is not None:
        raise InputError("--class given, but the generator is not conditional")
    if constraints.prompts and clip is None:
        raise InputError("prompts need a CLIP model folder (--clip)")
    if constraints.attributes and classifier is None:
        raise InputError("attribute targets need a classifier folder (--classifier)")
    if cfg.realism > 0 and discriminator is None:
        if not isinstance(generator, (str, os.PathLike)):
            raise InputError("the realism term needs the discriminator: pass discriminator=")
        discriminator = generator  # the converted folder holds D beside G
    if lpips_model is None:
        from jax_inpaint.models.lpips import load_lpips
        lpips_model = load_lpips()
    models = Models(G=G, lpips=lpips_model,
                    clip=None if clip is None else _load(clip, _loader("clip", "load_clip")),
                    classifier=None if classifier is None else _load(classifier, _loader("vit", "load_classifier")),
                    D=None if cfg.realism <= 0 else _load(discriminator, load_discriminator))
    return Objective(models, cfg, constraints, c)


def resolve_config(config=None, **options) -> InpaintConfig:
    """An InpaintConfig from a config object / YAML path / preset name, plus option overrides."""
    if isinstance(config, InpaintConfig):
        return config.replace(**{k: v for k, v in options.items() if v is not None})
    return load_config(config, **options)


def finish(objective: Objective, frozen, res: SearchResult, inputs: Inputs) -> InpaintResult:
    """From the search's best iterates to the completions, their metrics and the result object."""
    G, cfg = objective.models.G, objective.cfg
    dropped = [s for s, a in zip(res.seeds, res.alive) if not a]
    if dropped and len(dropped) == len(res.seeds):
        raise InputError(f"every seed's loss became NaN/inf (seeds {dropped}); try a lower learning rate")
    res = _select(res, np.asarray(res.alive, bool))
    def synth(ws, noise):
        return G.synthesis(ws, noise=noise) if noise else G.synthesis(ws, noise_mode="none")

    def take(idx):
        return res.ws[idx], {k: v[idx] for k, v in (res.noise or {}).items()}

    # In calls of a bounded size (the memory of one call does not grow with K).
    raw = chunked(synth, len(res.seeds), take, metric_chunk(len(res.seeds), G.img_resolution))
    comp = composite(raw, inputs.target, inputs.hole, cfg.feather)
    metrics = compute_metrics(objective, frozen, res, raw, comp, inputs.target, inputs.hole)
    if dropped:
        metrics["dropped_seeds"] = dropped
    metrics["config"] = dataclasses.asdict(cfg)
    return InpaintResult(res.seeds, dropped, inputs.target, inputs.hole, comp, raw, res.ws, res.noise, res.history,
                         metrics, cfg, inputs.notices)


# Host memory that the outputs of one seed take until they are written, as a multiple of its final
# image (float32 [R,R,3]): raw and completion, their clipped copies for the metrics, the grid tile and
# the uint8 PNG buffers; plus its latents, noise maps and loss history (in the search result, merged
# and selected copies).
IMAGE_COPIES = 6
HOST_FRACTION = 0.5  # of the host's available memory, the most that the outputs may plan to take


def host_bytes_per_seed(G, cfg: InpaintConfig) -> int:
    r = G.img_resolution
    latents = G.num_ws * G.w_dim + sum(h * w for h, w in G.config.noise_shapes.values())
    history = cfg.steps * 8  # the loss and a few terms, float32
    return 4 * (IMAGE_COPIES * r * r * 3 + 3 * (latents + history))


def check_host_memory(num_seeds: int, G, cfg: InpaintConfig) -> int:
    """The host bytes the outputs of `num_seeds` seeds will take; a one-line InputError (before any
    compiling) when that is more than HOST_FRACTION of the host's available memory."""
    from jax_inpaint.inversion.search import _gb, host_available_memory

    per_seed = host_bytes_per_seed(G, cfg)
    need = num_seeds * per_seed
    avail = host_available_memory()
    if avail is not None and need > HOST_FRACTION * avail:
        most = int(HOST_FRACTION * avail // per_seed)
        raise InputError(f"--seeds: {num_seeds:,} seeds: their outputs ({G.img_resolution}x{G.img_resolution} "
                         f"images, latents, loss histories) need about {_gb(need)} of host memory, "
                         f"{_gb(avail)} available: at most {most:,} seeds per run here")
    return need


def inpaint(image, mask, generator, *, seeds: Sequence[int] = tuple(range(8)), config=None,
            prompts: Sequence[str | tuple[str, float]] | None = None, attributes: Mapping[str, float] | None = None,
            clip=None, classifier=None, discriminator=None, lpips_model=None, class_idx: int | None = None,
            invert_mask: bool = False, progress: bool = True, **options) -> InpaintResult:
    """Fill the hole of `image` K = len(seeds) ways by searching the generator's latent space.

    image: a path, or uint8 / [-1,1] float HWC array; mask: a path (white = hole), a preset
    ('center', 'left', 'right', 'top', 'bottom', 'rect:x,y,w,h') or a bool array (True = hole);
    generator: a Generator or a model folder (clip, classifier likewise). `config` is an InpaintConfig,
    a YAML file or a preset name (default, nvidia, fast, demo); `options` override single InpaintConfig fields.
    """
    cfg = resolve_config(config, **options)
    seeds = check_seeds(seeds)
    objective = build_objective(generator, cfg, prompts=prompts, attributes=attributes, clip=clip,
                                classifier=classifier, discriminator=discriminator, lpips_model=lpips_model,
                                class_idx=class_idx)
    G = objective.models.G
    inputs = prepare_inputs(image, mask, G.img_resolution, invert_mask=invert_mask)
    host = check_host_memory(len(seeds), G, cfg)  # before anything is compiled or allocated
    frozen = objective.frozen()
    _, w_std = w_statistics(G)
    search = fit_search(objective, len(seeds), frozen, reserve=host)  # batches that fit in memory
    batch = search.batch
    parts = []
    bar = _progress_bar(progress, cfg.steps * len(batches(seeds, batch)), len(seeds))
    try:
        for group in batches(seeds, batch):
            parts.append(search.run(group, frozen, inputs.target, ~inputs.hole, w_std,
                                    progress=None if bar is None else _bar_update(bar)))
    finally:
        if bar is not None:
            bar.close()
    result = finish(objective, frozen, _merge(parts), inputs)
    result.metrics["search_batch"] = batch  # seeds optimised at once (batch 0: as many as fit in memory)
    return result


def _loader(module: str, fn: str):
    def load(path):
        import importlib
        return getattr(importlib.import_module(f"jax_inpaint.{module}"), fn)(path)
    return load


def _merge(parts: list[SearchResult]) -> SearchResult:
    if len(parts) == 1:
        return parts[0]
    cat = np.concatenate
    noise = None if parts[0].noise is None else {k: cat([p.noise[k] for p in parts]) for k in parts[0].noise}
    return SearchResult(sum((p.seeds for p in parts), []), cat([p.ws for p in parts]), noise,
                        cat([p.best_loss for p in parts]), cat([p.best_step for p in parts]),
                        cat([p.alive for p in parts]),
                        {k: cat([p.history[k] for p in parts], axis=1) for k in parts[0].history})


def _select(res: SearchResult, keep: np.ndarray) -> SearchResult:
    noise = None if res.noise is None else {k: v[keep] for k, v in res.noise.items()}
    return SearchResult([s for s, k in zip(res.seeds, keep) if k], res.ws[keep], noise, res.best_loss[keep],
                        res.best_step[keep], res.alive[keep], {k: v[:, keep] for k, v in res.history.items()})


def _progress_bar(enabled: bool, total: int, k: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"inpainting ({k} seeds)", unit="step", dynamic_ncols=True)


def _bar_update(bar):
    def update(n, losses):
        finite = losses[np.isfinite(losses)]
        bar.set_postfix(loss=f"{finite.mean():.4g}" if finite.size else "nan")
        bar.update(n)
    return update


# ---------------------------------------------------------------------------------------------
# Writing the results.

def masked_preview(target: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The input with its hole drawn as a grey checkerboard (uint8)."""
    img = images.to_uint8(target).copy()
    yy, xx = np.mgrid[: hole.shape[0], : hole.shape[1]]
    cell = max(2, hole.shape[0] // 16)
    checker = np.where(((yy // cell + xx // cell) % 2)[..., None] == 0, 150, 200).astype(np.uint8)
    img[hole] = np.repeat(checker, 3, -1)[hole]
    return img


MAX_CURVES = 64


def plot_losses(history: Mapping[str, np.ndarray], seeds: Sequence[int], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in history if k != "loss"]
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(4 * (1 + len(names)), 3.2), squeeze=False)
    shown = list(seeds)[:MAX_CURVES]  # thousands of curves say nothing more and take memory and minutes
    for ax, name in zip(axes[0], ["loss"] + names):
        h = history[name]
        for i, s in enumerate(shown):
            ax.plot(np.arange(1, h.shape[0] + 1), h[:, i], lw=1, label=f"seed {s}")
        ax.set_title(name if len(shown) == len(seeds) else f"{name} (first {len(shown)} of {len(seeds)} seeds)")
        ax.set_xlabel("step")
        if np.all(h[np.isfinite(h)] > 0):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if len(seeds) <= 10:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    try:
        files.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), suffix=".png")
    finally:
        plt.close(fig)


RESULT_FILES = ("grid.png", "latents.npz", "loss.png", "metrics.json")  # + completion_<seed>.png, raw_<seed>.png


def _previous_outputs(out: str) -> list[str]:
    """The files an earlier `save_result` wrote into `out`: its fixed names, and the completion_/raw_
    PNGs of the seeds its metrics.json lists (files of other names, or of seeds it does not list, are
    not ours and are never touched)."""
    names = [n for n in RESULT_FILES if os.path.isfile(os.path.join(out, n))]
    try:
        with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
            seeds = [int(e["seed"]) for e in json.load(f)["seeds"]]
    except (OSError, ValueError, KeyError, TypeError):
        return names
    return names + [f"{kind}_{s}.png" for s in seeds for kind in ("completion", "raw")]


def save_result(result: InpaintResult, out: str) -> dict[str, str]:
    """Write completion_<seed>.png, raw_<seed>.png, grid.png, latents.npz, loss.png, metrics.json.

    All or nothing: the files are written into a staging folder inside `out` and moved into place
    together at the end; a failure (full disk, Ctrl-C) leaves `out` as it was and raises a one-line
    InputError. The results of an earlier run in `out` are replaced: its completions of seeds this
    run does not have are removed, so the folder holds exactly this run's outputs.
    """
    out = os.fspath(out)
    written = {}
    with files.staged(out, stale=lambda new: _previous_outputs(out)) as stage:
        for i, s in enumerate(result.seeds):
            for kind, arr in (("completion", result.completions[i]), ("raw", result.raw[i])):
                images.save_png(os.path.join(stage, f"{kind}_{s}.png"), arr)
                written[f"{kind}_{s}"] = f"{kind}_{s}.png"
        tiles = [images.to_uint8(result.target), masked_preview(result.target, result.hole)]
        tiles += [images.to_uint8(c) for c in result.completions]
        labels = ["input", "masked"] + [f"seed {s}" for s in result.seeds]
        grid = images.image_grid(tiles, ncols=min(len(tiles), 6),
                                 labels=labels if result.target.shape[0] >= 48 else None)
        images.save_png(os.path.join(stage, "grid.png"), grid)
        written["grid"] = "grid.png"
        lat = {"ws": result.ws.astype(np.float32), "seeds": np.asarray(result.seeds, np.int64)}
        for k, v in (result.noise or {}).items():
            lat[f"noise/{k}"] = np.asarray(v, np.float32)
        with open(os.path.join(stage, "latents.npz"), "wb") as f:
            np.savez(f, **lat)
        written["latents"] = "latents.npz"
        plot_losses(result.history, result.seeds, os.path.join(stage, "loss.png"))
        written["loss"] = "loss.png"
        files.write_json(os.path.join(stage, "metrics.json"), result.metrics)
        written["metrics"] = "metrics.json"
    return {k: os.path.join(out, v) for k, v in written.items()}


def parse_attributes(specs: Sequence[str]) -> dict[str, float]:
    """['Smiling=1', 'Eyeglasses=0'] -> {'Smiling': 1.0, 'Eyeglasses': 0.0}.

    P must be a probability in [0, 1]; a name given twice must ask for the same P (recipe.check_attributes)."""
    from jax_inpaint.inversion.config import check_attributes

    pairs = []
    for spec in specs:
        m = re.fullmatch(r"\s*([A-Za-z0-9_]+)\s*=\s*(\S+)\s*", str(spec))
        if not m:
            raise InputError(f"--attribute {spec!r}: expected NAME=VALUE, e.g. Smiling=1 (VALUE: a probability)")
        try:
            p = float(m.group(2))
        except ValueError:
            raise InputError(f"--attribute {spec!r}: {m.group(2)!r} is not a number (targets are "
                             "probabilities in [0, 1])") from None
        pairs.append((m.group(1), p))
    return dict(check_attributes(pairs))
