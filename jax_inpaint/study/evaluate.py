"""`evaluate()`: how robust is the inpainting? Targets x mask families x hole ratios, K seeds each, the
same cases filled by classical baselines, everything scored against the ground truth (`jax-inpaint evaluate`).

The study
---------
Targets (the ground truth) are either the images of a folder (`images=`: every .png/.jpg/.jpeg/.webp/.bmp/
.tif file, sorted by name, centre-cropped and resized to the generator's resolution, as `inpaint` does), or
`gan_samples=N` images of the generator itself: target i is G.synthesis(G.mapping(z_i, psi)) with z_i drawn
as `jax-inpaint generate --seeds i` draws it and the checkpoint's constant noise, kept as float (not rounded,
not clipped), so its exact completion is in the search space.

A case is (target, family, ratio), for every family of `families` and every ratio of `ratios` whose
CoModGAN bucket the family reaches (`masks.family_buckets`; the others are skipped with a note). Its mask is
`masks.make_mask(family, ratio, seed=case_mask_seed(mask_seed, target), size=R)`: every target has its own
random layout (the seed hangs on the target's name, so adding targets changes no existing mask), and its
masks are nested as the ratio grows.

Methods, on exactly the same target and mask: 'gan' = `inpaint()` with the K seeds and the given options
(the same K and options for every case, so the search compiles once); the baselines 'mean' (mean-colour
fill), 'biharmonic' (scikit-image) and 'telea' (OpenCV, only when installed) of `jax_inpaint.study.baselines`.

Metrics (`METRICS`; images clipped to [-1, 1], as a saved picture shows them; PSNR with data range 2):
  psnr_hole   PSNR over the hole pixels (metrics.masked_psnr)                           higher = better
  ssim_hole   SSIM map averaged over the hole (metrics.masked_ssim)                     higher = better
  lpips_hole  LPIPS (VGG16 v0.1) of both images multiplied by the hole mask, i.e.
              LPIPS.masked_input_distance with known := hole: only the hole is compared  lower = better
  lpips       LPIPS of the whole image                                                   lower = better
For 'gan' every metric comes as <metric>_best, the best of the K completions (for each metric on its own:
the "best of K" of diverse-inpainting papers), and <metric>_mean, their average; a baseline fills one image,
so its _best and _mean are equal. Only 'gan' rows have
  psnr_known  mean over the K seeds of the PSNR of the generator's own output (before the known pixels are
              pasted back) on the known region: how faithfully the latent reproduces what was given
  diversity   mean pairwise LPIPS inside the hole between the K completions (inpaint's diversity_hole_lpips;
              K >= 2)
  constraint_success_rate  (only with prompts or attribute targets) the fraction of completions that meet
              every constraint
Every row has `seconds`: the method's wall-clock time on the case ('gan': the whole inpaint() call). The
first case a run computes includes compiling the search: its 'gan' row has includes_compile = true, and the
report leaves it out of the timing summaries where other cases are there to time.

The output folder
-----------------
  study.json            the fingerprint of everything that changes results (see Resuming)
  cases/<case>.json     one record per finished case (its rows), written as soon as the case is done
  cases/<case>.png      its picture: ground truth, masked input, K completions, baselines
  results.csv, .json    one row per (case, method): the columns of `COLUMNS` (+ constraint_success_rate)
  summary.csv           mean and standard deviation over the targets per (family, ratio, method)
  plots/*.png, samples/<family>.png, report.html   (see jax_inpaint.study.report)
results.csv has exactly one 'gan' row per case. Its columns: case, target, family, ratio (the requested
one), hole_ratio (the mask's), bucket, method, k (completions: K, or fewer when a seed diverged; 1 for a
baseline), the metrics above, seconds, grid (the case picture, relative to the folder). A value a method
does not have is empty in the CSV and null in the JSON.

Resuming
--------
Every file is written to a temporary name and renamed. A rerun with the same options skips every case
whose record exists (an interrupted run resumes after its last finished case; the report is rebuilt from
all records). Records are keyed by the study fingerprint, the target's pixels and the mask, so a changed
image file or mask recomputes just that case. The fingerprint (study.json) holds what changes results: the
generator's weights, every InpaintConfig option, the seeds, prompts, attributes, CLIP / classifier, class,
the kind of targets and their truncation, the mask seed and the baselines. A run whose fingerprint differs
from the folder's is refused (InputError naming the differences): use another output folder, or delete
this one to start again. Families, ratios and the number of targets are not part of it: adding some extends
the study, and the report shows the cases of the current run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
import zlib
from typing import Any, Mapping, Sequence

import numpy as np

from jax_inpaint import files as fileio
from jax_inpaint import images as imio
from jax_inpaint import masks as masks_mod
from jax_inpaint.errors import InputError

DEFAULT_FAMILIES = ("center", "strokes-medium", "half", "lines")
DEFAULT_RATIOS = (0.1, 0.3, 0.5, 0.7)
# Baseline names of this study -> names in jax_inpaint.study.baselines.
BASELINES = {"mean": "mean_fill", "biharmonic": "biharmonic", "telea": "telea"}
METRICS = ("psnr_hole", "ssim_hole", "lpips_hole", "lpips")
HIGHER_IS_BETTER = {"psnr_hole": True, "ssim_hole": True, "lpips_hole": False, "lpips": False,
                    "psnr_known": True, "diversity": True, "constraint_success_rate": True, "seconds": False}
COLUMNS = (("case", "target", "family", "ratio", "hole_ratio", "bucket", "method", "k")
           + tuple(f"{m}_{s}" for m in METRICS for s in ("best", "mean"))
           + ("psnr_known", "diversity", "seconds", "grid"))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
FORMAT_VERSION = 1
_GRID_TILE = (128, 256)  # case pictures: tiles of the generator's resolution clamped to this range


# ---------------------------------------------------------------------------------------------
# Targets and cases.

@dataclasses.dataclass
class Target:
    name: str  # unique, file-name safe
    image: np.ndarray  # [R, R, 3] float32, nominally [-1, 1]
    source: str  # the file, or 'seed i, psi p'
    digest: str  # of the pixels


@dataclasses.dataclass
class Case:
    id: str  # '<target>__<family>__<ratio>'
    target: Target
    family: str
    ratio: float  # the requested one
    hole: np.ndarray  # [R, R] bool, True = hole

    @property
    def hole_ratio(self) -> float:
        return float(self.hole.mean())


def _digest(*arrays_or_text) -> str:
    h = hashlib.sha256()
    for a in arrays_or_text:
        if isinstance(a, np.ndarray):
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(str(a).encode())
    return h.hexdigest()[:16]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def image_targets(images: str | os.PathLike | Sequence[str | os.PathLike], resolution: int, *,
                  limit: int | None = None) -> list[Target]:
    """The images of a folder (or a list of files), centre-cropped and resized to resolution, as targets."""
    if isinstance(images, (str, os.PathLike)):
        folder = os.fspath(images)
        if not os.path.isdir(folder):
            raise InputError(f"--images {folder}: no such folder")
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                       if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))
        if not paths:
            raise InputError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    else:
        paths = [os.fspath(p) for p in images]
        if not paths:
            raise InputError("no target images given")
    if limit is not None:
        paths = paths[:limit]
    out, seen = [], set()
    for path in paths:
        name = _safe_name(os.path.basename(path))
        while name in seen:
            name += "_"
        seen.add(name)
        img = imio.to_float(imio.center_crop_resize(imio.read_rgb(path), resolution))
        out.append(Target(name, img, path, _digest(img)))
    return out


def gan_targets(G, n: int, *, truncation_psi: float = 0.7, class_idx: int | None = None,
                batch: int = 8) -> list[Target]:
    """n in-domain targets G(mapping(z_i, psi)), i = 0..n-1, z_i as `generate --seeds i` draws it, with
    the checkpoint's constant noise; float [R, R, 3], not quantised or clipped."""
    from jax_inpaint.models.stylegan2 import class_vector, seed_z

    if n < 1:
        raise InputError(f"--gan-samples must be at least 1, got {n}")
    z = seed_z(range(n), G.z_dim)
    c = class_vector(G, class_idx, n)
    imgs = []
    for i in range(0, n, batch):
        ws = G.mapping(z[i:i + batch], None if c is None else c[i:i + batch], truncation_psi)
        imgs.append(np.asarray(G.synthesis(ws, noise_mode="const"), np.float32))
    imgs = np.concatenate(imgs)
    if imgs.shape[-1] != 3:
        raise InputError(f"the generator makes {imgs.shape[-1]}-channel images; evaluate needs RGB")
    return [Target(f"sample{i:04d}", imgs[i], f"seed {i}, psi {truncation_psi:g}", _digest(imgs[i]))
            for i in range(n)]


