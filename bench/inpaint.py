"""Time per inpainting step for K = 1, 2, 4, 8 seeds vmapped in one program, against K sequential runs.

    python bench/inpaint.py                               # small config and paper256, random weights
    python bench/inpaint.py --configs ffhq1024 --ks 1,8   # the FFHQ config-f shape (on a GPU)

For each config and K: one compiled chunk of --steps Adam steps (masked MSE + masked LPIPS, W+,
random noise) is timed after a warm-up; `per seed` is the step time divided by K, relative to K = 1;
`vs sequential` is (K x the K = 1 step time) / the K-seed step time, i.e. how much faster one
vmapped program is than running the seeds one after another. Medians of --repeats.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from generator import CONFIGS  # noqa: E402  (the same architectures as bench/generator.py)

from jax_inpaint.models.lpips import init_lpips, load_lpips  # noqa: E402
from jax_inpaint.inversion.objective import Models, Objective  # noqa: E402
from jax_inpaint.inversion.config import load_config  # noqa: E402
from jax_inpaint.inversion.search import Search  # noqa: E402
from jax_inpaint.models.stylegan2 import GeneratorConfig, init_generator  # noqa: E402


def step_time(G, lp, k, steps, repeats, lpips_weight):
    cfg = load_config(None, steps=steps, chunk=steps, lpips=lpips_weight)
    objective = Objective(Models(G=G, lpips=lp), cfg)
    search = Search(objective, k)
    frozen = objective.frozen()
    r = G.img_resolution
    target = jax.random.uniform(jax.random.key(3), (k, r, r, 3), minval=-1, maxval=1)
    known = jnp.ones((k, r, r)).at[:, r // 4: 3 * r // 4, r // 4: 3 * r // 4].set(0.0)
    keys = jax.vmap(jax.random.key)(jnp.arange(k, dtype=jnp.uint32))

    def once():
        state = search._init(keys, frozen, jnp.float32(1.0), None)
        state, (loss, _) = search._chunk(state, jnp.int32(0), frozen, target, known, jnp.float32(1.0))
        loss.block_until_ready()

    once()  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        once()
        times.append((time.perf_counter() - t) / steps)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="small,paper256")
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("--steps", type=int, default=3, help="Steps per timed chunk.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lpips", type=float, default=1.0, help="LPIPS weight (0 = MSE only).")
    args = ap.parse_args()
    lp = load_lpips() if args.lpips > 0 else init_lpips(key=jax.random.key(0))
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} on {jax.devices()[0].device_kind}; "
          f"{args.steps} steps per chunk, median of {args.repeats}; LPIPS weight {args.lpips} "
          f"(images above 256 px are area-resized to 256 for LPIPS)")
    print(f"{'config':<10} {'K':>3} {'ms/step':>10} {'ms/step/seed':>13} {'per seed vs K=1':>16} {'vs sequential':>14}")
    for name in args.configs.split(","):
        G = init_generator(GeneratorConfig.from_nvidia_kwargs(CONFIGS[name]), key=jax.random.key(0))
        base = None
        for k in (int(x) for x in args.ks.split(",")):
            t = step_time(G, lp, k, args.steps, args.repeats, args.lpips)
            base = base or t  # K = 1 first
            print(f"{name:<10} {k:>3} {t * 1e3:>10.1f} {t / k * 1e3:>13.1f} {t / k / base:>16.2f} "
                  f"{k * base / t:>14.2f}", flush=True)
    print("# vs sequential = (K x step time at K=1) / step time at K: > 1 means the vmapped program is faster")


if __name__ == "__main__":
    main()
