"""`jax-inpaint inpaint-batch`: sharded over (forced) devices, split between two jax.distributed
processes (subprocesses, since the device count and jax.distributed are fixed when a process starts),
resumable after Ctrl-C, robust to a corrupt image; options fingerprinted (a rerun with other options is
refused or, with --recompute, redone), one run at a time on a folder (a lock; a killed run's lock is
taken over). Interruptions are driven through explicit hooks (run_batch's on_item, Search.run's
should_stop), never by racing a signal against the run."""
import functools
import json
import os
import shutil
import socket
import subprocess
import struct
import sys
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convert_weights.stylegan2 import convert_stylegan2
from jax_inpaint import batch as B
from jax_inpaint.batch import read_items, read_results, run_batch
from jax_inpaint.cli import main
from jax_inpaint.errors import InputError
from jax_inpaint.files import LOCK_FILE, FolderLock
from jax_inpaint.generate import generate
from jax_inpaint.models.stylegan2 import load_generator

OPTS = ["--seeds", "0-1", "--steps", "25", "--lpips", "0", "--lr", "0.1", "--noise", "const", "--quiet"]


@pytest.fixture(scope="module")
def setup(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    convert_stylegan2(str(data_dir / "stylegan2" / "tiny_network_stripped.pkl"), str(root / "g"))
    G = load_generator(root / "g")
    imgs = root / "imgs"
    imgs.mkdir()
    for i, im in enumerate(generate(G, [11, 12, 13, 14], truncation_psi=0.7)["images"]):
        Image.fromarray(im).save(imgs / f"face{i}.png")
    return root, G


def cli(args, env_extra=None, **kw):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=os.environ.get(
        "JAX_INPAINT_TEST_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")))
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "jax_inpaint", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def ws_of(out, item):
    return np.load(out / item / "latents.npz")["ws"]


