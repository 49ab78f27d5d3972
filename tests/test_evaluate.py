"""`jax-inpaint evaluate` end to end on the tiny fixture generator (random weights, 32x32): 2 targets x
2 mask families x 1 ratio x 2 seeds, 20 steps without the LPIPS term (LPIPS metrics are still computed).
The study is run three times into one folder: interrupted after two cases, resumed, rerun."""
import csv
import json
import math
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convert_weights.stylegan2 import convert_stylegan2
from jax_inpaint.study import evaluate as ev
from jax_inpaint.study import pictures, plan, records, scoring, store, targets
from jax_inpaint.inversion import inpainter as inpaint_mod
from jax_inpaint.cli import main
from jax_inpaint.errors import InputError
from jax_inpaint.generate import seed_z
from jax_inpaint.models.lpips import load_lpips
from jax_inpaint.models.stylegan2 import load_generator

FAST = dict(steps=20, chunk=20, lpips=0.0, lr=0.1, noise="const")
STUDY = dict(gan_samples=2, families="center,strokes-medium", ratios=[0.3], seeds=[0, 1],
             baselines="mean,biharmonic", **FAST)
CLI_STUDY = ["--gan-samples", 2, "--families", "center,strokes-medium", "--ratios", "0.3", "--seeds", "0,1",
             "--baselines", "mean,biharmonic", "--steps", 20, "--chunk", 20, "--lpips", 0, "--lr", 0.1,
             "--noise", "const", "-q"]
N_CASES = 4
REAL_INPAINT = inpaint_mod.Inpainter.__call__  # evaluate inpaints each case with one call of its Inpainter


@pytest.fixture(scope="module")
def models(data_dir, tmp_path_factory):
    g_dir = tmp_path_factory.mktemp("models") / "g"
    convert_stylegan2(str(data_dir / "stylegan2" / "tiny_network_stripped.pkl"), str(g_dir))
    return {"G": load_generator(g_dir), "g_dir": g_dir, "lpips": load_lpips()}


class Interrupted(Exception):
    pass


class Counting:
    """Wraps Inpainter.__call__: counts its calls and raises after `fail_after` of them (a simulated interruption)."""

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, *args, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Interrupted("simulated interruption")
        self.calls += 1
        return REAL_INPAINT(*args, **kwargs)

    def __get__(self, inpainter, owner=None):  # set on the class: called as a method of the Inpainter
        return lambda *args, **kwargs: self(inpainter, *args, **kwargs)


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "eval"
    kw = dict(lpips_model=models["lpips"], progress=False, **STUDY)
    result = {"out": out, "traces": []}
    from jax_inpaint.inversion.search import Search

    real_chunk = Search._run_chunk

    def traced_chunk(self, *args):  # runs once per trace of a search's chunk (each trace is a compile)
        result["traces"].append(self.batch)
        return real_chunk(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Search, "_run_chunk", traced_chunk)
        first = Counting(fail_after=2)
        mp.setattr(inpaint_mod.Inpainter, "__call__", first)
        with pytest.raises(Interrupted):
            ev.evaluate(models["G"], out, **kw)
        result["records_after_interrupt"] = sorted(p.name for p in (out / "cases").glob("*.json"))
        second = Counting()
        mp.setattr(inpaint_mod.Inpainter, "__call__", second)
        result["resumed"] = ev.evaluate(models["G"], out, **kw)
        result["resumed_calls"] = second.calls
        third = Counting()
        mp.setattr(inpaint_mod.Inpainter, "__call__", third)
        result["rerun"] = ev.evaluate(models["G"], out, report=False, **kw)
        result["rerun_calls"] = third.calls
    return result


def test_interrupted_run_resumes_without_recomputing(runs):
    assert len(runs["records_after_interrupt"]) == 2
    res = runs["resumed"]
    assert runs["resumed_calls"] == N_CASES - 2
    assert len(res.computed) == N_CASES - 2 and len(res.reused) == 2
    assert not set(res.computed) & {n[:-len(".json")] for n in runs["records_after_interrupt"]}


