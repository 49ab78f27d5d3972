"""Inpainting a real photo through its FFHQ-aligned face, and putting the completions back into it.

    photo + hole mask (drawn on the photo)
      -> the face found (jax_inpaint.align.landmarks), aligned by the FFHQ recipe (jax_inpaint.align.ffhq)
         at the generator's resolution; the hole warped into the aligned frame (every aligned pixel that
         covers a hole pixel, grown by one)
      -> the search there (jax_inpaint.inversion: `Inpainter` on the aligned image and hole)
      -> each generator output warped back (bilinear) and blended into the photo over the hole and a
         feathered seam around it: photo weight 0 in the hole, rising to 1 over `seam` photo pixels
         (--feather aligned pixels, in photo pixels, at least --feather). Every other pixel of the photo
         is copied, bit for bit.

`inpaint_photo` (the call), `save_photo_result` (the files; all or nothing), `write_aligned`
(`jax-inpaint align`). A hole whose seam reaches outside the aligned crop is refused before the search:
the generator sees only that square.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Mapping, Sequence

import numpy as np

from jax_inpaint import files, images
from jax_inpaint.align import ffhq
from jax_inpaint.align.ffhq import Alignment
from jax_inpaint.errors import InputError
from jax_inpaint.inversion.config import DEFAULT_SEEDS, check_seeds
from jax_inpaint.inversion.inputs import Inputs, load_mask, prepare_inputs

PHOTO_FILES = ("photo_grid.png", "aligned.png", "aligned_mask.png", "alignment.json")  # + photo_<seed>.png
GRID_TILE = 384  # the photo grid's tiles fit in this many pixels


# ---------------------------------------------------------------------------------------------
# The photo and its face.

def read_photo(image) -> np.ndarray:
    """A photo path (read upright, as every image) or array, as uint8 RGB [H, W, 3]."""
    if isinstance(image, (str, os.PathLike)):
        return images.read_rgb(image)
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise InputError(f"photo array must be [H, W, 3], got {a.shape}")
    a = np.repeat(a, 3, -1) if a.shape[-1] == 1 else a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype.kind != "f" or not np.isfinite(a).all():
        raise InputError(f"photo array must be uint8, or float in [-1, 1], got {a.dtype}")
    return images.to_uint8(a)


def find_faces(photo: np.ndarray):
    from jax_inpaint.align.landmarks import detect_faces

    return detect_faces(photo)


def align_photo(photo, size: int, *, face: int | None = None, faces=None,
                what: str = "the photo") -> tuple[np.ndarray, Alignment]:
    """(aligned uint8 [size, size, 3], its Alignment) of face number `face` (0 = the largest) of a photo."""
    from jax_inpaint.align.landmarks import pick_face

    photo = read_photo(photo)
    faces = find_faces(photo) if faces is None else faces
    chosen = pick_face(faces, face, what)
    aligned, matrix = ffhq.align_image(photo, chosen.points, size)
    h, w = photo.shape[:2]
    index = next(i for i, f in enumerate(faces) if f is chosen)
    return aligned, Alignment(size, matrix, chosen.points, (w, h), index, len(faces), chosen.box)


def which_face(al: Alignment) -> str:
    """Which face of the photo an alignment is of, in words."""
    which = "the only face" if al.faces == 1 else (
        f"face {al.face} of {al.faces}" + (" (the largest; --face N picks another, 0 = largest)" if al.face == 0
                                           else " (by size, 0 = the largest)"))
    return which


# ---------------------------------------------------------------------------------------------
# The hole, aligned; the way back.

@dataclasses.dataclass
class PhotoInputs(Inputs):
    """The aligned frame's inputs (target, hole: what the search sees) and what of the photo the paste-back
    needs: the box it changes (the hole and its seam), the photo's pixels and weight there. The whole photo
    is read again from `source` when the results are written (a batch holds many PhotoInputs at once)."""
    source: object  # the photo's path, or its uint8 array
    photo_size: tuple[int, int]  # (width, height)
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1): the photo pixels the completions may change
    known: np.ndarray  # uint8 [y1 - y0, x1 - x0, 3]: the photo over the box
    weight: np.ndarray  # float32 [y1 - y0, x1 - x0]: the photo's weight there (0 in the hole, 1 beyond the seam)
    alignment: Alignment
    seam: float  # photo pixels over which the photo's weight rises from 0 (hole) to 1

    def photo(self) -> np.ndarray:
        """The whole photo, uint8 [H, W, 3] (read again when `source` is a path)."""
        photo = read_photo(self.source)
        x0, y0, x1, y1 = self.box
        if (photo.shape[1], photo.shape[0]) != tuple(self.photo_size) or not np.array_equal(
                photo[y0:y1, x0:x1], self.known):
            raise InputError(f"{self.source}: the photo changed while it was inpainted")
        return photo

    def photo_hole(self) -> np.ndarray:
        """The hole in the photo, bool [H, W]."""
        w, h = self.photo_size
        hole = np.zeros((h, w), bool)
        x0, y0, x1, y1 = self.box
        hole[y0:y1, x0:x1] = self.weight == 0
        return hole


def seam_width(alignment: Alignment, feather: float) -> float:
    """The seam in photo pixels: --feather aligned pixels, at least --feather photo pixels."""
    return float(feather) * max(1.0, ffhq.pixel_scale(alignment.matrix))


def _region(hole: np.ndarray, seam: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the hole's box grown by the seam and a margin, inside the photo."""
    ys, xs = np.nonzero(hole)
    g = int(math.ceil(seam)) + 2
    h, w = hole.shape
    return (int(max(xs.min() - g, 0)), int(max(ys.min() - g, 0)), int(min(xs.max() + 1 + g, w)),
            int(min(ys.max() + 1 + g, h)))


