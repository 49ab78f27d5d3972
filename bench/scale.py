"""Images per second of `inpaint-batch` against the number of devices.

    python bench/scale.py --generator DIR [--devices 1,2,4] [--images 8] [--seeds 4] [--steps 50]
    python bench/scale.py --generator DIR --devices 1,2,4,8 --real   # on a machine with several GPUs

Each device count runs in its own process (the device count is fixed when JAX starts). On a CPU,
--devices N forces N host devices with XLA_FLAGS: they share the same cores, so the numbers there
only show that the sharded program runs; measure the scaling on a machine with several accelerators
(--real uses the first N real devices instead). Compilation is excluded: every process first runs a
warm-up batch of the same shape, then times the real one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

WORKER = r"""
import json, os, sys, time, tempfile
import jax, numpy as np
from PIL import Image
from jax_inpaint.batch import read_items, run_batch
from jax_inpaint.generate import generate
from jax_inpaint.models.stylegan2 import load_generator
a = json.loads(sys.argv[1])
devices = jax.local_devices()[: a["devices"]]
G = load_generator(a["generator"])
tmp = tempfile.mkdtemp()
os.makedirs(f"{tmp}/imgs")
for i, im in enumerate(generate(G, range(100, 100 + a["images"]), truncation_psi=0.7)["images"]):
    Image.fromarray(im).save(f"{tmp}/imgs/{i:04d}.png")
items = read_items(images=f"{tmp}/imgs", mask="center")
opts = dict(seeds=list(range(a["seeds"])), steps=a["steps"], progress=False, devices=devices,
            per_device=a["per_device"], lpips=a["lpips"])
per_run = len(devices) * a["per_device"]  # units per compiled batch
run_batch(items[: max(1, per_run // a["seeds"])], G, f"{tmp}/warm", **opts)  # compile
t = time.perf_counter()
s = run_batch(items, G, f"{tmp}/out", **opts)
dt = time.perf_counter() - t
print(json.dumps({"devices": len(devices), "kind": devices[0].device_kind, "ok": s.ok, "seconds": dt,
                  "images_per_second": s.ok / dt}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--devices", default="1,2,4")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--per-device", type=int, default=4)
    ap.add_argument("--lpips", type=float, default=1.0)
    ap.add_argument("--real", action="store_true", help="Use real devices (GPUs/TPUs), do not force CPU devices.")
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.devices.split(",")):
        env = dict(os.environ)
        if not args.real:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
            env["JAX_PLATFORMS"] = "cpu"
        spec = dict(generator=args.generator, devices=n, images=args.images, seeds=args.seeds, steps=args.steps,
                    per_device=args.per_device, lpips=args.lpips)
        p = subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec)], env=env, capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"worker with {n} devices failed:\n{p.stdout}\n{p.stderr}")
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    base = rows[0]["images_per_second"]
    print(f"# {args.images} images x {args.seeds} seeds, {args.steps} steps, {args.per_device} (image, seed) per device")
    print(f"{'devices':>7} {'kind':<12} {'seconds':>8} {'images/s':>9} {'speed-up':>8}")
    for r in rows:
        print(f"{r['devices']:>7} {r['kind'][:12]:<12} {r['seconds']:>8.1f} {r['images_per_second']:>9.3f} "
              f"{r['images_per_second'] / base:>8.2f}")
    if not args.real:
        print("# forced CPU devices share the same cores: this shows the sharded program runs, not a scaling")


if __name__ == "__main__":
    main()
