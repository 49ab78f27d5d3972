"""What `inpaint` writes for a result: the completions and raw outputs as PNGs, one grid picture,
the latents, the loss curves and the metrics (`save_result`), all or nothing.

Numpy, PIL and matplotlib only: writing needs none of the models (nor jax). `result` is an
`inversion.inpainter.InpaintResult` (not imported here: the driver imports this module)."""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import numpy as np

from jax_inpaint import files, images

MAX_CURVES = 64  # loss curves drawn per plot (the first seeds'): thousands say nothing more
RESULT_FILES = ("grid.png", "latents.npz", "loss.png", "metrics.json")  # + completion_<seed>.png, raw_<seed>.png


def masked_preview(target: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The input with its hole drawn as a grey checkerboard (uint8)."""
    img = images.to_uint8(target).copy()
    yy, xx = np.mgrid[: hole.shape[0], : hole.shape[1]]
    cell = max(2, hole.shape[0] // 16)
    checker = np.where(((yy // cell + xx // cell) % 2)[..., None] == 0, 150, 200).astype(np.uint8)
    img[hole] = np.repeat(checker, 3, -1)[hole]
    return img


def result_grid(result) -> np.ndarray:
    """grid.png: the input, the masked input and the K completions, 6 to a row, labelled (uint8)."""
    tiles = [images.to_uint8(result.target), masked_preview(result.target, result.hole)]
    tiles += [images.to_uint8(c) for c in result.completions]
    labels = ["input", "masked"] + [f"seed {s}" for s in result.seeds]
    return images.image_grid(tiles, ncols=min(len(tiles), 6), labels=labels if result.target.shape[0] >= 48 else None)


def plot_losses(history: Mapping[str, np.ndarray], seeds: Sequence[int], path: str) -> None:
    """loss.png: the loss and each term per step, one curve per seed (the first MAX_CURVES seeds)."""
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


def _previous_outputs(out: str) -> list[str]:
    """The files an earlier `save_result` wrote into `out`: its fixed names, and the completion_/raw_
    PNGs of the seeds its metrics.json lists (files of other names, or of seeds it does not list, are
    not ours and are never touched)."""
    names = [n for n in RESULT_FILES if os.path.isfile(os.path.join(out, n))]
    try:
        with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
            entries = json.load(f)["seeds"]
    except (OSError, ValueError, KeyError, TypeError):
        return names
    seeds = []
    for e in entries if isinstance(entries, list) else ():
        try:  # a damaged entry (not an object, no seed, 1e400, "x") is skipped: its files are not ours to remove
            seed = e["seed"]
            if isinstance(seed, bool) or not isinstance(seed, (int, float)) or seed != int(seed):
                continue
            seeds.append(int(seed))
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
    return names + [f"{kind}_{s}.png" for s in seeds for kind in ("completion", "raw")]


def save_result(result, out: str) -> dict[str, str]:
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
        images.save_png(os.path.join(stage, "grid.png"), result_grid(result))
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