def photo_weight(hole: np.ndarray, seam: float, box) -> np.ndarray:
    """The photo's weight over the box: 0 in the hole, rising to 1 over `seam` pixels outside it."""
    from jax_inpaint.inversion.inpainter import feather_alpha

    x0, y0, x1, y1 = box
    return feather_alpha(hole[y0:y1, x0:x1], seam)


def check_hole_in_crop(hole: np.ndarray, points) -> None:
    """The check of `check_reach` without the seam, at any resolution (before a generator is loaded)."""
    ys, xs = np.nonzero(hole)
    uv = ffhq.apply(np.linalg.inv(ffhq.quad_matrix(ffhq.ffhq_quad(points), 1)), np.stack([xs, ys], -1)) + 0.5
    outside = ~np.all((uv >= 0) & (uv <= 1), axis=-1)
    if outside.any():
        raise InputError(f"the hole reaches outside the aligned face crop ({outside.mean():.0%} of it does): the "
                         "generator sees only that square (`jax-inpaint align` shows it); draw the hole on the face")


def check_reach(weight: np.ndarray, box, alignment: Alignment, seam: float) -> None:
    """A one-line InputError when the hole or its seam (weight < 1 over the box) reaches outside the aligned
    crop (the generator's output does not cover it there)."""
    rows, cols = np.nonzero(weight < 1.0)
    uv = ffhq.apply(alignment.inverse, np.stack([cols + box[0], rows + box[1]], -1))
    size = alignment.size
    outside = ~np.all((uv >= 0) & (uv <= size - 1), axis=-1)
    if outside.any():
        raise InputError(f"the hole (with its {seam:.0f}-pixel seam) reaches outside the aligned face crop "
                         f"({outside.mean():.0%} of it does): the generator sees only that square (`jax-inpaint "
                         "align` shows it); draw the hole on the face, or use a smaller --feather")


def read_hole(photo: np.ndarray, mask, *, invert_mask: bool = False) -> np.ndarray:
    """The hole mask of a photo (a file of the photo's size, a preset or a bool array), checked."""
    hole = load_mask(mask, photo.shape[:2], invert=invert_mask)
    if not hole.any():
        raise InputError("the mask has no hole (no white pixels): nothing to fill "
                         "(use --invert-mask if black marks the hole)")
    if hole.all():
        raise InputError("the hole covers the whole photo: no known pixels to match")
    return hole


