"""Scoring a case's fills against the ground truth (`records.METRICS`; images clipped to [-1, 1], as a
saved picture shows them; PSNR with data range 2):

  psnr_hole   PSNR over the hole pixels (metrics.masked_psnr)                           higher = better
  ssim_hole   SSIM map averaged over the hole (metrics.masked_ssim)                     higher = better
  lpips_hole  LPIPS (VGG16 v0.1) of both images multiplied by the hole mask, i.e.
              LPIPS.masked_input_distance with known := hole: only the hole is compared  lower = better
  lpips       LPIPS of the whole image                                                   lower = better
"""
from __future__ import annotations

import numpy as np

from jax_inpaint.study.records import HIGHER_IS_BETTER, METRICS


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


def best_and_mean(scores: dict[str, np.ndarray], sl: slice) -> dict[str, float]:
    """Over the fills scores[m][sl] of one method: <metric>_best (the best of them, for each metric on its
    own) and <metric>_mean (their average)."""
    out = {}
    for m in METRICS:
        v = np.asarray(scores[m][sl], np.float64)
        out[f"{m}_best"] = float(v.max() if HIGHER_IS_BETTER[m] else v.min())
        out[f"{m}_mean"] = float(v.mean())
    return out
