"""Batch inpainting: a folder or manifest of images, (image x seed) items data-parallel over the local
devices (a `jax.sharding.Mesh`), several hosts through `jax.distributed`, resumable.

Layout of the output folder::

    OUT/<item>/              what `inpaint` writes for one image (completions, grid, latents, metrics...)
    OUT/results.<host>.jsonl one line per finished item: {"item", "status": "ok"|"failed", "outputs",
                             "metrics", "error", "seconds", "host"}; appended as items finish
    OUT/summary.json         written at the end (by host 0 once every host is done)
    OUT/batch.json           the run's fingerprint: generator, every InpaintConfig option, seeds, class,
                             CLIP / classifier / LPIPS / discriminator weights
    OUT/.jax-inpaint.lock    while a run works in the folder (one per host: .jax-inpaint.lock.<host>)

Everything is checked before anything is written (options, models, an unwritable folder, item names
that would collide with the files above, what fits in memory). Every item folder is written under a
temporary name (.tmp-<item>-h<host>-<pid>: process ids repeat across hosts) and renamed when complete,
so an interrupted run leaves no half-written outputs; a host removes only its own temporary folders. A record carries the key of what its result depends on (the fingerprint, the
image's and mask's contents, prompts, attributes): a rerun skips the items recorded "ok" with the same
key, retries the failed ones, and redoes an item whose image changed. A rerun with other options (in
batch.json, or an item's mask / prompts / attributes) is refused naming what changed, unless
`recompute=True` (`--recompute`), which redoes the items made with other options. A second run on the
same folder is refused while the first holds its lock (or waits, `wait=` / `--wait`); the lock of a
killed run is recognised and taken over.
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
from typing import Callable, Sequence

import jax
import numpy as np
from PIL import Image

from jax_inpaint import files
from jax_inpaint.errors import InputError
from jax_inpaint.images import IMAGE_EXTENSIONS
from jax_inpaint.inversion.config import DEFAULT_SEEDS, InpaintConfig, check_seeds, parse_prompts
from jax_inpaint.inversion.inpainter import Inpainter, check_constraint_models, resolve_config
from jax_inpaint.inversion.inputs import Inputs, parse_attributes
from jax_inpaint.inversion.outputs import save_result
from jax_inpaint.inversion.search import SearchResult
from jax_inpaint.study.records import differences, digest, model_id, short


@dataclasses.dataclass(frozen=True)
class Item:
    id: str  # unique and filesystem-safe: the name of the item's output folder
    image: str
    mask: str  # a mask file or a preset
    prompts: tuple[tuple[str, float], ...] = ()
    attributes: tuple[tuple[str, float], ...] = ()


# ---------------------------------------------------------------------------------------------
# Inputs.

def _unique(items: list[Item]) -> list[Item]:
    seen: dict[str, int] = {}
    out = []
    for it in items:
        n = seen.get(it.id, 0)
        seen[it.id] = n + 1
        out.append(it if n == 0 else dataclasses.replace(it, id=f"{it.id}-{n}"))
    return out


def _find_mask(folder: str, stem: str) -> str | None:
    for ext in IMAGE_EXTENSIONS:
        for cand in (os.path.join(folder, stem + ext), os.path.join(folder, stem + "_mask" + ext)):
            if os.path.isfile(cand):
                return cand
    return None


def _attributes(value) -> tuple[tuple[str, float], ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(f"attribute {k}: the target must be a number (got {short(v, 40)})")
            out.append((str(k), float(v)))
        return tuple(out)
    if not isinstance(value, str):
        raise InputError(f"'attributes' must be an object {{name: p}} or text 'Name=p;...' (got {short(value, 40)})")
    return tuple(parse_attributes([a for a in re.split(r"[;,]", value) if a.strip()]).items())


def _prompts(value) -> tuple[tuple[str, float], ...]:
    """A manifest's prompts: text ('a|b::2'), or a list of texts and [text, weight] pairs."""
    if value is None or isinstance(value, str):
        return parse_prompts(value, "prompt")
    if not isinstance(value, list):
        raise InputError(f"'prompt' must be text or a list (got {short(value, 40)})")
    for p in value:
        if not isinstance(p, str) and not (isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)):
            raise InputError(f"each prompt must be a text or a [text, weight] pair (got {short(p, 40)})")
    return parse_prompts(value, "prompt")