def prepare_photo(image, mask, resolution: int, *, face: int | None = None, invert_mask: bool = False,
                  feather: float = 2.0, faces=None) -> PhotoInputs:
    """Read and check the photo and its hole mask (a file of the photo's size, a preset or a bool array),
    align the face at the generator's resolution and bring the hole into the aligned frame. `faces`: the
    photo's faces when already found."""
    photo = read_photo(image)
    hole = read_hole(photo, mask, invert_mask=invert_mask)
    what = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "the photo"
    aligned, al = align_photo(photo, resolution, face=face, faces=faces, what=what)
    seam = seam_width(al, feather)
    box = _region(hole, seam)
    weight = photo_weight(hole, seam, box)
    check_reach(weight, box, al, seam)
    inputs = prepare_inputs(aligned, ffhq.hole_to_aligned(hole, al.matrix, resolution), resolution)
    eyes = ffhq.recipe_positions(al.points, resolution)
    notices = [f"{which_face(al)}: aligned to {resolution}x{resolution} by the FFHQ recipe (eyes at "
               f"({eyes['eye_left'][0]:.0f}, {eyes['eye_left'][1]:.0f}) and ({eyes['eye_right'][0]:.0f}, "
               f"{eyes['eye_right'][1]:.0f})); the hole is {inputs.hole.mean():.1%} of the aligned image"]
    source = image if isinstance(image, (str, os.PathLike)) else photo
    x0, y0, x1, y1 = box
    return PhotoInputs(inputs.target, inputs.hole, notices + inputs.notices, source, al.photo_size, box,
                       photo[y0:y1, x0:x1].copy(), weight, al, seam)


def photo_preparer(inpainter, face: int | None = None):
    """prepare(image, mask) -> PhotoInputs at the Inpainter's resolution and feather (inpaint-batch --align)."""
    def prepare(image, mask, *, invert_mask: bool = False) -> PhotoInputs:
        return prepare_photo(image, mask, inpainter.G.img_resolution, face=face, invert_mask=invert_mask,
                             feather=inpainter.cfg.feather)
    return prepare


def paste_back(raw: np.ndarray, inputs: PhotoInputs) -> np.ndarray:
    """The generator's outputs (float [K, S, S, 3] in [-1, 1], aligned frame) blended into the photo over its
    box (the hole and its seam): uint8 [K, y1 - y0, x1 - x0, 3]; every pixel of weight 1 (beyond the seam)
    is the photo's own, bit for bit."""
    weight = inputs.weight[..., None]
    touched = inputs.weight < 1.0
    out = np.repeat(inputs.known[None], len(raw), 0)
    for i, r in enumerate(raw):
        made = ffhq.unalign(np.asarray(r, np.float32), inputs.alignment.matrix, inputs.box)
        made = (np.clip(made, -1, 1) + 1) * 127.5
        if not np.isfinite(made[touched]).all():  # check_reach ran before the search: never here
            raise InputError("the hole's seam reaches outside the aligned face crop")
        blend = np.rint(weight * inputs.known + (1 - weight) * np.nan_to_num(made))
        out[i][touched] = np.clip(blend, 0, 255).astype(np.uint8)[touched]
    return out


# ---------------------------------------------------------------------------------------------
# The whole run.

@dataclasses.dataclass
class PhotoResult:
    """The run in the aligned frame (`aligned`: an InpaintResult) and its completions in the photo: the
    pasted-back box of each (`patches`); `photo(i)` / `photos` give whole photos."""
    aligned: object  # inversion.inpainter.InpaintResult
    patches: np.ndarray  # uint8 [K, y1 - y0, x1 - x0, 3]: each completion over inputs.box
    inputs: PhotoInputs

    def photo(self, i: int, photo: np.ndarray | None = None) -> np.ndarray:
        """Completion i pasted back into the whole photo (uint8 [H, W, 3]); `photo`: the photo, if read."""
        out = (self.inputs.photo() if photo is None else photo).copy()
        x0, y0, x1, y1 = self.inputs.box
        out[y0:y1, x0:x1] = self.patches[i]
        return out

    # what the command line reads of a result, as an InpaintResult has it
    @property
    def seeds(self) -> list[int]:
        return self.aligned.seeds

    @property
    def dropped(self) -> list[int]:
        return self.aligned.dropped

    @property
    def metrics(self) -> dict:
        return self.aligned.metrics

    @property
    def notices(self) -> list[str]:
        return self.aligned.notices


