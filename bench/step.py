"""One inpainting step against one step of NVIDIA's projector, and the search against its own gradient.

    python bench/step.py --reference ~/stylegan2-ada-pytorch          # 64x64 and 256x256, K = 1
    python bench/step.py --reference ~/stylegan2-ada-pytorch --configs paper256 --repeats 5

Configs: `stylegan2` (NVIDIA's config of that name at 64x64: channel_base 32768, channel_max 512, 8
mapping layers) and `paper256` (256x256, channel_base 16384). Random weights everywhere; ours and
NVIDIA's the same architecture, float32, one seed (K = 1).

Rows, each seconds per step, interleaved repeat by repeat in one process (medians):
- `nvidia`: NVIDIA's projector step (bench/torch_reference.py: its loop body around NVIDIA's own
  Generator from the checkout, VGG16 LPIPS of torchvision's layout, torch on --threads threads).
- `ours nvidia-terms`: our search step with the same terms (the `nvidia` preset: W space, w noise,
  optimised noise with its regulariser, LPIPS), masked (a centre hole; the cost is the same).
- `ours default`: our default recipe (masked MSE + masked LPIPS, W+, fixed random noise).
- for the default recipe, the structures of the search: `bare` = jit(value_and_grad(loss)) of the same
  objective called once per step (no optimiser: the floor), `host` = the search's compiled step
  dispatched from Python (loop 'host', the CPU default), `scan` = a chunk of steps in one lax.scan
  (loop 'scan', the GPU/TPU default), and `scan x3` (lax.scan unrolled 3 times, for reference).
The first compile of each structure is printed (seconds). The machine's state is printed before and
after as a 1024^2 float32 GEMM rate: compare only ratios from one run.
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
from generator import CONFIGS  # noqa: E402

from jax_inpaint.inversion.config import load_config  # noqa: E402
from jax_inpaint.inversion.objective import Models, Objective  # noqa: E402
from jax_inpaint.inversion.search import Search, resolve_loop  # noqa: E402
from jax_inpaint.models.lpips import load_lpips  # noqa: E402
from jax_inpaint.models.stylegan2 import GeneratorConfig, init_generator  # noqa: E402

STEP_CONFIGS = {
    "stylegan2": dict(CONFIGS["paper256"], img_resolution=64,
                      synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)),
    "paper256": CONFIGS["paper256"],
}


class Ours:
    """A search (K = 1) whose step is timed in chunks of `n` steps; the state carries over."""

    def __init__(self, G, lp, preset, n, **options):
        cfg = load_config(preset, steps=1000, chunk=n, **options)
        self.objective = Objective(Models(G=G, lpips=lp), cfg)
        self.search = Search(self.objective, 1)
        self.frozen = self.objective.frozen()
        r = G.img_resolution
        self.target = jax.random.uniform(jax.random.key(3), (1, r, r, 3), minval=-1, maxval=1)
        self.known = jnp.ones((1, r, r)).at[:, r // 4: 3 * r // 4, r // 4: 3 * r // 4].set(0.0)
        t = time.perf_counter()
        self.search.compile(self.frozen)
        self.compile_s = time.perf_counter() - t
        keys = jax.vmap(jax.random.key)(jnp.zeros((1,), jnp.uint32))
        self.w_std = jnp.float32(1.0)
        self.state = self.search._init(keys, self.frozen, self.w_std, None)
        self.prepared = self.search._prepare(self.frozen, self.target, self.known)
        self.t0 = 0
        self()  # warm-up

    def __call__(self):
        self.state, (loss, _) = self.search._chunk(self.state, self.t0 % 900, self.frozen, self.target, self.known,
                                                   self.w_std, self.prepared)
        self.t0 += self.search.chunk
        loss.block_until_ready()


class Bare:
    """jit(value_and_grad) of the same per-seed loss, once per step: the floor a search step can reach."""

    def __init__(self, ours: Ours, n: int):
        s, obj = ours.search, ours.objective
        state = jax.tree.map(lambda x: x[0], ours.state)
        self.args = (state["vars"], state["fixed_noise"], ours.frozen, ours.target[0], ours.known[0],
                     jax.tree.map(lambda x: x[0], ours.prepared))

        def loss(v, fixed, frozen, target, known, prepared):
            return obj.loss(frozen, s._ws(v["w"]), v.get("noise", fixed), target, known, prepared)[0]

        self.fn = jax.jit(jax.value_and_grad(loss))
        self.n = n
        t = time.perf_counter()
        jax.block_until_ready(self.fn(*self.args))
        self.compile_s = time.perf_counter() - t

    def __call__(self):
        out = [self.fn(*self.args) for _ in range(self.n)]
        jax.block_until_ready(out)


class ScanUnrolled(Ours):
    """The scan with `unroll=u` (monkeypatched into this one search's chunk)."""

    def __init__(self, G, lp, preset, n, u, **options):
        original = jax.lax.scan
        jax.lax.scan = lambda *a, **k: original(*a, **{**k, "unroll": u})
        try:
            super().__init__(G, lp, preset, n, loop="scan", **options)
        finally:
            jax.lax.scan = original


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", help="a stylegan2-ada-pytorch checkout (for the NVIDIA rows)")
    ap.add_argument("--configs", default="stylegan2,paper256")
    ap.add_argument("--steps", type=int, default=6, help="steps per timed call (6: whole unrolled iterations)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    ap.add_argument("--no-structures", action="store_true", help="skip the bare / host / scan rows")
    args = ap.parse_args()
    networks = None
    if args.reference:  # torch only for NVIDIA's rows
        from torch_reference import NvidiaProjectorStep, import_nvidia
        networks = import_nvidia(args.reference)
    dev = jax.devices()[0]
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} on {dev.platform} "
          f"({dev.device_kind}); default loop here: {resolve_loop('auto')}; {args.steps} steps per timed call, "
          f"median of {args.repeats}; host allocator {HOST_ALLOCATOR}; GEMM {gemm_gflops():.0f} GFLOP/s")
    lp = load_lpips()
    for name in args.configs.split(","):
        kwargs = STEP_CONFIGS[name]
        G = init_generator(GeneratorConfig.from_nvidia_kwargs(kwargs), key=jax.random.key(0))
        rows = {}
        if networks is not None:
            ref = NvidiaProjectorStep(networks, kwargs, args.threads)
            ref(), ref()  # warm-up
            rows["nvidia"] = (lambda r=ref: [r() for _ in range(args.steps)], None)
        ours_nv = Ours(G, lp, "nvidia", args.steps)
        rows["ours nvidia-terms"] = (ours_nv, ours_nv.compile_s)
        default = Ours(G, lp, None, args.steps)
        rows[f"ours default ({default.search.loop})"] = (default, default.compile_s)
        if not args.no_structures:
            bare = Bare(default, args.steps)
            rows["  bare value_and_grad"] = (bare, bare.compile_s)
            other = "scan" if default.search.loop == "host" else "host"
            alt = Ours(G, lp, None, args.steps, loop=other)
            rows[f"  {other}"] = (alt, alt.compile_s)
            for u in (2, 3):
                unrolled = ScanUnrolled(G, lp, None, args.steps, u)
                rows[f"  scan x{u}"] = (unrolled, unrolled.compile_s)
        times = {k: [] for k in rows}
        for _ in range(args.repeats):
            for k, (fn, _) in rows.items():
                t = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t) / args.steps)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n{name} ({G.img_resolution}x{G.img_resolution}), K = 1")
        print(f"{'':<26} {'s/step':>8} {'vs nvidia':>10} {'vs bare':>8} {'compile s':>10}")
        for k, (_, compile_s) in rows.items():
            vs_nv = f"{med[k] / med['nvidia']:.2f}" if "nvidia" in med else "-"
            vs_bare = f"{med[k] / med['  bare value_and_grad']:.2f}" if "  bare value_and_grad" in med else "-"
            c = f"{compile_s:.1f}" if compile_s is not None else "-"
            print(f"{k:<26} {med[k]:>8.3f} {vs_nv:>10} {vs_bare:>8} {c:>10}", flush=True)
    print(f"\n# GEMM after: {gemm_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