# Names of the batch's own files in its folder: an item may not be named like one (its folder would
# collide). Every temporary or lock name starts with '.', which files.safe_name never leaves in front.
_RESERVED_ID = re.compile(r"(batch\.json|summary\.json|results\..*\.jsonl)(\..*)?", re.IGNORECASE)


def check_item_id(item: Item) -> None:
    """A one-line InputError (naming the image) for an id that is not a plain file name or names one of
    the batch's own files (batch.json, summary.json, results.<host>.jsonl, temporary and lock files)."""
    ident = item.id
    if (not isinstance(ident, str) or not ident or ident != files.safe_name(ident) or ident.startswith(".")
            or ident in (".", "..")):
        raise InputError(f"{item.image}: the item name {ident!r} is not a plain file name (letters, digits, "
                         "'.', '_', '-'; not starting with '.')")
    if _RESERVED_ID.fullmatch(ident):
        raise InputError(f"{item.image}: the item name {ident!r} is taken by the batch's own files (batch.json, "
                         "summary.json, results.<host>.jsonl): rename the image or give its row another id")


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
        names = sorted(f for f in os.listdir(images) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise InputError(f"{images}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        for f in names:
            stem = os.path.splitext(f)[0]
            m = mask
            if masks is not None:
                m = _find_mask(masks, stem) or os.path.join(masks, stem + ".png")  # a missing mask fails the item
            items.append(Item(files.safe_name(stem), os.path.join(images, f), m))
            check_item_id(items[-1])
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
        for field in ("image", "mask", "id"):
            value = row.get(field)
            if field == "id" and isinstance(value, int) and not isinstance(value, bool):
                row = {**row, "id": str(value)}
            elif value is not None and not isinstance(value, str):
                raise InputError(f"{manifest}: row {n}: '{field}' must be text (got {short(row[field], 40)})")
        img = row["image"] if os.path.isabs(row["image"]) else os.path.join(base, row["image"])
        m = row.get("mask") or mask
        if not m:
            raise InputError(f"{manifest}: row {n} has no 'mask' (or pass --mask for all rows)")
        if os.path.exists(os.path.join(base, m)) and not os.path.isabs(m):
            m = os.path.join(base, m)
        ident = row.get("id") or os.path.splitext(os.path.basename(row["image"]))[0]
        try:
            item = Item(files.safe_name(ident), img, m, _prompts(row.get("prompt") or row.get("prompts")),
                        _attributes(row.get("attributes")))
            check_item_id(item)
        except (InputError, ValueError, TypeError) as e:
            raise InputError(f"{manifest}: row {n}: {e}") from None
        items.append(item)
    if not items:
        raise InputError(f"{manifest}: no rows")
    return _unique(items)


# ---------------------------------------------------------------------------------------------
# Results files.

FORMAT_VERSION = 1


def read_results(out: str) -> dict[str, dict]:
    """The last record of every item over all hosts' results files."""
    records: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(out, "results.*.jsonl"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: that item simply runs again
                if isinstance(rec, dict) and isinstance(rec.get("item"), str):
                    records[rec["item"]] = rec
    return records


def _append(path: str, record: dict) -> None:
    line = json.dumps(record) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _tmp_item(out: str, item_id: str, host: int, pid: int | None = None) -> str:
    """The temporary folder of an item while it is written: it names the host (process ids repeat
    across the machines / containers of a multi-host run) and the process."""
    return os.path.join(out, f".tmp-{item_id}-h{host}-{os.getpid() if pid is None else pid}")


_TMP_ITEM = re.compile(r"\.tmp-(?P<item>.+)-h(?P<host>\d+)-(?P<pid>\d+)")


def _remove_tmp_items(out: str, host: int, ids: set[str], pid: int | None = None) -> None:
    """Remove this host's temporary item folders of the items `ids` (of process `pid`, or of any process:
    another run of this host index cannot be working while this one holds the host's lock)."""
    try:
        names = os.listdir(out)
    except OSError:
        return
    for name in names:
        m = _TMP_ITEM.fullmatch(name)
        if (m and int(m["host"]) == host and m["item"] in ids
                and (pid is None or int(m["pid"]) == pid)):
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)


def _write_item(out: str, item: Item, result, host: int = 0) -> dict:
    """save_result into a temporary folder, renamed into place when complete."""
    final = os.path.join(out, item.id)
    tmp = _tmp_item(out, item.id, host)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        from jax_inpaint.align.photo import PhotoResult, save_photo_result  # numpy-level: mediapipe is not loaded

        written = save_photo_result(result, tmp) if isinstance(result, PhotoResult) else save_result(result, tmp)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise files.write_error(final, e) from None
        raise
    return {k: os.path.join(final, os.path.basename(v)) for k, v in written.items()}


# ---------------------------------------------------------------------------------------------
# What a result depends on: the run's fingerprint (batch.json) and each item's inputs.

def _file_digest(path: str) -> str | None:
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None  # unreadable: the item fails when it is read
    return h.hexdigest()[:16]


def item_inputs(item: Item) -> dict:
    """What an item's result depends on besides the run's options: its image's and mask's contents
    (a preset mask by its name), its prompts and attribute targets."""
    mask = item.mask
    if os.path.isfile(mask):
        mask = f"file {_file_digest(mask)}"
    return {"image": _file_digest(item.image), "mask": mask, "prompts": [list(p) for p in item.prompts],
            "attributes": {k: v for k, v in item.attributes}}


def _item_key(run_hash: str, inputs: dict) -> str:
    return digest(run_hash, json.dumps(inputs, sort_keys=True))


def run_fingerprint(G, cfg: InpaintConfig, seeds, *, class_idx, clip, classifier, lpips_model, D) -> dict:
    """Everything of a run that changes every item's result (compared with the folder's batch.json)."""
    return {"generator": model_id(G), "generator_config": digest(repr(G.config)),
            "config": dataclasses.asdict(cfg), "seeds": list(seeds), "class_idx": class_idx,
            "clip": model_id(clip), "classifier": model_id(classifier), "discriminator": model_id(D),
            "lpips": model_id(lpips_model), "format_version": FORMAT_VERSION}


def _check_folder(out: str, fingerprint: dict, recompute: bool) -> None:
    """Refuse a folder that holds something else, or a batch run made with other options (unless `recompute`)."""
    path = os.path.join(out, "batch.json")
    if not os.path.exists(path):
        ours = glob.glob(os.path.join(out, "results.*.jsonl"))
        if ours and not recompute:
            raise InputError(f"{out}: holds batch results without a batch.json (an older version or another "
                             "run's): pass --recompute to redo them with these options, or use another --out")
        if not ours and any(not n.startswith(".") for n in os.listdir(out)):
            raise InputError(f"{out}: exists, is not empty and holds no batch run (no batch.json); choose "
                             "another --out folder")
        return
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)["fingerprint"]
        if not isinstance(old, dict):
            raise TypeError("not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        if recompute:
            return
        raise InputError(f"{path}: unreadable ({e}); pass --recompute to redo every image") from None
    new = json.loads(json.dumps(files.jsonable(fingerprint)))
    diff = differences(old, new)
    if diff and not recompute:
        raise InputError(f"{out}: holds a batch run made with other options ({'; '.join(diff)}). Pass --recompute "
                         "to redo every image with these options, or use another --out folder.")


def _item_changes(records: dict, mine: Sequence[Item], run_hash: str, inputs: dict,
                  keys: dict) -> tuple[list[str], list[str]]:
    """Over this host's items finished by a run with the same options whose inputs differ now:
    (the option changes, grouped by what changed; the items whose image file changed)."""
    changed: dict[str, list[str]] = {}
    images_changed = []
    for it in mine:
        rec = records.get(it.id)
        if not rec or rec.get("status") != "ok" or rec.get("key") == keys[it.id]:
            continue
        old = rec.get("inputs")
        if rec.get("run") != run_hash or not isinstance(old, dict):
            continue  # made with other run options: refused or recomputed by _check_folder's verdict
        new = inputs[it.id]
        fields = [k for k in ("mask", "prompts", "attributes") if old.get(k) != new[k]]
        for k in fields:
            changed.setdefault(f"{k}: {short(old.get(k), 40)} -> {short(new[k], 40)}", []).append(it.id)
        if not fields and old.get("image") != new["image"]:
            images_changed.append(it.id)
    lines = [f"{what} ({len(ids)} image{'s' if len(ids) > 1 else ''}: {', '.join(ids[:3])}"
             f"{', ...' if len(ids) > 3 else ''})" for what, ids in changed.items()]
    return lines, images_changed


# ---------------------------------------------------------------------------------------------
# Running.

@dataclasses.dataclass
class BatchSummary:
    total: int
    ok: int
    failed: int
    skipped: int  # finished by an earlier run with the same options
    seconds: float
    images_per_second: float
    devices: int
    hosts: int
    path: str | None = None
    notes: list = dataclasses.field(default_factory=list)
    keys: dict = dataclasses.field(default_factory=dict, repr=False)  # item id -> the key of its inputs


def local_mesh(devices: Sequence | None = None):
    """A 1-D mesh ('data') over this host's devices."""
    from jax.sharding import Mesh
    devs = list(devices) if devices is not None else jax.local_devices()
    return Mesh(np.array(devs), ("data",))


def lock_name(host: int) -> str:
    """Each host of a run locks the folder under its own index: two runs collide on host 0's lock."""
    return files.LOCK_FILE if host == 0 else f"{files.LOCK_FILE}.{host}"


def run_batch(items: Sequence[Item], generator, out: str, *, seeds: Sequence[int] = DEFAULT_SEEDS,
              config=None, clip=None, classifier=None, class_idx: int | None = None, per_device: int | None = None,
              process_index: int | None = None, process_count: int | None = None, devices=None,
              progress: bool = True, recompute: bool = False, wait: float = 0.0,
              should_stop: Callable[[], bool] | None = None, on_item: Callable[[dict], None] | None = None,
              align: bool = False, face: int | None = None, **options) -> BatchSummary:
    """Inpaint every item K = len(seeds) ways. This host takes items i with i % hosts == its index;
    (item, seed) pairs are laid out on a mesh over the local devices, `per_device` pairs on each
    device per compiled step (default: K). Returns the summary of this run.

    Everything is checked before anything is written: the options, an unwritable `out`, the models
    (an option error is an InputError, not a failure of every item). `out` is locked for the run (a
    second run on it is an InputError naming the holder; `wait` seconds to wait for it instead). A
    rerun skips the items finished with the same options and inputs; a rerun with other options is
    refused (naming what changed) unless `recompute`, which redoes the items made with other options.
    An item whose image changed is redone. `should_stop()` is asked between chunks of the search (it
    ends the run with KeyboardInterrupt); `on_item(record)` is called after each item is recorded.
    `align`: the images are photos, inpainted through their FFHQ-aligned face (face number `face`, 0 = the
    largest) and pasted back (jax_inpaint.align.photo); a photo without a face fails its item.
    """
    cfg: InpaintConfig = resolve_config(config, **options)
    seeds = check_seeds(seeds)
    if per_device is not None and (isinstance(per_device, bool) or int(per_device) < 1):
        raise InputError(f"--per-device must be at least 1, got {per_device}")
    items = list(items)
    if len({it.id for it in items}) != len(items):
        raise InputError("item ids must be unique")
    for it in items:
        check_item_id(it)
    host = jax.process_index() if process_index is None else process_index
    hosts = jax.process_count() if process_count is None else process_count
    check_constraint_models(any(it.prompts for it in items), any(it.attributes for it in items), clip=clip,
                            classifier=classifier)
    if cfg.realism > 0 and not isinstance(generator, (str, os.PathLike)):
        raise InputError("the realism term needs the discriminator: pass a model folder as the generator")
    if align:  # the optional extra, checked before anything is written
        from jax_inpaint.align.landmarks import require
        require()
    mesh = local_mesh(devices)
    n_dev = mesh.devices.size
    with files.output_folder(out) as out_abs, files.FolderLock(out_abs, wait=wait, name=lock_name(host)):
        # Models, then the options that need them: a bad option stops the run here, before any writing.
        inpainter = Inpainter(generator, config=cfg, clip=clip, classifier=classifier, class_idx=class_idx)
        m = inpainter.models
        fingerprint = run_fingerprint(m.G, cfg, seeds, class_idx=class_idx, clip=m.clip, classifier=m.classifier,
                                      lpips_model=m.lpips, D=m.D)
        if align:
            fingerprint["align"] = {"face": int(face or 0)}
        _check_folder(out, fingerprint, recompute)
        run_hash = digest(json.dumps(files.jsonable(fingerprint), sort_keys=True))
        inputs = {it.id: item_inputs(it) for it in items}
        keys = {it.id: _item_key(run_hash, inputs[it.id]) for it in items}
        records = read_results(out)
        mine = [it for i, it in enumerate(items) if i % hosts == host]
        changes, images_changed = _item_changes(records, mine, run_hash, inputs, keys)
        if changes and not recompute:
            raise InputError(f"{out}: holds images done with other options ({'; '.join(changes)}). Pass "
                             "--recompute to redo them with these options, or use another --out folder.")
        notes = [f"{i}: the image changed since it was done: done again" for i in images_changed]
        done = {it.id for it in mine if records.get(it.id, {}).get("status") == "ok"
                and records[it.id].get("key") == keys[it.id] and os.path.isdir(os.path.join(out, it.id))}
        todo = [it for it in mine if it.id not in done]
        objectives = {}  # items asking for the same constraints share one objective (one compiled program)
        for it in todo:
            group = (it.prompts, it.attributes)
            if group not in objectives:
                try:
                    objectives[group] = inpainter.objective(prompts=it.prompts, attributes=it.attributes)
                except InputError as e:  # name the image when the constraints are its own (a manifest row)
                    own = len({(o.prompts, o.attributes) for o in todo}) > 1
                    raise InputError(f"{it.id}: {e}" if own else str(e)) from None
        # The (item, seed) pairs per device of each objective's compiled step: what fits in memory.
        sizes = fit_per_device(inpainter, objectives, len(seeds), len(todo), n_dev, per_device)
        # Everything checked: from here on the folder is ours.
        files.write_json(os.path.join(out, "batch.json"), {"format": "jax-inpaint-batch",
                                                           "format_version": FORMAT_VERSION,
                                                           "fingerprint": fingerprint})
        prepare = None
        if align:
            from jax_inpaint.align.photo import photo_preparer
            prepare = photo_preparer(inpainter, face)
        summary = _run(todo, objectives, inpainter, out, host, hosts, seeds,
                       {g: n_dev * n for g, n in sizes.items()}, mesh, inputs, keys, run_hash, progress, should_stop,
                       on_item, prepare)
    summary.total, summary.skipped, summary.devices = len(mine), len(mine) - len(todo), n_dev
    summary.notes, summary.keys = notes, keys
    return summary


def fit_per_device(inpainter: Inpainter, objectives: dict, k: int, n_items: int, n_dev: int,
                   per_device: int | None) -> dict:
    """{objective's group: (item, seed) pairs per device per compiled step}, checked against memory before
    anything is written. Host memory: the outputs held at once (a step's pairs and one image's K seeds
    still collecting) must fit (check_host_memory); one image's K must fit whatever the step. Device
    memory: `fit_search` compiles the step (the one compile the run then reuses on one device). An
    explicit --per-device (or config batch) that does not fit is a one-line InputError; by default the
    pairs per device are K, fewer when they do not fit."""
    from jax_inpaint.inversion import inpainter as I
    from jax_inpaint.inversion.search import gigabytes

    G, cfg = inpainter.G, inpainter.cfg
    I.check_host_memory(k, G, cfg)  # one image's K outputs, whatever the step
    if not n_items:
        return {}
    explicit = int(per_device or cfg.batch or 0)
    what = "--per-device" if per_device else "batch"
    want = explicit or k
    per_seed = I.host_bytes_per_seed(G, cfg)
    avail = I.host_available_memory()
    if avail is not None:
        fits = (int(I.HOST_FRACTION * avail // per_seed) - k) // n_dev  # beyond one image's K still collecting
        if fits < 1 or (explicit and explicit > fits):
            n = explicit or 1
            raise InputError(f"{what} {n}: {n_dev} device(s) x {n} (image, seed) pairs per step and one image's "
                             f"{k} seeds: their outputs need about {gigabytes((n_dev * n + k) * per_seed)} of host "
                             f"memory, {gigabytes(avail)} available: "
                             + (f"at most {fits} per device here" if fits >= 1 else "use fewer seeds or devices"))
        want = min(want, fits)
    reserve = I.check_host_memory(min(n_items * k, n_dev * want + k), G, cfg)
    return {group: inpainter.fit(objective, want, reserve=reserve, batch=explicit, what=what).batch
            for group, objective in objectives.items()}


def _run(todo, objectives, inpainter: Inpainter, out, host, hosts, seeds, batches: dict, mesh, inputs, keys, run_hash,
         progress, should_stop, on_item, prepare=None) -> BatchSummary:
    from tqdm.auto import tqdm

    results_path = os.path.join(out, f"results.{host}.jsonl")
    ids = {it.id for it in todo}
    _remove_tmp_items(out, host, ids)  # temporary folders an earlier, killed run of this host left behind
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    t_start = time.time()
    ok = failed = 0
    bar = tqdm(total=len(todo), desc=f"host {host}: images", unit="img", disable=not progress, dynamic_ncols=True)

    def record(item: Item, status: str, **fields):
        nonlocal ok, failed
        ok, failed = ok + (status == "ok"), failed + (status != "ok")
        rec = {"item": item.id, "image": item.image, "mask": item.mask, "status": status, "host": host,
               "key": keys[item.id], "run": run_hash, "inputs": inputs[item.id], **fields}
        _append(results_path, rec)
        bar.update(1)
        if on_item is not None:
            on_item(rec)

    try:
        # Read and check every input first: a bad one (unreadable, too large) is recorded and the others go on.
        prepared: dict[tuple, list[tuple[Item, Inputs]]] = {}
        for it in todo:
            try:
                inp = (prepare or inpainter.prepare)(it.image, it.mask)
            except (InputError, OSError, ValueError, Image.DecompressionBombError, MemoryError) as e:
                record(it, "failed", error=_one_line(e))
                continue
            prepared.setdefault((it.prompts, it.attributes), []).append((it, inp))
        for group_key, group in prepared.items():
            _run_group(inpainter, objectives[group_key], group, seeds, batches[group_key], sharding, out, record,
                       should_stop, host)
    finally:
        bar.close()
        _remove_tmp_items(out, host, ids, os.getpid())
    seconds = time.time() - t_start
    return BatchSummary(len(todo), ok, failed, 0, seconds, ok / seconds if seconds > 0 else 0.0, 0, hosts)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, InputError) else f"{type(e).__name__}: {text}"


def _run_group(inpainter: Inpainter, objective, group, seeds, batch, sharding, out, record, should_stop=None,
               host: int = 0):
    """Run the (item, seed) units of one objective in fixed-size batches; finish items as they complete.
    A write failure (full disk) ends the run; a result that cannot be made (every seed NaN) fails its item."""
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
        res = inpainter.run_search(objective, [s for _, s in chunk], targets, knowns, batch=batch,
                                   sharding=sharding, should_stop=should_stop, groups=[i for i, _ in chunk])
        for i in sorted({i for i, _ in chunk}):
            sel = np.array([j == i for j, _ in chunk])
            pieces.setdefault(i, []).append(res.select(sel))
            remaining[i] -= int(sel.sum())
            if remaining[i] == 0:
                item, inputs = group[i]
                try:
                    result = inpainter.finish(objective, SearchResult.merge(pieces.pop(i)), inputs)
                    if hasattr(inputs, "alignment"):  # --align: the completions pasted back into the photo
                        from jax_inpaint.align.photo import finish_photo
                        result = finish_photo(result, inputs)
                except InputError as e:
                    record(item, "failed", error=str(e))
                    continue
                outputs = _write_item(out, item, result, host)
                record(item, "ok", outputs=outputs, seconds=round(time.time() - started[i], 3),
                       metrics=_brief(result.metrics))


def _brief(metrics: dict) -> dict:
    seeds = metrics["seeds"]
    out = {"known_psnr_mean": float(np.mean([e["known_psnr"] for e in seeds])),
           "best_loss_mean": float(np.mean([e["best_loss"] for e in seeds]))}
    for k in ("diversity_hole_lpips", "constraint_success_rate", "dropped_seeds"):
        if k in metrics:
            out[k] = metrics[k]
    return out


def write_summary(out: str, items: Sequence[Item], runs: Sequence[BatchSummary] = (),
                  keys: dict | None = None) -> dict:
    """summary.json over every host's results: counts, failures with their errors, throughput.
    With `keys` (BatchSummary.keys), a record made with other options or inputs counts as missing."""
    records = read_results(out)
    rows = []
    for it in items:
        r = records.get(it.id)
        if r is None or (keys is not None and r.get("key") != keys.get(it.id)):
            r = {"item": it.id, "status": "missing"}
        rows.append(r)
    summary = {"total": len(items), "ok": sum(r["status"] == "ok" for r in rows),
               "failed": [{"item": r["item"], "error": r.get("error")} for r in rows if r["status"] == "failed"],
               "missing": [r["item"] for r in rows if r["status"] == "missing"],
               "items": rows}
    if runs:
        summary["runs"] = [{k: v for k, v in dataclasses.asdict(r).items() if k != "keys"} for r in runs]
    files.write_json(os.path.join(out, "summary.json"), summary)
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
