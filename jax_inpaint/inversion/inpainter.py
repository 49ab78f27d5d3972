"""The driver of every inpainting run: `Inpainter` resolves the options and loads the models once,
builds one objective per set of constraints (prompts, attribute targets) and reuses it, and turns
(image, mask, seeds) into an `InpaintResult`: the K completions, their metrics and loss histories.

`inpaint()` is one call of a new Inpainter; `jax-inpaint inpaint-batch` (jax_inpaint.batch) and
`jax-inpaint evaluate` (jax_inpaint.study.evaluate) build one Inpainter per run and call it, or its
steps (`objective`, `prepare`, `run_search`, `finish`), for every image. Writing a result:
jax_inpaint.inversion.outputs (`save_result`); reading the image and mask: jax_inpaint.inversion.inputs.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from jax_inpaint.errors import InputError
from jax_inpaint.inversion.config import DEFAULT_SEEDS, InpaintConfig, check_seeds, load_config
# The image and mask, and the files of a result, have their own modules; their names are also
# importable from here, where they were up to 0.1 (`from jax_inpaint.inpaint import save_result`).
from jax_inpaint.inversion.inputs import Inputs, load_mask, parse_attributes, prepare_inputs  # noqa: F401
from jax_inpaint.inversion.objective import Constraints, Models, Objective
from jax_inpaint.inversion.outputs import masked_preview, plot_losses, save_result  # noqa: F401
from jax_inpaint.inversion.search import (SearchResult, gigabytes, batches, fit_search, get_search, host_available_memory,
                                          w_statistics)
from jax_inpaint.models.clip import load_clip
from jax_inpaint.models.lpips import load_lpips
from jax_inpaint.models.stylegan2 import class_vector, load_discriminator, load_generator
from jax_inpaint.models.vit import load_classifier


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
# Host memory of the outputs.

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
    per_seed = host_bytes_per_seed(G, cfg)
    need = num_seeds * per_seed
    avail = host_available_memory()
    if avail is not None and need > HOST_FRACTION * avail:
        most = int(HOST_FRACTION * avail // per_seed)
        raise InputError(f"--seeds: {num_seeds:,} seeds: their outputs ({G.img_resolution}x{G.img_resolution} "
                         f"images, latents, loss histories) need about {gigabytes(need)} of host memory, "
                         f"{gigabytes(avail)} available: at most {most:,} seeds per run here")
    return need


# ---------------------------------------------------------------------------------------------
# The driver.

def resolve_config(config=None, **options) -> InpaintConfig:
    """An InpaintConfig from a config object / YAML path / preset name, plus option overrides."""
    if isinstance(config, InpaintConfig):
        return config.replace(**{k: v for k, v in options.items() if v is not None})
    return load_config(config, **options)


def check_constraint_models(prompts=None, attributes=None, *, clip=None, classifier=None) -> None:
    """Prompts need a CLIP model, attribute targets a classifier (given as objects or folders): a one-line
    InputError otherwise (the drivers call this before loading anything)."""
    if prompts and clip is None:
        raise InputError("prompts need a CLIP model folder (--clip)")
    if attributes and classifier is None:
        raise InputError("attribute targets need a classifier folder (--classifier)")


def _model(obj, loader):
    """A model given as an object, or as a folder / shipped name that `loader` loads."""
    return loader(obj) if isinstance(obj, (str, os.PathLike)) else obj


class Inpainter:
    """The options and the models of inpainting runs, resolved and loaded once; call it to fill a hole.

        inpainter = Inpainter("models/ffhq", config="fast", classifier="models/celeba-vit", steps=300)
        result = inpainter("face.png", "center", range(8), attributes={"Smiling": 1.0})

    generator, clip, classifier, discriminator, lpips_model: models, or folders (shipped names) to load;
    LPIPS is loaded even when the search does not use it (the metrics do); the discriminator only for
    the realism term (by default from the generator's folder). `config`: an InpaintConfig, a YAML file
    or a preset name; `options` override single InpaintConfig fields. `class_idx`: the class of a
    conditional generator.

    The objective (and the CLIP embeddings of its prompts) is built once per set of constraints and
    reused by every later call that asks for the same ones; the compiled search is cached by the
    objective's spec (jax_inpaint.inversion.search.get_search), so new images, masks and seeds reuse it.
    """

    def __init__(self, generator, *, config=None, clip=None, classifier=None, discriminator=None,
                 lpips_model=None, class_idx: int | None = None, **options):
        self.cfg = cfg = resolve_config(config, **options)
        G = _model(generator, load_generator)
        c = class_vector(G, class_idx, 1)  # a one-line InputError for a missing or needless class
        self.class_idx = class_idx
        self.c = None if c is None else c[0]
        D = None
        if cfg.realism > 0:
            if discriminator is None:
                if not isinstance(generator, (str, os.PathLike)):
                    raise InputError("the realism term needs the discriminator: pass discriminator=")
                discriminator = generator  # the converted folder holds D beside G
            D = _model(discriminator, load_discriminator)
        self.models = Models(G=G, lpips=load_lpips() if lpips_model is None else lpips_model,
                             clip=None if clip is None else _model(clip, load_clip),
                             classifier=None if classifier is None else _model(classifier, load_classifier), D=D)
        self._built: dict[Constraints, tuple[Objective, dict]] = {}  # constraints -> (objective, its frozen tree)
        # (program spec, K) -> the search `fit_search` chose for K seeds: fitted once, so later calls with the
        # same K run the same batches (the free memory read changes between calls; a new split would recompile)
        self._fitted: dict[tuple, Any] = {}
        self._chosen: dict[Any, Objective] = {}  # program spec -> the objective whose program `fit` chose

    def fit(self, objective: Objective, num_seeds: int, **kw):
        """`fit_search` for this objective's seeds (keywords as there), remembered: `run_search` then runs the
        program it chose (which may rematerialise, under remat 'auto') at any batch size or device count."""
        search = fit_search(objective, num_seeds, self.frozen(objective), **kw)
        self._chosen[objective.program_spec] = search.objective
        return search

    def fitted(self, objective: Objective, num_seeds: int, *, reserve: int = 0):
        """The search for K = num_seeds seeds of this objective: fitted to memory (`fit`) on first use, then
        the same for every later call with this K (the free memory read changes between calls; a new split
        would recompile)."""
        key = (objective.program_spec, num_seeds)
        if key not in self._fitted:
            self._fitted[key] = self.fit(objective, num_seeds, reserve=reserve)
        return self._fitted[key]

    @property
    def G(self):
        return self.models.G

    # The steps of a run (inpaint-batch drives them itself) -------------------------------------
    def objective(self, prompts: Sequence[str | tuple[str, float]] | None = None,
                  attributes: Mapping[str, float] | Sequence[tuple[str, float]] | None = None) -> Objective:
        """The objective for these constraints: built (and checked) on first use, then reused."""
        constraints = Constraints.make(attributes, prompts)
        if constraints not in self._built:
            check_constraint_models(constraints.prompts, constraints.attributes, clip=self.models.clip,
                                    classifier=self.models.classifier)
            objective = Objective(self.models, self.cfg, constraints, self.c)
            self._built[constraints] = (objective, objective.frozen())
        return self._built[constraints][0]

    def frozen(self, objective: Objective) -> dict:
        """The weights and constants of one of this Inpainter's objectives (computed once, with it)."""
        built, frozen = self._built[objective.constraints]
        if built is not objective:
            raise ValueError("not an objective of this Inpainter (use Inpainter.objective)")
        return frozen

    def prepare(self, image, mask, *, invert_mask: bool = False) -> Inputs:
        """The image and mask read, checked and brought to the generator's resolution."""
        return prepare_inputs(image, mask, self.G.img_resolution, invert_mask=invert_mask)

    def run_search(self, objective: Objective, seeds: Sequence[int], target, known, *, batch: int | None = None,
                   sharding=None, should_stop: Callable[[], bool] | None = None,
                   progress: Callable[[int, np.ndarray], None] | None = None, groups: Sequence[int] | None = None,
                   preview: Callable[[int, np.ndarray, dict | None], None] | None = None) -> SearchResult:
        """Search `seeds` with the compiled search of `batch` items (default: one per seed; fewer seeds are
        padded). target [H,W,3] and known [H,W] (True/1 = known) are shared by the seeds, or given per seed
        ([k,H,W,3], [k,H,W]); `sharding`, `should_stop`, `progress`, `groups` (the image of each seed, for
        the diversity term), `preview` (the best latents after each chunk): as `Search.run`."""
        size = batch or len(seeds)
        # the program `fit` chose (it may rematerialise: remat 'auto'), else the plain one
        search = get_search(self._chosen.get(objective.program_spec, objective), size)
        return self._run(search, objective, seeds, target, known, sharding=sharding, should_stop=should_stop,
                         progress=progress, groups=groups, preview=preview)

    def search_all(self, objective: Objective, search, seeds: Sequence[int], inputs: Inputs, *,
                   should_stop: Callable[[], bool] | None = None,
                   progress: Callable[[int, np.ndarray], None] | None = None,
                   preview: Callable[[int, int, np.ndarray, dict | None], None] | None = None) -> InpaintResult:
        """One image's seeds searched in batches of `search.batch` (a search from `fitted`), then finished;
        metrics['search_batch'] says how many were optimised at once. should_stop, progress: as `Search.run`;
        preview(first, steps, ws, noise): the best latents of seeds[first:first + k] after each chunk."""
        parts = []
        for g, group in enumerate(batches(seeds, search.batch)):
            show = None if preview is None else functools.partial(preview, g * search.batch)
            parts.append(self._run(search, objective, group, inputs.target, ~inputs.hole, should_stop=should_stop,
                                   progress=progress, preview=show))
        result = self.finish(objective, SearchResult.merge(parts), inputs)
        result.metrics["search_batch"] = search.batch  # seeds optimised at once (batch 0: as many as fit in memory)
        return result

    def _run(self, search, objective, seeds, target, known, **kw) -> SearchResult:
        _, w_std = w_statistics(self.G)
        return search.run(list(seeds), self.frozen(objective), target, known, w_std, **kw)

    def finish(self, objective: Objective, res: SearchResult, inputs: Inputs) -> InpaintResult:
        """From the search's best iterates to the completions, their metrics and the result object."""
        G, cfg = self.G, self.cfg
        dropped = [s for s, a in zip(res.seeds, res.alive) if not a]
        if dropped and len(dropped) == len(res.seeds):
            raise InputError(f"every seed's loss became NaN/inf (seeds {dropped}); try a lower learning rate")
        res = res.select(np.asarray(res.alive, bool))

        def synth(ws, noise):
            return G.synthesis(ws, noise=noise) if noise else G.synthesis(ws, noise_mode="none")

        def take(idx):
            return res.ws[idx], {k: v[idx] for k, v in (res.noise or {}).items()}

        # In calls of a bounded size (the memory of one call does not grow with K).
        raw = chunked(synth, len(res.seeds), take, metric_chunk(len(res.seeds), G.img_resolution))
        comp = composite(raw, inputs.target, inputs.hole, cfg.feather)
        metrics = compute_metrics(objective, self.frozen(objective), res, raw, comp, inputs.target, inputs.hole)
        if dropped:
            metrics["dropped_seeds"] = dropped
        metrics["config"] = dataclasses.asdict(cfg)
        return InpaintResult(res.seeds, dropped, inputs.target, inputs.hole, comp, raw, res.ws, res.noise,
                             res.history, metrics, cfg, inputs.notices)

    # A whole run -------------------------------------------------------------------------------
    def __call__(self, image, mask, seeds: Sequence[int] = DEFAULT_SEEDS, *,
                 prompts: Sequence[str | tuple[str, float]] | None = None,
                 attributes: Mapping[str, float] | None = None, invert_mask: bool = False,
                 progress: bool = True) -> InpaintResult:
        """Fill the hole of `image` K = len(seeds) ways by searching the generator's latent space.

        image: a path, or uint8 / [-1,1] float HWC array; mask: a path (white = hole), a preset
        ('center', 'left', 'right', 'top', 'bottom', 'rect:x,y,w,h') or a bool array (True = hole);
        prompts: CLIP texts or (text, weight) pairs; attributes: {classifier label: target probability}.
        """
        seeds = check_seeds(seeds)
        objective = self.objective(prompts, attributes)
        inputs = self.prepare(image, mask, invert_mask=invert_mask)
        host = check_host_memory(len(seeds), self.G, self.cfg)  # before anything is compiled or allocated
        search = self.fitted(objective, len(seeds), reserve=host)
        bar = _progress_bar(progress, self.cfg.steps * len(batches(seeds, search.batch)), len(seeds))
        try:
            return self.search_all(objective, search, seeds, inputs, progress=None if bar is None else _bar_update(bar))
        finally:
            if bar is not None:
                bar.close()


def inpaint(image, mask, generator, *, seeds: Sequence[int] = DEFAULT_SEEDS, config=None,
            prompts: Sequence[str | tuple[str, float]] | None = None, attributes: Mapping[str, float] | None = None,
            clip=None, classifier=None, discriminator=None, lpips_model=None, class_idx: int | None = None,
            invert_mask: bool = False, progress: bool = True, **options) -> InpaintResult:
    """Fill the hole of `image` K = len(seeds) ways by searching the generator's latent space: one call
    of a new `Inpainter(generator, config=..., **options)` (see there; build one Inpainter to fill
    several images with the same models).

    image: a path, or uint8 / [-1,1] float HWC array; mask: a path (white = hole), a preset
    ('center', 'left', 'right', 'top', 'bottom', 'rect:x,y,w,h') or a bool array (True = hole);
    generator: a Generator or a model folder (clip, classifier likewise). `config` is an InpaintConfig,
    a YAML file or a preset name (default, nvidia, fast, demo); `options` override single InpaintConfig fields.
    """
    cfg = resolve_config(config, **options)
    seeds = check_seeds(seeds)  # before any model is loaded
    check_constraint_models(prompts, attributes, clip=clip, classifier=classifier)
    inpainter = Inpainter(generator, config=cfg, clip=clip, classifier=classifier, discriminator=discriminator,
                          lpips_model=lpips_model, class_idx=class_idx)
    return inpainter(image, mask, seeds, prompts=prompts, attributes=attributes, invert_mask=invert_mask,
                     progress=progress)


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