def case_mask_seed(mask_seed: int, target_name: str) -> int:
    """The mask seed of one target: crc32 of '<mask_seed>:<target name>'."""
    return zlib.crc32(f"{int(mask_seed)}:{target_name}".encode())


def parse_ratios(ratios: Sequence[float] | str) -> list[float]:
    if isinstance(ratios, str):
        try:
            ratios = [float(r) for r in ratios.split(",") if r.strip()]
        except ValueError:
            raise InputError(f"--ratios {ratios!r}: expected numbers such as 0.1,0.3,0.5") from None
    ratios = [float(r) for r in ratios]
    if not ratios:
        raise InputError("no hole ratios given")
    bad = [r for r in ratios if not 0.0 < r < 1.0]
    if bad:
        raise InputError(f"hole ratios must lie strictly between 0 and 1, got {bad}")
    if len(set(ratios)) != len(ratios):
        raise InputError(f"hole ratios repeat: {ratios}")
    return ratios


def parse_families(families: Sequence[str] | str) -> list[str]:
    if isinstance(families, str):
        families = [f.strip() for f in families.split(",") if f.strip()]
    families = list(families)
    if not families:
        raise InputError("no mask families given")
    unknown = [f for f in families if f not in masks_mod.FAMILIES]
    if unknown:
        raise InputError(f"unknown mask families {unknown}; choose from {', '.join(masks_mod.FAMILIES)}")
    if len(set(families)) != len(families):
        raise InputError(f"mask families repeat: {families}")
    return families


