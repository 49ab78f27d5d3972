"""Memory: K seeds run in batches that fit (the search) and in calls of a bounded size (the final
images and metrics), or are refused before anything is compiled when their outputs cannot fit.

The available memory is monkeypatched, so these tests do not depend on the machine they run on.
(The batch split itself, from the compiled chunk's memory analysis, is tested in test_inpaint.py:
test_batch_0_splits_the_seeds_when_they_do_not_fit.)
"""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import jax_inpaint.inversion.inpainter as I
import jax_inpaint.inversion.outputs as O
import jax_inpaint.inversion.search as S
from jax_inpaint.cli import main

DEMO = ["-g", "demo-faces", "--config", "demo"]


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    path = tmp_path_factory.mktemp("face") / "face.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return str(path)


def _run(args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_seeds_whose_outputs_do_not_fit_are_refused_up_front(face, tmp_path, monkeypatch):
    for module in (S, I):  # where it is defined, and the driver's (which checks the outputs' share)
        monkeypatch.setattr(module, "host_available_memory", lambda: 1 << 30)  # 1 GiB free

    def no_search(*a, **k):
        raise AssertionError("compiled a search for seeds that were going to be refused")

    monkeypatch.setattr(I, "fit_search", no_search)
    out = tmp_path / "out"
    code, stdout, stderr = _run(["inpaint", face, "--mask", "center", *DEMO, "--seeds", "0-9999", "--out", out,
                                 "--quiet"])
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, (stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: --seeds: 10,000 seeds"), stderr
    inpainter = I.Inpainter("demo-faces", config="demo")
    per_seed = I.host_bytes_per_seed(inpainter.G, inpainter.cfg)
    assert "host memory" in lines[0] and f"at most {int(0.5 * (1 << 30) // per_seed):,} seeds" in lines[0]
    assert "Traceback" not in stderr and not out.exists()


def test_many_seeds_run_in_bounded_batches_and_metric_calls(face, tmp_path, monkeypatch):
    """K = 20 with room for 8 seeds per search call, 5 images per metric call and 20 diversity pairs:
    3 equal batches of 7, metric calls of at most 5 images, a fixed sample of 20 pairs, 4 loss curves;
    every seed's outputs written."""
    monkeypatch.setattr(S, "CPU_MAX_BATCH", 8)
    monkeypatch.setattr(I, "METRIC_BYTES", 5 * I.PIXEL_BYTES * 32 * 32)
    monkeypatch.setattr(I, "MAX_DIVERSITY_PAIRS", 20)
    monkeypatch.setattr(O, "MAX_CURVES", 4)
    sizes = []
    real_chunked = I.chunked

    def chunked(fn, n, take, size):
        sizes.append((n, size))
        return real_chunked(fn, n, take, size)

    monkeypatch.setattr(I, "chunked", chunked)
    runs = []
    real_run = S.Search.run

    def run(self, seeds, *a, **k):
        runs.append((self.batch, len(seeds)))
        return real_run(self, seeds, *a, **k)

    monkeypatch.setattr(S.Search, "run", run)
    out = tmp_path / "out"
    code, stdout, stderr = _run(["inpaint", face, "--mask", "center", *DEMO, "--seeds", "100-119", "--steps", "2",
                                 "--chunk", "2", "--out", out, "--quiet"])
    assert code == 0, (stdout, stderr)
    assert runs == [(7, 7), (7, 7), (7, 6)]
    assert sizes and all(size <= 5 for _, size in sizes), sizes
    assert (20 + 20, 5) in sizes  # LPIPS: 20 known-region distances + 20 sampled pairs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["search_batch"] == 7 and metrics["diversity_pairs"] == 20
    assert [e["seed"] for e in metrics["seeds"]] == list(range(100, 120))
    assert all(np.isfinite(e["known_lpips"]) for e in metrics["seeds"])
    names = {p.name for p in out.iterdir()}
    assert {f"completion_{s}.png" for s in range(100, 120)} <= names and "loss.png" in names


def test_diversity_pairs_all_then_a_fixed_sample():
    i, j = I.diversity_pairs(64)
    assert len(i) == 64 * 63 // 2 == I.MAX_DIVERSITY_PAIRS and np.all(i < j)
    i, j = I.diversity_pairs(10_000)
    assert len(i) == I.MAX_DIVERSITY_PAIRS and np.all(i != j) and i.max() < 10_000 and j.max() < 10_000
    i2, j2 = I.diversity_pairs(10_000)
    assert np.array_equal(i, i2) and np.array_equal(j, j2)  # the same sample every time
    assert len(I.diversity_pairs(1)[0]) == 0


def test_chunked_pads_the_last_call_and_cuts_it_off():
    shapes = []

    def fn(x):
        shapes.append(x.shape)
        return x * 2

    data = np.arange(11.0)
    got = I.chunked(fn, 11, lambda idx: (data[idx],), 4)
    np.testing.assert_array_equal(got, data * 2)
    assert shapes == [(4,), (4,), (4,)]  # one shape: one compile


def test_memory_the_allocator_keeps_counts_as_available(monkeypatch):
    """With the tuned host allocator, freed memory stays with the process (the system counts it as used):
    the search's budget adds it back, so a second search in one process sees the same room."""
    from jax_inpaint import allocator

    monkeypatch.setattr(S, "system_available_memory", lambda: 1000)
    monkeypatch.setattr(S, "held_free_bytes", lambda: 24)
    assert S.host_available_memory() == 1024
    monkeypatch.setattr(S, "system_available_memory", lambda: None)
    assert S.host_available_memory() is None
    monkeypatch.setattr(allocator, "_applied", False)
    assert allocator.held_free_bytes() == 0  # glibc's own settings give freed blocks back: nothing held


def test_available_memory_is_read():
    import jax

    avail = S.host_available_memory()
    assert avail is not None and avail > 0  # /proc/meminfo (Linux) or sysconf
    if jax.devices()[0].platform == "cpu":
        assert 0 < S.available_memory() <= 2 * avail  # the host's, read again


def _with_generator(img_resolution, channels, diversity=0.0):
    """What `cpu_batch_limit` reads of an objective: its config and its generator's architecture."""
    from types import SimpleNamespace

    from jax_inpaint.inversion.config import InpaintConfig
    from jax_inpaint.models.stylegan2 import GeneratorConfig

    g = GeneratorConfig(z_dim=8, c_dim=0, w_dim=8, img_resolution=img_resolution, img_channels=3, channels=channels)
    return SimpleNamespace(cfg=InpaintConfig(diversity=diversity), models=SimpleNamespace(G=SimpleNamespace(config=g)))


def test_cpu_batches_of_large_images_hold_a_bounded_feature_map(monkeypatch):
    paper256 = _with_generator(256, (512, 512, 512, 512, 256, 128, 64))  # largest map 256x256x64: 16 MB a seed
    nvidia64 = _with_generator(64, (512,) * 5)  # 64x64x512: 8 MB
    small = _with_generator(32, (128, 128, 64, 32))  # the demo's: 32x32x32, 128 KB
    assert S.cpu_batch_limit(paper256) == 4 and S.cpu_batch_limit(nvidia64) == 8
    assert S.cpu_batch_limit(small) == S.CPU_MAX_BATCH
    # the seeds of one image must share a program for the diversity term to see them all
    assert S.cpu_batch_limit(_with_generator(256, (512, 512, 512, 512, 256, 128, 64), diversity=0.1)) == S.CPU_MAX_BATCH
    # equal batches: 8 seeds in 2 x 4, 7 in 2 calls of at most 4, 6 in 2 x 3, 5 in 2 x 3 (one padded), 3 at once
    assert [S.cpu_batch(paper256, k) for k in (8, 7, 6, 5, 3, 1)] == [4, 4, 3, 3, 3, 1]
    assert S.cpu_batch(nvidia64, 16) == 8 and S.cpu_batch(nvidia64, 8) == 8
    monkeypatch.setattr(S.jax, "devices", lambda: [type("Device", (), {"platform": "gpu"})()])
    assert S.cpu_batch(paper256, 8) == 8  # an accelerator: memory alone decides
