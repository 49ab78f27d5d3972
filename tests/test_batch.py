"""`jax-inpaint inpaint-batch`: sharded over (forced) devices, split between two jax.distributed
processes, resumable after Ctrl-C, robust to a corrupt image. Runs the CLI in subprocesses, since the
device count and jax.distributed are fixed when a process starts."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from convert_weights.stylegan2 import convert_stylegan2
from jax_inpaint.batch import read_items, read_results, run_batch
from jax_inpaint.generate import generate
from jax_inpaint.stylegan2 import load_generator

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


def test_two_hosts_split_a_manifest(setup, tmp_path):
    root, _ = setup
    rows = [{"image": str(root / "imgs" / f"face{i}.png"), "mask": "center", "id": f"row{i}"} for i in range(4)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "out"
    procs = [cli(["inpaint-batch", "--manifest", manifest, "--generator", root / "g", "--out", out, *OPTS,
                  "--coordinator", f"localhost:{port}", "--num-processes", 2, "--process-id", i]) for i in (0, 1)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    by_host = {h: {json.loads(line)["item"] for line in (out / f"results.{h}.jsonl").read_text().splitlines()}
               for h in (0, 1)}
    assert by_host[0] == {"row0", "row2"} and by_host[1] == {"row1", "row3"}  # each item once, on one host
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 4 and summary["failed"] == [] and summary["missing"] == []
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["row0", "row1", "row2", "row3"]


def test_interrupted_run_resumes_and_redoes_nothing(setup, tmp_path):
    root, _ = setup
    # 8 items, one per batch: after the first is recorded, 7 batches remain for Ctrl-C to land in.
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    names = []
    for i, src in enumerate(sorted((root / "imgs").glob("*.png"))):
        im = Image.open(src)
        for j, variant in enumerate((im, im.transpose(Image.FLIP_LEFT_RIGHT))):
            names.append(f"face{i}{j}")
            variant.save(imgs / f"{names[-1]}.png")
    out = tmp_path / "out"
    args = ["inpaint-batch", "--images", imgs, "--mask", "center", "--generator", root / "g", "--out", out,
            *OPTS, "--per-device", 1]
    p = cli(args)
    results = out / "results.0.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and not (results.exists() and results.read_text().count('"ok"') >= 1):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)  # Ctrl-C
    p.communicate(timeout=120)
    finished = {k for k, r in read_results(str(out)).items() if r["status"] == "ok"}
    assert 1 <= len(finished) < len(names)
    assert not [q for q in out.rglob("*") if ".tmp" in q.name]  # nothing half-written
    stamps = {k: (out / k / "grid.png").stat().st_mtime_ns for k in finished}
    p = cli(args)
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 0, log
    assert f"{len(finished)} already done" in log
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["item"] for r in lines if r["status"] == "ok") == sorted(names)
    assert {k: (out / k / "grid.png").stat().st_mtime_ns for k in finished} == stamps


def test_corrupt_image_is_reported_and_the_others_finish(setup, tmp_path):
    root, G = setup
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("face0.png", "face1.png"):
        (imgs / name).write_bytes((root / "imgs" / name).read_bytes())
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    p = cli(["inpaint-batch", "--images", imgs, "--mask", "center", "--generator", root / "g", "--out",
             tmp_path / "out", *OPTS])
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 1, log
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ok"] == 2 and [f["item"] for f in summary["failed"]] == ["broken"]
    assert "not a readable image" in summary["failed"][0]["error"]
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