def plan_cases(targets: Sequence[Target], families: Sequence[str], ratios: Sequence[float], *,
               mask_seed: int = 0) -> tuple[list[Case], list[str]]:
    """Every (target, family, ratio) a family can reach, with its mask; and notes on what was skipped."""
    notes, pairs = [], []
    for fam in families:
        reach = masks_mod.family_buckets(fam)
        ok = [r for r in ratios if masks_mod.bucket_of(r) in reach]
        skipped = [r for r in ratios if r not in ok]
        if skipped:
            where = ", ".join(masks_mod.bucket_label(b) for b in reach)
            notes.append(f"{fam} reaches only the hole-ratio bucket(s) {where}: ratio(s) "
                         f"{', '.join(f'{r:g}' for r in skipped)} skipped")
        pairs += [(fam, r) for r in ok]
    if not pairs:
        raise InputError("no (family, ratio) pair is reachable: every family skips every ratio")
    cases = []
    for t in targets:
        size = t.image.shape[:2]
        for fam, r in pairs:
            hole = masks_mod.make_mask(fam, r, seed=case_mask_seed(mask_seed, t.name), size=size)
            if hole.all() or not hole.any():
                notes.append(f"{t.name} {fam} {r:g}: the mask {'covers everything' if hole.any() else 'is empty'}: "
                             "skipped")
                continue
            cases.append(Case(f"{t.name}__{fam}__{r:g}", t, fam, r, hole))
    return cases, notes


def resolve_baselines(baselines: Sequence[str] | str | None) -> tuple[list[str], list[str]]:
    """None / 'auto': every available baseline; else the named ones (an unavailable one is an error)."""
    from jax_inpaint.study.baselines import available_baselines

    avail = [b for b, impl in BASELINES.items() if impl in available_baselines()]
    if baselines is None or baselines == "auto":
        missing = [b for b in BASELINES if b not in avail]
        return avail, [f"the {b} baseline needs OpenCV (pip install opencv-python-headless): left out"
                       for b in missing]
    if isinstance(baselines, str):
        baselines = [b.strip() for b in baselines.split(",") if b.strip() and b.strip() != "none"]
    baselines = list(baselines)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise InputError(f"unknown baselines {unknown}; choose from {', '.join(BASELINES)} (or 'auto', 'none')")
    unavailable = [b for b in baselines if b not in avail]
    if unavailable:
        raise InputError(f"the baseline(s) {unavailable} cannot run here: telea needs OpenCV "
                         "(pip install opencv-python-headless)")
    return baselines, []


# ---------------------------------------------------------------------------------------------
# Fingerprint and records.