def finish_photo(result, inputs: PhotoInputs) -> PhotoResult:
    """A result of the aligned frame (InpaintResult) -> its completions pasted back, and the alignment in
    its metrics ('align')."""
    patches = paste_back(result.raw, inputs)
    al = inputs.alignment
    changed = [int(np.any(p != inputs.known, -1).sum()) for p in patches]
    result.metrics["align"] = {"face": al.face, "faces": al.faces, "photo_size": list(al.photo_size),
                               "aligned_to_photo": al.matrix.tolist(), "seam_photo_pixels": inputs.seam,
                               "photo_box": list(inputs.box), "photo_hole_pixels": int((inputs.weight == 0).sum()),
                               "photo_changed_pixels": dict(zip((str(s) for s in result.seeds), changed))}
    result.notices = list(inputs.notices) + [n for n in result.notices if n not in inputs.notices]
    return PhotoResult(result, patches, inputs)


def inpaint_photo(image, mask, generator, *, face: int | None = None, seeds: Sequence[int] = DEFAULT_SEEDS,
                  config=None, prompts=None, attributes: Mapping[str, float] | None = None, clip=None,
                  classifier=None, discriminator=None, lpips_model=None, class_idx: int | None = None,
                  invert_mask: bool = False, progress: bool = True, **options) -> PhotoResult:
    """`inversion.inpainter.inpaint` for a real photo: the face aligned as FFHQ's faces were, the hole
    (drawn on the photo) filled there K = len(seeds) ways, each completion put back into the photo.

    face: which face (0 = the largest, the default); the other arguments as `inpaint`. The photo, mask
    and face are checked (and the faces found) before any model is loaded."""
    from jax_inpaint.align.landmarks import pick_face, require
    from jax_inpaint.inversion.inpainter import Inpainter, check_constraint_models, resolve_config

    cfg = resolve_config(config, **options)
    seeds = check_seeds(seeds)
    check_constraint_models(prompts, attributes, clip=clip, classifier=classifier)
    require()
    photo = read_photo(image)
    hole = read_hole(photo, mask, invert_mask=invert_mask)
    what = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "the photo"
    faces = find_faces(photo)
    check_hole_in_crop(hole, pick_face(faces, face, what).points)  # said before the models load
    inpainter = Inpainter(generator, config=cfg, clip=clip, classifier=classifier, discriminator=discriminator,
                          lpips_model=lpips_model, class_idx=class_idx)
    source = image if isinstance(image, (str, os.PathLike)) else photo
    inputs = prepare_photo(photo, hole, inpainter.G.img_resolution, face=face, feather=cfg.feather, faces=faces)
    inputs.source = source
    result = inpainter(inputs.target, inputs.hole, seeds, prompts=prompts, attributes=attributes, progress=progress)
    return finish_photo(result, inputs)


# ---------------------------------------------------------------------------------------------
# Files.

def _previous_outputs(out: str) -> list[str]:
    """The files an earlier run wrote into `out`: what `save_result` wrote (inversion.outputs), the photo's
    fixed files, and photo_<seed>.png beside each completion_<seed>.png (nothing else is ever touched)."""
    from jax_inpaint.inversion.outputs import _previous_outputs as result_outputs

    names = set(result_outputs(out)) | set(PHOTO_FILES)
    names |= {"photo_" + n[len("completion_"):] for n in names if n.startswith("completion_")}
    return sorted(n for n in names if os.path.isfile(os.path.join(out, n)))


def photo_grid(result: PhotoResult, photo: np.ndarray | None = None) -> np.ndarray:
    """photo_grid.png: the photo, the hole drawn on it, the K completions pasted back (tiles at most
    GRID_TILE pixels), labelled. `photo`: the photo, if read."""
    from PIL import Image

    from jax_inpaint.inversion.outputs import masked_preview

    photo = result.inputs.photo() if photo is None else photo
    h, w = photo.shape[:2]
    f = min(1.0, GRID_TILE / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))

    def tile(img):
        return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS)) if f < 1.0 else img

    tiles = [tile(photo), tile(masked_preview(images.to_float(photo), result.inputs.photo_hole()))]
    tiles += [tile(result.photo(i, photo)) for i in range(len(result.seeds))]
    labels = ["photo", "hole"] + [f"seed {s}" for s in result.seeds]
    return images.image_grid(tiles, ncols=min(len(tiles), 4), labels=labels if min(size) >= 48 else None)


