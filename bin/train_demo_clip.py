#!/usr/bin/env python
"""Train the demo CLIP (`--clip demo-faces`) on procedural faces and their texts, resumably, and export it.

    python bin/train_demo_clip.py --out runs/demo_clip                  # train (or resume) in runs/demo_clip
    python bin/train_demo_clip.py --out runs/demo_clip --export jax_inpaint/models/assets/clip/demo-faces --overwrite

Kill it (or SIGSTOP / SIGCONT it) at any time: the next run with the same --out continues from the newest
checkpoint. The export prints the held-out with/without accuracy per attribute (also in its model.json).
The library code is `jax_inpaint.demo.train_clip`.
"""
import argparse
import dataclasses
import os
import sys

from jax_inpaint.demo.train_clip import ClipTrainConfig, export, read_run, train
from jax_inpaint.demo.train_gan import add_run_options, use_run_compile_cache
from jax_inpaint.errors import InputError

FIELDS = {"steps": "total steps (the learning-rate schedule's length)", "batch": "images per step",
          "lr": "peak learning rate", "image_size": "image size", "patch_size": "patch size",
          "vision_width": "vision width", "vision_layers": "vision layers", "vision_heads": "vision heads",
          "text_width": "text width", "text_layers": "text layers", "text_heads": "text heads",
          "context_length": "text positions", "projection_dim": "embedding size",
          "num_images": "training renders", "seed": "initialisation and data-order seed",
          "checkpoint_every": "steps between checkpoints"}


def main(argv=None) -> int:
    d = ClipTrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p, FIELDS, d, "checkpoints, log")
    p.add_argument("--tokenizer", default=None,
                   help="folder with CLIP's vocab.json and merges.txt (default: the shipped demo CLIP's, or "
                        "tests/data/clip/tiny-clip-hf of a source checkout)")
    a = p.parse_args(argv)
    use_run_compile_cache(a.out)
    try:
        if a.export:
            dest = export(a.out, a.export, overwrite=a.overwrite)
            acc = read_run_accuracy(dest)
            for name, value in acc.items():
                print(f"{name:22s} {value:.3f}")
            print(f"wrote {dest}")
            return 0
        exists = os.path.isfile(os.path.join(a.out, "train_config.json"))
        base = ClipTrainConfig.from_dict(read_run(a.out)["config"]) if exists else d
        given = {name: getattr(a, name) for name in FIELDS if getattr(a, name) is not None}
        cfg = dataclasses.replace(base, **given)
        res = train(cfg, a.out, cache_dir=a.cache_dir, tokenizer_dir=a.tokenizer, max_minutes=a.max_minutes,
                    progress=not a.quiet)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"step {res['step']}, {res['seconds'] / 60:.1f} min in all; export with --export DEST")
    return 0


def read_run_accuracy(dest: str) -> dict:
    """The held-out with/without accuracy per attribute that `export` measured (model.json)."""
    from jax_inpaint.models.folders import read_model_meta

    acc = read_model_meta(dest, "clip")["source"].get("heldout_with_without", {})
    return {k: v for k, v in acc.items() if isinstance(v, float)}


if __name__ == "__main__":
    sys.exit(main())
