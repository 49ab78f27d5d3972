"""Time per inpainting step for K = 1, 2, 4, 8 seeds, as the search runs them, against K sequential runs.

    python bench/inpaint.py                               # 64x64 (NVIDIA's stylegan2) and paper256
    python bench/inpaint.py --configs small,stylegan2 --ks 1,2,4,8,16
    python bench/inpaint.py --configs ffhq1024 --ks 1,8   # the FFHQ config-f shape (on a GPU)

For each config and K: a chunk of --steps Adam steps of the search as it runs by default on this
backend (masked MSE + masked LPIPS, W+, random noise; on CPU one compiled step per call, on GPU/TPU a
lax.scan chunk) is timed after a warm-up. K seeds run as the search runs them: in calls of `batch` seeds
vmapped in one program (all K, or on CPU without the diversity term at most
`search.cpu_batch_limit` for large images). `per seed` is the step time of all K seeds divided by K,
relative to K = 1; `vs sequential` is (K x the K = 1 step time) / that time, i.e. how much faster than
running the seeds one after another; `one program` is `per seed` with all K seeds in one program.
Every program size is timed interleaved with the others; medians of --repeats.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from machine import HOST_ALLOCATOR, gemm_gflops  # before jax: it sets the host allocator

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
from generator import CONFIGS  # noqa: E402  (the same architectures as bench/generator.py)
from step import STEP_CONFIGS  # noqa: E402

CONFIGS = {**CONFIGS, **STEP_CONFIGS}

from jax_inpaint.models.lpips import init_lpips, load_lpips  # noqa: E402
from jax_inpaint.inversion.objective import Models, Objective  # noqa: E402
from jax_inpaint.inversion.config import load_config  # noqa: E402
from jax_inpaint.inversion.search import Search, cpu_batch  # noqa: E402
from jax_inpaint.models.stylegan2 import GeneratorConfig, init_generator  # noqa: E402


def step_fn(G, lp, k, steps, lpips_weight):
    """A compiled search of K seeds, warmed up; calling it runs (and waits for) one chunk of `steps` steps."""
    cfg = load_config(None, steps=steps, chunk=steps, lpips=lpips_weight)
    objective = Objective(Models(G=G, lpips=lp), cfg)
    search = Search(objective, k)
    frozen = objective.frozen()
    r = G.img_resolution
    target = jax.random.uniform(jax.random.key(3), (k, r, r, 3), minval=-1, maxval=1)
    known = jnp.ones((k, r, r)).at[:, r // 4: 3 * r // 4, r // 4: 3 * r // 4].set(0.0)
    keys = jax.vmap(jax.random.key)(jnp.arange(k, dtype=jnp.uint32))
    w_std = jnp.float32(1.0)
    box = {"state": search._init(keys, frozen, w_std, None)}
    prepared = search._prepare(frozen, target, known)

    def once():  # the state carries over (it is donated to each call)
        box["state"], (loss, _) = search._chunk(box["state"], 0, frozen, target, known, w_std, prepared)
        loss.block_until_ready()

    once()  # compile
    return once


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="stylegan2,paper256")
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("--steps", type=int, default=3, help="Steps per timed chunk.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lpips", type=float, default=1.0, help="LPIPS weight (0 = MSE only).")
    args = ap.parse_args()
    lp = load_lpips() if args.lpips > 0 else init_lpips(key=jax.random.key(0))
    print(f"# GEMM {gemm_gflops():.0f} GFLOP/s; host allocator {HOST_ALLOCATOR}")
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} on {jax.devices()[0].device_kind}; "
          f"{args.steps} steps per chunk, median of {args.repeats}; LPIPS weight {args.lpips} "
          f"(images above 256 px are area-resized to 256 for LPIPS)")
    print(f"{'config':<10} {'K':>3} {'batch':>5} {'ms/step':>10} {'ms/step/seed':>13} {'per seed vs K=1':>16} "
          f"{'vs sequential':>14} {'one program':>12}")
    for name in args.configs.split(","):
        G = init_generator(GeneratorConfig.from_nvidia_kwargs(CONFIGS[name]), key=jax.random.key(0))
        ks = [int(x) for x in args.ks.split(",")]
        # the batch the search runs K seeds in on this backend (fit_search before memory: equal batches)
        objective = Objective(Models(G=G, lpips=lp), load_config(None, lpips=args.lpips))
        batch = {k: cpu_batch(objective, k) for k in ks}
        sizes = sorted(set(ks) | set(batch.values()))
        fns = {b: step_fn(G, lp, b, args.steps, args.lpips) for b in sizes}
        times = {b: [] for b in sizes}
        for _ in range(args.repeats):  # interleaved: a change of the machine's speed hits every K alike
            for b in sizes:
                t = time.perf_counter()
                fns[b]()
                times[b].append((time.perf_counter() - t) / args.steps)
        one = {b: statistics.median(v) for b, v in times.items()}  # one program of b seeds, s/step
        base = one[ks[0]] * ks[0]  # per seed at the first K (1)
        for k in ks:
            b = batch[k]
            t = one[b] * -(-k // b)  # K seeds as the search runs them: ceil(K / b) calls of the b-seed program
            print(f"{name:<10} {k:>3} {b:>5} {t * 1e3:>10.1f} {t / k * 1e3:>13.1f} {t / k / base:>16.2f} "
                  f"{k * base / t:>14.2f} {one[k] / k / base:>12.2f}", flush=True)
        del fns
    print("# batch: seeds per call as the search runs K seeds here (on CPU without the diversity term: at most "
          "CPU_BATCH_BYTES of the largest feature map, search.cpu_batch_limit); ms/step: all K seeds, as run")
    print("# vs sequential = (K x step time at K=1) / step time at K: > 1 means the vmapped program is faster")
    print("# one program: per seed vs K = 1 with all K seeds in one program (the same where batch = K)")
    print(f"# GEMM after: {gemm_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
