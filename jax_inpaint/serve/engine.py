"""The models of `jax-inpaint serve` and what the page asks of them.

`Engine` loads the generator, LPIPS and the optional classifier and CLIP once. What a request brings
(an uploaded file, a painted mask, the options of the form) is checked here on the request's own thread,
numpy only (`Engine.parse_job`, `read_upload`, `sample`, `preset_mask`): bad input is a one-line
InputError at once, before anything queues. `Engine.run` does one job's device work: it is called by the
one worker thread of jax_inpaint.serve.jobs, so one job at a time uses the device.

A run is the Inpainter's own steps (`objective`, `prepare`, `run_search`, `finish`): one Inpainter per
inpainting config (the page may change the preset, steps, latent space and noise), all sharing the models
loaded here; the compiled searches are cached by their program (jax_inpaint.inversion.search.get_search),
so a later job with the same options and K reuses the compiled program. After every chunk of steps the
search's best latents so far are rendered (known pixels pasted back) as intermediate completions.
"""
from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import io
import json
import math
import numbers
import os
import re
import tempfile
import zipfile
from typing import Any, Callable, Mapping

import numpy as np

from jax_inpaint import files, images, masks
from jax_inpaint.errors import InputError, brief
from jax_inpaint.inversion.config import (CHOICES, CONFIG_DIRS, MAX_SEED, InpaintConfig, check_attributes,
                                          check_option, find_preset, load_config, parse_prompts)
from jax_inpaint.inversion.inputs import Inputs, prepare_inputs

MAX_UPLOAD_BYTES = 64 << 20  # an uploaded image (the image reader refuses more than 100 megapixels anyway)
SAMPLE_TRUNCATION = 0.7  # "sample a face" from the generator: truncated towards w_avg, as demos show faces
DEFAULT_MAX_SEEDS = 16  # the largest K the page may ask for (`serve --max-seeds`)
INPAINTERS = 4  # Inpainters (one per inpainting config) kept; they share the models, so each is small
RECT_PRESETS = ("center", "left", "right", "top", "bottom")
FACE_PRESETS = tuple(masks.FACE_REGIONS)  # eyes, nose, mouth: boxes of an aligned face
MASK_PRESETS = RECT_PRESETS + FACE_PRESETS + ("strokes",)
NO_HOLE = "no hole painted: paint the part of the image to fill with the brush, or pick a preset mask"
ALL_HOLE = "the hole covers the whole image: leave some known pixels for the completions to match"


@dataclasses.dataclass
class JobSpec:
    """One checked request: everything a run needs, nothing loaded on the device yet."""
    inputs: Inputs  # target [R,R,3] in [-1,1], hole [R,R] (True = hole)
    seeds: list[int]
    cfg: InpaintConfig
    preset: str
    attributes: tuple[tuple[str, float], ...]
    prompts: tuple[tuple[str, float], ...]
    host_bytes: int  # host memory its outputs take (inversion.inpainter.check_host_memory)


@dataclasses.dataclass
class Outcome:
    """A finished run: the final completions (None for a seed whose loss became NaN), a caption per seed,
    a short summary and the zip of every file `jax-inpaint inpaint` would write."""
    images: list[np.ndarray | None]
    labels: list[str]
    summary: dict
    zip: bytes


class Stopped(Exception):
    """A run stopped between two chunks because its job was cancelled (the page closed or cancelled it)."""


# ---------------------------------------------------------------------------------------------
# What the page sends: numbers as typed, images as data URLs.

def number(value, what: str, lo: float = -math.inf, hi: float = math.inf, *, whole: bool = False):
    """A number the page sent (a JSON number, or the text of an input field), checked: finite, in
    [lo, hi], a whole number when `whole`; otherwise a one-line InputError naming it as the page does."""
    kind = "a whole number" if whole else "a number"
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InputError(f"{what}: empty (give {kind})")
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{what} must be {kind} (got {brief(text)})") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be {kind} (got {brief(value)})")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{what} must be a finite number (got {value})")
    if whole:
        if not value.is_integer():
            raise InputError(f"{what} must be {kind} (got {value:g})")
        value = int(value)
    if not lo <= value <= hi:
        bounds = (f"at least {_num(lo)}" if hi == math.inf else f"in [{_num(lo)}, {_num(hi)}]" if lo > -math.inf
                  else f"at most {_num(hi)}")
        raise InputError(f"{what} must be {bounds} (got {_num(value)})")
    return value


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