def test_rerun_computes_nothing(runs):
    res = runs["rerun"]
    assert runs["rerun_calls"] == 0 and res.computed == [] and len(res.reused) == N_CASES
    assert res.rows == runs["resumed"].rows


def test_the_search_compiled_once(runs):
    # every case of the three runs uses the same options: the search is traced (compiled) at most once
    # (not at all when an earlier test of this process left it compiled), whatever the module-global
    # cache of searches holds, without looking into jax's private caches
    assert len(runs["traces"]) <= 1, runs["traces"]
    assert runs["resumed_calls"] + runs["records_after_interrupt"].__len__() == N_CASES


def test_csv_holds_one_finite_gan_row_per_case(runs):
    with open(runs["out"] / "results.csv") as f:
        rows = list(csv.DictReader(f))
    gan = [r for r in rows if r["method"] == "gan"]
    assert len(gan) == N_CASES and len({r["case"] for r in gan}) == N_CASES
    assert {(r["family"], r["target"]) for r in gan} == {(f, t) for f in ("center", "strokes-medium")
                                                         for t in ("sample0000", "sample0001")}
    numeric = [c for c in records.COLUMNS if c.endswith(("_best", "_mean"))] + ["psnr_known", "diversity", "seconds",
                                                                             "hole_ratio"]
    for r in gan:
        values = {c: float(r[c]) for c in numeric}
        assert all(math.isfinite(v) for v in values.values()), values
        assert values["psnr_hole_best"] >= values["psnr_hole_mean"]
        assert values["lpips_hole_best"] <= values["lpips_hole_mean"]
        assert 0.2 < values["hole_ratio"] <= 0.4  # the bucket of 0.3
        assert int(r["k"]) == 2
    for method in ("mean", "biharmonic"):
        base = [r for r in rows if r["method"] == method]
        assert len(base) == N_CASES
        assert all(r["psnr_hole_best"] == r["psnr_hole_mean"] and math.isfinite(float(r["lpips_hole_mean"]))
                   and r["psnr_known"] == "" for r in base)


def test_report_plots_and_pictures(runs):
    out = runs["out"]
    files = runs["resumed"].files
    for key in ("plot_psnr_hole", "plot_ssim_hole", "plot_lpips_hole", "plot_lpips", "plot_advantage",
                "plot_overview", "plot_gan", "samples_center", "samples_strokes-medium"):
        with Image.open(files[key]) as im:
            assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 100, key
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 7  # the plots, embedded
    assert page.count("data:image/jpeg;base64,") >= N_CASES * 6  # the case tiles: truth, masked, 2 seeds, 2 fills
    assert "src=\"plots/" not in page and "src='plots/" not in page  # self-contained
    for text in ("center", "strokes-medium", "biharmonic", "The hardest cases", "GAN, best of K"):
        assert text in page
    data = json.loads((out / "results.json").read_text())
    assert len(data["rows"]) == 3 * N_CASES and data["meta"]["n_cases"] == N_CASES
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {s["series"] for s in summary} == {"gan_best", "gan_mean", "mean", "biharmonic"}
    assert all(int(s["n"]) == 2 for s in summary)  # two targets per (family, ratio)
    record = json.loads(next((out / "cases").glob("*.json")).read_text())
    with Image.open(out / record["rows"][0]["grid"]) as im:  # truth, masked, 2 completions, 2 baselines
        assert im.size[0] == 2 + 6 * (128 + 2)


def test_cli_resumes_the_same_study_and_refuses_other_options(models, runs):
    args = ["evaluate", "-g", models["g_dir"], *CLI_STUDY, "--out", runs["out"]]
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"{N_CASES} cases: 0 computed, {N_CASES} reused" in res.output
    assert "report: " in res.output
    other = [str(a) for a in args]
    other[other.index("--steps") + 1] = "21"
    res = CliRunner().invoke(main, other)
    assert res.exit_code == 2
    assert "Error:" in res.output and "config.steps: 20 -> 21" in res.output


