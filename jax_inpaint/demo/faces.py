"""Procedural FFHQ-aligned faces with CelebA-named attribute labels and captions, and a plausibility oracle.

The faces are the training data of the small StyleGAN2 and attribute classifier that ship with jax-inpaint
(`jax-inpaint demo`), and the oracle that tests measure inpainting against: the renderer knows the truth.
They are simple on purpose (flat colours, clean shapes, rendered at 4x and box-filtered), so that a StyleGAN2
of about a million parameters can learn them at 32 or 64 pixels.

Geometry. Faces are frontal and aligned like FFHQ, so the face-region boxes of `jax_inpaint.masks`
(`FACE_REGIONS`, fractions of the frame, x to the right and y down) cover the same features here as on
real aligned faces. Frame fractions of the average face (each face moves by at most 0.005 in x and y, and
its eye gap varies by +-0.008):

    eye centres      (0.378, 0.469) and (0.622, 0.469); eyes 0.09 wide
    eyebrows         centre line at y = 0.417
    nose tip         (0.5, 0.613), nostrils at y = 0.617
    mouth centre     (0.5, 0.725); corners at x = 0.5 +- 0.092 (neutral) to 0.5 +- 0.122 (smiling)
    chin             y = 0.84-0.89
    face half-width  0.25-0.29 at the cheekbones; the skull top at y = 0.07, hair up to y = 0.025

and the boxes (x0, y0)-(x1, y1) of `FACE_REGIONS` (`region_box`, `eyes_box`, `nose_box`, `mouth_box` give
them in pixels, rounded as the masks are):

    eyes   (0.29, 0.41)-(0.71, 0.53)     eyes, the lower edge of the brows, glasses
    nose   (0.43, 0.50)-(0.57, 0.68)     bridge shadow, tip and nostrils
    mouth  (0.36, 0.675)-(0.64, 0.775)   lips, teeth and opening, whatever the expression

Everything that `Smiling` or `Mouth_Slightly_Open` changes lies inside the mouth box and everything that
`Eyeglasses` changes inside the eyes box (tests check both), so a completion of that box can switch them.

Attributes (`ATTRIBUTES`, CelebA names in CelebA order; the other CelebA attributes are not rendered),
with their frequencies in 5000 samples:

    Bald                 6 %  no hair at all (men only unless forced); no hair-colour label is set then
    Bangs               30 %  a fringe down to y ~ 0.36 (straight or side-swept, with a ragged edge)
    Black_Hair          32 %  the hair colour: at most one of the four; red hair (4 %) sets none of them
    Blond_Hair          13 %
    Brown_Hair          35 %
    Gray_Hair           11 %
    Bushy_Eyebrows      17 %  brows about twice the usual thickness
    Eyeglasses          20 %  round or rectangular frames (black, brown, metal or red), lightly tinted lenses
    Goatee              16 %  the beard is one of: none, moustache, goatee, both, or a full beard (which sets
    Mustache            17 %  Goatee, Mustache and Sideburns); men only unless forced
    Sideburns            7 %
    No_Beard            79 %
    Male                45 %  squarer jaw, thicker brows, mostly short hair, beards; women: long hair mostly,
                              lipstick often, a heavier lash line
    Mouth_Slightly_Open 43 %  a dark opening with the upper teeth showing
    Pale_Skin           16 %  the palest 15 % of the skin-tone range (pale pink-beige to dark brown)
    Rosy_Cheeks         14 %  pink blush on both cheeks
    Smiling             49 %  a wider mouth curved upwards: a crescent with a dark line, or open, a "D" with
                              the upper teeth showing
    Wearing_Hat          8 %  a beanie with a turned-up band
    Wearing_Lipstick    30 %  red, pink, berry or coral lips instead of the skin-tinted natural colour; women
    Wearing_Necklace    17 %  a gold or silver chain with a pendant at the base of the neck
    Wearing_Necktie     11 %  a white collar and a tie under the chin

Determinism: `sample_spec` draws a fixed number of uniforms from the generator and derives every choice
from them, so overriding one attribute leaves everything else about the face as it was; image i of
`render_dataset(n, seed=s)` is rendered from `np.random.default_rng([s, i])` alone.
"""
from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from jax_inpaint.errors import InputError
from jax_inpaint.masks import FACE_REGIONS

RGB = tuple[int, int, int]

ATTRIBUTES: tuple[str, ...] = (
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses", "Goatee",
    "Gray_Hair", "Male", "Mouth_Slightly_Open", "Mustache", "No_Beard", "Pale_Skin", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie",
)

HAIR_STYLES: tuple[str, ...] = ("short", "long", "bald")
HAIR_COLOURS: tuple[str, ...] = ("black", "brown", "blond", "gray", "red")
BEARDS: tuple[str, ...] = ("none", "mustache", "goatee", "both", "full")
IRISES: tuple[str, ...] = ("dark brown", "brown", "hazel", "green", "blue", "gray")
LIPSTICKS: dict[str, RGB] = {"red": (185, 25, 45), "pink": (222, 95, 140), "berry": (125, 25, 65),
                             "coral": (232, 100, 80)}

# Frame fractions of the average face (see the module docstring).
EYE_Y = 0.469
EYE_GAP = 0.244
NOSE_TIP_Y = 0.613
MOUTH_Y = 0.725
SKULL_TOP = 0.07
PALE_TONE = 0.15   # skin tones below this are Pale_Skin

_SKIN_STOPS = np.array([[250, 228, 214], [242, 205, 182], [228, 178, 145], [198, 142, 104],
                        [152, 102, 68], [96, 63, 43]], np.float64)
_HAIR_RGB: dict[str, tuple[RGB, RGB]] = {   # darkest and lightest shade of each colour
    "black": ((22, 19, 19), (48, 40, 38)), "brown": ((78, 48, 28), (138, 92, 56)),
    "blond": ((196, 158, 92), (236, 210, 145)), "gray": ((138, 138, 136), (212, 212, 208)),
    "red": ((140, 58, 28), (186, 88, 44)),
}
_IRIS_RGB: dict[str, RGB] = {"dark brown": (52, 32, 22), "brown": (98, 60, 32), "hazel": (122, 98, 48),
                             "green": (78, 118, 72), "blue": (70, 112, 168), "gray": (112, 124, 134)}