def test_sharded_run_equals_single_device_run(setup, tmp_path):
    root, G = setup
    items = read_items(images=str(root / "imgs"), mask="center")
    single = tmp_path / "single"
    s = run_batch(items, G, str(single), seeds=[0, 1], progress=False, steps=25, lpips=0.0, lr=0.1, noise="const")
    assert (s.ok, s.failed, s.devices) == (4, 0, 1)
    p = cli(["inpaint-batch", "--images", root / "imgs", "--mask", "center", "--generator", root / "g",
             "--out", tmp_path / "sharded", *OPTS],
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    assert "on 4 device(s)" in out
    for it in items:
        # same (image, seed) work, laid out over 4 devices instead of 1: equal up to float reassociation
        np.testing.assert_allclose(ws_of(tmp_path / "sharded", it.id), ws_of(single, it.id), atol=2e-3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _bind_failed(log: str) -> bool:
    log = log.lower()
    return any(s in log for s in ("address already in use", "failed to bind", "failed to add port", "bind failed"))


def test_two_hosts_split_a_manifest(setup, tmp_path):
    root, _ = setup
    rows = [{"image": str(root / "imgs" / f"face{i}.png"), "mask": "center", "id": f"row{i}"} for i in range(4)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    for attempt in range(3):  # a free port can be taken by someone else before the coordinator binds it: retry
        port = _free_port()
        procs = [cli(["inpaint-batch", "--manifest", manifest, "--generator", root / "g", "--out", out, *OPTS,
                      "--coordinator", f"localhost:{port}", "--num-processes", 2, "--process-id", i])
                 for i in (0, 1)]
        logs = [p.communicate(timeout=600)[0] for p in procs]
        if all(p.returncode == 0 for p in procs) or not any(_bind_failed(log) for log in logs):
            break
        shutil.rmtree(out, ignore_errors=True)
    assert [p.returncode for p in procs] == [0, 0], logs
    by_host = {h: {json.loads(line)["item"] for line in (out / f"results.{h}.jsonl").read_text().splitlines()}
               for h in (0, 1)}
    assert by_host[0] == {"row0", "row2"} and by_host[1] == {"row1", "row3"}  # each item once, on one host
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 4 and summary["failed"] == [] and summary["missing"] == []
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["row0", "row1", "row2", "row3"]
    assert not list(out.glob(LOCK_FILE + "*"))  # both hosts' locks released


def invoke(args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def one_line_error(result, expect):
    code, stdout, stderr = result
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expect in lines[0], stderr
    assert "Traceback" not in stdout + stderr


def listing(folder):
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def batch_args(root, out, *extra, images=None):
    return ["inpaint-batch", "--images", images or root / "imgs", "--mask", "center", "--generator", root / "g",
            "--out", out, *OPTS, *extra]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def plant_lock(out, pid):
    (out / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "since": "earlier"}))


def test_interrupted_run_resumes_and_redoes_nothing(setup, tmp_path, monkeypatch):
    root, _ = setup
    out = tmp_path / "out"
    args = batch_args(root, out)

    def ctrl_c(record):  # Ctrl-C right after the first image is recorded: an exact, repeatable point
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(B, "run_batch", functools.partial(run_batch, on_item=ctrl_c))
        code, stdout, stderr = invoke(args)
    assert code == 130 and "interrupted" in stderr, (code, stdout, stderr)
    finished = {k for k, r in read_results(str(out)).items() if r["status"] == "ok"}
    assert len(finished) == 1
    assert not [q for q in out.rglob("*") if ".tmp" in q.name or "staging" in q.name]  # nothing half-written
    assert not (out / LOCK_FILE).exists()  # the lock went with the run
    stamps = {k: (out / k / "grid.png").stat().st_mtime_ns for k in finished}
    plant_lock(out, dead_pid())  # as if the run had been killed holding it: recognised and taken over
    code, stdout, stderr = invoke(args)
    assert code == 0, stdout + stderr
    assert "3 done, 0 failed, 1 already done" in stdout
    lines = [json.loads(line) for line in (out / "results.0.jsonl").read_text().splitlines()]
    assert sorted(r["item"] for r in lines if r["status"] == "ok") == [f"face{i}" for i in range(4)]
    assert {k: (out / k / "grid.png").stat().st_mtime_ns for k in finished} == stamps
    assert not (out / LOCK_FILE).exists()


def test_should_stop_ends_the_search_within_one_chunk(setup):
    from jax_inpaint.inversion.inpainter import Inpainter
    from jax_inpaint.inversion.search import get_search, w_statistics

    _, G = setup
    inpainter = Inpainter(G, steps=25, chunk=5, lpips=0.0, lr=0.1, noise="const")
    objective = inpainter.objective()
    search = get_search(objective, 2)
    target = np.zeros((32, 32, 3), np.float32)
    known = np.ones((32, 32), bool)
    known[8:24, 8:24] = False
    asked, chunks = [], []

    def should_stop():  # asked before the first chunk and after each; "Ctrl-C" arrives during chunk 2
        asked.append(len(chunks))
        return len(chunks) >= 2

    with pytest.raises(KeyboardInterrupt):
        search.run([0, 1], objective.frozen(), target, known, w_statistics(G)[1],
                   progress=lambda n, loss: chunks.append(n), should_stop=should_stop)
    assert chunks == [5, 5] and asked == [0, 1, 2]  # stopped at the first point after the request
    full = inpainter.run_search(objective, [0, 1], target, known, batch=2, should_stop=lambda: False)
    assert full.history["loss"].shape == (25, 2)


@pytest.fixture(scope="module")
def finished(setup, tmp_path_factory):
    """A finished batch run: 4 images, 2 seeds, the centre hole."""
    root, _ = setup
    out = tmp_path_factory.mktemp("finished") / "out"
    code, stdout, stderr = invoke(batch_args(root, out))
    assert code == 0, stdout + stderr
    return out


@pytest.fixture
def copy_of(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


@pytest.mark.parametrize("extra, expect", [
    (["--steps", "26"], "config.steps: 25 -> 26"),
    (["--lr", "0.2"], "config.lr: 0.1 -> 0.2"),
    (["--seeds", "0-2"], "seeds: [0, 1] -> [0, 1, 2]"),
    (["--mask", "left"], 'mask: "center" -> "left" (4 images: face0, face1, face2, ...)'),
])
def test_rerun_with_other_options_is_refused_naming_the_change(setup, copy_of, extra, expect):
    root, _ = setup
    before = listing(copy_of)
    args = batch_args(root, copy_of)
    if "--mask" in extra:
        args[args.index("--mask") + 1] = extra[1]
        extra = []
    one_line_error(invoke(args + extra), expect)
    assert listing(copy_of) == before


def test_recompute_redoes_the_images_made_with_other_options(setup, copy_of):
    root, _ = setup
    args = batch_args(root, copy_of)
    args[args.index("--mask") + 1] = "left"
    code, stdout, stderr = invoke(args + ["--recompute"])
    assert code == 0, stdout + stderr
    assert "4 done, 0 failed, 0 already done" in stdout
    records = read_results(str(copy_of))
    assert {r["inputs"]["mask"] for r in records.values()} == {"left"}
    summary = json.loads((copy_of / "summary.json").read_text())
    assert summary["ok"] == 4 and summary["missing"] == []
    code, stdout, stderr = invoke(args)  # the same options again: nothing to do
    assert code == 0 and "0 done, 0 failed, 4 already done" in stdout, stdout + stderr


def test_moved_images_are_done_a_changed_image_is_redone(setup, copy_of, tmp_path):
    root, _ = setup
    imgs = tmp_path / "moved"
    shutil.copytree(root / "imgs", imgs)
    stamps = {k: (copy_of / k / "grid.png").stat().st_mtime_ns for k in ("face0", "face1")}
    code, stdout, stderr = invoke(batch_args(root, copy_of, images=imgs))
    assert code == 0 and "4 already done" in stdout, stdout + stderr  # same contents elsewhere: same results
    im = np.asarray(Image.open(imgs / "face1.png")).copy()
    im[0, 0] = 255 - im[0, 0]
    Image.fromarray(im).save(imgs / "face1.png")
    code, stdout, stderr = invoke(batch_args(root, copy_of, images=imgs))
    assert code == 0 and "1 done, 0 failed, 3 already done" in stdout, stdout + stderr
    assert "note: face1: the image changed" in stderr
    assert (copy_of / "face0" / "grid.png").stat().st_mtime_ns == stamps["face0"]
    assert (copy_of / "face1" / "grid.png").stat().st_mtime_ns != stamps["face1"]


def test_a_second_run_on_a_held_folder_exits_2_naming_the_holder(setup, copy_of):
    root, _ = setup
    before = listing(copy_of)
    with FolderLock(copy_of, name=LOCK_FILE):  # a live holder: this very process, holding the lock
        one_line_error(invoke(batch_args(root, copy_of)), f"is in use by process {os.getpid()}")
        one_line_error(invoke(batch_args(root, copy_of, "--wait", "0.2")), f"is in use by process {os.getpid()}")
    assert listing(copy_of) == before


def test_the_lock_is_exclusive_and_a_dead_holders_file_is_taken_over(tmp_path):
    plant_lock(tmp_path, os.getpid())  # a file that names a live pid, but nobody holds the lock
    a = FolderLock(tmp_path, name=LOCK_FILE).acquire()
    b = FolderLock(tmp_path, name=LOCK_FILE)
    with pytest.raises(InputError, match=f"in use by process {os.getpid()}"):
        b.acquire()
    a.release()
    assert not (tmp_path / LOCK_FILE).exists()
    b.acquire()  # free again
    assert b.held and json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    b.release()


def test_a_folder_holding_something_else_is_refused(setup, tmp_path):
    root, _ = setup
    out = tmp_path / "mine"
    (out / "face0").mkdir(parents=True)
    (out / "face0" / "holiday.jpg").write_bytes(b"precious")
    before = listing(out)
    one_line_error(invoke(batch_args(root, out)), "holds no batch run")
    assert listing(out) == before


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG file that declares a huge picture (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_corrupt_image_is_reported_and_the_others_finish(setup, tmp_path):
    root, G = setup
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("face0.png", "face1.png"):
        (imgs / name).write_bytes((root / "imgs" / name).read_bytes())
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (imgs / "bomb.png").write_bytes(bomb_png())
    p = cli(["inpaint-batch", "--images", imgs, "--mask", "center", "--generator", root / "g", "--out",
             tmp_path / "out", *OPTS])
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 1, log
    assert "Traceback" not in log
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ok"] == 2 and [f["item"] for f in summary["failed"]] == ["bomb", "broken"]
    assert "not a readable image" in summary["failed"][1]["error"]
    assert all("\n" not in f["error"] for f in summary["failed"])
    assert (tmp_path / "out" / "face1" / "grid.png").is_file()


def test_manifest_errors(tmp_path):
    from jax_inpaint.errors import InputError
    bad = tmp_path / "m.csv"
    bad.write_text("image,mask\n,center\n")
    with pytest.raises(InputError, match="row 1 has no 'image'"):
        read_items(manifest=str(bad))
    ok = tmp_path / "ok.csv"
    ok.write_text("image,mask,prompt,attributes\na.png,center,a smile|red lips::2,Smiling=1;Eyeglasses=0\n")
    (it,) = read_items(manifest=str(ok))
    assert it.prompts == (("a smile", 1.0), ("red lips", 2.0))
    assert it.attributes == (("Smiling", 1.0), ("Eyeglasses", 0.0))
    assert it.image == str(tmp_path / "a.png") and it.mask == "center"


def test_temporary_item_folders_name_the_host_and_only_this_hosts_are_removed(tmp_path):
    # process ids repeat across the containers of a multi-host run: a host removes only its own folders
    out = tmp_path / "out"
    out.mkdir()
    assert os.path.basename(B._tmp_item(str(out), "face0", 1, 77)) == ".tmp-face0-h1-77"
    names = [".tmp-face0-h0-77", ".tmp-face0-h0-78", ".tmp-face0-h1-77", ".tmp-face0-5-h0-77", ".tmp-face1-h0-77",
             ".tmp-face0-77"]
    for n in names:
        (out / n).mkdir()
    B._remove_tmp_items(str(out), 0, {"face0"}, 77)  # the end of host 0's run (process 77): its own items
    assert sorted(p.name for p in out.iterdir()) == sorted(set(names) - {".tmp-face0-h0-77"})
    B._remove_tmp_items(str(out), 0, {"face0", "face0-5"})  # the start of host 0's run: any of its processes
    assert sorted(p.name for p in out.iterdir()) == [".tmp-face0-77", ".tmp-face0-h1-77", ".tmp-face1-h0-77"]


@pytest.mark.parametrize("name", ["summary.json", "batch.json", "results.0.jsonl", "results.12.jsonl",
                                  "Summary.JSON.tmp"])
def test_item_names_of_the_batchs_own_files_are_refused(setup, tmp_path, name):
    from jax_inpaint.errors import InputError
    root, G = setup
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copy(root / "imgs" / "face0.png", imgs / f"{name}.png")
    with pytest.raises(InputError, match=r"is taken by the batch's own files") as e:
        read_items(images=str(imgs), mask="center")
    assert f"{name}.png" in str(e.value) and "\n" not in str(e.value)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"image": "face0.png", "mask": "center"}) + "\n"
                        + json.dumps({"image": "face1.png", "mask": "center", "id": name}) + "\n")
    with pytest.raises(InputError, match=r"m\.jsonl: row 2: .*is taken by the batch's own files"):
        read_items(manifest=str(manifest))
    with pytest.raises(InputError, match="batch's own files"):  # items made by a program: refused before writing
        run_batch([B.Item(name, str(root / "imgs" / "face0.png"), "center")], G, str(tmp_path / "out"),
                  seeds=[0], progress=False)
    with pytest.raises(InputError, match="not a plain file name"):
        run_batch([B.Item(".jax-inpaint.lock", str(root / "imgs" / "face0.png"), "center")], G,
                  str(tmp_path / "out"), seeds=[0], progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("row, expect", [
    ({"image": 5, "mask": "center"}, "row 2: 'image' must be text (got 5)"),
    ({"image": "a.png", "mask": ["center"]}, "row 2: 'mask' must be text"),
    ({"image": "a.png", "mask": "center", "id": {"x": 1}}, "row 2: 'id' must be text"),
    ({"image": "a.png", "mask": "center", "attributes": {"Smiling": [1]}}, "row 2: attribute Smiling: the target "
                                                                           "must be a number"),
    ({"image": "a.png", "mask": "center", "attributes": ["Smiling=1"]}, "row 2: 'attributes' must be an object"),
    ({"image": "a.png", "mask": "center", "prompt": [["a smile", 1, 2]]}, "row 2: each prompt must be a text or"),
    ({"image": "a.png", "mask": "center", "prompt": [5]}, "row 2: each prompt must be a text or"),
    ({"image": "a.png", "mask": "center", "prompt": {"a": 1}}, "row 2: 'prompt' must be text or a list"),
    ({"image": "a.png", "mask": "center", "prompt": [["a smile", "x"]]}, "row 2: prompt 'a smile': the weight"),
])
def test_manifest_fields_of_the_wrong_type_are_one_line_errors(tmp_path, row, expect):
    from jax_inpaint.errors import InputError
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"image": "b.png", "mask": "center"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError) as e:
        read_items(manifest=str(manifest))
    assert expect in str(e.value) and "\n" not in str(e.value), str(e.value)
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"image": "a.png", "mask": "center", "id": 7, "prompt": ["a smile", ["red lips", 2]],
                              "attributes": {"Smiling": 1}}) + "\n")
    (it,) = read_items(manifest=str(ok))
    assert (it.id, it.prompts, it.attributes) == ("7", (("a smile", 1.0), ("red lips", 2.0)), (("Smiling", 1.0),))