_DATA_URL = re.compile(r"data:[\w/+.-]*(?:;[\w=.+-]+)*;base64,", re.ASCII)


def decode_data_url(text, what: str) -> bytes:
    """The bytes of a base64 data URL (how the page sends images and masks)."""
    if not isinstance(text, str) or not text:
        raise InputError(f"{what}: missing")
    m = _DATA_URL.match(text, 0, 300)
    if not m:
        raise InputError(f"{what}: not an image (expected a base64 data: URL)")
    if (len(text) - m.end()) * 3 // 4 > MAX_UPLOAD_BYTES:
        raise InputError(f"{what}: larger than {MAX_UPLOAD_BYTES >> 20} MB")
    try:
        return base64.b64decode(text[m.end():], validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what}: the data URL is damaged (not valid base64)") from None


def shown_name(name) -> str:
    """An uploaded file's name as messages show it: its last path part, printable, at most 80 characters."""
    text = os.path.basename(str(name or "").replace("\\", "/")) or "the upload"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 80 else text[:77] + "..."


def read_upload(data: bytes, name: str = "upload", *, gray: bool = False) -> np.ndarray:
    """An uploaded image file's bytes, read by the one image reader (jax_inpaint.images: format and size
    checked from the header, EXIF orientation, 16-bit scaled): uint8 RGB [H,W,3] (gray: luminance [H,W]).
    An unreadable file is an InputError naming the upload, never the temporary path."""
    shown = shown_name(name)
    if not data:
        raise InputError(f"{shown}: the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(f"{shown}: larger than {MAX_UPLOAD_BYTES >> 20} MB")
    with tempfile.TemporaryDirectory(prefix="jax-inpaint-serve-") as folder:
        path = os.path.join(folder, files.safe_name(shown, "upload"))
        with open(path, "wb") as f:
            f.write(data)
        try:
            return images.read_gray(path) if gray else images.read_rgb(path)
        except InputError as e:
            raise InputError(str(e).replace(path, shown)) from None


def png_bytes(img: np.ndarray) -> bytes:
    """uint8 (or [-1, 1] float) HWC / HW image -> PNG bytes."""
    from PIL import Image

    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = images.to_uint8(np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=-1.0))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def data_url(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


def _same_path(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# The engine.

class Engine:
    """The models, loaded once, and what the page's requests do with them.

    generator, classifier, clip: model folders or shipped names (as the CLI takes them); config: a
    preset name or YAML file, the page's default preset (by default `demo` for the shipped demo model,
    else `default`); max_seeds: the largest K a request may ask for; align: uploaded images are photos,
    whose face (number `face` by size, 0 = the largest) is aligned as FFHQ's were and becomes the image
    the page paints its hole on (the `align` extra)."""

    def __init__(self, generator, *, classifier=None, clip=None, config=None, class_idx: int | None = None,
                 max_seeds: int = DEFAULT_MAX_SEEDS, align: bool = False, face: int | None = None):
        from jax_inpaint.models import shipped
        from jax_inpaint.models.clip import load_clip
        from jax_inpaint.models.lpips import load_lpips
        from jax_inpaint.models.stylegan2 import class_vector, load_generator
        from jax_inpaint.models.vit import load_classifier

        self.max_seeds = int(number(max_seeds, "--max-seeds", 1, 4096, whole=True))
        self.align, self.face = bool(align), face
        if face is not None and not self.align:
            raise InputError("--face picks a face to align: it needs --align")
        if self.align:
            from jax_inpaint.align.landmarks import require

            require()  # a one-line InputError naming the extra to install, before any model loads
        demo = shipped.shipped_models("generator").get("demo-faces")
        folder = shipped.resolve_model(generator, "generator")
        self.demo_renderer = demo is not None and _same_path(folder, demo)  # "sample a face" from the renderer
        self.presets, self.default_preset = self._presets(config, self.demo_renderer)  # before any model loads
        # Read once: what the page shows is what runs, even if a file changes while the server is up.
        self.configs = {name: load_config(path) for name, path in self.presets.items()}
        self.builtin_presets = _preset_names()  # the names `--config` takes as they are
        self.generator_name = os.fspath(generator)
        self.G = load_generator(generator)
        class_vector(self.G, class_idx, 1)  # a conditional generator needs --class (one line, now)
        self.class_idx = class_idx
        self.classifier = None if classifier is None else load_classifier(classifier)
        self.classifier_name = None if classifier is None else os.fspath(classifier)
        self.clip = None if clip is None else load_clip(clip)
        self.clip_name = None if clip is None else os.fspath(clip)
        self.lpips = load_lpips()  # the metrics use it whatever the objective
        self._discriminator = None
        self._inpainters: collections.OrderedDict[InpaintConfig, tuple] = collections.OrderedDict()

    @property
    def resolution(self) -> int:
        return self.G.img_resolution

    @staticmethod
    def _presets(config, demo: bool) -> tuple[dict[str, str], str]:
        """The presets the page offers (name -> YAML path): every file of configs/, and `config` when it
        is a file of its own; and the default one (`config`, else `demo` for the demo model)."""
        presets: dict[str, str] = {}
        for d in CONFIG_DIRS:
            if d.is_dir():
                for p in sorted(d.glob("*.yaml")):
                    presets.setdefault(p.stem, str(p))
        if config is None:
            default = "demo" if demo and "demo" in presets else "default"
            return presets, default if default in presets else next(iter(presets))
        path = find_preset(os.fspath(config))  # a one-line InputError for a missing file or preset
        load_config(str(path))  # ... and for a bad one, before the models load
        for name, p in presets.items():
            if _same_path(p, path):
                return presets, name
        name = path.name
        presets = {name: str(path), **presets}
        return presets, name

    # What the page needs to draw its form --------------------------------------------------------
    def info(self) -> dict:
        presets = {}
        for name, cfg in self.configs.items():
            presets[name] = {"steps": cfg.steps, "space": cfg.space, "noise": cfg.noise}
        return {
            "generator": self.generator_name, "resolution": self.resolution,
            "classifier": self.classifier_name, "labels": list(self.classifier.labels) if self.classifier else [],
            "clip": self.clip_name, "presets": presets, "default_preset": self.default_preset,
            "space": list(CHOICES["space"]), "noise": list(CHOICES["noise"]),
            "max_seeds": self.max_seeds, "default_k": min(4, self.max_seeds),
            "mask_presets": list(MASK_PRESETS) if self.resolution >= 16 else list(RECT_PRESETS),
            "samplers": ["generator"] + (["renderer"] if self.demo_renderer else []),
            "align": self.align,
        }

    # Images --------------------------------------------------------------------------------------
    def fit_image(self, img: np.ndarray, name: str = "the upload") -> tuple[np.ndarray, list[str]]:
        """An image brought to the generator's resolution (centre-cropped, Lanczos), with a notice when
        it was: the page paints the hole on this one, pixel for pixel. With `align`: the photo's face,
        aligned as FFHQ's were (no face: a one-line InputError)."""
        r = self.resolution
        h, w = img.shape[:2]
        if self.align:
            from jax_inpaint.align.photo import align_photo, which_face

            aligned, al = align_photo(img, r, face=self.face, what=name)
            return aligned, [f"{which_face(al)} of the {w}x{h} photo, aligned to {r}x{r} as FFHQ's faces were: "
                             "paint the hole on the aligned face"]
        if (h, w) == (r, r):
            return img, []
        s = min(h, w)
        return images.center_crop_resize(img, r), [f"the image is {w}x{h}: centre-cropped to {s}x{s} and resized "
                                                   f"to the generator's {r}x{r}"]

    def sample(self, source: str, seed) -> np.ndarray:
        """A face to inpaint (uint8 [R,R,3]): from the generator (seed as `jax-inpaint generate` draws it,
        truncation SAMPLE_TRUNCATION), or drawn by the demo renderer (jax_inpaint.demo.faces: a held-out
        face no training saw) when the generator is the shipped demo model."""
        seed = number(seed, "seed", 0, MAX_SEED, whole=True)
        if source == "generator":
            from jax_inpaint.generate import generate

            img = generate(self.G, [seed], truncation_psi=SAMPLE_TRUNCATION, class_idx=self.class_idx)["images"][0]
            return np.repeat(img, 3, -1) if img.shape[-1] == 1 else img[..., :3]
        if source == "renderer":
            if not self.demo_renderer:
                raise InputError("the demo renderer draws the faces of the demo model: it is offered only with "
                                 "--generator demo-faces")
            from jax_inpaint.demo import faces
            from jax_inpaint.demo.run import DEMO_DATA_SEED

            return faces.render(faces.sample_spec(faces.face_rng(DEMO_DATA_SEED, seed)), self.resolution)
        raise InputError(f"unknown source of samples {brief(source)} (generator or renderer)")

    def preset_mask(self, name: str, seed=0) -> np.ndarray:
        """A preset hole (bool [R,R]): a half or the centre box (`jax-inpaint inpaint --mask`), the eyes /
        nose / mouth box of an aligned face, or random brush strokes (seeded)."""
        r = self.resolution
        if name in RECT_PRESETS:
            return masks.preset_mask(name, r)
        if name in FACE_PRESETS:
            return masks.make_mask(name, 0.05, seed=0, size=r)  # fixed boxes: the ratio only picks bucket 0
        if name == "strokes":
            return masks.make_mask("strokes-medium", 0.2, seed=number(seed, "seed", 0, MAX_SEED, whole=True), size=r)
        raise InputError(f"unknown preset mask {brief(name)}; presets: {', '.join(MASK_PRESETS)}")

    # A request -----------------------------------------------------------------------------------
    def parse_job(self, body: Mapping) -> JobSpec:
        """The page's request (JSON) -> a checked JobSpec, or a one-line InputError saying what is wrong.

        image, mask: PNG data URLs (the mask: white = hole, the image's size); k, seed: K completions with
        seeds seed..seed+K-1; preset, steps, space, noise: the inpainting options (a preset the page
        offers, then the fields over it); attributes: {classifier label: target probability}; prompts:
        CLIP texts, one per line (TEXT::WEIGHT sets a weight)."""
        from jax_inpaint.inversion.inpainter import check_host_memory

        if not isinstance(body, Mapping):
            raise InputError("the request must be a JSON object")
        img = read_upload(decode_data_url(body.get("image"), "the image"), "the image")
        mask = read_upload(decode_data_url(body.get("mask"), "the mask"), "the mask", gray=True)
        if mask.shape != img.shape[:2]:
            raise InputError(f"the mask is {mask.shape[1]}x{mask.shape[0]} pixels, the image {img.shape[1]}x"
                             f"{img.shape[0]}: paint the hole on this image again")
        hole = mask >= 128
        if not hole.any():
            raise InputError(NO_HOLE)
        if hole.all():
            raise InputError(ALL_HOLE)
        try:
            inputs = prepare_inputs(img, hole, self.resolution)
        except InputError as e:  # the hole vanished (or grew to everything) in the resize
            raise InputError(f"{e} after resizing to the generator's {self.resolution}x{self.resolution}") from None
        k = number(body.get("k"), "K (completions)", 1, self.max_seeds, whole=True)
        first = number(body.get("seed", 0), "first seed", 0, MAX_SEED - k + 1, whole=True)
        seeds = list(range(first, first + k))
        preset = body.get("preset") or self.default_preset
        if preset not in self.presets:
            raise InputError(f"unknown preset {brief(preset)}; presets: {', '.join(self.presets)}")
        overrides: dict[str, Any] = {}
        if body.get("steps") not in (None, ""):
            overrides["steps"] = check_option("steps", number(body["steps"], "steps"), "steps")
        for name, label in (("space", "latent space"), ("noise", "noise")):
            if body.get(name) not in (None, ""):
                overrides[name] = check_option(name, body[name], label)
        cfg = self.configs[preset].replace(**overrides)  # checked again, as a whole, by InpaintConfig
        attributes = self._attributes(body.get("attributes"))
        prompts = self._prompts(body.get("prompts"))
        try:
            host = check_host_memory(k, self.G, cfg)
        except InputError as e:
            raise InputError(str(e).replace("--seeds: ", "K: ", 1)) from None
        return JobSpec(inputs, seeds, cfg, preset, attributes, prompts, host)

    def _attributes(self, raw) -> tuple[tuple[str, float], ...]:
        if not raw:
            return ()
        if not isinstance(raw, Mapping):
            raise InputError("attributes must map a classifier label to a target probability")
        if self.classifier is None:
            raise InputError("attribute targets need an attribute classifier: start the server with --classifier")
        labels = list(self.classifier.labels)
        pairs = []
        for name, value in raw.items():
            if name not in labels:
                raise InputError(f"unknown attribute {brief(name)}: the classifier knows "
                                 f"{', '.join(labels)}")
            pairs.append((name, number(value, f"attribute {name}", 0, 1)))
        return check_attributes(pairs, "attribute")

    def _prompts(self, raw) -> tuple[tuple[str, float], ...]:
        if raw is None or raw == "" or raw == []:
            return ()
        if isinstance(raw, str):
            raw = [line for line in raw.splitlines() if line.strip()]
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            raise InputError("prompts must be text, one prompt per line")
        if not raw:
            return ()
        if self.clip is None:
            raise InputError("prompts need a CLIP model: start the server with --clip")
        return parse_prompts(raw, "prompt")

    # The device work of one job (the worker thread) ----------------------------------------------
    def _inpainter(self, cfg: InpaintConfig):
        """The Inpainter of this config (built once, kept for the INPAINTERS most recent configs, sharing
        the models loaded here; it remembers the searches it fitted to memory)."""
        from jax_inpaint.inversion.inpainter import Inpainter
        from jax_inpaint.models.stylegan2 import load_discriminator

        inp = self._inpainters.pop(cfg, None)
        if inp is None:
            d = None
            if cfg.realism > 0:
                if self._discriminator is None:
                    self._discriminator = load_discriminator(self.generator_name)
                d = self._discriminator
            inp = Inpainter(self.G, config=cfg, clip=self.clip, classifier=self.classifier, discriminator=d,
                            lpips_model=self.lpips, class_idx=self.class_idx)
        self._inpainters[cfg] = inp
        while len(self._inpainters) > INPAINTERS:
            self._inpainters.popitem(last=False)
        return inp

    def render(self, ws: np.ndarray, noise: dict | None, inputs: Inputs, feather: float) -> np.ndarray:
        """Latents [k,num_ws,w_dim] (and noise {name: [k,H,W]}) -> completions uint8 [k,R,R,3], the known
        pixels pasted back as `Inpainter.finish` does."""
        from jax_inpaint.inversion.inpainter import composite

        G = self.G
        raw = G.synthesis(ws, noise=noise) if noise else G.synthesis(ws, noise_mode="none")
        raw = np.nan_to_num(np.asarray(raw, np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
        return images.to_uint8(composite(raw, inputs.target, inputs.hole, feather))

    def run(self, spec: JobSpec, *, should_stop: Callable[[], bool] = lambda: False,
            progress: Callable[[int, int], None] = lambda done, total: None,
            preview: Callable[[int, np.ndarray], None] | None = None) -> Outcome:
        """Run one job: K completions of the hole, searched in batches that fit in memory.

        should_stop: asked before the first chunk and between chunks; True ends the run (Stopped).
        progress(steps done, steps in all) after each chunk; preview(first index, completions uint8
        [k,R,R,3]) with the completions of the best latents so far of seeds first..first+k-1."""
        from jax_inpaint.inversion.search import batches

        cfg, inputs = spec.cfg, spec.inputs
        inp = self._inpainter(cfg)
        try:
            objective = inp.objective(spec.prompts, spec.attributes)
            search = inp.fitted(objective, len(spec.seeds), reserve=spec.host_bytes)  # as Inpainter.__call__
            total = cfg.steps * len(batches(spec.seeds, search.batch))
            done = 0
            progress(0, total)

            def step(n, losses):
                nonlocal done
                done += n
                progress(done, total)

            def show(first, steps, ws, noise):
                preview(first, self.render(np.asarray(ws), noise, inputs, cfg.feather))

            result = inp.search_all(objective, search, spec.seeds, inputs, should_stop=should_stop, progress=step,
                                    preview=None if preview is None else show)
        except KeyboardInterrupt:  # Search.run's interruption point: should_stop() said so between chunks
            raise Stopped() from None
        except MemoryError:
            raise InputError("out of memory: ask for fewer completions (K)") from None
        except Exception as e:  # the accelerator's own out-of-memory error (jaxlib's XlaRuntimeError)
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            raise InputError(f"out of device memory: ask for fewer completions (K) "
                             f"({str(e).splitlines()[0][:200]})") from None
        return self._outcome(spec, result)

    def _outcome(self, spec: JobSpec, result) -> Outcome:
        by_seed = {s: i for i, s in enumerate(result.seeds)}
        per_seed = {e["seed"]: e for e in result.metrics["seeds"]}
        finals: list[np.ndarray | None] = []
        labels = []
        for s in spec.seeds:
            if s not in by_seed:
                finals.append(None)
                labels.append(f"seed {s}: dropped (the loss became NaN)")
                continue
            finals.append(images.to_uint8(result.completions[by_seed[s]]))
            e = per_seed[s]
            parts = [f"seed {s}"]
            parts += [f"{n} {e['attributes'][n]:.2f}" for n, _ in spec.attributes]
            parts += [f"clip {e['clip_similarity'][p]:.3f}" for p, _ in spec.prompts]
            labels.append(" · ".join(parts))
        m = result.metrics
        summary = {"seeds": result.seeds, "dropped": result.dropped}
        for key in ("diversity_hole_lpips", "constraint_success_rate", "hole_ratio"):
            if key in m:
                summary[key] = m[key]
        return Outcome(finals, labels, summary, self._zip(spec, result))

    def _zip(self, spec: JobSpec, result) -> bytes:
        """Every file `jax-inpaint inpaint` writes (completions, raw outputs, grid, latents.npz, loss.png,
        metrics.json; by save_result), with the input, its mask and the request, as one zip."""
        from jax_inpaint.inversion.outputs import save_result

        with tempfile.TemporaryDirectory(prefix="jax-inpaint-serve-") as folder:
            out = os.path.join(folder, "result")
            save_result(result, out)
            images.save_png(os.path.join(out, "input.png"), spec.inputs.target)
            images.save_png(os.path.join(out, "mask.png"), images.mask_to_u8(spec.inputs.hole))
            files.write_json(os.path.join(out, "request.json"), self.request_record(spec))
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                for name in sorted(os.listdir(out)):
                    z.write(os.path.join(out, name), name)
        return buf.getvalue()

    def request_record(self, spec: JobSpec) -> dict:
        """What was asked, and the `jax-inpaint inpaint` command that repeats it on the zip's files."""
        cfg, base = spec.cfg, self.configs[spec.preset]
        changed = [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(base, f.name)]
        seeds = f"{spec.seeds[0]}-{spec.seeds[-1]}" if len(spec.seeds) > 1 else str(spec.seeds[0])
        preset = spec.preset if spec.preset in self.builtin_presets else self.presets[spec.preset]
        cmd = ["jax-inpaint", "inpaint", "input.png", "--mask", "mask.png", "--generator", self.generator_name,
               "--seeds", seeds, "--config", preset]
        cmd += [a for n in changed for a in (f"--{n.replace('_', '-')}", str(getattr(cfg, n)))]
        if self.class_idx is not None:
            cmd += ["--class", str(self.class_idx)]
        if spec.attributes:
            cmd += ["--classifier", self.classifier_name]
            cmd += [a for n, p in spec.attributes for a in ("--attribute", f"{n}={p:g}")]
        if spec.prompts:
            cmd += ["--clip", self.clip_name]
            cmd += [a for t, w in spec.prompts for a in ("--prompt", t if w == 1 else f"{t}::{w:g}")]
        cmd += ["--out", "out/"]
        return {"generator": self.generator_name, "preset": spec.preset, "seeds": spec.seeds,
                "attributes": dict(spec.attributes), "prompts": [list(p) for p in spec.prompts],
                "config": dataclasses.asdict(cfg), "command": " ".join(_quote(a) for a in cmd)}


def _preset_names() -> set[str]:
    return {p.stem for d in CONFIG_DIRS if d.is_dir() for p in d.glob("*.yaml")}


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(str(arg))


def to_json(data) -> bytes:
    return json.dumps(files.jsonable(data, nan_to_null=True), ensure_ascii=False).encode("utf-8")