def test_scorer_compares_only_the_hole(models):
    rng = np.random.default_rng(0)
    gt = rng.uniform(-1, 1, (32, 32, 3)).astype(np.float32)
    hole = np.zeros((32, 32), bool)
    hole[8:24, 8:24] = True
    pred = np.where(hole[..., None], gt, rng.uniform(-1, 1, gt.shape)).astype(np.float32)
    s = scoring.Scorer(models["lpips"], 2)(np.stack([pred, gt]), gt, hole)
    assert np.all(np.isinf(s["psnr_hole"])) and np.isclose(s["ssim_hole"][1], 1.0)  # (SSIM windows reach outside)
    assert np.allclose(s["lpips_hole"], 0.0, atol=1e-6)
    assert s["lpips"][0] > 0.05 and abs(s["lpips"][1]) < 1e-6


def test_gan_targets_are_exact_generator_samples(models):
    G = models["G"]
    found = targets.gan_targets(G, 3, truncation_psi=0.7)
    ws = G.mapping(seed_z([2], G.z_dim), truncation_psi=0.7)
    # the same sample (up to float32 reassociation: rendered in a batch of 3 instead of 1)
    np.testing.assert_allclose(found[2].image, np.asarray(G.synthesis(ws, noise_mode="const"))[0], atol=1e-5)
    assert found[2].image.dtype == np.float32
    assert not np.allclose(found[2].image * 127.5, np.rint(found[2].image * 127.5))  # not quantised
    assert [t.name for t in found] == ["sample0000", "sample0001", "sample0002"]


def test_plan_skips_unreachable_ratios_and_keeps_masks_per_target(models):
    found = targets.gan_targets(models["G"], 2)
    cases, notes = plan.plan_cases(found, ["strokes-thin", "lines"], [0.3, 0.5], mask_seed=3)
    assert [c.id for c in cases if c.target.name == "sample0000"] == [
        "sample0000__strokes-thin__0.3", "sample0000__strokes-thin__0.5", "sample0000__lines__0.5"]
    assert len(notes) == 1 and "lines" in notes[0] and "0.3" in notes[0]
    again, _ = plan.plan_cases(found[1:], ["strokes-thin"], [0.3], mask_seed=3)  # other targets: same mask
    assert np.array_equal(again[0].hole, cases[3].hole)
    assert not np.array_equal(cases[0].hole, cases[3].hole)  # each target its own layout
    with pytest.raises(InputError, match="no .family, ratio. pair"):
        plan.plan_cases(found, ["lines"], [0.1])


