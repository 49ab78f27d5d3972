#!/usr/bin/env python
"""Train the demo StyleGAN2 on procedural faces, resumably, and export it as a model folder.

    python bin/train_demo_gan.py --out /tmp/demo_gan                       # train (or resume) in /tmp/demo_gan
    python bin/train_demo_gan.py --out /tmp/demo_gan --export jax_inpaint/models/assets/generator/demo-faces

Kill it at any time: the next run with the same --out continues from the newest checkpoint.
The library code is `jax_inpaint.demo.train_gan`.
"""
import argparse
import dataclasses
import os
import sys

from jax_inpaint.demo.train_gan import (GanTrainConfig, add_run_options, export, read_run_config, train,
                                        use_run_compile_cache)
from jax_inpaint.errors import InputError


def channels(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(","))


FIELDS = {"steps": "total steps", "batch": "images per step", "resolution": "image size",
          "g_channels": "generator widths of blocks 4, 8, ... (comma-separated)",
          "d_channels": "discriminator widths of blocks 4, 8, ... (comma-separated)",
          "z_dim": "z and w size", "mapping_layers": "mapping network depth", "r1_gamma": "R1 weight",
          "style_mixing": "style-mixing probability", "num_images": "training renders",
          "seed": "initialisation seed", "sample_every": "steps between sample grids",
          "checkpoint_every": "steps between checkpoints"}


def main(argv=None) -> int:
    d = GanTrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p, FIELDS, d, "checkpoints, samples, log",
                    convert=lambda v: channels if isinstance(v, tuple) else type(v),
                    show=lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else str(v))
    a = p.parse_args(argv)
    use_run_compile_cache(a.out)
    try:
        if a.export:
            print(f"wrote {export(a.out, a.export, overwrite=a.overwrite)}")
            return 0
        base = read_run_config(a.out) if os.path.isfile(os.path.join(a.out, "train_config.json")) else d
        given = {name: getattr(a, name) for name in FIELDS if getattr(a, name) is not None}
        if "z_dim" in given:
            given["w_dim"] = given["z_dim"]
        cfg = dataclasses.replace(base, **given)
        res = train(cfg, a.out, cache_dir=a.cache_dir, max_minutes=a.max_minutes, progress=not a.quiet)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"step {res['step']}, {res['images_seen']} images seen, {res['seconds'] / 60:.1f} min in all; "
          f"samples in {os.path.join(a.out, 'samples')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
