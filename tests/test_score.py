"""`jax-inpaint score`: the table, the JSON schema, images at the models' input size used unresampled.

The test images are the reference fixtures' own inputs saved as PNG (uint8 / 255 exactly), so the
scores must equal the PyTorch references within the parity tolerances (1e-4).
"""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convert_weights.clip import convert_clip
from convert_weights.vit import convert_classifier
from jax_inpaint.cli import main
from jax_inpaint.errors import InputError
from jax_inpaint.score import score_images

TOL = 1e-4


@pytest.fixture(scope="module")
def setup(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    convert_clip(data_dir / "clip" / "tiny-clip-hf", root / "clip")
    convert_classifier(data_dir / "vit" / "tiny-vit-celeba-hf", root / "vit")
    with np.load(data_dir / "clip" / "clip_vectors.npz") as d:
        clip = {k: d[k] for k in ("raw_images", "prompts", "cosine_similarity")}
    with np.load(data_dir / "vit" / "vit_vectors.npz") as d:
        vit = {k: d[k] for k in ("raw_images", "probs", "labels")}
    # The CLIP and ViT fixtures use the same three photos first (astronaut, chelsea, coffee at 64x64).
    np.testing.assert_array_equal(clip["raw_images"], vit["raw_images"][:3])
    paths = []
    for i, img in enumerate(clip["raw_images"]):
        paths.append(str(root / f"img{i}.png"))
        Image.fromarray(np.rint(img.transpose(1, 2, 0) * 255).astype(np.uint8)).save(paths[-1])
    return {"root": root, "paths": paths, "clip": clip, "vit": vit}


def test_score_all_models_cli(setup):
    s = setup
    prompts = [str(p) for p in s["clip"]["prompts"][:3]]
    out = s["root"] / "scores.json"
    args = ["score", *s["paths"], "--clip", str(s["root"] / "clip"), "--classifier", str(s["root"] / "vit"),
            "--reference", s["paths"][0], "--json", str(out)]
    for p in prompts:
        args += ["--prompt", p]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert list(data) == ["images", "prompts", "clip_similarity", "attributes", "lpips"]
    assert data["images"] == s["paths"] and data["prompts"] == prompts
    np.testing.assert_allclose(data["clip_similarity"], s["clip"]["cosine_similarity"][:, :3], rtol=0, atol=TOL)
    assert list(data["attributes"]) == list(s["vit"]["labels"])
    probs = np.array([data["attributes"][k] for k in data["attributes"]]).T  # [images, labels]
    np.testing.assert_allclose(probs, s["vit"]["probs"][:3], rtol=0, atol=TOL)
    assert data["lpips"][0] == pytest.approx(0.0, abs=1e-7) and min(data["lpips"][1:]) > 0.1
    # The table: one column per image, a row per prompt, attribute and the LPIPS distance.
    lines = res.output.splitlines()
    assert lines[0].split() == ["image", "img0.png", "img1.png", "img2.png"]
    assert any(line.startswith(f"clip: {prompts[0]}") for line in lines)
    assert any(line.startswith("p(Smiling)") for line in lines)
    assert any(line.startswith("lpips to img0.png") for line in lines)


def test_json_keeps_every_key_when_models_are_missing(setup, tmp_path):
    out = tmp_path / "s.json"
    res = CliRunner().invoke(main, ["score", setup["paths"][1], "--classifier", str(setup["root"] / "vit"),
                                    "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["prompts"] == [] and data["clip_similarity"] == [] and data["lpips"] == []
    assert len(data["attributes"]) == 40 and all(len(v) == 1 for v in data["attributes"].values())


def test_other_sizes_are_resampled(setup, tmp_path):
    """A 96x80 image goes through the differentiable resize: close to, not equal to, the 64x64 result."""
    big = tmp_path / "big.png"
    img = np.rint(setup["vit"]["raw_images"][0].transpose(1, 2, 0) * 255).astype(np.uint8)
    Image.fromarray(img).resize((80, 96), Image.BICUBIC).save(big)
    res = score_images([str(big), setup["paths"][0]], classifier=str(setup["root"] / "vit"))
    a, b = (np.array([v[i] for v in res["attributes"].values()]) for i in (0, 1))
    assert 0 < np.abs(a - b).max() < 0.2


@pytest.mark.parametrize("args, message", [
    (["missing.png", "--reference", "missing.png"], "no such file"),
    (["{0}"], "nothing to score"),
    (["{0}", "--prompt", "a cat"], "needs a CLIP model"),
    (["{0}", "--clip", "{clip}"], "needs at least one --prompt"),
])
def test_bad_inputs_exit_2(setup, args, message):
    args = [a.format(setup["paths"][0], clip=setup["root"] / "clip") for a in args]
    res = CliRunner().invoke(main, ["score", *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_reference_of_another_size_is_refused(setup, tmp_path):
    other = tmp_path / "other.png"
    Image.new("RGB", (32, 32)).save(other)
    with pytest.raises(InputError, match="same size"):
        score_images([setup["paths"][0]], reference=str(other))