_GLASSES_RGB: tuple[RGB, ...] = ((20, 20, 22), (70, 42, 28), (168, 150, 108), (150, 30, 40))
_SUPERSAMPLE = 4

# Names of the uniforms drawn for one face, in drawing order; colours take three each (hue, saturation, value).
_UNIFORMS = ("male", "tone", "width", "chin", "jaw", "dx", "dy", "gap", "style", "style2", "colour", "colour2",
             "shade", "bangs", "tilt", "locks", "hairline", "length", "hat", "brows", "iris", "smile", "open", "lip",
             "lipc", "beard", "beard2", "glasses", "gshape", "gcol", "rosy", "necklace", "gold", "tie", "grad",
             "grad_dir", "grad_amount")
_UNIFORMS += tuple(f"{c}{k}" for c in ("hatc", "tiec", "shirt", "bg0", "bg1", "bg2") for k in "hsv")


@dataclass(frozen=True)
class FaceSpec:
    """Every random choice behind one face. Lengths are fractions of the frame; colours are RGB.
    `sample_spec` draws one; `dataclasses.replace` edits one (labels and captions follow the fields)."""
    male: bool
    skin_tone: float          # 0 (palest) .. 1 (darkest); Pale_Skin below PALE_TONE
    face_width: float         # half-width of the face at the cheekbones
    chin_drop: float          # chin height below the face centre (the centre is 0.02 below the eye line)
    jaw: float                # 0 round .. 1 square jaw
    dx: float                 # offset of the whole face, right
    dy: float                 # offset of the whole face, down
    eye_gap: float            # distance between the eye centres
    hair_style: str           # one of HAIR_STYLES
    hair_colour: str          # one of HAIR_COLOURS (also the brows' and beard's colour when bald)
    hair_shade: float         # 0 darkest .. 1 lightest shade of that colour
    hairline: float           # 0 .. 1: height of the forehead hairline (no bangs)
    hair_length: float        # 0 .. 1: how far long hair falls
    bangs: bool
    bangs_tilt: float         # -1 .. 1: side-swept fringe
    side_locks: bool          # long hair falls over the sides of the face
    hat: bool
    hat_colour: RGB
    bushy_brows: bool
    iris: str                 # one of IRISES
    smiling: bool
    mouth_open: bool
    lipstick: str             # '' (none) or a key of LIPSTICKS
    beard: str                # one of BEARDS
    glasses: bool
    glasses_round: bool
    glasses_colour: RGB
    rosy_cheeks: bool
    necklace: bool
    necklace_gold: bool
    necktie: bool
    tie_colour: RGB
    shirt_colour: RGB
    background: tuple[RGB, RGB]   # top and bottom colour of a vertical gradient (equal: plain)
    gradient_horizontal: bool     # the gradient runs left to right instead


# ---------------------------------------------------------------------------------------------
# Colours.

def _mix(a, b, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _scale(c, f: float) -> RGB:
    return tuple(int(min(255, max(0, round(x * f)))) for x in c)


def skin_rgb(tone: float) -> RGB:
    """The skin colour of a tone in [0, 1] (0 palest)."""
    x = min(max(tone, 0.0), 1.0) * (len(_SKIN_STOPS) - 1)
    i = min(int(x), len(_SKIN_STOPS) - 2)
    c = _SKIN_STOPS[i] + (_SKIN_STOPS[i + 1] - _SKIN_STOPS[i]) * (x - i)
    return tuple(int(round(v)) for v in c)


def hair_rgb(spec: FaceSpec) -> RGB:
    """The hair colour of a face (also used for its brows and beard)."""
    dark, light = _HAIR_RGB[spec.hair_colour]
    return _mix(dark, light, spec.hair_shade)


def _brow_rgb(spec: FaceSpec) -> RGB:
    h = hair_rgb(spec)
    # Light hair has darker brows; dark hair's brows are about as dark as the hair.
    return _mix(_scale(h, 0.72), (60, 45, 35), 0.35 if sum(h) > 360 else 0.0)


def _lip_rgb(spec: FaceSpec) -> RGB:
    if spec.lipstick:
        return LIPSTICKS[spec.lipstick]
    return _mix(_scale(skin_rgb(spec.skin_tone), 0.62), (150, 48, 62), 0.32)


def _colour_from(u, prefix: str, sat=(0.1, 0.55), val=(0.25, 0.95)) -> RGB:
    """A colour of any hue with saturation and value in the given ranges, from three uniforms."""
    h = u[prefix + "h"]
    s = sat[0] + (sat[1] - sat[0]) * u[prefix + "s"]
    v = val[0] + (val[1] - val[0]) * u[prefix + "v"]
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def _dist(a, b) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b)))


# ---------------------------------------------------------------------------------------------
# Sampling.

def _pick(weights: dict[str, float], u: float) -> str:
    """The key whose share of the cumulative weights holds the uniform u (zero weights never win)."""
    total = sum(weights.values())
    acc = 0.0
    for k, w in weights.items():
        acc += w / total
        if u < acc and w > 0:
            return k
    return [k for k, w in weights.items() if w > 0][-1]


_HAIR_LABELS = {"Black_Hair": "black", "Blond_Hair": "blond", "Brown_Hair": "brown", "Gray_Hair": "gray"}


