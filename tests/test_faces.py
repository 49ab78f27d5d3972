"""The procedural face renderer: determinism, labels, local attribute edits, frequencies, oracle."""
import dataclasses

import numpy as np
import pytest

from jax_inpaint.demo import faces
from jax_inpaint.errors import InputError
from jax_inpaint.masks import make_mask


def _spec(i, **overrides):
    return faces.sample_spec(faces.face_rng(7, i), **overrides)


def test_dataset_is_deterministic_and_prefix_stable():
    imgs, labs, caps = faces.render_dataset(6, seed=5, size=32)
    assert imgs.shape == (6, 32, 32, 3) and imgs.dtype == np.uint8
    assert labs.shape == (6, len(faces.ATTRIBUTES)) and labs.dtype == bool
    assert len(caps) == 6 and all(isinstance(c, str) and c.startswith("a ") for c in caps)
    imgs2, labs2, caps2 = faces.render_dataset(6, seed=5, size=32)
    assert imgs.tobytes() == imgs2.tobytes() and (labs == labs2).all() and caps == caps2
    head, head_labs, head_caps = faces.render_dataset(3, seed=5, size=32)
    assert head.tobytes() == imgs[:3].tobytes() and (head_labs == labs[:3]).all() and head_caps == caps[:3]
    other, _, _ = faces.render_dataset(3, seed=6, size=32)
    assert all((other[i] != imgs[i]).any() for i in range(3))
    # The same face at another size: same labels, and the 64-pixel picture box-filtered to 32 is close.
    big, big_labs, _ = faces.render_dataset(3, seed=5, size=64)
    assert (big_labs == labs[:3]).all()
    down = big.reshape(3, 32, 2, 32, 2, 3).astype(np.float32).mean((2, 4))
    assert np.abs(down - imgs[:3]).mean() < 3.0


