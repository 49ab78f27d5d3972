"""Milliseconds per call of the perception models, forward and forward + backward (w.r.t. the images).

    python bench/perception.py                                  # all models, batch 1 and 8
    python bench/perception.py --models clip,vit --batch 1 --repeats 5
    python bench/perception.py --models lpips --batch 1 --reference   # beside PyTorch's, interleaved

--reference: LPIPS is also timed in PyTorch (bench/torch_reference.py: VGG16 of torchvision's layout,
random weights; the same cost as NVIDIA's vgg16.pt), interleaved call by call with ours in one process,
as the inpainting loss uses it: the target's features computed once, then the distance of a new image
to them (forward) and its gradient w.r.t. that image (forward + backward).

Models (random weights, full-size configs): LPIPS VGG16 at 256x256 (distance of two batches),
CLIP ViT-B/16 at 224x224 (`encode_image`; images at the input size go in unresampled) and the
ViT-B/16 attribute classifier at 224x224 (`probs`, 40 labels). Backward = gradient of the summed
output with respect to the (first) image batch, as the inpainting loss needs. Medians of --repeats
timed calls after a warm-up call (compilation excluded, reported separately).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from machine import HOST_ALLOCATOR, gemm_gflops  # before jax: it sets the host allocator

import jax
import jax.numpy as jnp

from jax_inpaint.models import clip
from jax_inpaint.models import lpips
from jax_inpaint.models import vit


def _lpips_prepared(batch):
    """The search's use: distance of x to a target whose features are prepared once."""
    lp = lpips.load_lpips()
    x = jax.random.uniform(jax.random.key(1), (batch, 256, 256, 3), minval=-1, maxval=1)
    y = jax.random.uniform(jax.random.key(2), (batch, 256, 256, 3), minval=-1, maxval=1)
    prep = lp.prepare(lp.params, y)
    fwd = jax.jit(lambda p, x, q: lp.prepared_distance(p, x, q))
    fb = jax.jit(jax.grad(lambda x, p, q: jnp.sum(lp.prepared_distance(p, x, q))))
    return (lambda: fwd(lp.params, x, prep)), (lambda: fb(x, lp.params, prep))


def _torch_lpips(batch, threads):
    import os
    import sys

    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_reference import TorchLPIPS

    torch.set_num_threads(threads)
    m = TorchLPIPS(scale_255=False)
    x = torch.rand(batch, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        target = m.features(torch.rand(batch, 3, 256, 256) * 2 - 1)

    def fwd():
        with torch.no_grad():
            return (m.features(x) - target).square().sum(1)

    def fb():
        a = x.clone().requires_grad_(True)
        (m.features(a) - target).square().sum().backward()
        return a.grad

    return fwd, fb


def _lpips(batch):
    lp = lpips.init_lpips(key=jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (batch, 256, 256, 3), minval=-1, maxval=1)
    y = jax.random.uniform(jax.random.key(2), (batch, 256, 256, 3), minval=-1, maxval=1)
    fwd = jax.jit(lp.distance)
    fb = jax.jit(jax.grad(lambda x, p, y: jnp.sum(lp.distance(p, x, y))))
    return (lambda: fwd(lp.params, x, y)), (lambda: fb(x, lp.params, y))


def _clip(batch):
    cfg = clip.vit_b16_config()
    model = clip.CLIP(cfg, clip.init_params(cfg, key=jax.random.key(0)))
    x = jax.random.uniform(jax.random.key(1), (batch, 224, 224, 3), minval=-1, maxval=1)
    fwd = jax.jit(model.encode_image)
    fb = jax.jit(jax.grad(lambda x, p: jnp.sum(model.encode_image(p, x))))
    return (lambda: fwd(model.params, x)), (lambda: fb(x, model.params))


def _vit(batch):
    cfg = vit.vit_b16_config()
    model = vit.Classifier(cfg, vit.init_params(cfg, key=jax.random.key(0)))
    x = jax.random.uniform(jax.random.key(1), (batch, 224, 224, 3), minval=-1, maxval=1)
    fwd = jax.jit(model.probs)
    fb = jax.jit(jax.grad(lambda x, p: jnp.sum(model.probs(p, x))))
    return (lambda: fwd(model.params, x)), (lambda: fb(x, model.params))


MODELS = {"lpips": ("LPIPS VGG16 256x256", _lpips), "clip": ("CLIP ViT-B/16 224x224", _clip),
          "vit": ("ViT-B/16 classifier 224x224", _vit)}


def _time(fn, repeats: int) -> tuple[float, float]:
    """(compile + first call seconds, median ms of `repeats` calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - t0) * 1e3)
    return first, statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="lpips,clip,vit", help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per entry (median)")
    ap.add_argument("--reference", action="store_true",
                    help="also time PyTorch's VGG16 LPIPS, interleaved with ours (the search's prepared-target use)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (with --reference)")
    args = ap.parse_args()
    if args.reference:
        return compare_lpips([int(b) for b in args.batch.split(",")], args.repeats, args.threads)
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        ap.error(f"unknown models {unknown}")
    batches = [int(b) for b in args.batch.split(",")]
    dev = jax.devices()[0]
    print(f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}), {platform.processor() or platform.machine()}; "
          f"float32, medians of {args.repeats} calls after warm-up")
    print(f"{'model':<30} {'batch':>5} {'forward ms':>11} {'fwd+bwd ms':>11} {'compile+1st s':>14}")
    for name in names:
        label, make = MODELS[name]
        for b in batches:
            fwd, fb = make(b)
            c1, t_fwd = _time(fwd, args.repeats)
            c2, t_fb = _time(fb, args.repeats)
            print(f"{label:<30} {b:>5} {t_fwd:>11.1f} {t_fb:>11.1f} {c1 + c2:>14.1f}", flush=True)


def compare_lpips(batches, repeats: int, threads: int) -> None:
    """Ours and PyTorch's LPIPS at 256x256, each call timed in turn (interleaved), medians."""
    dev = jax.devices()[0]
    print(f"LPIPS VGG16 256x256, target prepared once; jax {jax.__version__} on {dev.platform}, torch on {threads} "
          f"threads; medians of {repeats} interleaved calls; host allocator {HOST_ALLOCATOR}; GEMM {gemm_gflops():.0f} GFLOP/s")
    print(f"{'batch':>5} {'ours fwd ms':>12} {'torch fwd ms':>13} {'ratio':>6} {'ours f+b ms':>12} "
          f"{'torch f+b ms':>13} {'ratio':>6}")
    for b in batches:
        fns = dict(zip(("ours fwd", "ours fb"), _lpips_prepared(b)))
        fns.update(zip(("torch fwd", "torch fb"), _torch_lpips(b, threads)))
        times = {k: [] for k in fns}
        for fn in fns.values():
            jax.block_until_ready(fn())  # compile / warm up
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times[k].append((time.perf_counter() - t0) * 1e3)
        m = {k: statistics.median(v) for k, v in times.items()}
        print(f"{b:>5} {m['ours fwd']:>12.1f} {m['torch fwd']:>13.1f} {m['ours fwd'] / m['torch fwd']:>6.2f} "
              f"{m['ours fb']:>12.1f} {m['torch fb']:>13.1f} {m['ours fb'] / m['torch fb']:>6.2f}", flush=True)
    print(f"# ratio = ours / torch (< 1: ours is faster); GEMM after: {gemm_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