def sample_spec(rng: np.random.Generator, **overrides: bool) -> FaceSpec:
    """Draw one face. Keyword overrides force attributes (names from ATTRIBUTES), e.g. Smiling=True;
    the generator is advanced by the same amount whatever they are, and a forced attribute changes only
    what it must (forcing Male redraws what depends on the sex), so `sample_spec(face_rng(s, i), Smiling=b)`
    is the same face with either expression. Raises InputError for an unknown name or a combination the
    renderer cannot draw (Bald with Bangs)."""
    unknown = sorted(set(overrides) - set(ATTRIBUTES))
    if unknown:
        raise InputError(f"unknown face attribute(s) {', '.join(unknown)}; choose from {', '.join(ATTRIBUTES)}")
    o = {k: bool(v) for k, v in overrides.items()}
    u = dict(zip(_UNIFORMS, rng.random(len(_UNIFORMS)).tolist()))

    # Sex: a forced beard makes a man unless the sex is forced too.
    male = u["male"] < 0.45
    if "Male" in o:
        male = o["Male"]
    elif any(o.get(k) for k in ("Mustache", "Goatee", "Sideburns")) or o.get("No_Beard") is False:
        male = True

    # Choices that correlate with the skin tone follow the drawn tone, so forcing Pale_Skin changes
    # only the skin (and the background where it would match the new skin).
    tone = drawn_tone = u["tone"]
    if "Pale_Skin" in o:
        tone = PALE_TONE * 0.98 * u["tone"] if o["Pale_Skin"] else PALE_TONE + 0.01 + (0.99 - PALE_TONE) * u["tone"]

    # Hair style and colour.
    style = _pick({"short": 0.76, "long": 0.10, "bald": 0.14} if male else {"short": 0.22, "long": 0.78, "bald": 0.0},
                  u["style"])
    needs_hair = any(o.get(k) for k in (*_HAIR_LABELS, "Bangs", "Wearing_Hat")) or o.get("Bald") is False
    if o.get("Bald"):
        style = "bald"
    elif style == "bald" and needs_hair:
        style = _pick({"short": 0.8, "long": 0.2}, u["style2"])
    weights = {"black": 0.30, "brown": 0.33, "blond": 0.32 * (1.0 - drawn_tone) ** 1.5,
               "gray": 0.14 if male else 0.07, "red": 0.07 * (1.0 - drawn_tone)}
    colour = _pick(weights, u["colour"])
    forced = [c for k, c in _HAIR_LABELS.items() if o.get(k)]
    if len(forced) > 1:
        raise InputError(f"a face has one hair colour; got {', '.join(k for k in _HAIR_LABELS if o.get(k))}")
    if forced:
        colour = forced[0]
    else:
        for k, c in _HAIR_LABELS.items():
            if o.get(k) is False:
                weights[c] = 0.0
        if weights[colour] == 0.0:
            colour = _pick(weights, u["colour2"])

    bangs = style != "bald" and u["bangs"] < (0.2 if male else 0.38)
    bangs = o.get("Bangs", bangs)
    hat = style != "bald" and u["hat"] < 0.08
    hat = o.get("Wearing_Hat", hat)

    # Beard: drawn for men, then adjusted to what is forced.
    beard = _pick({"none": 0.52, "mustache": 0.1, "goatee": 0.1, "both": 0.12, "full": 0.16}, u["beard"]) \
        if male else "none"
    if "No_Beard" in o:
        if o["No_Beard"]:
            beard = "none"
        elif beard == "none":
            beard = _pick({"mustache": 1, "goatee": 1, "both": 1, "full": 1}, u["beard2"])
    if "Sideburns" in o:
        beard = "full" if o["Sideburns"] else ("both" if beard == "full" else beard)
    if "Mustache" in o:
        has_goatee = beard in ("goatee", "both", "full")
        if o["Mustache"] and beard != "full":
            beard = "both" if has_goatee else "mustache"
        elif not o["Mustache"]:
            beard = "goatee" if has_goatee else "none"
    if "Goatee" in o:
        has_mustache = beard in ("mustache", "both", "full")
        if o["Goatee"] and beard != "full":
            beard = "both" if has_mustache else "goatee"
        elif not o["Goatee"]:
            beard = "mustache" if has_mustache else "none"

    # Open mouths are commoner in smiles; a forced expression keeps the drawn openness.
    smiling = u["smile"] < 0.5
    mouth_open = o.get("Mouth_Slightly_Open", u["open"] < (0.55 if smiling else 0.3))
    smiling = o.get("Smiling", smiling)
    lipstick = not male and u["lip"] < 0.55
    lipstick = o.get("Wearing_Lipstick", lipstick)
    necktie = o.get("Wearing_Necktie", u["tie"] < (0.22 if male else 0.02))
    necklace = o.get("Wearing_Necklace", u["necklace"] < (0.03 if male else 0.28))

    skin = skin_rgb(tone)
    # Background: the first of three candidate colours far enough from the skin (else the farthest).
    cands = [_colour_from(u, f"bg{i}") for i in range(3)]
    far = [c for c in cands if _dist(c, skin) > 90]
    bg0 = far[0] if far else max(cands, key=lambda c: _dist(c, skin))
    if _dist(bg0, skin) <= 90:
        bg0 = _scale(bg0, 0.45) if sum(skin) > 330 else _mix(bg0, (235, 235, 235), 0.7)
    bg1 = bg0 if u["grad"] < 0.45 else _scale(bg0, 0.65 + 0.2 * u["grad_amount"])

    spec = FaceSpec(
        male=male, skin_tone=tone,
        face_width=0.25 + 0.03 * u["width"] + (0.01 if male else 0.0),
        chin_drop=0.355 + 0.045 * u["chin"],
        jaw=(0.45 + 0.55 * u["jaw"]) if male else 0.45 * u["jaw"],
        dx=0.01 * (u["dx"] - 0.5), dy=0.01 * (u["dy"] - 0.5),
        eye_gap=EYE_GAP + 0.016 * (u["gap"] - 0.5),
        hair_style=style, hair_colour=colour, hair_shade=u["shade"], hairline=u["hairline"],
        hair_length=u["length"], bangs=bangs, bangs_tilt=2.0 * u["tilt"] - 1.0,
        side_locks=u["locks"] < 0.6, hat=hat, hat_colour=_colour_from(u, "hatc", (0.3, 0.8), (0.3, 0.9)),
        bushy_brows=o.get("Bushy_Eyebrows", u["brows"] < (0.3 if male else 0.08)),
        iris=_pick(dict(zip(IRISES, (0.3 + 0.6 * drawn_tone, 0.3 + 0.3 * drawn_tone, 0.12, 0.1 * (1 - drawn_tone),
                                     0.18 * (1 - drawn_tone) ** 2, 0.05 * (1 - drawn_tone)))), u["iris"]),
        smiling=smiling, mouth_open=mouth_open,
        lipstick=_pick({k: 1.0 for k in LIPSTICKS}, u["lipc"]) if lipstick else "",
        beard=beard,
        glasses=o.get("Eyeglasses", u["glasses"] < 0.2), glasses_round=u["gshape"] < 0.45,
        glasses_colour=_GLASSES_RGB[min(int(u["gcol"] * 4), 3)],
        rosy_cheeks=o.get("Rosy_Cheeks", u["rosy"] < (0.06 if male else 0.2)),
        necklace=necklace, necklace_gold=u["gold"] < 0.6,
        necktie=necktie, tie_colour=_colour_from(u, "tiec", (0.4, 0.9), (0.25, 0.8)),
        shirt_colour=_colour_from(u, "shirt", (0.0, 0.6), (0.15, 0.85)),
        background=(bg0, bg1), gradient_horizontal=u["grad_dir"] < 0.25,
    )
    got = labels(spec)
    bad = [k for k, v in o.items() if got[k] != v]
    if bad:
        raise InputError("these forced face attributes cannot hold together: "
                         + ", ".join(f"{k}={o[k]}" for k in sorted(o)))
    return spec


