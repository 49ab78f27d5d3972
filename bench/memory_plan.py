"""The search's memory at 1024x1024 (NVIDIA's FFHQ config F), measured by the compiler, nothing run.

    python bench/memory_plan.py                       # K = 1, 2, 4, 8; LPIPS alone and all terms; remat off/blocks
    python bench/memory_plan.py --ks 8,16 --gpu-gb 80

For each K, each set of terms (LPIPS alone; LPIPS + CLIP ViT-B/16 prompt + ViT-B/16 attribute
classifier) and each `remat` ('off': every activation of the generator kept for the backward pass;
'blocks': each synthesis block rematerialised, `jax.checkpoint`), the search's chunk program (a
`lax.scan` of --chunk steps: the program a GPU runs) is compiled ahead of time for abstract
arguments on this machine's default backend, and XLA's memory analysis of the compiled program is
printed: arguments (weights, state, targets), outputs, temporaries, and the peak the search plans
with (arguments + outputs - donated + temporaries, `search.compiled_bytes`). Random weights of the
full-size configs (only shapes matter). On CPU this is XLA:CPU's buffer assignment of the program a GPU
runs (the CPU-only forms of the small maps left out): a plan for a GPU, whose own compiler may fuse
differently (run it there to confirm).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
from generator import CONFIGS  # noqa: E402

from jax_inpaint.inversion.config import load_config  # noqa: E402
from jax_inpaint.inversion.objective import Constraints, Models, Objective  # noqa: E402
from jax_inpaint.inversion.search import Search, compiled_bytes, gigabytes  # noqa: E402
from jax_inpaint.models import clip as clip_lib  # noqa: E402
from jax_inpaint.models import vit as vit_lib  # noqa: E402
from jax_inpaint.models.lpips import load_lpips  # noqa: E402
from jax_inpaint.models.stylegan2 import GeneratorConfig, init_generator  # noqa: E402


def abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="ffhq1024", choices=sorted(CONFIGS))
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("--chunk", type=int, default=25)
    ap.add_argument("--terms", default="lpips,all", help="lpips (LPIPS alone), all (+ CLIP prompt + classifier)")
    ap.add_argument("--remat", default="off,blocks")
    ap.add_argument("--gpu-gb", type=float, default=80.0, help="the GPU to plan for (GB, 2^30 bytes)")
    args = ap.parse_args()
    # Plan the program a GPU runs: XLA:CPU compiles it here, so leave out the CPU-only forms of the small
    # maps (shifted products, Winograd's; read when traced). JAX_INPAINT_SHIFTED=1 keeps them.
    os.environ.setdefault("JAX_INPAINT_SHIFTED", "0")
    G = init_generator(GeneratorConfig.from_nvidia_kwargs(CONFIGS[args.config]), key=jax.random.key(0))
    lp = load_lpips()
    clip_cfg, vit_cfg = clip_lib.vit_b16_config(), vit_lib.vit_b16_config()
    clip = clip_lib.CLIP(clip_cfg, clip_lib.init_params(clip_cfg, key=jax.random.key(1)))
    classifier = vit_lib.Classifier(vit_cfg, vit_lib.init_params(vit_cfg, key=jax.random.key(2)))
    models = Models(G=G, lpips=lp, clip=clip, classifier=classifier)
    constraints = {"lpips": Constraints(),
                   "all": Constraints.make(attributes={"Smiling": 1.0, "Eyeglasses": 0.0}, prompts=["a smiling face"])}
    dev = jax.devices()[0]
    print(f"# {args.config} ({G.img_resolution}x{G.img_resolution}), jax {jax.__version__}, compiled for {dev.platform} "
          f"({dev.device_kind}); chunk of {args.chunk} steps in lax.scan; default recipe (masked MSE + LPIPS at 256, "
          "W+, random noise); GB = 2^30 bytes")
    print(f"{'terms':<22} {'remat':<7} {'K':>3} {'arguments':>10} {'outputs':>9} {'temps':>9} {'peak':>9} "
          f"{'per seed':>9} {'compile s':>10}")
    for terms in args.terms.split(","):
        c = constraints[terms]
        label = "LPIPS" if terms == "lpips" else "LPIPS + CLIP + ViT cls"
        for remat in args.remat.split(","):
            cfg = load_config(None, chunk=args.chunk, steps=args.chunk, loop="scan", remat=remat)
            objective = Objective(models, cfg, c)
            frozen = {"G": abstract(G.variables), "lpips": abstract(lp.params)}
            if c.attributes:
                frozen["classifier"] = abstract(classifier.params)
                frozen["attr_targets"] = jax.ShapeDtypeStruct((len(c.attributes),), jnp.float32)
            if c.prompts:
                frozen["clip"] = abstract(clip.params)
                frozen["text_embeds"] = jax.ShapeDtypeStruct((len(c.prompts), clip_cfg.projection_dim), jnp.float32)
                frozen["prompt_weights"] = jax.ShapeDtypeStruct((len(c.prompts),), jnp.float32)
            first = None
            for k in (int(x) for x in args.ks.split(",")):
                search = Search(objective, k)
                t = time.perf_counter()
                compiled = search.lower(frozen)["chunk"].compile()
                seconds = time.perf_counter() - t
                m = compiled.memory_analysis()
                peak = compiled_bytes(compiled)
                first = first or (k, peak)
                per_seed = (peak - first[1]) / (k - first[0]) if k != first[0] else float("nan")
                fits = "" if peak <= args.gpu_gb * 2 ** 30 else f"  > {args.gpu_gb:g} GB"
                print(f"{label:<22} {remat:<7} {k:>3} {gigabytes(m.argument_size_in_bytes):>10} "
                      f"{gigabytes(m.output_size_in_bytes):>9} {gigabytes(m.temp_size_in_bytes):>9} "
                      f"{gigabytes(peak):>9} {gigabytes(per_seed) if per_seed == per_seed else '-':>9} "
                      f"{seconds:>10.1f}{fits}", flush=True)
                del compiled, search


if __name__ == "__main__":
    main()
