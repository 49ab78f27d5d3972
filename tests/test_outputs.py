"""What `inpaint` writes: all of a run's outputs or none of them (a full disk, Ctrl-C while writing, an
unwritable --out found before the search), and exactly that run's outputs (a reused --out keeps no
completions of an earlier run's seeds, and nothing we did not write is touched).

Most tests build an InpaintResult by hand (no compiling); the CLI tests share one compiled search of
the shipped demo-faces model (K = 2, a few steps)."""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from jax_inpaint import files
from jax_inpaint.cli import main
from jax_inpaint.errors import InputError
from jax_inpaint.inversion.config import InpaintConfig
from jax_inpaint.inversion.inpainter import InpaintResult
from jax_inpaint.inversion.outputs import save_result

OURS = ("grid.png", "latents.npz", "loss.png", "metrics.json")


def fake_result(seeds, r: int = 16) -> InpaintResult:
    rng = np.random.default_rng(sum(seeds))
    k = len(seeds)
    hole = np.zeros((r, r), bool)
    hole[4:12, 4:12] = True
    img = rng.uniform(-1, 1, (k, r, r, 3)).astype(np.float32)
    metrics = {"seeds": [{"seed": s, "best_loss": 0.1} for s in seeds], "config": dataclasses.asdict(InpaintConfig())}
    return InpaintResult(list(seeds), [], img[0], hole, img, img, rng.normal(size=(k, 2, 4)).astype(np.float32),
                         None, {"loss": rng.uniform(0.1, 1, (5, k))}, metrics, InpaintConfig(), [])


def expected_names(seeds):
    return sorted([f"{kind}_{s}.png" for s in seeds for kind in ("completion", "raw")] + list(OURS))


def listing(folder):
    """name -> (size, mtime_ns) of everything under folder, hidden files included."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def disk_full_after(n: int):
    """A writer that works n times, then fails as a full disk does."""
    calls = {"n": 0}

    def fail(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(*args, **kwargs)

    real_save = Image.Image.save
    return fail


# ---------------------------------------------------------------------------------------------
# save_result: all or nothing, exactly this run's files.

def test_save_result_writes_exactly_one_runs_files(tmp_path):
    out = tmp_path / "out"
    save_result(fake_result([0, 1, 2, 3]), str(out))
    assert sorted(os.listdir(out)) == expected_names([0, 1, 2, 3])
    (out / "notes.txt").write_text("mine")  # the user's own files, and one that only looks like ours
    Image.new("RGB", (4, 4)).save(out / "completion_99.png")
    written = save_result(fake_result([5, 6]), str(out))
    assert sorted(os.listdir(out)) == sorted(expected_names([5, 6]) + ["notes.txt", "completion_99.png"])
    assert (out / "notes.txt").read_text() == "mine"
    assert written["grid"] == str(out / "grid.png")
    assert [e["seed"] for e in json.loads((out / "metrics.json").read_text())["seeds"]] == [5, 6]


@pytest.mark.parametrize("where", ["png", "npz", "json"])
def test_full_disk_while_writing_leaves_the_folder_as_it_was(tmp_path, monkeypatch, where):
    out = tmp_path / "out"
    save_result(fake_result([0, 1]), str(out))
    before = listing(out)
    if where == "png":  # the third picture fails
        monkeypatch.setattr(Image.Image, "save", disk_full_after(2))
    elif where == "npz":
        monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    else:
        real = files.write_bytes
        monkeypatch.setattr(files, "write_bytes", lambda p, d: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space"))
                            if p.endswith("metrics.json") else real(p, d))
    with pytest.raises(InputError, match="cannot write to .*out.*(No space|space left).*nothing was written") as e:
        save_result(fake_result([5, 6]), str(out))
    assert "\n" not in str(e.value)
    assert listing(out) == before  # no partial outputs, no staging folder, no *.tmp


def test_ctrl_c_while_writing_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_result(fake_result([0, 1]), str(out))
    assert os.listdir(out) == []


def test_staging_left_by_a_killed_process_is_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f"{files.STAGING}{files.TMP_MARK}{dead.pid}"
    stale.mkdir()
    (stale / "completion_0.png").write_bytes(b"half")
    save_result(fake_result([0]), str(out))
    assert sorted(os.listdir(out)) == expected_names([0])


# ---------------------------------------------------------------------------------------------
# Through the CLI.

@pytest.fixture(scope="module")
def face(tmp_path_factory):
    folder = tmp_path_factory.mktemp("face")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)).save(folder / "face.png")
    return folder / "face.png"


def inpaint_cli(face, out, seeds, *extra):
    r = CliRunner().invoke(main, ["inpaint", str(face), "--mask", "center", "-g", "demo-faces", "--config", "demo",
                                  "--steps", "4", "--seeds", seeds, "--out", str(out), "-q", *extra])
    return r.exit_code, r.stdout, r.stderr


def one_line_error(code, stdout, stderr, expect):
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("note:", "warning:"))]
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert expect.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in stdout + stderr


def test_cli_rerun_full_disk_then_rerun(face, tmp_path, monkeypatch):
    out = tmp_path / "out"
    code, stdout, stderr = inpaint_cli(face, out, "0,1")
    assert code == 0, stderr
    assert sorted(os.listdir(out)) == expected_names([0, 1])
    before = listing(out)
    with monkeypatch.context() as m:  # the disk fills up after the whole search, on the third picture
        m.setattr(Image.Image, "save", disk_full_after(2))
        one_line_error(*inpaint_cli(face, out, "5,6"), "No space left on device")
    assert listing(out) == before  # the earlier run's outputs, untouched; nothing partial, no *.tmp
    code, stdout, stderr = inpaint_cli(face, out, "5,6")
    assert code == 0, stderr
    assert sorted(os.listdir(out)) == expected_names([5, 6])  # exactly this run's: seeds 0 and 1 are gone


def test_cli_full_disk_on_a_new_folder_leaves_no_folder(face, tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    out = tmp_path / "new" / "out"
    one_line_error(*inpaint_cli(face, out, "0,1"), "No space left")
    assert not (tmp_path / "new").exists()


@pytest.fixture
def no_models(monkeypatch):
    """Loading any model fails the test: the error must come before."""
    import jax_inpaint.inversion.inpainter as I  # every command loads its models through the Inpainter

    def loaded(*a, **k):
        raise AssertionError("a model was loaded before --out was checked")
    monkeypatch.setattr(I, "load_generator", loaded)


@pytest.mark.parametrize("command", ["inpaint", "inpaint-batch", "evaluate"])
def test_unwritable_out_is_reported_before_any_model_loads(face, tmp_path, no_models, command):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sub"
    args = {"inpaint": ["inpaint", str(face), "--mask", "center"],
            "inpaint-batch": ["inpaint-batch", "--images", str(face.parent), "--mask", "center"],
            "evaluate": ["evaluate", "--gan-samples", "1"]}[command]
    r = CliRunner().invoke(main, [*args, "-g", "demo-faces", "--out", str(out), "-q"])
    one_line_error(r.exit_code, r.stdout, r.stderr, "cannot write")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_read_only_out_is_reported_before_any_model_loads(face, tmp_path, no_models):
    # root writes into a chmod 555 folder regardless; sysfs refuses new files even to root
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    ro = pathlib.Path("/sys") if as_root else tmp_path / "ro"
    if not as_root:
        ro.mkdir()
        ro.chmod(0o555)
    before = sorted(os.listdir(ro))
    try:
        for out in (ro, ro / "jax-inpaint-test-out"):
            r = CliRunner().invoke(main, ["inpaint", str(face), "--mask", "center", "-g", "demo-faces",
                                          "--out", str(out), "-q"])
            one_line_error(r.exit_code, r.stdout, r.stderr, "cannot write")
        assert sorted(os.listdir(ro)) == before
    finally:
        if not as_root:
            ro.chmod(0o755)


def test_output_folder_removes_only_what_it_created(tmp_path):
    with pytest.raises(RuntimeError):
        with files.output_folder(tmp_path / "a" / "b" / "c"):
            raise RuntimeError("bad input found later")
    assert os.listdir(tmp_path) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with files.output_folder(tmp_path / "kept"):
            raise RuntimeError
    assert os.listdir(tmp_path) == ["kept"]


class XlaRuntimeError(RuntimeError):
    """Stands in for jaxlib's error of the same name (what a device that runs out of memory raises)."""


