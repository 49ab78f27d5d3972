"""Real photos: FFHQ alignment (jax_inpaint.align.ffhq), mediapipe's landmarks (align.landmarks), and
inpainting a photo through its aligned face and back (align.photo, `align`, `inpaint --align`,
`inpaint-batch --align`).

The photos are real ones that ship inside installed packages: scikit-image's astronaut (Eileen Collins)
and cameraman, matplotlib's Grace Hopper, and photos without a face (scikit-image's coffee and cat);
plus versions of them rotated, mirrored, and pasted small into a large canvas.

FFHQ's eye positions, from the recipe itself (ffhq.canonical_positions): for a face whose eye-to-mouth
distance equals its eye-to-eye distance, at fractions (0.375, 0.475) and (0.625, 0.475) of the aligned
image (at 1024: (384, 486) and (640, 486)); for any face, ffhq.recipe_positions(points) gives the exact
places the recipe assigns to that face's eyes. After aligning, the eyes mediapipe finds again in the
aligned image must lie within 2 % of its width of both.

The mediapipe tests run wherever the extra `align` is installed, and always in CI (CI=true: a missing
extra fails them instead of skipping them).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw
from scipy.ndimage import distance_transform_edt

from jax_inpaint.align import ffhq
from jax_inpaint.cli import main
from jax_inpaint.errors import InputError

try:
    from jax_inpaint.align import landmarks

    landmarks.require()
    HAVE_MEDIAPIPE = True
except InputError:
    HAVE_MEDIAPIPE = False
needs_mediapipe = pytest.mark.skipif(not HAVE_MEDIAPIPE and not os.environ.get("CI"),
                                     reason='the extra is not installed: pip install "jax-inpaint[align]"')

TOLERANCE = 0.02  # of the aligned image's width
DEMO = ["--generator", "demo-faces", "--config", "demo", "--steps", "2", "--seeds", "0-1", "--quiet"]


# ---------------------------------------------------------------------------------------------
# The recipe and the transform (no landmark model needed).

def test_recipe_puts_the_eyes_where_ffhq_does():
    c = ffhq.canonical_positions(1.0)  # eye-to-mouth = eye-to-eye: the frame is 2x the eye distance wide
    np.testing.assert_allclose(c["eye_left"], [0.375, 0.475])
    np.testing.assert_allclose(c["eye_right"], [0.625, 0.475])
    np.testing.assert_allclose(c["mouth"], [0.5, 0.725])
    long = ffhq.canonical_positions(1.5)  # 1.8 * 1.5 > 2: the eye-to-mouth distance sets the scale
    s = 1.8 * 1.5
    np.testing.assert_allclose(long["eye_left"], [0.5 - 1 / (4 * s), 0.5 - 0.05 * 1.5 / s])
    np.testing.assert_allclose(long["mouth"], [0.5, 0.75])
    # Where and how the face lies in the photo changes nothing; the matrix takes the recipe's aligned
    # positions back onto the photo's points.
    points = np.array([[0.0, 0.0], [60.0, 4.0], [8.0, 70.0], [50.0, 72.0]])
    base = ffhq.recipe_positions(points)
    for angle, scale, shift in ((0.5, 1.0, (10, 20)), (-2.0, 3.3, (500, -40)), (math.pi, 0.4, (0, 0))):
        rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        moved = points @ rot.T + shift
        got = ffhq.recipe_positions(moved)
        for k in base:
            np.testing.assert_allclose(got[k], base[k], atol=1e-9)
        for size in (32, 1024):
            m = ffhq.quad_matrix(ffhq.ffhq_quad(moved), size)
            pos = ffhq.recipe_positions(moved, size)
            np.testing.assert_allclose(ffhq.apply(m, pos["eye_left"]), moved[0], atol=1e-6)
            np.testing.assert_allclose(ffhq.apply(m, pos["eye_right"]), moved[1], atol=1e-6)
            np.testing.assert_allclose(ffhq.apply(m, pos["mouth"]), (moved[2] + moved[3]) / 2, atol=1e-6)


def smooth_photo(h=400, w=500) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    channels = [128 + 100 * np.sin(xx / 13.0), 128 + 100 * np.cos(yy / 17.0), 128 + 100 * np.sin((xx + yy) / 23.0)]
    return np.stack(channels, -1).astype(np.uint8)


POINTS = np.array([[220.0, 170.0], [280.0, 162.0], [232.0, 232.0], [276.0, 226.0]])  # a tilted face


def test_aligned_image_is_the_photo_read_through_the_matrix():
    photo = smooth_photo()
    rows, cols = np.mgrid[:96, :96]
    # the quad transform alone: PIL's bilinear resampling, exactly what the matrix says (to uint8 rounding)
    al, m = ffhq.align_image(photo, POINTS, 96, supersample=1, padding=False)
    ref = ffhq.sample(photo.astype(np.float32), m, rows, cols)
    assert np.isfinite(ref).all()
    assert np.abs(al - ref).max() <= 1.0
    # the whole recipe (shrunk, supersampled, reduced): the same picture
    for size in (64, 256):
        al, m = ffhq.align_image(photo, POINTS, size)
        rows, cols = np.mgrid[:size, :size]
        ref = ffhq.sample(photo.astype(np.float32), m, rows, cols)
        assert np.abs(al - ref).mean() < 1.5, size


def test_padding_where_the_crop_leaves_the_photo():
    photo = smooth_photo()
    corner = POINTS - POINTS.min(0) + [2, 2]  # the face at the photo's top-left corner: the quad leaves the photo
    al, m = ffhq.align_image(photo, corner, 128)
    rows, cols = np.mgrid[:128, :128]
    xy = ffhq.apply(m, np.stack([cols, rows], -1))
    outside = (xy[..., 0] < -8) | (xy[..., 1] < -8)
    inside = (xy[..., 0] > 8) & (xy[..., 1] > 8) & (xy[..., 0] < 490) & (xy[..., 1] < 390)
    assert outside.mean() > 0.1 and inside.mean() > 0.2
    ref = ffhq.sample(photo.astype(np.float32), m, rows, cols)
    assert np.abs(al[inside] - ref[inside]).mean() < 2.0  # the photo, where it is
    assert al[outside].std() > 1.0  # padded with (blurred) reflected content, not a flat fill
    blank, _ = ffhq.align_image(photo, corner, 128, padding=False)
    assert (blank[outside] == 0).mean() > 0.9  # PIL's black, when padding is off


def test_hole_in_the_aligned_frame_covers_every_hole_pixel():
    photo_hole = np.zeros((400, 500), bool)
    rng = np.random.default_rng(0)
    for _ in range(12):
        y, x = rng.integers(160, 240), rng.integers(210, 290)
        photo_hole[y:y + rng.integers(1, 9), x:x + rng.integers(1, 9)] = True
    for size in (32, 256):  # aligned coarser than the photo, and finer
        m = ffhq.quad_matrix(ffhq.ffhq_quad(POINTS), size)
        hole = ffhq.hole_to_aligned(photo_hole, m, size)
        ys, xs = np.nonzero(photo_hole)
        uv = np.rint(ffhq.apply(np.linalg.inv(m), np.stack([xs, ys], -1))).astype(int)
        assert hole[uv[:, 1], uv[:, 0]].all(), size
        assert 0 < hole.mean() < 0.5


def test_alignment_json_round_trip(tmp_path):
    m = ffhq.quad_matrix(ffhq.ffhq_quad(POINTS), 64)
    al = ffhq.Alignment(64, m, POINTS, (500, 400), face=1, faces=2, box=(1.0, 2.0, 3.0, 4.0))
    path = tmp_path / "a.json"
    path.write_text(json.dumps(al.to_json()))
    back = ffhq.read_alignment(path)
    np.testing.assert_allclose(back.matrix, m)
    np.testing.assert_allclose(back.points, POINTS)
    assert (back.size, back.photo_size, back.face, back.faces, back.box) == (64, (500, 400), 1, 2, (1.0, 2.0, 3.0, 4.0))
    np.testing.assert_allclose(np.asarray(al.to_json()["photo_to_aligned"]) @ m, np.eye(3), atol=1e-9)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="not an alignment file"):
        ffhq.read_alignment(path)


def fake_face(points) -> "landmarks.Face":
    """A Face whose recipe points are `points` (no landmark model needed)."""
    lm = np.zeros((478, 2))
    lm[list(landmarks.EYE_LEFT)], lm[list(landmarks.EYE_RIGHT)] = points[0], points[1]
    lm[landmarks.MOUTH_LEFT], lm[landmarks.MOUTH_RIGHT] = points[2], points[3]
    lm[:] = np.where(np.all(lm == 0, axis=1, keepdims=True), points.mean(0), lm)
    return landmarks.Face(lm, 1.0)


def fake_run(inputs, seeds):
    """An InpaintResult of the aligned frame as a search would give it (random generator outputs)."""
    from jax_inpaint.inversion.config import InpaintConfig
    from jax_inpaint.inversion.inpainter import InpaintResult

    k, size = len(seeds), inputs.target.shape[0]
    raw = np.random.default_rng(len(seeds)).uniform(-1, 1, (k, size, size, 3)).astype(np.float32)
    return InpaintResult(seeds=list(seeds), dropped=[], target=inputs.target, hole=inputs.hole, completions=raw,
                         raw=raw, ws=np.zeros((k, 4, 8), np.float32), noise=None,
                         history={"loss": np.ones((3, k), np.float32)},
                         metrics={"seeds": [{"seed": s} for s in seeds]}, config=InpaintConfig(), notices=[])


def test_paste_back_and_its_files(tmp_path):
    from jax_inpaint.align import photo as P

    photo = smooth_photo()
    hole = np.zeros(photo.shape[:2], bool)
    hole[195:215, 235:270] = True
    inputs = P.prepare_photo(photo, hole, 16, feather=2.0, faces=[fake_face(POINTS)])
    assert inputs.seam == pytest.approx(2.0 * ffhq.pixel_scale(inputs.alignment.matrix))
    assert inputs.hole.any() and not inputs.hole.all()
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = P.finish_photo(fake_run(inputs, [0, 1]), inputs)
    far = distance_transform_edt(~hole) > inputs.seam + 1
    for i in range(2):
        full = res.photo(i)
        np.testing.assert_array_equal(full[far], photo[far])  # bit for bit beyond the seam
        assert np.any(full[hole] != photo[hole], -1).all()
    written = P.save_photo_result(res, out)
    assert written["grid"] == str(out / "photo_grid.png")
    assert {"photo_0.png", "photo_1.png", "completion_1.png", "raw_1.png", "alignment.json"} <= set(os.listdir(out))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "photo_1.png")), res.photo(1))
    # a rerun with fewer seeds leaves exactly its own files (and what jax-inpaint did not write)
    P.save_photo_result(P.finish_photo(fake_run(inputs, [0]), inputs), out)
    names = set(os.listdir(out))
    assert "photo_1.png" not in names and "completion_1.png" not in names and "raw_1.png" not in names
    assert "notes.txt" in names
    assert sorted(json.loads((out / "alignment.json").read_text())["files"]) == sorted(names - {"notes.txt"})


# ---------------------------------------------------------------------------------------------
# Real photos.

def _hopper() -> np.ndarray:
    import matplotlib.cbook as cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    astronaut, hopper = data.astronaut(), _hopper()
    canvas = np.full((1200, 1800, 3), 70, np.uint8)  # two faces: one large, one small and far off
    canvas[60:660, 100:612] = hopper
    canvas[800:1056, 1400:1656] = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.LANCZOS))
    return {
        "astronaut": astronaut,
        "hopper": hopper,
        "cameraman": np.repeat(data.camera()[..., None], 3, -1),  # grey, a three-quarter view
        "astronaut-rotated": np.asarray(Image.fromarray(astronaut).rotate(30, Image.Resampling.BICUBIC)),
        "hopper-mirrored": hopper[:, ::-1].copy(),
        "two-faces": canvas,
    }


@pytest.fixture(scope="module")
def faces(photos):
    return {name: landmarks.detect_faces(p) for name, p in photos.items()}


@needs_mediapipe
def test_landmarks_are_found_on_real_photos(photos, faces):
    for name in ("astronaut", "hopper", "cameraman", "astronaut-rotated", "hopper-mirrored"):
        assert len(faces[name]) == 1, name
        f = faces[name][0]
        h, w = photos[name].shape[:2]
        assert f.landmarks.shape == (478, 2)
        assert np.all((f.landmarks > -0.5) & (f.landmarks < [w, h])), name
        p = f.points
        eye_line = p[1] - p[0]
        down = np.array([-eye_line[1], eye_line[0]])  # the image-down side of the eye line
        assert np.hypot(*eye_line) > 10, name
        assert ((p[2] + p[3]) / 2 - (p[0] + p[1]) / 2) @ down > 0, name  # the mouth below the eyes
        assert (p[3] - p[2]) @ eye_line > 0, name  # left and right as the image's
    # upright photos: the image-left eye is on the left
    assert faces["astronaut"][0].points[0][0] < faces["astronaut"][0].points[1][0]
    x0, y0, x1, y1 = faces["astronaut"][0].box
    assert 170 < x0 < x1 < 290 and 50 < y0 < y1 < 200  # Eileen Collins' face, not her helmet


@needs_mediapipe
def test_faces_are_ordered_by_size_and_picked_with_face(faces):
    two = faces["two-faces"]
    assert len(two) == 2  # the small one (180 pixels in 1800) too: the detector also looks at windows
    assert two[0].size > 1.5 * two[1].size
    assert two[0].box[0] < 612 and two[1].box[0] > 1400  # Grace Hopper first, the astronaut second
    assert landmarks.pick_face(two, None) is two[0] and landmarks.pick_face(two, 1) is two[1]
    with pytest.raises(InputError, match=r"--face 2: .* has 2 faces \(--face 0 to 1"):
        landmarks.pick_face(two, 2, "x.png")
    with pytest.raises(InputError, match="no face found"):
        landmarks.pick_face([], None, "x.png")


@needs_mediapipe
@pytest.mark.parametrize("name", ["astronaut", "hopper", "astronaut-rotated", "hopper-mirrored", "two-faces"])
def test_eyes_land_where_ffhq_puts_them(photos, faces, name):
    size = 256
    for face in faces[name]:
        aligned, m = ffhq.align_image(photos[name], face.points, size)
        want = ffhq.recipe_positions(face.points)  # this face's places, as fractions of the side
        canonical = ffhq.canonical_positions(1.0)
        again = landmarks.detect_faces(aligned)
        assert len(again) == 1, name
        got = (again[0].points[:2] + 0.5) / size  # pixel centres -> fractions of the side
        for i, eye in enumerate(("eye_left", "eye_right")):
            assert np.hypot(*(got[i] - want[eye])) < TOLERANCE, (name, eye, got[i], want[eye])
            assert np.hypot(*(got[i] - canonical[eye])) < TOLERANCE, (name, eye, got[i], canonical[eye])


def _face_region(photo, face) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The face (inside mediapipe's face outline) as a bool mask over its box."""
    img = Image.new("L", (photo.shape[1], photo.shape[0]), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in face.landmarks[list(landmarks.FACE_OVAL)]], fill=255)
    region = np.asarray(img) > 0
    ys, xs = np.nonzero(region)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return region[box[1]:box[3], box[0]:box[2]], box