def _tree_digest(tree) -> str:
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    h = hashlib.sha256()
    for path, leaf in sorted(leaves, key=lambda pl: jax.tree_util.keystr(pl[0])):
        a = np.asarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _model_id(model) -> str | None:
    if model is None:
        return None
    return f"{type(model).__name__}:{_tree_digest({'params': model.params, 'buffers': getattr(model, 'buffers', {})})}"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_json(path: str, data) -> None:
    """JSON written atomically (fileio.write_json), NaN / inf as null."""
    fileio.write_json(path, _jsonable(data))


def _check_study(out: str, fingerprint: dict) -> None:
    path = os.path.join(out, "study.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)["fingerprint"]
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"{path}: unreadable ({e}); delete the folder to start again") from None
        new = _jsonable(fingerprint)
        if old != new:
            flat_old, flat_new = _flat(old), _flat(new)
            keys = sorted(k for k in set(flat_old) | set(flat_new) if flat_old.get(k) != flat_new.get(k))
            detail = "; ".join(f"{k}: {_short(flat_old.get(k))} -> {_short(flat_new.get(k))}" for k in keys)
            raise InputError(f"{out}: holds an evaluation made with other options ({detail}). Use another "
                             f"--out folder, or delete this one to start again.")
        os.makedirs(os.path.join(out, "cases"), exist_ok=True)
        return
    if os.path.isdir(out) and any(not n.startswith(".") for n in os.listdir(out)):
        raise InputError(f"{out}: exists, is not empty and holds no evaluation (no study.json); choose "
                         "another --out folder")
    os.makedirs(os.path.join(out, "cases"), exist_ok=True)
    write_json(path, {"format": "jax-inpaint-evaluation", "format_version": FORMAT_VERSION,
                      "fingerprint": fingerprint})


def _flat(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v, n: int = 60) -> str:
    text = json.dumps(v)
    return text if len(text) <= n else text[:n - 3] + "..."


def _case_key(fingerprint_hash: str, case: Case) -> str:
    return _digest(fingerprint_hash, case.target.digest, case.family, f"{case.ratio:.6f}", case.hole)