@pytest.mark.parametrize("error", [MemoryError(), XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory while "
                                                                    "trying to allocate 81.2GiB.")],
                         ids=["host", "device"])
def test_out_of_memory_is_one_line_and_writes_nothing(face, tmp_path, monkeypatch, error):
    import jax_inpaint.inversion.inpainter as I

    def exhausted(self, *a, **kw):
        raise error
    monkeypatch.setattr(I.Inpainter, "__call__", exhausted)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["inpaint", str(face), "--mask", "center", "-g", "demo-faces", "--config", "demo",
                                  "--out", str(out), "-q"])
    one_line_error(r.exit_code, r.stdout, r.stderr, "out of")
    assert not out.exists()


def test_other_errors_are_not_taken_for_memory_errors(face, tmp_path, monkeypatch):
    import jax_inpaint.inversion.inpainter as I

    def broken(self, *a, **kw):
        raise XlaRuntimeError("INTERNAL: something else")
    monkeypatch.setattr(I.Inpainter, "__call__", broken)
    with pytest.raises(XlaRuntimeError):
        main(["inpaint", str(face), "--mask", "center", "-g", "demo-faces", "--out", str(tmp_path / "o"), "-q"])


@pytest.mark.parametrize("args, expect", [(["--prompt", "a smile"], "--clip"),
                                          (["--attribute", "Smiling=1"], "--classifier")],
                         ids=["prompt-without-clip", "attribute-without-classifier"])
def test_a_missing_constraint_model_is_reported_before_any_model_loads(face, tmp_path, no_models, args, expect):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["inpaint", str(face), "--mask", "center", "-g", "demo-faces", *args,
                                  "--out", str(out), "-q"])
    one_line_error(r.exit_code, r.stdout, r.stderr, expect)
    assert not out.exists()