def labels(spec: FaceSpec) -> dict[str, bool]:
    """The CelebA-named attribute labels of a face (keys: ATTRIBUTES, in order)."""
    haired = spec.hair_style != "bald"
    out = {
        "Bald": not haired,
        "Bangs": haired and spec.bangs,
        "Black_Hair": haired and spec.hair_colour == "black",
        "Blond_Hair": haired and spec.hair_colour == "blond",
        "Brown_Hair": haired and spec.hair_colour == "brown",
        "Bushy_Eyebrows": spec.bushy_brows,
        "Eyeglasses": spec.glasses,
        "Goatee": spec.beard in ("goatee", "both", "full"),
        "Gray_Hair": haired and spec.hair_colour == "gray",
        "Male": spec.male,
        "Mouth_Slightly_Open": spec.mouth_open,
        "Mustache": spec.beard in ("mustache", "both", "full"),
        "No_Beard": spec.beard == "none",
        "Pale_Skin": spec.skin_tone < PALE_TONE,
        "Rosy_Cheeks": spec.rosy_cheeks,
        "Sideburns": spec.beard == "full",
        "Smiling": spec.smiling,
        "Wearing_Hat": haired and spec.hat,
        "Wearing_Lipstick": bool(spec.lipstick),
        "Wearing_Necklace": spec.necklace,
        "Wearing_Necktie": spec.necktie,
    }
    assert tuple(out) == ATTRIBUTES
    return out


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def caption(spec: FaceSpec) -> str:
    """A one-line description, e.g. 'a smiling woman with long blond hair, bangs and red lipstick,
    wearing glasses'."""
    lead = ["a"]
    if spec.smiling:
        lead.append("smiling")
    lead.append("man" if spec.male else "woman")
    with_ = []
    if spec.hair_style == "bald":
        with_.append("a bald head")
    else:
        with_.append(f"{spec.hair_style} {spec.hair_colour} hair")
        if spec.bangs:
            with_.append("bangs")
    with_ += {"none": [], "mustache": ["a moustache"], "goatee": ["a goatee"],
              "both": ["a moustache and goatee"], "full": ["a full beard"]}[spec.beard]
    if spec.mouth_open:
        with_.append("an open mouth")
    if spec.bushy_brows:
        with_.append("bushy eyebrows")
    if spec.skin_tone < PALE_TONE:
        with_.append("pale skin")
    if spec.rosy_cheeks:
        with_.append("rosy cheeks")
    if spec.lipstick:
        with_.append(f"{spec.lipstick} lipstick")
    wearing = []
    if spec.glasses:
        wearing.append("glasses")
    if spec.hat and spec.hair_style != "bald":
        wearing.append("a hat")
    if spec.necklace:
        wearing.append("a necklace")
    if spec.necktie:
        wearing.append("a tie")
    text = " ".join(lead) + " with " + _join(with_)
    if wearing:
        text += ", wearing " + _join(wearing)
    return text


# ---------------------------------------------------------------------------------------------
# Face regions.