def load_record(out: str, case_id: str) -> dict | None:
    path = os.path.join(out, "cases", f"{case_id}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a damaged record is recomputed


# ---------------------------------------------------------------------------------------------
# Scoring one case.

class Scorer:
    """PSNR / SSIM in numpy, LPIPS in one compiled call of a fixed batch size (one compile per study)."""

    def __init__(self, lpips_model, batch: int):
        import jax

        self.lpips, self.batch = lpips_model, batch

        def both(params, x, y, hole):  # x [B,R,R,3], y [R,R,3], hole [R,R] -> ([B], [B])
            yb = jax.numpy.broadcast_to(y, x.shape)
            return (lpips_model.masked_input_distance(params, x, yb, hole), lpips_model.distance(params, x, yb))

        self._lpips = jax.jit(both)

    def lpips_scores(self, preds: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(preds)
        hole_d, full_d = [], []
        for i in range(0, n, self.batch):
            x = preds[i:i + self.batch]
            pad = self.batch - len(x)
            if pad:
                x = np.concatenate([x, np.repeat(x[-1:], pad, 0)])
            h, f = self._lpips(self.lpips.params, x, gt, hole.astype(np.float32))
            hole_d.append(np.asarray(h)[:len(x) - pad])
            full_d.append(np.asarray(f)[:len(x) - pad])
        return np.concatenate(hole_d), np.concatenate(full_d)

    def __call__(self, preds: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> dict[str, np.ndarray]:
        """preds [M,R,R,3], gt [R,R,3], hole [R,R] -> {metric: [M]} (everything clipped to [-1, 1])."""
        from jax_inpaint.study import metrics

        preds = np.clip(preds, -1.0, 1.0).astype(np.float32)
        gt = np.clip(gt, -1.0, 1.0).astype(np.float32)
        gts = np.broadcast_to(gt, preds.shape)
        lp_hole, lp_full = self.lpips_scores(preds, gt, hole)
        return {"psnr_hole": np.asarray(metrics.masked_psnr(preds, gts, hole)),
                "ssim_hole": np.asarray(metrics.masked_ssim(preds, gts, hole)),
                "lpips_hole": lp_hole, "lpips": lp_full}


def _summarise(values: dict[str, np.ndarray], sl: slice) -> dict[str, float]:
    out = {}
    for m in METRICS:
        v = np.asarray(values[m][sl], np.float64)
        out[f"{m}_best"] = float(v.max() if HIGHER_IS_BETTER[m] else v.min())
        out[f"{m}_mean"] = float(v.mean())
    return out


def _tile_size(resolution: int) -> int:
    return int(min(max(resolution, _GRID_TILE[0]), _GRID_TILE[1]))


_PAD, _LABEL = 2, 14  # the layout of a case picture (images.image_grid)


def case_picture(case: Case, completions: np.ndarray, seeds: Sequence[int], fills: Mapping[str, np.ndarray],
                 scores: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[dict]]:
    """One row: ground truth, masked input, the K completions, the baselines, captioned with the hole PSNR.
    Returns the picture (uint8) and one entry per tile: {'label', 'method', and for the fills 'psnr_hole',
    'ssim_hole', 'lpips_hole'}."""
    from jax_inpaint.inversion.inpainter import masked_preview

    size = _tile_size(case.target.image.shape[0])
    tiles = [imio.display_tile(case.target.image, size),
             imio.display_tile(masked_preview(case.target.image, case.hole), size)]
    info = [{"label": "ground truth", "method": None}, {"label": f"masked {100 * case.hole_ratio:.0f}%", "method": None}]
    fills_all = [(f"seed {s}", "gan", completions[i]) for i, s in enumerate(seeds)]
    fills_all += [(name, name, img) for name, img in fills.items()]
    for i, (label, method, img) in enumerate(fills_all):
        tiles.append(imio.display_tile(img, size))
        info.append({"label": label, "method": method, **{m: float(scores[m][i]) for m in METRICS}})
    labels = [e["label"] if e["method"] is None else f"{e['label']}  {e['psnr_hole']:.1f} dB" for e in info]
    return imio.image_grid(tiles, ncols=len(tiles), labels=labels, pad=_PAD, label_height=_LABEL), info


def picture_tiles(picture: np.ndarray, n: int) -> list[np.ndarray]:
    """The n tiles of a case picture, without their captions."""
    size = (picture.shape[1] - _PAD) // n - _PAD
    y = _PAD + _LABEL
    return [picture[y:y + size, _PAD + i * (size + _PAD):_PAD + i * (size + _PAD) + size] for i in range(n)]


def run_case(case: Case, *, G, seeds: Sequence[int], cfg, baselines: Sequence[str], scorer: Scorer,
             inpaint_kw: Mapping[str, Any]) -> tuple[list[dict], np.ndarray]:
    """Inpaint one case K ways and fill it with each baseline -> (rows, case picture, its tiles' captions)."""
    from jax_inpaint.inversion import inpainter as inpaint_mod
    from jax_inpaint.study import metrics
    from jax_inpaint.study.baselines import run_baseline

    t0 = time.perf_counter()
    res = inpaint_mod.inpaint(case.target.image, case.hole, G, seeds=seeds, config=cfg, progress=False,
                              **inpaint_kw)
    gan_seconds = time.perf_counter() - t0
    fills, fill_seconds = {}, {}
    for b in baselines:
        t0 = time.perf_counter()
        fills[b] = run_baseline(BASELINES[b], case.target.image, case.hole)
        fill_seconds[b] = time.perf_counter() - t0
    k = len(res.seeds)
    preds = np.concatenate([np.asarray(res.completions, np.float32)] + [f[None] for f in fills.values()])
    scores = scorer(preds, case.target.image, case.hole)
    gt = np.clip(case.target.image, -1, 1)
    known_psnr = metrics.masked_psnr(np.clip(res.raw, -1, 1), np.broadcast_to(gt, res.raw.shape), ~case.hole)
    base = {"case": case.id, "target": case.target.name, "family": case.family, "ratio": case.ratio,
            "hole_ratio": case.hole_ratio, "bucket": masks_mod.bucket_label(masks_mod.bucket_of(case.hole_ratio))}
    gan = {**base, "method": "gan", "k": k, **_summarise(scores, slice(0, k)),
           "psnr_known": float(np.mean(known_psnr)),
           "diversity": res.metrics.get("diversity_hole_lpips"), "seconds": gan_seconds}
    if "constraint_success_rate" in res.metrics:
        gan["constraint_success_rate"] = res.metrics["constraint_success_rate"]
    if res.dropped:
        gan["dropped_seeds"] = list(res.dropped)
    rows = [gan]
    for j, b in enumerate(baselines):
        rows.append({**base, "method": b, "k": 1, **_summarise(scores, slice(k + j, k + j + 1)),
                     "psnr_known": None, "diversity": None, "seconds": fill_seconds[b]})
    picture, tiles = case_picture(case, res.completions, res.seeds, fills, scores)
    return rows, picture, tiles


# ---------------------------------------------------------------------------------------------
# The study.

@dataclasses.dataclass
class EvaluateResult:
    out: str
    rows: list[dict]  # one per (case, method), the cases of this run in order
    computed: list[str]  # case ids computed by this run
    reused: list[str]  # case ids loaded from earlier runs
    notes: list[str]
    files: dict[str, str]  # what the report wrote: 'html', 'csv', 'json', 'summary', plots ...
    headline: list[str]  # where the GAN beats the best baseline, in words


def _load(obj, loader):
    return loader(obj) if isinstance(obj, (str, os.PathLike)) else obj


def evaluate(generator, out: str | os.PathLike, *, images: str | os.PathLike | Sequence[str] | None = None,
             max_images: int | None = None, gan_samples: int | None = None, truncation_psi: float = 0.7,
             families: Sequence[str] | str = DEFAULT_FAMILIES, ratios: Sequence[float] | str = DEFAULT_RATIOS,
             mask_seed: int = 0, baselines: Sequence[str] | str | None = None,
             seeds: Sequence[int] = tuple(range(8)), config=None,
             prompts: Sequence[str | tuple[str, float]] | None = None, attributes: Mapping[str, float] | None = None,
             clip=None, classifier=None, discriminator=None, lpips_model=None, class_idx: int | None = None,
             progress: bool = True, report: bool = True, **options) -> EvaluateResult:
    """Run (or resume) the robustness study in the folder `out` and write its report (module docstring).

    generator: a Generator or a model folder; images: a folder or a list of files, or gan_samples=N
    (exactly one of the two); families, ratios: lists or comma-separated text; baselines: names of
    BASELINES, None / 'auto' (every available one) or 'none'; seeds, config, prompts, attributes, clip,
    classifier, class_idx and `options` (InpaintConfig fields): as for `inpaint()`.
    """
    from tqdm.auto import tqdm

    from jax_inpaint.inversion.config import InpaintConfig, load_config
    from jax_inpaint.models.stylegan2 import load_discriminator, load_generator

    out = os.fspath(out)
    if (images is None) == (gan_samples is None):
        raise InputError("give the targets: either --images DIR or --gan-samples N (not both)")
    cfg = config if isinstance(config, InpaintConfig) else load_config(config, **options)
    if isinstance(config, InpaintConfig) and options:
        cfg = cfg.replace(**{k: v for k, v in options.items() if v is not None})
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError("seeds must be given and distinct")
    families, ratios = parse_families(families), parse_ratios(ratios)
    baselines, notes = resolve_baselines(baselines)
    if isinstance(mask_seed, bool) or not isinstance(mask_seed, (int, np.integer)) or mask_seed < 0:
        raise InputError(f"the mask seed must be a non-negative integer, got {mask_seed!r}")

    if prompts and clip is None:
        raise InputError("prompts need a CLIP model folder (--clip)")
    if attributes and classifier is None:
        raise InputError("attribute targets need a classifier folder (--classifier)")
    # Nothing is written before everything is checked: an unwritable --out first, then the models and the
    # options that need them (prompts, attributes, class); a failure leaves no folder behind.
    with fileio.output_folder(out):
        G = _load(generator, load_generator)
        if cfg.realism > 0 and discriminator is None:
            if not isinstance(generator, (str, os.PathLike)):
                raise InputError("the realism term needs the discriminator: pass discriminator=")
            discriminator = generator
        D = _load(discriminator, load_discriminator) if cfg.realism > 0 else None
        clip = None if clip is None else _load(clip, _loader("clip", "load_clip"))
        classifier = None if classifier is None else _load(classifier, _loader("vit", "load_classifier"))
        if lpips_model is None:
            from jax_inpaint.models.lpips import load_lpips
            lpips_model = load_lpips()

        if images is not None:
            targets = image_targets(images, G.img_resolution, limit=max_images)
            target_spec = {"kind": "images"}
        else:
            targets = gan_targets(G, int(gan_samples), truncation_psi=truncation_psi, class_idx=class_idx)
            target_spec = {"kind": "gan", "truncation_psi": float(truncation_psi)}
        cases, plan_notes = plan_cases(targets, families, ratios, mask_seed=mask_seed)
        notes += plan_notes

        prompt_list = [(p, 1.0) if isinstance(p, str) else (str(p[0]), float(p[1])) for p in (prompts or ())]
        fingerprint = {
            "generator": _model_id(G), "generator_config": _digest(repr(G.config)),
            "config": dataclasses.asdict(cfg), "seeds": seeds, "prompts": prompt_list,
            "attributes": dict(attributes or {}), "clip": _model_id(clip) if prompt_list else None,
            "classifier": _model_id(classifier) if attributes else None, "class_idx": class_idx,
            "discriminator": _model_id(D), "targets": target_spec, "mask_seed": int(mask_seed),
            "baselines": baselines, "lpips": _model_id(lpips_model), "format_version": FORMAT_VERSION,
        }
        from jax_inpaint.inversion.inpainter import build_objective
        build_objective(G, cfg, prompts=prompt_list or None, attributes=dict(attributes or {}) or None,
                        clip=clip, classifier=classifier, discriminator=D, lpips_model=lpips_model,
                        class_idx=class_idx)  # what inpaint() builds for every case: validates the options
        _check_study(out, fingerprint)
    fp_hash = _digest(json.dumps(_jsonable(fingerprint), sort_keys=True))

    records, todo = {}, []
    for case in cases:
        rec = load_record(out, case.id)
        if rec is not None and rec.get("key") == _case_key(fp_hash, case):
            records[case.id] = rec
        else:
            todo.append(case)
    reused = [c.id for c in cases if c.id in records]

    computed = []
    if todo:
        inpaint_kw = dict(prompts=prompt_list or None, attributes=dict(attributes or {}) or None, clip=clip,
                          classifier=classifier, discriminator=D, lpips_model=lpips_model, class_idx=class_idx)
        bar = tqdm(total=len(cases), initial=len(reused), desc="evaluate", unit="case", dynamic_ncols=True,
                   disable=not progress)
        try:
            _run_cases(out, todo, records, computed, bar, G=G, seeds=seeds, cfg=cfg, baselines=baselines,
                       scorer=Scorer(lpips_model, len(seeds) + len(baselines)), inpaint_kw=inpaint_kw,
                       key=lambda case: _case_key(fp_hash, case), mask_seed=mask_seed)
        finally:
            bar.close()

    from jax_inpaint.study.report import summarise, verdict, write_report

    rows = [r for c in cases for r in records[c.id]["rows"]]
    tiles = {c.id: records[c.id].get("tiles", []) for c in cases}
    headline = verdict(summarise(rows), [f for f in families if any(c.family == f for c in cases)],
                       [r for r in ratios if any(c.ratio == r for c in cases)], baselines)
    files = {}
    if report:
        meta = {"generator": getattr(G, "name", "") or "(in memory)", "resolution": G.img_resolution,
                "targets": target_spec, "n_targets": len(targets), "families": families, "ratios": ratios,
                "baselines": baselines, "seeds": seeds, "config": dataclasses.asdict(cfg),
                "defaults": dataclasses.asdict(InpaintConfig()), "prompts": prompt_list,
                "attributes": dict(attributes or {}), "mask_seed": int(mask_seed), "notes": notes,
                "n_cases": len(cases), "computed": len(computed), "reused": len(reused)}
        files = write_report(out, rows, meta, tiles=tiles)
    return EvaluateResult(out, rows, computed, reused, notes, files, headline)


def _run_cases(out: str, todo: Sequence[Case], records: dict, computed: list, bar, *, key, mask_seed: int,
               **case_kw) -> None:
    """Run the cases one by one; write each one's picture and record as soon as it is done."""
    for case in todo:
        bar.set_postfix_str(case.id, refresh=False)
        rows, picture, tiles = run_case(case, **case_kw)
        grid = os.path.join("cases", f"{case.id}.png")
        imio.save_png(os.path.join(out, grid), picture)
        for r in rows:
            r["grid"] = grid
        if not computed:  # the first case of a run pays for compiling the search and the scorer
            rows[0]["includes_compile"] = True
        rec = {"key": key(case), "case": case.id, "source": case.target.source,
               "mask_seed": case_mask_seed(mask_seed, case.target.name), "rows": rows, "tiles": tiles}
        write_json(os.path.join(out, "cases", f"{case.id}.json"), rec)
        records[case.id] = _jsonable(rec)
        computed.append(case.id)
        bar.update(1)


def _loader(module: str, fn: str):
    def load(path):
        import importlib
        return getattr(importlib.import_module(f"jax_inpaint.{module}"), fn)(path)
    return load
