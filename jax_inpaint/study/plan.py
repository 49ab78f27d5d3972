"""What a study runs: its cases (target x mask family x hole ratio, each with its mask) and its methods.

A case is (target, family, ratio), for every family of `families` and every ratio of `ratios` whose
CoModGAN bucket the family reaches (`masks.family_buckets`; the others are skipped with a note). Its mask is
`masks.make_mask(family, ratio, seed=case_mask_seed(mask_seed, target), size=R)`: every target has its own
random layout (the seed hangs on the target's name, so adding targets changes no existing mask), and its
masks are nested as the ratio grows.

Methods: 'gan' (the latent search) and the baselines of `BASELINES` (names of this study -> functions of
`jax_inpaint.study.baselines`).

Light: numpy and the mask families only (the CLI reads the defaults from here).
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Sequence

import numpy as np

from jax_inpaint import masks as masks_mod
from jax_inpaint.errors import InputError
from jax_inpaint.study.baselines import available_baselines
from jax_inpaint.study.targets import Target

DEFAULT_FAMILIES = ("center", "strokes-medium", "half", "lines")
DEFAULT_RATIOS = (0.1, 0.3, 0.5, 0.7)
# Baseline names of this study -> names in jax_inpaint.study.baselines.
BASELINES = {"mean": "mean_fill", "biharmonic": "biharmonic", "telea": "telea"}


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
