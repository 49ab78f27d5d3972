"""The picture of a case (one row: ground truth, masked input, the K completions, the baselines, each
captioned), and cutting its tiles out again (the report embeds them one by one). Both use this module's
layout constants, so they always agree."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from jax_inpaint import images as imio
from jax_inpaint.study.plan import Case
from jax_inpaint.study.records import METRICS

GRID_TILE = (128, 256)  # tiles of the generator's resolution clamped to this range
PAD, LABEL = 2, 14  # the gap between tiles and the caption's height (images.image_grid)


def tile_size(resolution: int) -> int:
    return int(min(max(resolution, GRID_TILE[0]), GRID_TILE[1]))


def case_picture(case: Case, completions: np.ndarray, seeds: Sequence[int], fills: Mapping[str, np.ndarray],
                 scores: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[dict]]:
    """One row: ground truth, masked input, the K completions, the baselines, captioned with the hole PSNR.
    Returns the picture (uint8) and one entry per tile: {'label', 'method', and for the fills 'psnr_hole',
    'ssim_hole', 'lpips_hole', 'lpips'}."""
    from jax_inpaint.inversion.outputs import masked_preview

    size = tile_size(case.target.image.shape[0])
    tiles = [imio.display_tile(case.target.image, size),
             imio.display_tile(masked_preview(case.target.image, case.hole), size)]
    info = [{"label": "ground truth", "method": None}, {"label": f"masked {100 * case.hole_ratio:.0f}%", "method": None}]
    fills_all = [(f"seed {s}", "gan", completions[i]) for i, s in enumerate(seeds)]
    fills_all += [(name, name, img) for name, img in fills.items()]
    for i, (label, method, img) in enumerate(fills_all):
        tiles.append(imio.display_tile(img, size))
        info.append({"label": label, "method": method, **{m: float(scores[m][i]) for m in METRICS}})
    labels = [e["label"] if e["method"] is None else f"{e['label']}  {e['psnr_hole']:.1f} dB" for e in info]
    return imio.image_grid(tiles, ncols=len(tiles), labels=labels, pad=PAD, label_height=LABEL), info


def picture_tiles(picture: np.ndarray, n: int) -> list[np.ndarray]:
    """The n tiles of a case picture, without their captions."""
    size = (picture.shape[1] - PAD) // n - PAD
    y = PAD + LABEL
    return [picture[y:y + size, PAD + i * (size + PAD):PAD + i * (size + PAD) + size] for i in range(n)]
