"""Batch inpainting: a folder or manifest of images, (image x seed) items data-parallel over the local
devices (a `jax.sharding.Mesh`), several hosts through `jax.distributed`, resumable.

Layout of the output folder::

    OUT/<item>/              what `inpaint` writes for one image (completions, grid, latents, metrics...)
    OUT/results.<host>.jsonl one line per finished item: {"item", "status": "ok"|"failed", "outputs",
                             "metrics", "error", "seconds", "host"}; appended as items finish
    OUT/summary.json         written at the end (by host 0 once every host is done)

Every item folder is written under a temporary name and renamed when complete, so an interrupted run
leaves no half-written outputs; a rerun skips the items recorded "ok" whose folder exists and retries
the failed ones.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import re
import shutil
import time
from typing import Sequence

import jax
import numpy as np

from jax_inpaint.errors import InputError
from jax_inpaint.inpaint import (Inputs, _merge, _select, build_objective, finish, parse_attributes, prepare_inputs,
                                 resolve_config, save_result)
from jax_inpaint.recipe import InpaintConfig
from jax_inpaint.search import SearchResult, get_search, w_statistics

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class Item:
    id: str  # unique and filesystem-safe: the name of the item's output folder
    image: str
    mask: str  # a mask file or a preset
    prompts: tuple[tuple[str, float], ...] = ()
    attributes: tuple[tuple[str, float], ...] = ()


# ---------------------------------------------------------------------------------------------
# Inputs.

def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "item"


def _unique(items: list[Item]) -> list[Item]:
    seen: dict[str, int] = {}
    out = []
    for it in items:
        n = seen.get(it.id, 0)
        seen[it.id] = n + 1
        out.append(it if n == 0 else dataclasses.replace(it, id=f"{it.id}-{n}"))
    return out


def _find_mask(folder: str, stem: str) -> str | None:
    for ext in IMAGE_EXTS:
        for cand in (os.path.join(folder, stem + ext), os.path.join(folder, stem + "_mask" + ext)):
            if os.path.isfile(cand):
                return cand
    return None


def _prompts(value) -> tuple[tuple[str, float], ...]:
    if value in (None, ""):
        return ()
    texts = value if isinstance(value, list) else [p for p in str(value).split("|") if p.strip()]
    out = []
    for p in texts:
        text, sep, w = str(p).rpartition("::")
        out.append((text, float(w)) if sep else (str(p), 1.0))
    return tuple(out)


def _attributes(value) -> tuple[tuple[str, float], ...]:
    if value in (None, ""):
        return ()
    if isinstance(value, dict):
        return tuple((str(k), float(v)) for k, v in value.items())
    return tuple(parse_attributes([a for a in re.split(r"[;,]", str(value)) if a.strip()]).items())


def read_items(*, images: str | None = None, masks: str | None = None, mask: str | None = None,
               manifest: str | None = None) -> list[Item]:
    """Items from a folder of images (with a folder of masks named like the images, or one mask file
    or preset for all), or from a CSV / JSONL manifest with columns image, mask, prompt, attributes
    (and optionally id). Relative paths in a manifest are relative to the manifest's folder.
    CSV cells: several prompts separated by '|', attributes as 'Smiling=1;Eyeglasses=0'."""
    if (images is None) == (manifest is None):
        raise InputError("give either a folder of images or a manifest (CSV or JSONL)")
    items: list[Item] = []
    if images is not None:
        if not os.path.isdir(images):
            raise InputError(f"{images}: not a folder")
        if (masks is None) == (mask is None):
            raise InputError("with a folder of images give either --masks DIR or --mask FILE|PRESET")
        files = sorted(f for f in os.listdir(images) if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise InputError(f"{images}: no images ({', '.join(IMAGE_EXTS)})")
        for f in files:
            stem = os.path.splitext(f)[0]
            m = mask
            if masks is not None:
                m = _find_mask(masks, stem) or os.path.join(masks, stem + ".png")  # a missing mask fails the item
            items.append(Item(_safe_id(stem), os.path.join(images, f), m))
        return _unique(items)
    if not os.path.isfile(manifest):
        raise InputError(f"{manifest}: no such manifest")
    base = os.path.dirname(os.path.abspath(manifest))
    rows: list[dict] = []
    try:
        if manifest.lower().endswith((".jsonl", ".json")):
            with open(manifest) as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        row = json.loads(line)
                        if not isinstance(row, dict):
                            raise InputError(f"{manifest}:{n}: each line must be a JSON object")
                        rows.append(row)
        else:
            with open(manifest, newline="") as f:
                rows = list(csv.DictReader(f))
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"{manifest}: unreadable manifest ({e})") from None
    for n, row in enumerate(rows, 1):
        if not row.get("image"):
            raise InputError(f"{manifest}: row {n} has no 'image'")
        img = row["image"] if os.path.isabs(row["image"]) else os.path.join(base, row["image"])
        m = row.get("mask") or mask
        if not m:
            raise InputError(f"{manifest}: row {n} has no 'mask' (or pass --mask for all rows)")
        if os.path.exists(os.path.join(base, m)) and not os.path.isabs(m):
            m = os.path.join(base, m)
        ident = row.get("id") or os.path.splitext(os.path.basename(row["image"]))[0]
        try:
            items.append(Item(_safe_id(str(ident)), img, m, _prompts(row.get("prompt") or row.get("prompts")),
                              _attributes(row.get("attributes"))))
        except (InputError, ValueError) as e:
            raise InputError(f"{manifest}: row {n}: {e}") from None
    if not items:
        raise InputError(f"{manifest}: no rows")
    return _unique(items)


# ---------------------------------------------------------------------------------------------
# Results files.

def read_results(out: str) -> dict[str, dict]:
    """The last record of every item over all hosts' results files."""
    records: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(out, "results.*.jsonl"))):
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: that item simply runs again
                records[rec["item"]] = rec
    return records