def test_image_folder_targets(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), np.uint8)).save(tmp_path / "b wide.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    found = targets.image_targets(tmp_path, 32)
    assert [t.name for t in found] == ["a.jpg", "b_wide.png"]
    assert all(t.image.shape == (32, 32, 3) and t.image.min() >= -1 and t.image.max() <= 1 for t in found)
    assert len(targets.image_targets(tmp_path, 32, limit=1)) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no image files"):
        targets.image_targets(empty, 32)


def test_baseline_choice(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # OpenCV missing
    chosen, notes = plan.resolve_baselines("auto")
    assert chosen == ["mean", "biharmonic"] and "telea" in notes[0]
    assert plan.resolve_baselines("none") == ([], [])
    with pytest.raises(InputError, match="telea"):
        plan.resolve_baselines("mean,telea")
    with pytest.raises(InputError, match="unknown baselines"):
        plan.resolve_baselines("median")


def test_bad_study_arguments(models, tmp_path):
    with pytest.raises(InputError, match="either --images DIR or --gan-samples"):
        ev.evaluate(models["G"], tmp_path / "x", lpips_model=models["lpips"])
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        plan.parse_ratios("0.3,1.0")
    with pytest.raises(InputError, match="unknown mask families"):
        plan.parse_families("center,circles")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "other.txt").write_text("x")
    with pytest.raises(InputError, match="holds no evaluation"):
        ev.evaluate(models["G"], tmp_path / "busy", gan_samples=1, families="center", ratios="0.3", seeds=[0, 1],
                    lpips_model=models["lpips"], progress=False, **FAST)


@pytest.mark.parametrize("bad, message", [
    (["--prompt", "a smile"], "--clip"),
    (["--attribute", "Smiling=1"], "--classifier"),
    (["--classifier", "demo-faces", "--attribute", "NoSuchThing=1"], "unknown attributes"),
    (["--class", "3"], "not conditional"),
])
def test_bad_options_are_refused_before_anything_is_written(models, runs, tmp_path, bad, message):
    """The options that need the models are checked before study.json is written: a fresh --out is not
    created (so the corrected rerun is not refused as 'other options'), an existing study is untouched."""
    for out in (tmp_path / "fresh", runs["out"]):
        study = out / "study.json"
        before = (study.read_bytes(), study.stat().st_mtime_ns) if study.exists() else None
        res = CliRunner().invoke(main, [str(a) for a in ["evaluate", "-g", models["g_dir"], *CLI_STUDY, *bad,
                                                         "--out", out]])
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("note:")]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.output, res.output
        if before is None:
            assert not out.exists()
        else:
            assert (study.read_bytes(), study.stat().st_mtime_ns) == before


# ---------------------------------------------------------------------------------------------
# The parts of a study on their own (no generator needed).

def _toy_case(size=32, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.uniform(-1, 1, (size, size, 3)).astype(np.float32)
    hole = np.zeros((size, size), bool)
    hole[8:20, 6:24] = True
    return plan.Case("t__center__0.3", targets.Target("t", img, "test", records.digest(img)), "center", 0.3, hole)


@pytest.mark.parametrize("size", [32, 300])
def test_picture_tiles_cut_out_what_case_picture_laid_out(size):
    """The report cuts a case picture's tiles with the layout pictures.case_picture drew it with."""
    from jax_inpaint import images as imio

    case = _toy_case(size)
    rng = np.random.default_rng(1)
    completions = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    fills = {"mean": rng.uniform(-1, 1, (size, size, 3)).astype(np.float32)}
    scores = {m: np.arange(3, dtype=np.float32) + 20 for m in records.METRICS}
    picture, info = pictures.case_picture(case, completions, [5, 7], fills, scores)
    assert [t["label"] for t in info] == ["ground truth", f"masked {100 * case.hole_ratio:.0f}%", "seed 5", "seed 7",
                                         "mean"]
    tiles = pictures.picture_tiles(picture, len(info))
    t = pictures.tile_size(size)
    assert t == min(max(size, 128), 256)
    for tile, img in zip(tiles, [case.target.image, None, *completions, fills["mean"]]):
        assert tile.shape == (t, t, 3)
        if img is not None:
            np.testing.assert_array_equal(tile, imio.display_tile(img, t))


def test_store_keeps_one_study_per_folder(tmp_path):
    out = str(tmp_path / "study")
    fp = {"config": {"steps": 20, "lr": 0.1}, "seeds": [0, 1], "score": float("nan")}
    store.check_study(out, fp)
    saved = json.loads((tmp_path / "study" / "study.json").read_text())
    assert saved["fingerprint"]["score"] is None  # NaN stored as null, and compared as stored
    store.check_study(out, fp)  # the same study again: fine
    with pytest.raises(InputError, match=r"config\.steps: 20 -> 21; seeds: \[0, 1\] -> \[0, 2\]"):
        store.check_study(out, {**fp, "config": {"steps": 21, "lr": 0.1}, "seeds": [0, 2]})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="holds no evaluation"):
        store.check_study(str(tmp_path / "other"), fp)

    case = _toy_case()
    h = records.fingerprint_hash(fp)
    key = store.case_key(h, case)
    moved = plan.Case(case.id, case.target, case.family, case.ratio, np.roll(case.hole, 1, axis=1))
    assert store.case_key(h, case) == key != store.case_key(h, moved)
    assert key != store.case_key(records.fingerprint_hash({**fp, "seeds": [0, 2]}), case)
    assert store.load_record(out, case.id) is None
    records.write_json(store.record_path(out, case.id), {"key": key, "rows": [{"psnr_hole_best": float("inf")}]})
    assert store.load_record(out, case.id) == {"key": key, "rows": [{"psnr_hole_best": None}]}
    with open(store.record_path(out, case.id), "w") as f:
        f.write('{"key": ')  # cut short: recomputed, not an error
    assert store.load_record(out, case.id) is None