def save_photo_result(result: PhotoResult, out) -> dict[str, str]:
    """Write the run: photo_<seed>.png (each completion pasted back into the whole photo), photo_grid.png,
    aligned.png and aligned_mask.png (what the search saw), alignment.json (the transform), and what `inpaint`
    writes for the aligned frame (completion_<seed>.png, raw_<seed>.png, grid.png, latents.npz, loss.png,
    metrics.json). All files or none; an earlier run's outputs in `out` are replaced. Returns
    {name: path}; 'grid' is photo_grid.png, 'aligned_grid' the aligned frame's grid.png."""
    from jax_inpaint.inversion.outputs import save_result

    out = os.fspath(out)
    written: dict[str, str] = {}
    with files.staged(out, stale=lambda new: _previous_outputs(out)) as stage:
        for k, path in save_result(result.aligned, stage).items():
            written["aligned_grid" if k == "grid" else k] = os.path.basename(path)
        photo = result.inputs.photo()
        for i, s in enumerate(result.seeds):
            images.save_png(os.path.join(stage, f"photo_{s}.png"), result.photo(i, photo))
            written[f"photo_{s}"] = f"photo_{s}.png"
        images.save_png(os.path.join(stage, "photo_grid.png"), photo_grid(result, photo))
        images.save_png(os.path.join(stage, "aligned.png"), images.to_uint8(result.aligned.target))
        images.save_png(os.path.join(stage, "aligned_mask.png"), images.mask_to_u8(result.aligned.hole))
        written.update(grid="photo_grid.png", aligned="aligned.png", aligned_mask="aligned_mask.png",
                       alignment="alignment.json")
        names = sorted(set(written.values()))
        files.write_json(os.path.join(stage, "alignment.json"),
                         {**result.inputs.alignment.to_json(), "seam_photo_pixels": result.inputs.seam,
                          "seeds": list(result.seeds), "files": names})
    return {k: os.path.join(out, v) for k, v in written.items()}


def alignment_path(out) -> str:
    """Where `jax-inpaint align --out X.png` writes the transform: X.json beside it."""
    return os.path.splitext(os.fspath(out))[0] + ".json"


def write_aligned(photo, size: int, out, *, face: int | None = None) -> tuple[Alignment, dict[str, str]]:
    """`jax-inpaint align`: the aligned face as a PNG at `out` and its transform as JSON beside it (same name,
    .json), both or neither. Returns the Alignment and {'image': path, 'json': path}."""
    from jax_inpaint.align.landmarks import require

    out = os.path.abspath(os.fspath(out))
    if not re.search(r"\.png$", out, re.IGNORECASE):
        raise InputError(f"--out {out}: the aligned image is written as PNG: give a name ending in .png")
    if os.path.isdir(out):
        raise InputError(f"--out {out}: is a folder (give the PNG's file name, e.g. aligned.png)")
    folder = os.path.dirname(out)
    require()
    image = read_photo(photo)
    with files.output_folder(folder, what="--out"):
        what = os.fspath(photo) if isinstance(photo, (str, os.PathLike)) else "the photo"
        aligned, al = align_photo(image, size, face=face, what=what)
        name, js = os.path.basename(out), os.path.basename(alignment_path(out))
        with files.staged(folder) as stage:
            images.save_png(os.path.join(stage, name), aligned)
            files.write_json(os.path.join(stage, js), {**al.to_json(), "image": name})
    return al, {"image": out, "json": alignment_path(out)}


def describe(al: Alignment) -> str:
    """One line about an alignment, for the command line."""
    eyes = ffhq.recipe_positions(al.points, al.size)
    p = al.points
    return (f"{which_face(al)}: eyes at ({p[0][0]:.1f}, {p[0][1]:.1f}) and ({p[1][0]:.1f}, {p[1][1]:.1f}) in the photo, "
            f"at ({eyes['eye_left'][0]:.1f}, {eyes['eye_left'][1]:.1f}) and ({eyes['eye_right'][0]:.1f}, "
            f"{eyes['eye_right'][1]:.1f}) in the {al.size}x{al.size} aligned image "
            f"({ffhq.pixel_scale(al.matrix):.3g} photo pixels per aligned pixel)")
