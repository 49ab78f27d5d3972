#!/usr/bin/env python
"""Train the demo attribute classifier (a tiny ViT) on procedural faces and write its model folder.

    python bin/train_demo_classifier.py --dest jax_inpaint/models/assets/classifier/demo-faces --overwrite

Prints the held-out accuracy per attribute (also recorded in the folder's model.json).
The library code is `jax_inpaint.demo.train_classifier`.
"""
import argparse
import os
import sys
import tempfile

from jax_inpaint.demo.train_classifier import ClassifierTrainConfig, train_classifier


def main(argv=None) -> int:
    d = ClassifierTrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", required=True, help="model folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace DEST")
    p.add_argument("--steps", type=int, default=d.steps, help="(default %(default)s)")
    p.add_argument("--batch", type=int, default=d.batch, help="(default %(default)s)")
    p.add_argument("--image-size", type=int, default=d.image_size, help="(default %(default)s)")
    p.add_argument("--patch-size", type=int, default=d.patch_size, help="(default %(default)s)")
    p.add_argument("--hidden", type=int, default=d.hidden, help="(default %(default)s)")
    p.add_argument("--layers", type=int, default=d.layers, help="(default %(default)s)")
    p.add_argument("--heads", type=int, default=d.heads, help="(default %(default)s)")
    p.add_argument("--mlp", type=int, default=d.mlp, help="(default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="(default %(default)s)")
    p.add_argument("--num-images", type=int, default=d.num_images, help="training renders (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="(default %(default)s)")
    p.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "jax_inpaint_faces"),
                   help="where rendered data sets are cached (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    cfg = ClassifierTrainConfig(image_size=a.image_size, patch_size=a.patch_size, hidden=a.hidden, layers=a.layers,
                                heads=a.heads, mlp=a.mlp, batch=a.batch, steps=a.steps, lr=a.lr,
                                num_images=a.num_images, seed=a.seed)
    res = train_classifier(cfg, a.dest, cache_dir=a.cache_dir, progress=not a.quiet, overwrite=a.overwrite)
    for name, acc in res["accuracy"].items():
        print(f"{name:22s} {acc:.3f}")
    print(f"wrote {res['dest']} in {res['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
