"""The demo models that ship with jax-inpaint, `jax-inpaint demo`, and what the demo model achieves.

Quality is measured on renders of a data set seed that no training run used (TEST_SEED), with the
demo's own search options and few faces, seeds and steps (bench/demo_model.py measures the same with
more; bench/RESULTS.md has those numbers). Every inpainting test uses the same options and two seeds,
so the whole file compiles two searches (free and with an attribute target).
"""
import json
import os

import jax
import numpy as np
import pytest
from click.testing import CliRunner

from jax_inpaint.models import shipped as assets
from jax_inpaint.cli import main
from jax_inpaint.demo import faces, quality
from jax_inpaint.demo.run import (DEMO_OPTIONS, DEMO_PROMPT, PROMPT_ROW, ROWS, TILE, mouth_hole, prompt_attribute,
                                  run_demo)
from jax_inpaint.demo.train_classifier import attribute_accuracy
from jax_inpaint.errors import InputError
from jax_inpaint.models.stylegan2 import load_discriminator, load_generator
from jax_inpaint.models.vit import load_classifier

TEST_SEED = 13            # held-out renders (training: 0, classifier accuracy: 1, the demo: 7)
STEPS = 100
SEEDS = [0, 1]
OPTIONS = dict(DEMO_OPTIONS, steps=STEPS)


@pytest.fixture(scope="module")
def G():
    return load_generator("demo-faces")


@pytest.fixture(scope="module")
def classifier():
    return load_classifier("demo-faces")


@pytest.fixture(scope="module")
def held_out():
    return quality.held_out_faces(400, seed=TEST_SEED, size=32)


def test_shipped_models_are_small_and_load_by_name(G, classifier):
    folders = [assets.shipped_models("generator")["demo-faces"], assets.shipped_models("classifier")["demo-faces"]]
    sizes = [os.path.getsize(os.path.join(d, f)) for folder in folders for d, _, fs in os.walk(folder) for f in fs]
    assert sum(sizes) < 10e6 and max(sizes) < 5e6
    assert G.img_resolution == 32 and G.c_dim == 0
    assert classifier.labels == list(faces.ATTRIBUTES)
    D = load_discriminator("demo-faces")
    logits = D(np.zeros((4, 32, 32, 3), np.float32))
    assert logits.shape == (4, 1) and np.all(np.isfinite(np.asarray(logits)))
    with open(os.path.join(folders[0], "model.json")) as f:
        source = json.load(f)["source"]
    assert source["steps"] > 0 and source["images_seen"] == source["steps"] * source["train_config"]["batch"]


def test_demo_command_writes_its_grid(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["demo", "--out", str(out), "--seeds", "0-1", "--steps", str(STEPS), "--quiet"])
    assert r.exit_code == 0, r.output
    assert f"wrote {out / 'grid.png'}" in r.output
    from jax_inpaint.images import read_rgb
    grid = read_rgb(out / "grid.png")
    # 4 rows (free, Smiling=1, Smiling=0, prompt) of 2 + K tiles of TILE pixels, 4-pixel padding, 12-pixel labels.
    assert grid.shape == (4 * (TILE + 12 + 4) + 4, 4 * (TILE + 4) + 4, 3)
    for row in [row for row, _ in ROWS] + [PROMPT_ROW]:
        assert (out / row / "completion_1.png").is_file() and (out / row / "metrics.json").is_file()
    lines = r.output.strip().splitlines()
    assert len(lines) == 5 and lines[3].startswith(f"prompt       {DEMO_PROMPT!r}: Mouth_Slightly_Open probability")
    # --prompt '' leaves the prompt row out
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "three"), "--seeds", "0-1", "--steps", "2",
                                  "--prompt", "", "--quiet"])
    assert r.exit_code == 0, r.output
    assert read_rgb(tmp_path / "three" / "grid.png").shape[0] == 3 * (TILE + 12 + 4) + 4
    assert not (tmp_path / "three" / PROMPT_ROW).exists()


def test_a_prompt_row_shows_the_attribute_it_names_on_a_fitting_hole():
    assert prompt_attribute(DEMO_PROMPT) == ("Mouth_Slightly_Open", "mouth")
    assert prompt_attribute("A Face with EYEGLASSES") == ("Eyeglasses", "eyes")
    assert prompt_attribute("a woman with purple lipstick") == ("Wearing_Lipstick", "mouth")
    assert prompt_attribute("a happy face") == (None, "mouth")   # shown with its CLIP similarity


