"""`evaluate()`: how robust is the inpainting? Targets x mask families x hole ratios, K seeds each, the
same cases filled by classical baselines, everything scored against the ground truth (`jax-inpaint evaluate`).

This module runs a study; its parts live beside it in jax_inpaint.study: `targets` (the ground truth),
`plan` (cases, masks and methods), `scoring` (the metrics of a fill), `pictures` (a case's picture),
`store` (study.json and the case records: resuming), `records` (the row schema and fingerprints) and
`report` (CSV, plots, HTML).

The study
---------
Targets (the ground truth, `study.targets`) are either the images of a folder (`images=`) or
`gan_samples=N` images of the generator itself, whose exact completion is in the search space. A case
(`study.plan`) is (target, family, ratio) for every family and every ratio whose hole-ratio bucket the
family reaches, with its own mask per target (nested as the ratio grows).

Methods, on exactly the same target and mask: 'gan' = `inpaint()` with the K seeds and the given options
(the same K and options for every case, so the search compiles once); the baselines 'mean' (mean-colour
fill), 'biharmonic' (scikit-image) and 'telea' (OpenCV, only when installed) of `jax_inpaint.study.baselines`.

Metrics (`records.METRICS`, computed by `study.scoring`): psnr_hole, ssim_hole and lpips_hole compare only
the hole with the ground truth, lpips the whole image.
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
  results.csv, .json    one row per (case, method): the columns of `records.COLUMNS` (+ constraint_success_rate)
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
import os
import time
from typing import Mapping, Sequence

import numpy as np

from jax_inpaint import files as fileio
from jax_inpaint import images as imio
from jax_inpaint import masks as masks_mod
from jax_inpaint.errors import InputError
from jax_inpaint.inversion.config import DEFAULT_SEEDS, InpaintConfig, check_prompts, check_seeds
from jax_inpaint.inversion.inpainter import Inpainter, check_constraint_models, resolve_config
from jax_inpaint.study.pictures import case_picture
from jax_inpaint.study.plan import (BASELINES, DEFAULT_FAMILIES, DEFAULT_RATIOS, Case, case_mask_seed, parse_families,
                                    parse_ratios, plan_cases, resolve_baselines)
from jax_inpaint.study.records import FORMAT_VERSION, digest, fingerprint_hash, jsonable, model_id, write_json
from jax_inpaint.study.scoring import Scorer, best_and_mean
from jax_inpaint.study.store import case_key, check_study, load_record
from jax_inpaint.study.targets import gan_targets, image_targets


def run_case(case: Case, *, inpainter: Inpainter, seeds: Sequence[int], baselines: Sequence[str], scorer: Scorer,
             prompts: Sequence[tuple[str, float]] = (), attributes: Mapping[str, float] | None = None
             ) -> tuple[list[dict], np.ndarray, list[dict]]:
    """Inpaint one case K ways (with the study's Inpainter: its models and objective are shared by every
    case) and fill it with each baseline -> (rows, case picture, its tiles' captions)."""
    from jax_inpaint.study import metrics
    from jax_inpaint.study.baselines import run_baseline

    t0 = time.perf_counter()
    res = inpainter(case.target.image, case.hole, seeds, prompts=prompts, attributes=attributes, progress=False)
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
    gan = {**base, "method": "gan", "k": k, **best_and_mean(scores, slice(0, k)),
           "psnr_known": float(np.mean(known_psnr)),
           "diversity": res.metrics.get("diversity_hole_lpips"), "seconds": gan_seconds}
    if "constraint_success_rate" in res.metrics:
        gan["constraint_success_rate"] = res.metrics["constraint_success_rate"]
    if res.dropped:
        gan["dropped_seeds"] = list(res.dropped)
    rows = [gan]
    for j, b in enumerate(baselines):
        rows.append({**base, "method": b, "k": 1, **best_and_mean(scores, slice(k + j, k + j + 1)),
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


def evaluate(generator, out: str | os.PathLike, *, images: str | os.PathLike | Sequence[str] | None = None,
             max_images: int | None = None, gan_samples: int | None = None, truncation_psi: float = 0.7,
             families: Sequence[str] | str = DEFAULT_FAMILIES, ratios: Sequence[float] | str = DEFAULT_RATIOS,
             mask_seed: int = 0, baselines: Sequence[str] | str | None = None,
             seeds: Sequence[int] = DEFAULT_SEEDS, config=None,
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

    out = os.fspath(out)
    if (images is None) == (gan_samples is None):
        raise InputError("give the targets: either --images DIR or --gan-samples N (not both)")
    cfg = resolve_config(config, **options)
    seeds = check_seeds(seeds)
    families, ratios = parse_families(families), parse_ratios(ratios)
    baselines, notes = resolve_baselines(baselines)
    if isinstance(mask_seed, bool) or not isinstance(mask_seed, (int, np.integer)) or mask_seed < 0:
        raise InputError(f"the mask seed must be a non-negative integer, got {mask_seed!r}")

    prompt_list = list(check_prompts(prompts))
    check_constraint_models(prompt_list, attributes, clip=clip, classifier=classifier)
    # Nothing is written before everything is checked: an unwritable --out first, then the models and the
    # options that need them (prompts, attributes, class); a failure leaves no folder behind.
    with fileio.output_folder(out):
        # The models, loaded once for every case (the objective, built below, is shared by every case too).
        inpainter = Inpainter(generator, config=cfg, clip=clip, classifier=classifier, discriminator=discriminator,
                              lpips_model=lpips_model, class_idx=class_idx)
        G, models = inpainter.G, inpainter.models

        if images is not None:
            targets = image_targets(images, G.img_resolution, limit=max_images)
            target_spec = {"kind": "images"}
        else:
            targets = gan_targets(G, int(gan_samples), truncation_psi=truncation_psi, class_idx=class_idx)
            target_spec = {"kind": "gan", "truncation_psi": float(truncation_psi)}
        cases, plan_notes = plan_cases(targets, families, ratios, mask_seed=mask_seed)
        notes += plan_notes

        fingerprint = {
            "generator": model_id(G), "generator_config": digest(repr(G.config)),
            "config": dataclasses.asdict(cfg), "seeds": seeds, "prompts": prompt_list,
            "attributes": dict(attributes or {}), "clip": model_id(models.clip) if prompt_list else None,
            "classifier": model_id(models.classifier) if attributes else None, "class_idx": class_idx,
            "discriminator": model_id(models.D), "targets": target_spec, "mask_seed": int(mask_seed),
            "baselines": baselines, "lpips": model_id(models.lpips), "format_version": FORMAT_VERSION,
        }
        inpainter.objective(prompt_list, attributes)  # the objective of every case, built once: checks the options
        check_study(out, fingerprint)
    fp_hash = fingerprint_hash(fingerprint)

    records, todo = {}, []
    for case in cases:
        rec = load_record(out, case.id)
        if isinstance(rec, dict) and rec.get("key") == case_key(fp_hash, case):
            records[case.id] = rec
        else:
            todo.append(case)
    reused = [c.id for c in cases if c.id in records]

    computed = []
    if todo:
        bar = tqdm(total=len(cases), initial=len(reused), desc="evaluate", unit="case", dynamic_ncols=True,
                   disable=not progress)
        try:
            _run_cases(out, todo, records, computed, bar, inpainter=inpainter, seeds=seeds, prompts=prompt_list,
                       attributes=attributes, baselines=baselines,
                       scorer=Scorer(models.lpips, len(seeds) + len(baselines)),
                       key=lambda case: case_key(fp_hash, case), mask_seed=mask_seed)
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
        records[case.id] = jsonable(rec)
        computed.append(case.id)
        bar.update(1)

