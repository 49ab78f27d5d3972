"""Milliseconds per StyleGAN2 synthesis: forward, and forward + backward w.r.t. ws.

    python bench/generator.py                      # ours only
    python bench/generator.py --reference ~/stylegan2-ada-pytorch   # also NVIDIA's code, same run

Configs: `small` (the res64 test fixture's architecture: 64x64, channels <= 64) and `paper256`
(NVIDIA's paper256: 256x256, channel_base 16384, channel_max 512, 8 mapping layers, z = w = 512).
With --reference, NVIDIA's own Generator (random weights, force_fp32, noise_mode='const') is timed in
the same process, interleaved with ours repeat by repeat, and the table prints the ratio.
Medians of --repeats timed calls after a warm-up (compilation excluded).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from machine import HOST_ALLOCATOR  # before jax: it sets the host allocator

import jax
import jax.numpy as jnp
import numpy as np

from jax_inpaint.models.stylegan2 import GeneratorConfig, init_generator

CONFIGS = {
    "small": dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=64, img_channels=3,
                  mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=2048, channel_max=64, num_fp16_res=4, conv_clamp=256)),
    "paper256": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                     mapping_kwargs=dict(num_layers=8),
                     synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256)),
    "ffhq1024": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                     mapping_kwargs=dict(num_layers=8),
                     synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)),
}


def ours(kwargs, batch, dtype):
    cfg = GeneratorConfig.from_nvidia_kwargs(kwargs)
    G = init_generator(cfg, key=jax.random.key(0), dtype=dtype)
    ws = jax.random.normal(jax.random.key(1), (batch, cfg.num_ws, cfg.w_dim))
    R = jax.random.normal(jax.random.key(2), (batch, cfg.img_resolution, cfg.img_resolution, 3))
    noise = G.noise_const
    fwd = jax.jit(lambda v, ws: G.synthesize(v, ws, noise))
    fb = jax.jit(jax.grad(lambda ws, v: jnp.sum(G.synthesize(v, ws, noise) * R)))
    v = G.variables
    run_fwd = lambda: fwd(v, ws).block_until_ready()  # noqa: E731
    run_fb = lambda: fb(ws, v).block_until_ready()  # noqa: E731
    run_fwd(), run_fb()  # compile
    return run_fwd, run_fb


def reference(path, kwargs, batch):
    sys.path.insert(0, os.path.abspath(os.path.expanduser(path)))
    import torch
    from training.networks import Generator  # NVIDIA's code, from the user's checkout

    torch.set_num_threads(os.cpu_count())
    G = Generator(**kwargs).eval().requires_grad_(False)
    ws = torch.randn(batch, G.num_ws, G.w_dim)
    R = torch.randn(batch, 3, G.img_resolution, G.img_resolution)

    def run_fwd():
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const", force_fp32=True)

    def run_fb():
        w = ws.clone().requires_grad_(True)
        (G.synthesis(w, noise_mode="const", force_fp32=True) * R).sum().backward()

    run_fwd(), run_fb()
    return run_fwd, run_fb


def timed(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="small,paper256")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--reference", default=None, help="A checkout of NVlabs/stylegan2-ada-pytorch to time beside ours.")
    args = ap.parse_args()
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} on "
          f"{jax.devices()[0].device_kind}, dtype {args.dtype}, median of {args.repeats}, host allocator {HOST_ALLOCATOR}")
    header = f"{'config':<10} {'batch':>5} {'fwd ms':>10} {'fwd+bwd ms':>11}"
    if args.reference:
        header += f" {'NVIDIA fwd':>11} {'NVIDIA f+b':>11} {'fwd ratio':>9} {'f+b ratio':>9}"
    print(header)
    for name in args.configs.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            runs = [ours(CONFIGS[name], batch, dtype)]
            if args.reference:
                runs.append(reference(args.reference, CONFIGS[name], batch))
            times = [[[], []] for _ in runs]
            for _ in range(args.repeats):  # interleaved, so both see the same machine state
                for r, (f, fb) in enumerate(runs):
                    times[r][0].append(timed(f))
                    times[r][1].append(timed(fb))
            med = [[statistics.median(t) for t in pair] for pair in times]
            line = f"{name:<10} {batch:>5} {med[0][0]:>10.1f} {med[0][1]:>11.1f}"
            if args.reference:
                line += (f" {med[1][0]:>11.1f} {med[1][1]:>11.1f} {med[1][0] / med[0][0]:>9.2f}"
                         f" {med[1][1] / med[0][1]:>9.2f}")
            print(line, flush=True)
    if args.reference:
        print("# ratio = NVIDIA time / our time (> 1: ours is faster)")


if __name__ == "__main__":
    main()