def region_box(name: str, size: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), end-exclusive, of a face region ('eyes', 'nose', 'mouth') in a
    size x size frame; the same rounding as the face masks of `jax_inpaint.masks`."""
    if name not in FACE_REGIONS:
        raise InputError(f"unknown face region {name!r}; choose from {', '.join(FACE_REGIONS)}")
    x0, y0, x1, y1 = FACE_REGIONS[name]
    return round(x0 * size), round(y0 * size), round(x1 * size), round(y1 * size)


def eyes_box(size: int) -> tuple[int, int, int, int]:
    return region_box("eyes", size)


def nose_box(size: int) -> tuple[int, int, int, int]:
    return region_box("nose", size)


def mouth_box(size: int) -> tuple[int, int, int, int]:
    return region_box("mouth", size)


# ---------------------------------------------------------------------------------------------
# Drawing. Shapes are point arrays [N, 2] in frame fractions (x right, y down), scaled to pixels when drawn.

@functools.lru_cache(maxsize=None)
def _lin(a: float, b: float, n: int) -> np.ndarray:
    """np.linspace(a, b, n), cached and read-only (the renderer's parameter grids)."""
    t = np.linspace(a, b, n)
    t.flags.writeable = False
    return t


def _pts(x, y) -> np.ndarray:
    return np.column_stack((x, y))


def _band(x, top, bottom) -> np.ndarray:
    """The polygon between two curves over the same x: top left to right, then bottom right to left."""
    return np.concatenate([_pts(x, top), _pts(x, bottom)[::-1]])


def _arc(cx, cy, a, b, t0, t1, n) -> np.ndarray:
    t = _lin(t0, t1, n)
    return _pts(cx + a * np.cos(t), cy + b * np.sin(t))


class _Canvas:
    """An RGB picture of res x res pixels, drawn on in frame fractions."""

    def __init__(self, background: Image.Image):
        self.res = background.size[0]
        self.im = background
        self.draw = ImageDraw.Draw(self.im)              # opaque fills: fast
        self.blend = ImageDraw.Draw(self.im, "RGBA")     # translucent fills (4-tuples): about 5x slower

    def xy(self, pts: np.ndarray) -> list[float]:
        return (pts * self.res).ravel().tolist()

    def _pen(self, fill):
        return self.blend if len(fill) == 4 else self.draw

    def poly(self, pts, fill) -> None:
        self._pen(fill).polygon(self.xy(pts), fill=fill)

    def oval(self, cx, cy, a, b, fill) -> None:
        r = self.res
        self._pen(fill).ellipse(((cx - a) * r, (cy - b) * r, (cx + a) * r, (cy + b) * r), fill=fill)

    def line(self, pts, fill, width) -> None:
        self._pen(fill).line(self.xy(pts), fill=fill, width=max(1, round(width * self.res)), joint="curve")


class _Geometry:
    """Where one face's parts are (frame fractions)."""

    def __init__(self, spec: FaceSpec):
        self.cx = 0.5 + spec.dx
        self.ey = EYE_Y + spec.dy                 # eye line
        self.cy = self.ey + 0.02                  # centre of the face outline
        self.ny = NOSE_TIP_Y + spec.dy
        self.my = MOUTH_Y + spec.dy
        self.a = spec.face_width
        self.top = SKULL_TOP + spec.dy
        self.chin = self.cy + spec.chin_drop
        # The outline: an ellipse above the centre line, a tapered superellipse jaw below it; the
        # points run clockwise from the right end of the centre line (angle 0), jaw first.
        c, s = np.cos(_lin(0.0, 2 * math.pi, 97)[:-1]), np.sin(_lin(0.0, 2 * math.pi, 97)[:-1])
        p = 2.0 + 1.6 * spec.jaw
        lower = s > 0
        ux = np.where(lower, np.sign(c) * np.abs(c) ** (2.0 / p), c)
        uy = np.where(lower, np.abs(s) ** (2.0 / p), s)
        taper = np.where(lower, 1.0 - (0.36 - 0.12 * spec.jaw) * uy ** 2, 1.0)
        reach = np.where(lower, spec.chin_drop, self.cy - self.top)     # centre to chin / to skull top
        self.outline = _pts(self.cx + self.a * ux * taper, self.cy + reach * uy)
        jaw = self.outline[:49][::-1]             # angles pi .. 0: x increasing
        self._jaw_x, self._jaw_y = jaw[:, 0].copy(), jaw[:, 1].copy()

    def jaw_y(self, x: np.ndarray) -> np.ndarray:
        """The lower edge of the face below x (the centre line's height beyond the sides)."""
        return np.interp(x, self._jaw_x, self._jaw_y)

    def hair_arc(self, y_side: float, extra: float, extra_side: float | None = None, n: int = 40) -> np.ndarray:
        """The outline of the skull grown by `extra` on top and `extra_side` (default: the same) at the
        sides, left to right over the top, between the heights y_side on either side."""
        b = self.cy - self.top + extra
        phi0 = math.asin(min(1.0, max(-1.0, (self.cy - y_side) / b)))
        phi = _lin(phi0, math.pi - phi0, n)
        a = self.a + (extra if extra_side is None else extra_side)
        return _pts(self.cx - a * np.cos(phi), self.cy - b * np.sin(phi))


def _background(spec: FaceSpec, res: int) -> Image.Image:
    top, bottom = spec.background
    if top == bottom:
        return Image.new("RGB", (res, res), top)
    t = _lin(0.0, 1.0, res)[:, None]
    ramp = np.rint(np.float64(top) + (np.float64(bottom) - np.float64(top)) * t).astype(np.uint8)   # [res, 3]
    ramp = ramp[None, :, :] if spec.gradient_horizontal else ramp[:, None, :]
    return Image.fromarray(ramp).resize((res, res), Image.NEAREST)


def _draw_body(cv: _Canvas, g: _Geometry, spec: FaceSpec, skin: RGB) -> None:
    """Shirt, long hair behind the head, neck, and what is worn at the neck."""
    cx = g.cx
    neck = _scale(skin, 0.8)
    cv.oval(0.5 + spec.dx * 0.5, 1.2, 0.5, 0.3, spec.shirt_colour)
    if spec.hair_style == "long":
        a = g.a + 0.045
        y_end = 0.82 + 0.2 * spec.hair_length
        flare = 0.04 + 0.04 * spec.hair_length
        right = np.array([[cx + a + 0.3 * flare, g.cy + 0.15], [cx + a + flare, y_end - 0.04],
                          [cx + a + 0.6 * flare, y_end], [cx + 0.16, y_end + 0.01]])
        left = right[::-1] * np.array([-1.0, 1.0]) + np.array([2 * cx, 0.0])
        cv.poly(np.concatenate([g.hair_arc(g.cy, 0.045), right, left]), _scale(hair_rgb(spec), 0.82))
    cv.poly(np.array([[cx - 0.105, 0.6], [cx + 0.105, 0.6], [cx + 0.12, 0.92], [cx - 0.12, 0.92]]), neck)
    if spec.necktie:
        cv.poly(np.array([[cx - 0.13, 0.905], [cx + 0.13, 0.905], [cx, 1.01]]), (236, 236, 232))
        cv.poly(np.array([[cx - 0.105, 0.88], [cx + 0.105, 0.88], [cx, 0.935]]), neck)
        cv.poly(np.array([[cx - 0.024, 0.918], [cx + 0.024, 0.918], [cx + 0.017, 0.95], [cx - 0.017, 0.95]]),
                spec.tie_colour)
        cv.poly(np.array([[cx - 0.017, 0.95], [cx + 0.017, 0.95], [cx + 0.034, 1.01], [cx - 0.034, 1.01]]),
                _scale(spec.tie_colour, 0.85))
    else:
        cv.poly(np.array([[cx - 0.12, 0.9], [cx + 0.12, 0.9], [cx, 1.0]]), neck)
    if spec.necklace:
        t = _lin(-1.0, 1.0, 21)
        col = (226, 184, 62) if spec.necklace_gold else (206, 208, 216)
        cv.line(_pts(cx + 0.106 * t, 0.885 + 0.04 * (1 - t ** 2)), col, 0.009)
        cv.oval(cx, 0.935, 0.014, 0.016, col)


def _draw_head(cv: _Canvas, g: _Geometry, spec: FaceSpec, skin: RGB) -> None:
    """Ears (hidden by long hair), face, blush, nose and eyes with their brows."""
    if spec.hair_style != "long":
        for side in (-1, 1):
            x = g.cx + side * g.a * 0.98
            cv.oval(x, g.ey + 0.045, 0.03, 0.055, _scale(skin, 0.92))
            cv.oval(x + side * 0.006, g.ey + 0.045, 0.014, 0.032, _scale(skin, 0.78))
    cv.poly(g.outline, skin)
    if spec.rosy_cheeks:
        for side in (-1, 1):
            cv.oval(g.cx + side * g.a * 0.58, g.ey + 0.115, 0.05, 0.034, (236, 84, 98, 80))
    # Nose: a shadow down one side of the bridge, the tip's lower edge and two nostrils.
    cx, ny = g.cx, g.ny
    shade = _scale(skin, 0.78)
    cv.line(np.array([[cx - 0.018, ny - 0.1], [cx - 0.022, ny - 0.04], [cx - 0.03, ny - 0.005]]), shade + (140,), 0.007)
    t = _lin(-1.0, 1.0, 9)
    cv.line(_pts(cx + 0.03 * t, ny + 0.004 + 0.01 * (1 - t ** 2)), shade, 0.006)
    for side in (-1, 1):
        cv.oval(cx + side * 0.019, ny + 0.004, 0.01, 0.0055, _scale(skin, 0.55))
    # Eyes: white, iris, pupil and the upper lash line; brows thicker at the inner end, arched a little.
    white = _mix(skin, (246, 246, 242), 0.85)
    brow, brow_w = _brow_rgb(spec), 0.013 if spec.bushy_brows else (0.0075 if spec.male else 0.0055)
    t = _lin(-1.0, 1.0, 12)   # -1: the inner end of a brow
    half = brow_w * (1.0 - 0.35 * t) * np.where(np.abs(t) > 0.9, 0.7, 1.0)
    for side in (-1, 1):
        ex = cx + side * spec.eye_gap / 2
        cv.oval(ex, g.ey, 0.045, 0.02, white)
        cv.oval(ex, g.ey + 0.001, 0.018, 0.018, _IRIS_RGB[spec.iris])
        cv.oval(ex, g.ey + 0.001, 0.008, 0.008, (16, 12, 12))
        cv.line(_arc(ex, g.ey - 0.001, 0.046, 0.022, math.pi * 1.05, math.pi * 1.95, 12), (34, 24, 22),
                0.007 if spec.male else 0.0095)
        x, y = ex + side * 0.047 * t, g.ey - 0.052 + 0.008 * t ** 2
        cv.poly(_band(x, y - half, y + half), brow)


def _draw_beard(cv: _Canvas, g: _Geometry, spec: FaceSpec) -> None:
    if spec.beard == "none":
        return
    cx, my = g.cx, g.my
    col = _scale(hair_rgb(spec), 0.85)
    if spec.beard == "full":
        # From the sideburns below the eye line down the cheeks to under the nose, and down to the jaw.
        t = _lin(-1.0, 1.0, 25)
        x = cx + t * g.a
        top = my - 0.07 - (my - 0.07 - g.ey - 0.065) * np.abs(t) ** 4
        cv.poly(_band(x, top, np.maximum(g.jaw_y(x), top)), col)
        return
    if spec.beard in ("mustache", "both"):
        # Between the nostrils and the upper lip, its ends drooping past the mouth corners.
        cv.poly(np.array([[cx - 0.088, my - 0.004], [cx - 0.07, my - 0.06], [cx - 0.03, my - 0.088],
                          [cx, my - 0.084], [cx + 0.03, my - 0.088], [cx + 0.07, my - 0.06], [cx + 0.088, my - 0.004],
                          [cx + 0.068, my - 0.014], [cx + 0.04, my - 0.032], [cx, my - 0.038],
                          [cx - 0.04, my - 0.032], [cx - 0.068, my - 0.014]]), col)
    if spec.beard in ("goatee", "both"):
        t = _lin(-1.0, 1.0, 13)
        x = cx + 0.056 * t
        top = my + 0.03 + 0.025 * t ** 4
        bottom = np.minimum(g.jaw_y(x) - 0.002, g.chin + 0.004 - 0.035 * t ** 2)
        cv.poly(_band(x, top, np.maximum(bottom, top)), col)


def _draw_mouth(cv: _Canvas, g: _Geometry, spec: FaceSpec) -> None:
    """Lips, and the opening with the upper teeth; everything inside FACE_REGIONS['mouth']."""
    cx, my = g.cx, g.my
    lip = _lip_rgb(spec)
    dark_lip = _mix(_scale(lip, 0.4), (34, 12, 14), 0.5)     # the line between closed lips
    inside, teeth = (70, 22, 28), (244, 242, 232)
    t = _lin(-1.0, 1.0, 21)
    lens = (1 - t ** 2) ** 0.5                  # lip thickness profile, 0 at the corners
    if spec.smiling:
        w = 0.122
        x = cx + w * t
        if spec.mouth_open:                     # a "D": flat top edge with corners up, deep round bottom
            top = my - 0.008 - 0.024 * t ** 2
            bottom = top + 0.043 * (1 - t ** 2) ** 0.8
            cv.poly(_band(x, top - 0.01 * lens - 0.002, top), lip)
            cv.poly(_band(x, bottom, bottom + 0.012 * lens), lip)
            cv.poly(_band(x, top, bottom), inside)
            cv.poly(_band(x, top, np.minimum(top + 0.016, bottom)), teeth)
        else:                                   # a crescent with raised, dimpled corners
            line = my + 0.012 - 0.048 * t ** 2
            cv.poly(_band(x, line - 0.009 * lens, line), lip)
            cv.poly(_band(x, line, line + 0.022 * lens), lip)
            cv.line(_pts(x, line), dark_lip, 0.013)
            for side in (-1, 1):
                cv.line(np.array([[cx + side * (w - 0.006), my - 0.034], [cx + side * (w + 0.005), my - 0.042]]),
                        dark_lip + (150,), 0.006)
        return
    w = 0.092
    x = cx + w * t
    bow = 0.004 * np.cos(t * 2 * math.pi) * (1 - t ** 2)     # the dip in the middle of the upper lip
    if spec.mouth_open:                         # an oval opening, upper teeth showing
        top = my + 0.002 - 0.026 * lens
        bottom = my + 0.002 + 0.025 * lens
        cv.poly(_band(x, top - 0.016 * lens - bow, top), lip)
        cv.poly(_band(x, bottom, bottom + 0.015 * lens), lip)
        cv.poly(_band(x, top, bottom), inside)
        mid = slice(3, 18)
        cv.poly(_band(x[mid], top[mid], np.minimum(top[mid] + 0.011, bottom[mid])), teeth)
    else:
        line = my + 0.002 * (1 - t ** 2)
        lens = (1 - t ** 2) ** 0.6
        cv.poly(_band(x, line - 0.016 * lens - bow, line), lip)
        cv.poly(_band(x, line, line + 0.022 * lens), lip)
        cv.line(_pts(x, line), dark_lip, 0.01)


def _draw_hair(cv: _Canvas, g: _Geometry, spec: FaceSpec) -> None:
    """The hair over the skull down to the hairline or fringe, and long hair's locks beside the face."""
    if spec.hair_style == "bald":
        return
    col = hair_rgb(spec)
    y_side = g.ey + (-0.02 if spec.hair_style == "short" else 0.03)
    # The hairline, right to left, meets the hair's outer edge at y_side.
    t = _lin(1.0, -1.0, 33)
    x = g.cx + t * g.a * 0.97
    if spec.bangs:
        y_top = 0.352 + spec.dy + 0.02 * spec.bangs_tilt * t
        y = y_top + (y_side - y_top) * np.abs(t) ** 6
        y = y + 0.012 * np.abs(np.sin(t * 5.5 * math.pi + spec.bangs_tilt)) * (1 - np.abs(t) ** 4)   # ragged
    else:
        y_top = 0.215 + 0.05 * spec.hairline + (0.02 if spec.male else 0.0) + spec.dy
        y = y_top + (y_side - y_top) * np.abs(t) ** 2.6
    arc = g.hair_arc(y_side, 0.032, 0.016) if spec.hair_style == "short" else g.hair_arc(y_side, 0.045)
    cv.poly(np.concatenate([arc, _pts(x, y)]), col)
    if spec.hair_style == "long" and spec.side_locks:
        # Strips over the face's sides, from above the hair's side edge to below the cheekbones,
        # tapering downwards.
        for side in (-1, 1):
            pts = g.outline[(np.sign(g.outline[:, 0] - g.cx) == side) & (g.outline[:, 1] > y_side - 0.08)
                            & (g.outline[:, 1] < g.cy + 0.2)]
            pts = pts[np.argsort(pts[:, 1])]
            frac = (pts[:, 1] - pts[0, 1]) / (pts[-1, 1] - pts[0, 1])
            inner = pts - _pts(side * (0.045 * (1 - frac) + 0.004), 0.0 * frac)
            outer = pts + np.array([side * 0.012, 0.0])
            cv.poly(np.concatenate([outer, inner[::-1]]), col)


def _draw_hat(cv: _Canvas, g: _Geometry, spec: FaceSpec) -> None:
    """A beanie down to y ~ 0.3 with a darker turned-up band."""
    if not spec.hat or spec.hair_style == "bald":
        return
    y_brim = 0.305 + spec.dy
    arc = g.hair_arc(y_brim, 0.05)
    t = _lin(1.0, -1.0, 15)
    brim = _pts(g.cx + (arc[-1, 0] - g.cx) * t, y_brim + 0.012 * (1 - t ** 2))
    cv.poly(np.concatenate([arc, brim]), spec.hat_colour)
    cv.poly(np.concatenate([g.hair_arc(y_brim - 0.055, 0.055), brim + np.array([0.0, 0.004])]),
            _scale(spec.hat_colour, 0.78))


def _draw_glasses(cv: _Canvas, g: _Geometry, spec: FaceSpec) -> None:
    """Round or rectangular frames with faintly tinted lenses and a bridge; inside FACE_REGIONS['eyes']."""
    if not spec.glasses:
        return
    col, r = spec.glasses_colour, cv.res
    width = max(1, round(0.015 * r))
    hw, hh = 0.066, 0.043
    for side in (-1, 1):
        ex = g.cx + side * spec.eye_gap / 2
        box = ((ex - hw) * r, (g.ey - hh) * r, (ex + hw) * r, (g.ey + hh) * r)
        if spec.glasses_round:
            cv.blend.ellipse(box, fill=(236, 240, 250, 60))
            cv.draw.ellipse(box, outline=col, width=width)
        else:
            cv.blend.rounded_rectangle(box, radius=0.018 * r, fill=(236, 240, 250, 60))
            cv.draw.rounded_rectangle(box, radius=0.018 * r, outline=col, width=width)
    inner = spec.eye_gap / 2 - hw + 0.004      # from frame to frame, arched over the nose
    bridge = np.array([[g.cx - inner, g.ey - 0.012], [g.cx, g.ey - 0.018], [g.cx + inner, g.ey - 0.012]])
    cv.line(bridge, col, 0.011)


def render(spec: FaceSpec, size: int = 64) -> np.ndarray:
    """The face as uint8 [size, size, 3]: drawn at 4x the size (2x above 128 pixels) and box-filtered
    down, which anti-aliases every edge."""
    size = int(size)
    if size < 16:
        raise InputError(f"faces are rendered at 16 pixels or more, got {size}")
    ss = _SUPERSAMPLE if size <= 128 else 2
    g = _Geometry(spec)
    skin = skin_rgb(spec.skin_tone)
    cv = _Canvas(_background(spec, size * ss))
    _draw_body(cv, g, spec, skin)
    _draw_head(cv, g, spec, skin)
    _draw_beard(cv, g, spec)
    _draw_mouth(cv, g, spec)
    _draw_hair(cv, g, spec)
    _draw_hat(cv, g, spec)
    _draw_glasses(cv, g, spec)
    return np.asarray(cv.im.reduce(ss))


def face_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of face `index` of the dataset `seed`."""
    return np.random.default_rng([int(seed), int(index)])


def render_dataset(n: int, *, seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n faces: images uint8 [n, size, size, 3], labels bool [n, len(ATTRIBUTES)] and captions.
    Face i is drawn from face_rng(seed, i) alone, so datasets of different n share their prefixes."""
    if n < 0:
        raise InputError(f"the number of faces must be >= 0, got {n}")
    images = np.empty((n, size, size, 3), np.uint8)
    labs = np.empty((n, len(ATTRIBUTES)), bool)
    caps = []
    for i in range(n):
        spec = sample_spec(face_rng(seed, i))
        images[i] = render(spec, size)
        labs[i] = list(labels(spec).values())
        caps.append(caption(spec))
    return images, labs, caps


# ---------------------------------------------------------------------------------------------
# Plausibility oracle.

def _frac_slices(shape, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
    """Rows and columns of the pixels inside a box given in frame fractions (at least one of each)."""
    h, w = shape[:2]
    r0, c0 = min(round(y0 * h), h - 1), min(round(x0 * w), w - 1)
    return slice(r0, max(round(y1 * h), r0 + 1)), slice(c0, max(round(x1 * w), c0 + 1))


def _frac_box(img: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return img[_frac_slices(img.shape, x0, y0, x1, y1)]


def plausibility(img: np.ndarray) -> dict:
    """Simple measurable checks that an image (uint8 [H, W, 3], any size from 16) looks like one of these
    aligned faces; meant for generated images. Returns one boolean per check, `plausible` (all of them),
    and the measurements behind them: roughness, skin_rgb, skin_fraction, skin_centre_x,
    background_skin_fraction, background_distance, eye_centres ([(x, y) or None] * 2, frame fractions).
    Positions are fractions of the frame; colour distances are Euclidean in RGB levels (0-255).

      smooth          neighbouring pixels differ by less than 24 levels on average (not noise or shuffled);
      face_blob       at least 55 % of the cheek band (x 0.33-0.67, y 0.50-0.60) has the skin colour
                      (the median colour of the area between the eyes and the mouth, within 45 levels),
                      and the skin-coloured pixels of the face area are centred (|x - 0.5| < 0.06);
      background      the background (top corners, upper side edges) is at most 25 % skin-coloured
                      and its median is at least 45 levels from the skin colour;
      eyes            each eye window (x 0.30-0.45 and 0.55-0.70, y 0.42-0.52) holds a blob that stands
                      out from the skin (colour distance above 25, weighted by the excess), their centres are
                      at the same height (within 0.04, or 1.5 pixels) and mirror each other about x = 0.5
                      (within 0.08, or 2 pixels), and neither blob weighs more than 3x the other;
      mouth           at least 4 % of the mouth box is more than 30 levels from the skin colour (lips,
                      opening or teeth).
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3 or min(img.shape[:2]) < 16:
        raise InputError(f"plausibility needs an RGB image [H, W, 3] of 16 pixels or more, got {img.shape}")
    f = img.astype(np.float32)
    h, w = f.shape[:2]
    out: dict = {}
    roughness = float((np.abs(np.diff(f, axis=0)).mean() + np.abs(np.diff(f, axis=1)).mean()) / 2)
    out["roughness"] = roughness
    out["smooth"] = roughness < 24.0

    skin = np.median(_frac_box(f, 0.40, 0.53, 0.60, 0.60).reshape(-1, 3), axis=0)
    out["skin_rgb"] = tuple(float(v) for v in skin)
    dist = np.linalg.norm(f - skin, axis=-1)           # [H, W]
    is_skin = dist < 45.0
    cheeks = _frac_box(is_skin, 0.33, 0.50, 0.67, 0.60).mean()
    rows, cols = _frac_slices(is_skin.shape, 0.2, 0.3, 0.8, 0.85)
    area = is_skin[rows, cols]
    xs = (np.arange(cols.start, cols.stop) + 0.5) / w        # pixel centres, frame fractions
    centre = float((area.sum(0) * xs).sum() / max(area.sum(), 1))
    out["skin_fraction"], out["skin_centre_x"] = float(cheeks), centre
    out["face_blob"] = bool(cheeks >= 0.55 and abs(centre - 0.5) < 0.06)

    border = np.concatenate([_frac_box(f, 0.0, 0.0, 1.0, 0.08).reshape(-1, 3),
                             _frac_box(f, 0.0, 0.0, 0.08, 0.6).reshape(-1, 3),
                             _frac_box(f, 0.92, 0.0, 1.0, 0.6).reshape(-1, 3)])
    border_skin = float((np.linalg.norm(border - skin, axis=-1) < 45.0).mean())
    bg_dist = float(np.linalg.norm(np.median(border, axis=0) - skin))
    out["background_skin_fraction"], out["background_distance"] = border_skin, bg_dist
    out["background"] = bool(border_skin <= 0.25 and bg_dist >= 45.0)

    centres = []
    for x0, x1 in ((0.30, 0.45), (0.55, 0.70)):
        rows, cols = _frac_slices(dist.shape, x0, 0.42, x1, 0.52)
        contrast = np.maximum(dist[rows, cols] - 25.0, 0.0)
        mass = float(contrast.sum())
        if mass <= 0.0:
            centres.append(None)
            continue
        ys = ((np.arange(rows.start, rows.stop) + 0.5) / h)[:, None]
        xw = ((np.arange(cols.start, cols.stop) + 0.5) / w)[None, :]
        centres.append((float((contrast * xw).sum() / mass), float((contrast * ys).sum() / mass), mass))
    out["eye_centres"] = [c[:2] if c else None for c in centres]
    if all(centres):
        (xl, yl, ml), (xr, yr, mr) = centres
        level = abs(yl - yr) < max(0.04, 1.5 / h)
        mirrored = abs((0.5 - xl) - (xr - 0.5)) < max(0.08, 2.0 / w)
        out["eyes"] = bool(level and mirrored and max(ml, mr) <= 3.0 * min(ml, mr))
    else:
        out["eyes"] = False

    x0, y0, x1, y1 = FACE_REGIONS["mouth"]
    out["mouth"] = bool((_frac_box(dist, x0, y0, x1, y1) > 30.0).mean() >= 0.04)
    out["plausible"] = all(out[k] for k in ("smooth", "face_blob", "background", "eyes", "mouth"))
    return out