def test_run_demo_keeps_the_known_pixels(tmp_path, G, classifier):
    res = run_demo(tmp_path, seeds=SEEDS, steps=STEPS, generator=G, classifier=classifier, progress=False)
    assert set(res["smiling"]) == {row for row, _ in ROWS} and set(res["folders"]) == set(res["smiling"]) | {PROMPT_ROW}
    from jax_inpaint.images import read_rgb
    from jax_inpaint.demo.run import demo_face
    truth, _ = demo_face(0, 32)
    hole = mouth_hole(32)
    from scipy.ndimage import binary_dilation
    far = ~binary_dilation(hole, iterations=2)   # beyond the 1-pixel feather
    assert res["prompt"]["text"] == DEMO_PROMPT and res["prompt"]["attribute"] == "Mouth_Slightly_Open"
    assert len(res["prompt"]["probs"]) == len(res["prompt"]["similarity"]) == len(SEEDS)
    for row in res["folders"]:
        comp = read_rgb(os.path.join(res["folders"][row], "completion_0.png"))
        np.testing.assert_array_equal(comp[far], truth[far])   # known pixels pasted back exactly
        assert np.abs(comp[hole].astype(int) - truth[hole]).mean() > 0   # the hole was redrawn


def test_classifier_held_out_accuracy(classifier, held_out):
    imgs, labels = held_out
    acc = attribute_accuracy(classifier, imgs, labels)
    assert acc["Smiling"] > 0.9, acc
    assert np.mean(list(acc.values())) > 0.9, acc


def test_generated_faces_are_plausible(G, classifier, held_out):
    gen = quality.plausibility_report(quality.sample_faces(G, 64, key=jax.random.key(0)), classifier)
    assert gen["oracle_plausible"] > 0.5, gen
    assert gen["classifier_rules"] > 0.7, gen
    noise = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    assert quality.plausibility_report(noise)["oracle_plausible"] == 0.0   # the oracle does reject non-faces


def test_inpainting_beats_biharmonic_on_a_centre_hole(G, held_out):
    from jax_inpaint.models.lpips import load_lpips
    res = quality.inpainting_vs_biharmonic(G, held_out[0][:3], quality.centre_hole(32), seeds=SEEDS,
                                           lpips_model=load_lpips(), **OPTIONS)
    assert res["gan"]["lpips_hole"] < res["biharmonic"]["lpips_hole"], res


def test_smiling_target_is_met_on_most_seeds(G, classifier, held_out):
    res = quality.attribute_control(G, classifier, held_out[0][3:5], mouth_hole(32), attribute="Smiling",
                                    seeds=SEEDS, **OPTIONS)
    assert res["success_target1"] >= 0.75 and res["success_target0"] >= 0.75, res


def test_label_rules_catch_contradictions():
    labels = list(faces.ATTRIBUTES)
    _, truth, _ = faces.render_dataset(50, seed=TEST_SEED, size=16)
    assert quality.label_rules(truth, labels).all()
    bad = truth.copy()
    bad[:, labels.index("Black_Hair")] = bad[:, labels.index("Blond_Hair")] = True   # two hair colours
    assert not quality.label_rules(bad, labels).any()
    with pytest.raises(InputError, match="training set"):
        quality.held_out_faces(2, seed=0)


def test_robustness_report_runs_on_the_demo_model(tmp_path):
    """`evaluate` on demo-faces with held-out renders as ground truth (a folder, as a user would give)."""
    import csv

    from jax_inpaint.images import save_png
    imgs, _ = quality.held_out_faces(2, seed=TEST_SEED + 1, size=32)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, im in enumerate(imgs):
        save_png(photos / f"face{i}.png", im)
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["evaluate", "--generator", "demo-faces", "--config", "demo", "--images", str(photos),
                                  "--families", "center", "--ratios", "0.3", "--baselines", "biharmonic",
                                  "--seeds", "0-1", "--steps", str(STEPS), "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").is_file() and (out / "plots" / "overview.png").is_file()
    rows = {row["series"]: row for row in csv.DictReader(open(out / "summary.csv"))}
    assert int(rows["gan_mean"]["n"]) == 2
    assert float(rows["gan_mean"]["lpips_hole"]) < float(rows["biharmonic"]["lpips_hole"]), rows