def test_records_differences_and_digests():
    assert records.differences({"a": {"b": 1, "c": [1]}, "d": "x"}, {"a": {"b": 2, "c": [1]}, "e": 1}) == [
        "a.b: 1 -> 2", "d: \"x\" -> null", "e: null -> 1"]
    assert records.short(list(range(100)), 20) == "[0, 1, 2, 3, 4, 5..."
    a = np.arange(6, dtype=np.float32)
    assert records.digest(a) != records.digest(a.reshape(2, 3)) != records.digest(a.astype(np.float64))
    assert records.digest("x", 1) == records.digest("x", "1") and len(records.digest(a)) == 16


def test_resume_files_of_the_wrong_json_type(tmp_path):
    from jax_inpaint.inversion.outputs import _previous_outputs

    out = tmp_path / "study"
    out.mkdir()
    for damaged in ("[1, 2]", '{"fingerprint": [1]}', '"text"'):  # a study.json that is not an object: one line
        (out / "study.json").write_text(damaged)
        with pytest.raises(InputError, match="study.json: unreadable") as e:
            store.check_study(str(out), {"seeds": [0]})
        assert "\n" not in str(e.value)
    case = _toy_case()
    (out / "cases").mkdir()
    for damaged in ("[1, 2]", "3", "null"):  # a case record that is not an object: recomputed
        with open(store.record_path(str(out), case.id), "w") as f:
            f.write(damaged)
        assert store.load_record(str(out), case.id) is None
    # a damaged metrics.json: the old-file clean-up skips the bad values and keeps the good ones
    res = tmp_path / "result"
    res.mkdir()
    (res / "metrics.json").write_text('{"seeds": [{"seed": 1e400}, {"seed": 3}, [4], {"seed": "x"}, {"seed": 2.5}, '
                                      '{"seed": [5]}, {}, {"seed": true}]}')
    (res / "grid.png").write_bytes(b"x")
    assert sorted(_previous_outputs(str(res))) == ["completion_3.png", "grid.png", "metrics.json", "raw_3.png"]
    for damaged in ('{"seeds": 7}', '[1]', '{"seeds": {"seed": 1}}'):
        (res / "metrics.json").write_text(damaged)
        assert sorted(_previous_outputs(str(res))) == ["grid.png", "metrics.json"]


def test_the_fitted_search_is_kept_per_k(models, monkeypatch):
    # the free memory read changes between the cases of a study: K must not split differently (and recompile)
    calls = []
    real_fit = inpaint_mod.fit_search

    def fit(objective, num_seeds, frozen, **kw):
        calls.append(num_seeds)
        return real_fit(objective, num_seeds, frozen, **kw)

    monkeypatch.setattr(inpaint_mod, "fit_search", fit)
    inpainter = inpaint_mod.Inpainter(models["G"], lpips_model=models["lpips"], **FAST)
    face = np.zeros((32, 32, 3), np.uint8)
    first = REAL_INPAINT(inpainter, face, "center", [0, 1], progress=False)
    again = REAL_INPAINT(inpainter, face, "left", [2, 3], progress=False)
    assert calls == [2] and first.metrics["search_batch"] == again.metrics["search_batch"]
    REAL_INPAINT(inpainter, face, "center", [0], progress=False)  # another K: fitted for it
    assert calls == [2, 1]