def test_pairs_per_device_fit_the_host_memory(setup, monkeypatch):
    from jax_inpaint.errors import InputError
    from jax_inpaint.inversion import inpainter as I
    from jax_inpaint.inversion.search import get_search

    _, G = setup
    inpainter = I.Inpainter(G, steps=25, lpips=0.0, lr=0.1, noise="const")
    objectives = {((), ()): inpainter.objective()}
    per_seed = I.host_bytes_per_seed(G, inpainter.cfg)
    k = 8
    # room for the outputs of one image's 8 seeds and 3 more: at most 3 (image, seed) pairs per device
    monkeypatch.setattr(I, "host_available_memory", lambda: int((k + 3.5) * per_seed / I.HOST_FRACTION))
    assert B.fit_per_device(inpainter, objectives, k, 10, 1, None) == {((), ()): 3}  # capped below K
    search = get_search(objectives[((), ())], 3)
    assert search.memory is not None  # compiled ahead of time by the fit: the run reuses this executable
    assert B.fit_per_device(inpainter, objectives, k, 10, 1, 3) == {((), ()): 3}
    with pytest.raises(InputError, match=r"--per-device 4: .* host memory.* at most 3 per device"):
        B.fit_per_device(inpainter, objectives, k, 10, 1, 4)
    with pytest.raises(InputError, match=r"--per-device 2: 2 device\(s\)"):  # 2 devices x 2 + 8 do not fit
        B.fit_per_device(inpainter, objectives, k, 10, 2, 2)
    with pytest.raises(InputError, match="--seeds: 12 seeds"):  # one image's K outputs do not fit at all
        B.fit_per_device(inpainter, objectives, 12, 10, 1, None)