@needs_mediapipe
@pytest.mark.parametrize("name,size", [("astronaut", 256), ("astronaut", 1024), ("hopper", 512),
                                       ("astronaut-rotated", 512)])
def test_align_then_unalign_gives_the_face_back(photos, faces, name, size):
    photo, face = photos[name], faces[name][0]
    aligned, m = ffhq.align_image(photo, face.points, size)
    region, box = _face_region(photo, face)
    back = ffhq.unalign(aligned.astype(np.float32), m, box)
    assert np.isfinite(back[region]).all()
    ref = photo[box[1]:box[3], box[0]:box[2]].astype(np.float32)
    psnr = 10 * np.log10(255.0 ** 2 / np.mean((back[region] - ref[region]) ** 2))
    assert psnr >= 30.0, (name, size, psnr)


# ---------------------------------------------------------------------------------------------
# The commands.

def invoke(args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def one_line_error(result, expect):
    code, stdout, stderr = result
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("note:")]
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expect in lines[0], stderr
    assert "Traceback" not in stdout + stderr


@pytest.fixture(scope="module")
def files_of(photos, faces, tmp_path_factory):
    """Photo files (PNG) and masks drawn on them over the mouth."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    out = {}
    for name in ("astronaut", "hopper"):
        Image.fromarray(photos[name]).save(root / f"{name}.png")
        p = faces[name][0].points
        c, half = (p[2] + p[3]) / 2, 0.7 * np.hypot(*(p[3] - p[2]))
        mask = Image.new("L", (photos[name].shape[1], photos[name].shape[0]), 0)
        ImageDraw.Draw(mask).ellipse([c[0] - half, c[1] - half / 2, c[0] + half, c[1] + half / 2], fill=255)
        mask.save(root / f"{name}_mask.png")
        out[name] = (root / f"{name}.png", root / f"{name}_mask.png")
    Image.fromarray(photos["two-faces"]).save(root / "two-faces.png")
    out["two-faces"] = root / "two-faces.png"
    Image.fromarray(data.coffee()).save(root / "coffee.png")
    Image.fromarray(data.chelsea()).save(root / "cat.png")
    out["coffee"], out["cat"] = root / "coffee.png", root / "cat.png"
    return out


@needs_mediapipe
def test_align_command_writes_the_face_and_its_transform(files_of, photos, faces, tmp_path):
    photo_path, _ = files_of["hopper"]
    code, stdout, stderr = invoke(["align", photo_path, "--size", 256, "--out", tmp_path / "a" / "aligned.png"])
    assert code == 0, stderr
    assert "the only face" in stdout and "aligned.json" in stdout
    assert sorted(os.listdir(tmp_path / "a")) == ["aligned.json", "aligned.png"]
    aligned = np.asarray(Image.open(tmp_path / "a" / "aligned.png"))
    face = faces["hopper"][0]
    expected, m = ffhq.align_image(photos["hopper"], face.points, 256)
    np.testing.assert_array_equal(aligned, expected)
    info = json.loads((tmp_path / "a" / "aligned.json").read_text())
    assert info["size"] == 256 and info["photo_size"] == [512, 600] and info["face"] == 0 and info["faces"] == 1
    np.testing.assert_allclose(info["aligned_to_photo"], m)
    np.testing.assert_allclose(np.asarray(info["photo_to_aligned"]) @ m, np.eye(3), atol=1e-9)
    eye = ffhq.apply(np.asarray(info["aligned_to_photo"]), info["aligned_landmarks"]["eye_left"])
    np.testing.assert_allclose(eye, info["landmarks"]["eye_left"], atol=1e-6)
    al = ffhq.read_alignment(tmp_path / "a" / "aligned.json")
    np.testing.assert_allclose(al.matrix, m)


@needs_mediapipe
def test_align_command_picks_a_face(files_of, faces, tmp_path):
    for face in (0, 1):
        code, stdout, stderr = invoke(["align", files_of["two-faces"], "--size", 64, "--face", face,
                                       "--out", tmp_path / f"{face}.png"])
        assert code == 0, stderr
        assert stdout.startswith(f"face {face} of 2")
        info = json.loads((tmp_path / f"{face}.json").read_text())
        assert (info["face"], info["faces"]) == (face, 2)
        np.testing.assert_allclose(info["landmarks"]["eye_left"], faces["two-faces"][face].points[0])
    one_line_error(invoke(["align", files_of["two-faces"], "--face", 2, "--out", tmp_path / "x.png"]),
                   "has 2 faces (--face 0 to 1")


@needs_mediapipe
def test_no_face_is_one_line_exit_2_nothing_written(files_of, tmp_path):
    for photo in (files_of["coffee"], files_of["cat"]):
        one_line_error(invoke(["align", photo, "--out", tmp_path / "a" / "x.png"]), "no face found")
        one_line_error(invoke(["inpaint", photo, "--mask", "center", "--align", *DEMO, "--out", tmp_path / "b"]),
                       "no face found")
    one_line_error(invoke(["align", files_of["astronaut"][0], "--face", 1, "--out", tmp_path / "a" / "x.png"]),
                   "has only one face")
    assert not os.listdir(tmp_path)


def test_missing_extra_is_one_line_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if mediapipe were not installed
    monkeypatch.setattr(landmarks, "_MODELS", {})
    install = 'pip install "jax-inpaint[align]"'
    one_line_error(invoke(["align", "photo.png", "--out", tmp_path / "a" / "x.png"]), install)
    one_line_error(invoke(["inpaint", "photo.png", "--mask", "center", "--align", *DEMO, "--out", tmp_path / "b"]),
                   install)
    assert not os.listdir(tmp_path)


def test_face_needs_align(tmp_path):
    one_line_error(invoke(["inpaint", "photo.png", "--mask", "center", "--face", 1, *DEMO, "--out", tmp_path / "b"]),
                   "--face picks a face to align: it needs --align")


@needs_mediapipe
def test_a_hole_outside_the_face_crop_is_refused(files_of, tmp_path):
    photo_path, _ = files_of["astronaut"]
    mask = np.zeros((512, 512), np.uint8)
    mask[420:500, 20:100] = 255  # on the space suit: the generator never sees it
    Image.fromarray(mask).save(tmp_path / "far.png")
    one_line_error(invoke(["inpaint", photo_path, "--mask", tmp_path / "far.png", "--align", *DEMO,
                           "--out", tmp_path / "out"]), "reaches outside the aligned face crop")
    assert not (tmp_path / "out").exists()


def _check_pasted_back(folder, photo_path, mask_path, seeds=(0, 1)):
    """photo_<seed>.png: the photo's size; every pixel beyond the hole's seam the photo's own, bit for bit;
    the hole filled (changed)."""
    photo = np.asarray(Image.open(photo_path).convert("RGB"))
    hole = np.asarray(Image.open(mask_path)) >= 128
    info = json.loads((folder / "alignment.json").read_text())
    seam = info["seam_photo_pixels"]
    far = distance_transform_edt(~hole) > seam + 1  # the photo's weight is 1 there
    outs = []
    for s in seeds:
        out = np.asarray(Image.open(folder / f"photo_{s}.png"))
        assert out.shape == photo.shape
        np.testing.assert_array_equal(out[far], photo[far])  # bit for bit
        assert np.any(out[hole] != photo[hole], -1).mean() > 0.5  # the hole is filled with something else
        outs.append(out)
    assert not np.array_equal(outs[0][hole], outs[1][hole])  # two seeds, two completions
    return info


@needs_mediapipe
def test_inpaint_align_changes_nothing_outside_the_hole(files_of, tmp_path):
    photo_path, mask_path = files_of["astronaut"]
    out = tmp_path / "out"
    code, stdout, stderr = invoke(["inpaint", photo_path, "--mask", mask_path, "--align", *DEMO, "--out", out])
    assert code == 0, stderr
    assert "photo_grid.png" in stdout and "note: the only face: aligned to 32x32" in stderr
    names = set(os.listdir(out))
    assert {"photo_0.png", "photo_1.png", "photo_grid.png", "aligned.png", "aligned_mask.png", "alignment.json",
            "completion_0.png", "raw_1.png", "grid.png", "latents.npz", "loss.png", "metrics.json"} <= names
    info = _check_pasted_back(out, photo_path, mask_path)
    assert sorted(info["files"]) == sorted(n for n in names)
    assert info["size"] == 32 and info["seeds"] == [0, 1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["align"]["faces"] == 1 and metrics["align"]["photo_size"] == [512, 512]
    assert np.asarray(Image.open(out / "aligned.png")).shape == (32, 32, 3)
    # the aligned hole holds the photo's hole
    m = np.asarray(info["aligned_to_photo"])
    ys, xs = np.nonzero(np.asarray(Image.open(mask_path)) >= 128)
    uv = np.rint(ffhq.apply(np.linalg.inv(m), np.stack([xs, ys], -1))).astype(int)
    assert (np.asarray(Image.open(out / "aligned_mask.png"))[uv[:, 1], uv[:, 0]] == 255).all()


@needs_mediapipe
def test_inpaint_batch_align(files_of, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    photo_path, mask_path = files_of["hopper"]
    os.link(photo_path, images / "hopper.png")
    os.link(mask_path, masks / "hopper.png")
    os.link(files_of["cat"], images / "cat.png")
    cat_mask = np.zeros((300, 451), np.uint8)
    cat_mask[100:150, 200:250] = 255
    Image.fromarray(cat_mask).save(masks / "cat.png")
    out = tmp_path / "out"
    code, stdout, stderr = invoke(["inpaint-batch", "--images", images, "--masks", masks, "--align", *DEMO,
                                   "--out", out])
    assert code == 1, stderr  # the cat has no (human) face: it fails, the others are done
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 1 and [f["item"] for f in summary["failed"]] == ["cat"]
    assert "no face found" in summary["failed"][0]["error"]
    _check_pasted_back(out / "hopper", images / "hopper.png", masks / "hopper.png")
    assert json.loads((out / "batch.json").read_text())["fingerprint"]["align"] == {"face": 0}
    # the same command again: nothing to redo; without --align: other options, refused
    code, stdout, stderr = invoke(["inpaint-batch", "--images", images, "--masks", masks, "--align", *DEMO,
                                   "--out", out])
    assert "1 already done" in stdout, stdout
    one_line_error(invoke(["inpaint-batch", "--images", images, "--masks", masks, *DEMO, "--out", out]),
                   "other options")


def test_alignment_is_imported_only_when_used():
    code = ("import sys\nimport jax_inpaint.align.photo, jax_inpaint.align.ffhq, jax_inpaint.align.landmarks\n"
            "from jax_inpaint.cli import main\n"
            "for args in (['align', '--help'], ['inpaint', '--help'], ['inpaint-batch', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
            "print('loaded:', *(m for m in ('mediapipe', 'cv2', 'jax', 'google.protobuf') if m in sys.modules), "
            "file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Usage: " in p.stdout and "--align" in p.stdout
    assert p.stderr.splitlines()[-1] == "loaded:"


@needs_mediapipe
def test_serve_align_paints_the_hole_on_the_aligned_face(photos):
    """`jax-inpaint serve --align`: an uploaded photo becomes its face aligned at the generator's size (the
    image the page paints on); --face picks another; a photo without a face is a one-line error."""
    from jax_inpaint.align.photo import align_photo
    from jax_inpaint.serve.engine import Engine

    engine = Engine("demo-faces", align=True)
    img, notices = engine.fit_image(photos["two-faces"], "two.png")
    expected, _ = align_photo(photos["two-faces"], 32)
    np.testing.assert_array_equal(img, expected)
    assert img.shape == (32, 32, 3) and engine.info()["align"] is True
    assert len(notices) == 1 and "face 0 of 2" in notices[0] and "1800x1200 photo, aligned to 32x32" in notices[0]
    second, _ = Engine("demo-faces", align=True, face=1).fit_image(photos["two-faces"])
    np.testing.assert_array_equal(second, align_photo(photos["two-faces"], 32, face=1)[0])
    with pytest.raises(InputError, match="cat.png: no face found"):
        engine.fit_image(np.full((200, 200, 3), 128, np.uint8), "cat.png")
    with pytest.raises(InputError, match="needs --align"):
        Engine("demo-faces", face=1)
    one_line_error(invoke(["serve", "--generator", "demo-faces", "--port", "0", "--face", "1"]), "needs --align")
