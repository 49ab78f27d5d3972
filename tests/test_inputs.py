"""Options and inputs whose right answer is correct work (the errors are rows of test_bad_input.py):
the one image reader (16-bit grey, EXIF orientation, palette / LA / CMYK / float TIFF), the one
validation layer of the options (recipe.py), seeds, prompts and attributes, latents files, LPIPS on
small images, and the notice for prompts longer than CLIP's context.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from image_tools import GREY, RGB, write_png
from jax_inpaint.cli import main, parse_seeds
from jax_inpaint.errors import InputError
from jax_inpaint.images import MAX_PIXELS, read_gray, read_rgb
from jax_inpaint.inversion.inpainter import parse_attributes, prepare_inputs
from jax_inpaint.inversion.config import InpaintConfig, check_option, check_seeds, load_config, parse_prompts

ORIENTATION = 0x0112


def _cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def _picture(h=32, w=24, seed=0):
    """A small RGB picture without symmetry (so a wrong rotation or flip shows)."""
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


def _with_exif_orientation(path, upright: np.ndarray, orientation: int):
    """Store `upright` as the camera would: pixels rotated, EXIF saying how to turn them back."""
    stored = {6: np.rot90(upright, 1), 8: np.rot90(upright, -1), 3: np.rot90(upright, 2)}[orientation]
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif)
    return str(path)


# ---------------------------------------------------------------------------------------------
# The image reader.

def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535], [1000, 20000, 40000, 65280]], np.uint16)
    expect = np.rint(values / 257.0).astype(np.uint8)
    crafted = write_png(tmp_path / "g16.png", 4, 2, 16, GREY, values)  # written byte by byte
    Image.fromarray(values).save(tmp_path / "pil16.png")  # as PIL writes it (mode I;16)
    for path in (crafted, tmp_path / "pil16.png"):
        np.testing.assert_array_equal(read_gray(path), expect)
        np.testing.assert_array_equal(read_rgb(path), np.repeat(expect[..., None], 3, -1))
    rgb16 = np.stack([values, values[::-1], np.full_like(values, 65535)], -1)  # PIL keeps the high byte
    np.testing.assert_allclose(read_rgb(write_png(tmp_path / "rgb16.png", 4, 2, 16, RGB, rgb16)),
                               rgb16 / 257.0, atol=1)


def test_other_modes_are_read_as_their_colours(tmp_path):
    pic = _picture(8, 8)
    grey = np.asarray(Image.fromarray(pic).convert("L"))
    # palette (exact: at most 256 colours), with transparency; LA; CMYK TIFF (PIL's RGB<->CMYK is exact)
    pal = Image.fromarray(pic[..., 0] // 64 * 64).convert("RGB").quantize(4)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    np.testing.assert_array_equal(read_rgb(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))
    Image.fromarray(np.stack([grey, 255 - grey], -1), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "la.png"), grey)  # alpha ignored
    np.testing.assert_array_equal(read_rgb(tmp_path / "la.png"), np.repeat(grey[..., None], 3, -1))
    Image.fromarray(pic).convert("CMYK").save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(read_rgb(tmp_path / "cmyk.tif"), pic)
    # float TIFF in [0, 1] and 32-bit integer TIFF in 16-bit range
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_gray(tmp_path / "f.tif"), grey)
    Image.fromarray(grey.astype(np.int32) * 257).save(tmp_path / "i32.tif")
    np.testing.assert_array_equal(read_gray(tmp_path / "i32.tif"), grey)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_to_images_and_masks(tmp_path, orientation):
    pic = _picture()
    np.testing.assert_array_equal(read_rgb(_with_exif_orientation(tmp_path / "photo.png", pic, orientation)), pic)
    hole = np.zeros((32, 24), bool)
    hole[4:12, 2:10] = True  # off-centre: a wrong rotation moves it
    mask_u8 = np.repeat(np.where(hole, 255, 0).astype(np.uint8)[..., None], 3, -1)
    mask_path = _with_exif_orientation(tmp_path / "mask.png", mask_u8, orientation)
    np.testing.assert_array_equal(read_gray(mask_path) >= 128, hole)
    # A phone photo (stored sideways + EXIF) with a mask drawn on the photo as shown: they align.
    inputs = prepare_inputs(str(tmp_path / "photo.png"), mask_path, 32)
    assert inputs.hole.shape == (32, 32) and inputs.hole.any() and not inputs.hole.all()


def test_16bit_mask_marks_its_hole(tmp_path):
    face = tmp_path / "face.png"
    Image.fromarray(_picture(32, 32)).save(face)
    m = np.full((32, 32), 20000, np.uint16)  # dark grey: known (it used to read as white)
    m[8:20, 10:22] = 65535
    inputs = prepare_inputs(str(face), write_png(tmp_path / "m16.png", 32, 32, 16, GREY, m), 32)
    np.testing.assert_array_equal(inputs.hole, m == 65535)


def test_image_limit_is_checked_from_the_header(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 1
    path = write_png(tmp_path / "big.png", side, side, 8, RGB)  # a few bytes declaring > MAX_PIXELS
    with pytest.raises(InputError, match="megapixels are refused"):
        read_rgb(path)


def test_cli_reads_every_kind_as_the_same_picture(tmp_path):
    """Through `score`: a 16-bit grey PNG scores as its 8-bit version, an EXIF-rotated photo as the
    upright one, a CMYK TIFF and a palette PNG as their RGB originals."""
    pic = _picture(32, 32, seed=3) // 32 * 32  # 8 levels per channel: exact in a palette too
    grey = np.asarray(Image.fromarray(pic).convert("L"))
    files = {"rgb": tmp_path / "rgb.png", "exif": tmp_path / "exif.png", "cmyk": tmp_path / "cmyk.tif",
             "grey8": tmp_path / "grey8.png", "grey16": tmp_path / "grey16.png"}
    Image.fromarray(pic).save(files["rgb"])
    _with_exif_orientation(files["exif"], pic, 6)
    Image.fromarray(pic).convert("CMYK").save(files["cmyk"])
    Image.fromarray(grey).save(files["grey8"])
    write_png(files["grey16"], 32, 32, 16, GREY, grey.astype(np.uint16) * 257)
    code, out, err = _cli("score", *files.values(), "--classifier", "demo-faces", "--json", tmp_path / "s.json")
    assert code == 0, err
    attrs = json.loads((tmp_path / "s.json").read_text())["attributes"]
    col = {name: np.array([v[i] for v in attrs.values()]) for i, name in enumerate(files)}
    for name in ("exif", "cmyk"):
        np.testing.assert_allclose(col[name], col["rgb"], atol=1e-6, err_msg=name)
    np.testing.assert_allclose(col["grey16"], col["grey8"], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# LPIPS on small images: an error below VGG16's 16x16, a number from there on.

def test_lpips_refuses_images_too_small_for_vgg16():
    from jax_inpaint.models.lpips import LPIPS, LPIPSConfig, expected_params

    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), expected_params())
    lp = LPIPS(LPIPSConfig(), zeros)  # shapes are all that is traced here
    for size in (1, 8, 15):
        x = jnp.zeros((1, size, size, 3))
        for fn in (lambda: lp.distance(lp.params, x, x),
                   lambda: lp.prepare(lp.params, x, jnp.ones((size, size)), mode="input"),
                   lambda: lp.masked_feature_distance(lp.params, x, x, jnp.ones((size, size)))):
            with pytest.raises(InputError, match="at least 16x16"):
                jax.eval_shape(fn)
    x = jnp.zeros((1, 16, 24, 3))
    assert jax.eval_shape(lambda: lp.distance(lp.params, x, x)).shape == (1,)


def test_score_lpips_of_a_16x16_image_is_a_number(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(_picture(16, 16, 1)).save(a)
    Image.fromarray(_picture(16, 16, 2)).save(b)
    code, out, err = _cli("score", a, b, "--reference", a, "--json", tmp_path / "s.json")
    assert code == 0, err
    d = json.loads((tmp_path / "s.json").read_text())["lpips"]
    assert d[0] == pytest.approx(0.0, abs=1e-6) and np.isfinite(d[1]) and d[1] > 0


# ---------------------------------------------------------------------------------------------
# Prompts: one longer than CLIP's context is cut with a notice, printed once.

def test_long_prompt_is_cut_with_one_notice(tmp_path, data_dir):
    from convert_weights.clip import convert_clip

    convert_clip(data_dir / "clip" / "tiny-clip-hf", tmp_path / "clip")
    img = tmp_path / "a.png"
    Image.fromarray(_picture(32, 32)).save(img)
    long = " ".join(["a photo of a smiling face"] * 30)  # about 150 tokens
    code, out, err = _cli("score", img, "--clip", tmp_path / "clip", "--prompt", long, "--prompt", long,
                          "--prompt", "a face")
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1, err
    assert "tokens long; CLIP reads the first 77" in notes[0]
    assert "Traceback" not in err and "Token indices" not in err


def test_prompts_and_attributes_parsed():
    assert parse_prompts(["a smile", "red hair::2", "x::y::0.5"]) == (("a smile", 1.0), ("red hair", 2.0),
                                                                      ("x::y", 0.5))
    assert parse_prompts("a smile|red hair::2") == (("a smile", 1.0), ("red hair", 2.0))  # a manifest cell
    assert parse_prompts(None) == parse_prompts("") == ()
    # the same target twice is kept once; different targets are an error (test_bad_input)
    assert parse_attributes(["Smiling=1", " Smiling = 1.0 ", "Eyeglasses=0"]) == {"Smiling": 1.0, "Eyeglasses": 0.0}
    assert parse_attributes(["Smiling=0.25"]) == {"Smiling": 0.25}


# ---------------------------------------------------------------------------------------------
# The options: one validation layer.

def test_every_preset_and_the_defaults_are_valid():
    for name in ("default", "nvidia", "fast", "demo"):
        assert isinstance(load_config(name), InpaintConfig)


def test_config_values_are_typed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 40.0\nlr: 1\nmse: 0\nlpips: 1\nw_noise: 1e-3\n")  # 1e-3: a string to plain YAML 1.1
    cfg = load_config(str(f), feather=3)
    assert cfg.steps == 40 and type(cfg.steps) is int
    assert cfg.lr == 1.0 and type(cfg.lr) is float and type(cfg.feather) is float and cfg.w_noise == 1e-3
    # a file's value may be overridden into validity: --mse 0 --lpips 0 is about the result
    f.write_text("mse: 0\nlpips: 0\n")
    assert load_config(str(f), mse=1.0).mse == 1.0
    with pytest.raises(InputError, match="--mse and --lpips are both 0"):
        load_config(str(f))


@pytest.mark.parametrize("name,bad", [
    ("lr", -1), ("lr", 0), ("lr_decay", 1.01), ("lr_rampup", 0), ("init_trunc", -0.5), ("feather", float("nan")),
    ("steps", 2.5), ("steps", True), ("chunk", "25"), ("lpips_resize", 15), ("batch", -1), ("space", "z"),
    ("realism", float("inf")), ("attr_epsilon", -1e-9)])
def test_bad_values_are_refused_wherever_they_come_from(name, bad):
    flag = "--" + name.replace("_", "-")
    with pytest.raises(InputError, match=flag):
        InpaintConfig(**{name: bad})
    with pytest.raises(InputError, match=flag):
        InpaintConfig().replace(**{name: bad})
    with pytest.raises(InputError, match=f"cfg.yaml: {name}"):
        check_option(name, bad, f"cfg.yaml: {name}")


def test_seeds():
    assert parse_seeds("0-3, 7,9 - 10") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_seeds("4294967295") == [2**32 - 1]
    assert check_seeds(np.array([3, 1], np.int64)) == [3, 1]
    for bad in ([2**32], [-1], [1, 1], [], [1.5], [True]):
        with pytest.raises(InputError):
            check_seeds(bad)


# ---------------------------------------------------------------------------------------------
# Latents files: rendered exactly; NaN images never written.

def test_generate_renders_a_latents_file(tmp_path):
    from jax_inpaint.models.stylegan2 import load_generator

    G = load_generator("demo-faces")
    ws = np.asarray(G.mapping(np.random.RandomState(0).randn(2, G.z_dim).astype(np.float32), None, 0.7))
    noise = {k: np.asarray(v) for k, v in G.random_noise(jax.random.key(0), 2).items()}
    np.savez(tmp_path / "lat.npz", ws=ws, seeds=np.array([3, 5]), **{f"noise/{k}": v for k, v in noise.items()})
    code, out, err = _cli("generate", "-g", "demo-faces", "--latents", tmp_path / "lat.npz", "--out", tmp_path / "o")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["grid.png", "seed0003.png", "seed0005.png"]
    from jax_inpaint.images import to_uint8
    expect = to_uint8(np.asarray(G.synthesis(ws, noise=noise)))
    np.testing.assert_array_equal(read_rgb(tmp_path / "o" / "seed0005.png"), expect[1])


def test_nan_images_are_an_error_not_black_files():
    from jax_inpaint.generate import _finite_u8

    img = np.zeros((2, 4, 4, 3), np.float32)
    img[1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="seed 7: the generator produced NaN"):
        _finite_u8(img, [6, 7], "seed", "test")