def test_labels_follow_the_spec_and_caption():
    for i in range(300):
        spec = _spec(i)
        lab = faces.labels(spec)
        assert tuple(lab) == faces.ATTRIBUTES
        hair = [lab[k] for k in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")]
        assert sum(hair) <= 1
        assert not (lab["Bald"] and (any(hair) or lab["Bangs"] or lab["Wearing_Hat"]))
        assert sum(hair) == 1 or lab["Bald"] or spec.hair_colour == "red"
        assert lab["No_Beard"] == (not (lab["Mustache"] or lab["Goatee"] or lab["Sideburns"]))
        assert lab["Pale_Skin"] == (spec.skin_tone < faces.PALE_TONE)
        text = faces.caption(spec)
        assert (" man " in text) == lab["Male"] and (" woman " in text) == (not lab["Male"])
        assert ("smiling" in text) == lab["Smiling"]
        assert ("open mouth" in text) == lab["Mouth_Slightly_Open"]
        assert ("glasses" in text) == lab["Eyeglasses"]
        assert ("lipstick" in text) == lab["Wearing_Lipstick"]
        assert ("bangs" in text) == lab["Bangs"]
        assert ("bald" in text) == lab["Bald"]
        for colour, name in (("black", "Black_Hair"), ("blond", "Blond_Hair"), ("gray", "Gray_Hair")):
            assert (f"{colour} hair" in text) == lab[name]


def test_caption_example():
    spec = _spec(0, Male=False, Smiling=True, Mouth_Slightly_Open=False, Blond_Hair=True, Bangs=True,
                 Wearing_Lipstick=True, Eyeglasses=True, Wearing_Hat=False, Wearing_Necklace=False,
                 Wearing_Necktie=False, Rosy_Cheeks=False, Bushy_Eyebrows=False, Pale_Skin=False,
                 No_Beard=True)
    spec = dataclasses.replace(spec, lipstick="red", hair_style="long")
    assert faces.caption(spec) == "a smiling woman with long blond hair, bangs and red lipstick, wearing glasses"


@pytest.mark.parametrize("name", faces.ATTRIBUTES)
def test_every_attribute_can_be_forced_either_way(name):
    for value in (True, False):
        for i in range(12):
            assert faces.labels(_spec(i, **{name: value}))[name] == value


def test_forcing_rejects_unknown_names_and_impossible_combinations():
    with pytest.raises(InputError, match="unknown face attribute"):
        _spec(0, Smiles=True)
    with pytest.raises(InputError, match="cannot hold together"):
        _spec(0, Bald=True, Bangs=True)
    with pytest.raises(InputError, match="one hair colour"):
        _spec(0, Black_Hair=True, Blond_Hair=True)
    with pytest.raises(InputError, match="cannot hold together"):
        _spec(0, No_Beard=True, Mustache=True)


def _changed(a, b):
    """bool [H, W]: pixels that differ between two renders."""
    return (a != b).any(-1)


@pytest.mark.parametrize("name,region", [("Smiling", "mouth"), ("Mouth_Slightly_Open", "mouth"),
                                         ("Eyeglasses", "eyes")])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_forcing_an_attribute_changes_only_its_region(name, region, size):
    x0, y0, x1, y1 = faces.region_box(region, size)
    near = np.zeros((size, size), bool)         # the box grown by one pixel (anti-aliasing spills over)
    near[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = True
    diffs = []
    for i in range(16 if size < 128 else 4):
        on, off = _spec(i, **{name: True}), _spec(i, **{name: False})
        changed = {f.name for f in dataclasses.fields(on) if getattr(on, f.name) != getattr(off, f.name)}
        assert len(changed) == 1, changed       # the same face, one attribute apart
        a, b = faces.render(on, size), faces.render(off, size)
        assert not _changed(a, b)[~near].any()
        box = (slice(y0, y1), slice(x0, x1))
        diffs.append(np.abs(a[box].astype(np.float32) - b[box]))
    # Clearly visible on every face, also at 32 pixels (levels of 255): some pixels change a lot and
    # the box as a whole noticeably.
    assert min(d.max() for d in diffs) > 20.0
    assert min(d.mean() for d in diffs) > 4.0


def test_region_boxes_match_the_face_masks():
    for region in ("eyes", "nose", "mouth"):
        for size in (32, 64, 100):
            mask = make_mask(region, 0.03, seed=0, size=size)
            rows, cols = np.nonzero(mask)
            box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            assert faces.region_box(region, size) == box
    assert faces.mouth_box(64) == faces.region_box("mouth", 64)
    assert faces.eyes_box(64) == faces.region_box("eyes", 64)
    assert faces.nose_box(64) == faces.region_box("nose", 64)
    with pytest.raises(InputError, match="unknown face region"):
        faces.region_box("ears", 64)


def test_attribute_frequencies():
    labs = np.array([list(faces.labels(faces.sample_spec(faces.face_rng(11, i))).values()) for i in range(2000)])
    freq = dict(zip(faces.ATTRIBUTES, labs.mean(0)))
    for name, f in freq.items():
        assert 0.04 <= f <= 0.96, (name, f)
    assert 0.35 <= freq["Male"] <= 0.55 and 0.4 <= freq["Smiling"] <= 0.6
    assert 0.6 <= freq["No_Beard"] <= 0.9
    # Beards only on men, lipstick only on women (unless forced).
    male = labs[:, faces.ATTRIBUTES.index("Male")]
    assert not labs[~male, faces.ATTRIBUTES.index("Mustache")].any()
    assert not labs[male, faces.ATTRIBUTES.index("Wearing_Lipstick")].any()


def test_many_renders_are_valid_and_distinct():
    """200 random faces (what a training batch stream draws): each a valid picture, each different,
    each the same when drawn again. (No wall-clock limit: that depends on the machine and its load.)"""
    specs = [faces.sample_spec(faces.face_rng(2, i)) for i in range(200)]
    imgs = np.stack([faces.render(spec, 64) for spec in specs])
    assert imgs.shape == (200, 64, 64, 3) and imgs.dtype == np.uint8
    assert all(im.std() > 10 for im in imgs)  # not blank
    assert len({im.tobytes() for im in imgs}) == 200
    for i in (0, 99, 199):
        assert faces.render(specs[i], 64).tobytes() == imgs[i].tobytes()


def test_render_rejects_tiny_sizes():
    with pytest.raises(InputError, match="16 pixels"):
        faces.render(_spec(0), 8)


@pytest.mark.parametrize("size", [32, 64])
def test_plausibility_of_renders_and_of_non_faces(size):
    imgs, _, _ = faces.render_dataset(150, seed=9, size=size)
    verdicts = [faces.plausibility(im) for im in imgs]
    assert np.mean([v["plausible"] for v in verdicts]) >= 0.95
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    flat = np.full((size, size, 3), 150, np.uint8)
    shuffled = imgs[0].reshape(-1, 3)[rng.permutation(size * size)].reshape(size, size, 3)
    for name, img in (("noise", noise), ("flat", flat), ("shuffled", shuffled)):
        assert not faces.plausibility(img)["plausible"], name
    # A face whose eyes are painted over with skin, or with no face at all, is not plausible either.
    for im, v in zip(imgs[:10], verdicts[:10]):
        x0, y0, x1, y1 = faces.eyes_box(size)
        no_eyes = im.copy()
        no_eyes[y0:y1, x0:x1] = np.round(v["skin_rgb"]).astype(np.uint8)
        verdict = faces.plausibility(no_eyes)
        assert not verdict["eyes"] and not verdict["plausible"]
        no_face = np.broadcast_to(im[:2].reshape(-1, 3).mean(0).astype(np.uint8), im.shape)
        assert not faces.plausibility(no_face)["plausible"]


def test_plausibility_rejects_bad_shapes():
    with pytest.raises(InputError, match="RGB image"):
        faces.plausibility(np.zeros((64, 64), np.uint8))