def _append(path: str, record: dict) -> None:
    line = json.dumps(record) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _write_item(out: str, item: Item, result) -> dict:
    """save_result into a temporary folder, renamed into place when complete."""
    final = os.path.join(out, item.id)
    tmp = os.path.join(out, f".tmp-{item.id}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        written = save_result(result, tmp)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {k: os.path.join(final, os.path.basename(v)) for k, v in written.items()}


# ---------------------------------------------------------------------------------------------
# Running.

@dataclasses.dataclass
class BatchSummary:
    total: int
    ok: int
    failed: int
    skipped: int  # finished by an earlier run
    seconds: float
    images_per_second: float
    devices: int
    hosts: int
    path: str | None = None


def local_mesh(devices: Sequence | None = None):
    """A 1-D mesh ('data') over this host's devices."""
    from jax.sharding import Mesh
    devs = list(devices) if devices is not None else jax.local_devices()
    return Mesh(np.array(devs), ("data",))


def run_batch(items: Sequence[Item], generator, out: str, *, seeds: Sequence[int] = tuple(range(4)),
              config=None, clip=None, classifier=None, class_idx: int | None = None, per_device: int | None = None,
              process_index: int | None = None, process_count: int | None = None, devices=None,
              progress: bool = True, **options) -> BatchSummary:
    """Inpaint every item K = len(seeds) ways. This host takes items i with i % hosts == its index;
    (item, seed) pairs are laid out on a mesh over the local devices, `per_device` pairs on each
    device per compiled step (default: K). Returns the summary of this run."""
    from tqdm.auto import tqdm

    from jax_inpaint.stylegan2 import load_generator

    cfg: InpaintConfig = resolve_config(config, **options)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError("seeds must be a non-empty list of distinct numbers")
    host = jax.process_index() if process_index is None else process_index
    hosts = jax.process_count() if process_count is None else process_count
    os.makedirs(out, exist_ok=True)
    results_path = os.path.join(out, f"results.{host}.jsonl")
    done = {k for k, r in read_results(out).items() if r.get("status") == "ok" and os.path.isdir(os.path.join(out, k))}
    mine = [it for i, it in enumerate(items) if i % hosts == host]
    todo = [it for it in mine if it.id not in done]
    for it in todo:  # temporary folders an earlier, killed run of this host left behind
        for stale in glob.glob(os.path.join(out, f".tmp-{glob.escape(it.id)}-*")):
            shutil.rmtree(stale, ignore_errors=True)
    skipped = len(mine) - len(todo)
    mesh = local_mesh(devices)
    n_dev = mesh.devices.size
    per_device = per_device or cfg.batch or len(seeds)
    batch = n_dev * per_device
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

    G = generator if not isinstance(generator, (str, os.PathLike)) else load_generator(generator)
    shared = {"lpips_model": None, "clip": clip, "classifier": classifier}
    _, w_std = w_statistics(G)
    t_start = time.time()
    ok = failed = 0
    bar = tqdm(total=len(todo), desc=f"host {host}: images", unit="img", disable=not progress, dynamic_ncols=True)

    def record(item: Item, status: str, **fields):
        nonlocal ok, failed
        ok, failed = ok + (status == "ok"), failed + (status != "ok")
        _append(results_path, {"item": item.id, "image": item.image, "mask": item.mask, "status": status,
                               "host": host, **fields})
        bar.update(1)

    # Read and check every input first: a bad one is recorded and the others go on.
    prepared: list[tuple[Item, Inputs]] = []
    for it in todo:
        try:
            prepared.append((it, prepare_inputs(it.image, it.mask, G.img_resolution)))
        except InputError as e:
            record(it, "failed", error=str(e))
    # Items asking for the same constraints share one objective (one compiled program).
    groups: dict[tuple, list[tuple[Item, Inputs]]] = {}
    for it, inp in prepared:
        groups.setdefault((it.prompts, it.attributes), []).append((it, inp))
    try:
        for (prompts, attributes), group in groups.items():
            try:
                objective = build_objective(G, cfg, prompts=prompts, attributes=dict(attributes),
                                            clip=shared["clip"], classifier=shared["classifier"],
                                            lpips_model=shared["lpips_model"], class_idx=class_idx)
            except InputError as e:
                for it, _ in group:
                    record(it, "failed", error=str(e))
                continue
            m = objective.models  # load each model once for all groups
            shared.update(lpips_model=m.lpips, clip=m.clip or shared["clip"],
                          classifier=m.classifier or shared["classifier"])
            _run_group(objective, group, seeds, batch, sharding, w_std, out, record)
    finally:
        bar.close()
        for tmp in glob.glob(os.path.join(out, f".tmp-*-{os.getpid()}")):
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.time() - t_start
    summary = BatchSummary(len(mine), ok, failed, skipped, seconds, ok / seconds if seconds > 0 else 0.0, n_dev, hosts)
    return summary


def _run_group(objective, group, seeds, batch, sharding, w_std, out, record):
    """Run the (item, seed) units of one objective in fixed-size batches; finish items as they complete."""
    frozen = objective.frozen()
    search = get_search(objective, batch)
    units = [(i, s) for i in range(len(group)) for s in seeds]
    pieces: dict[int, list[tuple[list[int], SearchResult]]] = {}
    remaining = {i: len(seeds) for i in range(len(group))}
    started = {i: None for i in range(len(group))}
    for b in range(0, len(units), batch):
        chunk = units[b:b + batch]
        t0 = time.time()
        for i, _ in chunk:
            started[i] = started[i] or t0
        targets = np.stack([group[i][1].target for i, _ in chunk])
        knowns = np.stack([~group[i][1].hole for i, _ in chunk])
        res = search.run([s for _, s in chunk], frozen, targets, knowns, w_std, sharding=sharding)
        for i in sorted({i for i, _ in chunk}):
            sel = np.array([j == i for j, _ in chunk])
            pieces.setdefault(i, []).append(_select(res, sel))
            remaining[i] -= int(sel.sum())
            if remaining[i] == 0:
                item, inputs = group[i]
                try:
                    result = finish(objective, frozen, _merge(pieces.pop(i)), inputs)
                    outputs = _write_item(out, item, result)
                    record(item, "ok", outputs=outputs, seconds=round(time.time() - started[i], 3),
                           metrics=_brief(result.metrics))
                except InputError as e:
                    record(item, "failed", error=str(e))


def _brief(metrics: dict) -> dict:
    seeds = metrics["seeds"]
    out = {"known_psnr_mean": float(np.mean([e["known_psnr"] for e in seeds])),
           "best_loss_mean": float(np.mean([e["best_loss"] for e in seeds]))}
    for k in ("diversity_hole_lpips", "constraint_success_rate", "dropped_seeds"):
        if k in metrics:
            out[k] = metrics[k]
    return out


def write_summary(out: str, items: Sequence[Item], runs: Sequence[BatchSummary] = ()) -> dict:
    """summary.json over every host's results: counts, failures with their errors, throughput."""
    records = read_results(out)
    rows = [records.get(it.id, {"item": it.id, "status": "missing"}) for it in items]
    summary = {"total": len(items), "ok": sum(r["status"] == "ok" for r in rows),
               "failed": [{"item": r["item"], "error": r.get("error")} for r in rows if r["status"] == "failed"],
               "missing": [r["item"] for r in rows if r["status"] == "missing"],
               "items": rows}
    if runs:
        summary["runs"] = [dataclasses.asdict(r) for r in runs]
    path = os.path.join(out, "summary.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(tmp, path)
    return summary


def initialize_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None,
                           auto: bool = False) -> None:
    """jax.distributed.initialize with explicit arguments, or from the environment (TPU, SLURM, ...)."""
    if coordinator is None and not auto:
        return
    if coordinator is not None and (num_processes is None or process_id is None):
        raise InputError("--coordinator needs --num-processes and --process-id")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def barrier(name: str) -> None:
    """Wait for every host (no-op with one)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
