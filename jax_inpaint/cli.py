"""The `jax-inpaint` command: thin click wrappers around library functions."""
from __future__ import annotations

import contextlib
import os
import re
import sys

import click

from jax_inpaint.errors import InputError


class _Group(click.Group):
    """A click group whose every failure is one line on stderr, never a traceback.

    Usage errors and library InputErrors (bad input: a file, an option, a checkpoint) exit with 2,
    as does an OSError (an unwritable or full output folder); Ctrl-C exits with 130. The library
    writes every file atomically, so none of these leaves a half-written file behind.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            with _notes():
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except InputError as e:
            _fail(str(e), 2)
        except (KeyboardInterrupt, click.Abort):
            _fail("interrupted (nothing half-written was left behind)", 130)
        except OSError as e:
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            _fail(f"{where}{e.strerror or e}", 2)
        except MemoryError:
            _fail("out of memory: use fewer seeds (--seeds) or a smaller --batch", 2)
        except Exception as e:  # the accelerator's own out-of-memory error (jaxlib's XlaRuntimeError)
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            _fail(f"out of device memory: use fewer seeds (--seeds) or a smaller --batch "
                  f"({str(e).splitlines()[0][:200]})", 2)
        sys.exit(rv if isinstance(rv, int) else 0)


@contextlib.contextmanager
def _notes():
    """The library's `errors.Notice` warnings, each distinct one printed once as `note: ...` on stderr."""
    import warnings

    from jax_inpaint.errors import Notice

    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("always", Notice)
        show = warnings.showwarning

        def note(message, category, *args, **kwargs):
            if not issubclass(category, Notice):
                return show(message, category, *args, **kwargs)
            if str(message) not in seen:
                seen.add(str(message))
                click.echo(f"note: {message}", err=True)

        warnings.showwarning = note
        yield


SEED_LINES = 16  # `inpaint` prints one line per seed up to 32 seeds, else the first 16


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,9-10' -> [0, 1, 2, 3, 7, 9, 10]: distinct whole numbers in [0, 2**32 - 1] (recipe.check_seeds)."""
    from jax_inpaint.inversion.config import MAX_SEED, MAX_SEEDS, check_seeds

    example = "such as '0-7' or '1,5,9'"
    parts = [p.strip() for p in str(text).split(",")]
    if parts == [""]:
        raise click.BadParameter(f"no seeds given (a list of seeds {example})")
    seeds: list[int] = []
    for part in parts:
        if not part:
            raise click.BadParameter(f"{text!r} has an empty element (a list of seeds {example})")
        m = re.fullmatch(r"(\d{1,20})(?:\s*-\s*(\d{1,20}))?", part)
        if not m:
            raise click.BadParameter(f"{text!r} is not a list of seeds {example}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise click.BadParameter(f"{text!r} is not a list of seeds: {part!r} ends before it starts")
        if hi > MAX_SEED:
            raise click.BadParameter(f"seed {hi} is out of range: seeds are whole numbers in [0, {MAX_SEED}]")
        if len(seeds) + hi - lo + 1 > MAX_SEEDS:
            raise click.BadParameter(f"{text!r}: more than {MAX_SEEDS:,} seeds")
        seeds.extend(range(lo, hi + 1))
    try:
        return check_seeds(seeds)
    except InputError as e:
        raise click.BadParameter(str(e).removeprefix("--seeds").lstrip(": ")) from None


class SeedsType(click.ParamType):
    name = "SEEDS"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return parse_seeds(value)
        except click.BadParameter as e:
            self.fail(e.message, param, ctx)


SEEDS = SeedsType()


class FiniteFloat(click.ParamType):
    """A float that is not NaN or infinite (click's FLOAT takes 'nan' and 'inf')."""
    name = "FLOAT"

    def convert(self, value, param, ctx):
        import math

        v = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


FINITE = FiniteFloat()


# Commands whose runs are mostly compiling keep glibc's settings: the tuned allocator's single arena slows
# XLA's multi-threaded compiler (the demo's 32x32 models, first run: 37 -> 50 s in one reading).
COMPILE_BOUND = {"demo"}


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="jax-inpaint")
def main():
    """jax-inpaint: fill the missing part of an image with a pretrained StyleGAN2.

    Convert a checkpoint once (`jax-inpaint convert`), then `inpaint`, `generate`, `score`,
    `evaluate` or `inpaint-batch` with the converted folder. `jax-inpaint demo` shows it all on the
    model that ships with the package.

    Compiled XLA programs are cached in ~/.cache/jax-inpaint/xla (set JAX_INPAINT_XLA_CACHE to another
    folder, or to an empty string to turn the cache off), so a repeated run starts faster.

    On Linux, glibc's malloc is set to keep freed memory for reuse (XLA:CPU's calls then do not page-fault
    their working memory afresh: a 256x256 search step ~10 % faster on CPU, compiling ~1.5x slower;
    resident memory stays at its peak), except for `demo`, whose tiny models spend their time compiling.
    JAX_INPAINT_HOST_ALLOCATOR=default keeps glibc's own settings.
    """
    _use_compilation_cache()
    # only before JAX starts its CPU client (jax_inpaint.allocator)
    if "jax" not in sys.modules and click.get_current_context().invoked_subcommand not in COMPILE_BOUND:
        from jax_inpaint.allocator import tune_host_allocator

        tune_host_allocator()


def _use_compilation_cache() -> None:
    """JAX's persistent compilation cache, unless the user configured their own or turned it off.

    Set through JAX's environment variables when jax is not imported yet (so `--help` and the
    numpy-only commands never import it), through jax.config when it is."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    folder = os.environ.get("JAX_INPAINT_XLA_CACHE",
                            os.path.join(os.path.expanduser("~"), ".cache", "jax-inpaint", "xla"))
    if not folder:
        return
    if "jax" not in sys.modules:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1.0")
        return
    import jax

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@main.group(cls=_Group)
def convert():
    """Convert a checkpoint (NVIDIA .pkl, rosinality .pt, Hugging Face folder) into a model folder."""


# ---------------------------------------------------------------------------------------------
# Generator: conversion and sampling.

@convert.command("stylegan2")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace DEST if it is a model folder written by jax-inpaint "
                   "(never a folder holding anything else, the source, or the current folder).")
@click.option("--init-kwargs", type=click.Path(dir_okay=False, exists=True), default=None,
              help="JSON with NVIDIA's Generator constructor kwargs, for a bare state dict (.npz/.pt/.safetensors) "
                   "that does not carry them; without it the architecture is inferred from the tensor shapes.")
@click.option("--conv-clamp", type=float, default=None,
              help="conv_clamp for sources that do not record it (rosinality files, bare state dicts).")
@click.option("--no-discriminator", is_flag=True, help="Do not convert the discriminator even if present.")
def convert_stylegan2_cmd(src, dest, overwrite, init_kwargs, conv_clamp, no_discriminator):
    """Convert a StyleGAN2 checkpoint SRC into the model folder DEST.

    SRC: an official stylegan2-ada-pytorch / stylegan3 StyleGAN2 pickle (G_ema and D are taken; the
    code embedded in the pickle is never run), a rosinality .pt (g_ema, and d when present), or an
    NVIDIA-named state dict.
    """
    from convert_weights.stylegan2 import convert_stylegan2

    out = convert_stylegan2(src, dest, overwrite=overwrite, init_kwargs=init_kwargs, conv_clamp=conv_clamp,
                            discriminator=not no_discriminator)
    click.echo(f"wrote {out}")


@main.command()
@click.option("--generator", "-g", "generator", required=True,
              help="Model folder from `convert stylegan2`, or a shipped model name (demo-faces).")
@click.option("--seeds", type=SEEDS, default="0-7", help="Seeds, e.g. '0-7' or '1,5,9'; z as NVIDIA's generate.py draws it.")
@click.option("--trunc", "truncation_psi", type=FINITE, default=1.0, help="Truncation psi (1 = none).")
@click.option("--trunc-cutoff", type=click.IntRange(min=0), default=None, help="Truncate only the first N ws.")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
              help="Class index for conditional generators.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const",
              help="Per-layer noise: the checkpoint's fixed noise, fresh noise per seed, or none.")
@click.option("--latents", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Render the ws (and noise) of a latents.npz written by `inpaint` instead of seeds.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
def generate(generator, seeds, truncation_psi, trunc_cutoff, class_idx, noise_mode, latents, out):
    """Generate images: one PNG per seed (seed0000.png ...) and grid.png."""
    from jax_inpaint.generate import generate as run, render_latents
    from jax_inpaint.models.stylegan2 import load_generator

    G = load_generator(generator)
    if latents:
        res = render_latents(G, latents, out=out)
    else:
        res = run(G, seeds, truncation_psi=truncation_psi, truncation_cutoff=trunc_cutoff, class_idx=class_idx,
                  noise_mode=noise_mode, out=out)
    click.echo(f"wrote {len(res['images'])} images and grid.png to {out}")


# ---------------------------------------------------------------------------------------------
# Inpainting.

def config_options(fn):
    """One CLI option per InpaintConfig field (help and default from the dataclass: one source)."""
    import dataclasses

    from jax_inpaint.inversion.config import CHOICES, InpaintConfig, field_help

    helps = field_help()
    for f in reversed(dataclasses.fields(InpaintConfig)):
        kind = click.Choice(CHOICES[f.name]) if f.name in CHOICES else type(f.default)
        fn = click.option(f"--{f.name.replace('_', '-')}", f.name, type=kind, default=None,
                          help=f"{helps.get(f.name, '')} [default: {f.default}]")(fn)
    return fn


def inpaint_inputs(fn):
    """Options shared by inpaint, evaluate and inpaint-batch."""
    from jax_inpaint.inversion.config import DEFAULT_SEEDS

    opts = [
        click.option("--generator", "-g", required=True,
                     help="Model folder from `convert stylegan2`, or a shipped model name (demo-faces)."),
        click.option("--seeds", type=SEEDS, default=f"{DEFAULT_SEEDS[0]}-{DEFAULT_SEEDS[-1]}",
                     help="Seeds of the K completions, e.g. '0-7' or '1,5,9'."),
        click.option("--config", "config", default=None,
                     help="YAML file or preset name in configs/ (default, nvidia, fast, demo); options given here override it."),
        click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
                     help="Class index (conditional generators)."),
        click.option("--prompt", "prompts", multiple=True,
                     help="Text the hole should match (CLIP); repeatable; 'TEXT::WEIGHT' sets a weight."),
        click.option("--clip", "clip", default=None,
                     help="CLIP model folder from `convert clip`, or a shipped name (demo-faces) (for --prompt)."),
        click.option("--attribute", "attributes", multiple=True,
                     help="Attribute target NAME=P (e.g. Smiling=1); repeatable; needs --classifier."),
        click.option("--classifier", default=None,
                     help="Attribute classifier folder from `convert classifier`, or a shipped name (demo-faces)."),
    ]
    fn = config_options(fn)
    for o in reversed(opts):
        fn = o(fn)
    return fn


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--mask", "-m", required=True,
              help="Mask image (white = hole), or a preset: center, left, right, top, bottom, rect:x,y,w,h.")
@click.option("--invert-mask", is_flag=True, help="Black marks the hole instead of white.")
@click.option("--align", "align", is_flag=True,
              help="IMAGE is a photo: align its face as FFHQ's were (needs the extra: pip install "
                   "\"jax-inpaint[align]\"), fill the hole (drawn on the photo) there, paste each completion back "
                   "into the photo (photo_<seed>.png; nothing outside the hole and its seam changes).")
@click.option("--face", type=click.IntRange(min=0), default=None,
              help="With --align: which face, by size (0 = the largest) [default: 0].")
@inpaint_inputs
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def inpaint(image, mask, invert_mask, align, face, generator, seeds, config, class_idx, prompts, clip, attributes,
            classifier, out, quiet, **options):
    """Fill the hole of IMAGE K ways (one per seed) and write completions, grid, latents, loss plot, metrics.

    \b
    Example:
      jax-inpaint inpaint face.png --mask center --generator ffhq256 --seeds 0-7 --out out/
      jax-inpaint inpaint face.png --mask mouth.png --generator ffhq256 \\
          --attribute Smiling=1 --classifier celeba-vit --attr-loss margin --out smiling/
    """
    from jax_inpaint.files import output_folder
    from jax_inpaint.inversion.config import parse_prompts
    from jax_inpaint.inversion.inpainter import inpaint as run
    from jax_inpaint.inversion.inputs import parse_attributes
    from jax_inpaint.inversion.outputs import save_result

    prompts, attributes = parse_prompts(prompts), parse_attributes(attributes)
    if face is not None and not align:
        raise click.UsageError("--face picks a face to align: it needs --align")
    if align:  # a real photo: through its FFHQ-aligned face and back (jax_inpaint.align.photo)
        import functools

        from jax_inpaint.align.photo import inpaint_photo, save_photo_result

        run, save_result = functools.partial(inpaint_photo, face=face), save_photo_result
    with output_folder(out):  # an unwritable --out is reported now, not after the search
        result = run(image, mask, generator, seeds=seeds, config=config, prompts=prompts, attributes=attributes,
                     clip=clip, classifier=classifier, class_idx=class_idx, invert_mask=invert_mask,
                     progress=not quiet, **options)
        written = save_result(result, out)  # all files or none; an earlier run's outputs are replaced
    for n in result.notices:
        click.echo(f"note: {n}", err=True)
    if result.dropped:
        click.echo(f"warning: seeds {result.dropped} diverged (NaN loss) and were dropped", err=True)
    m = result.metrics
    click.echo(f"{len(result.seeds)} completions in {out} (grid: {written['grid']})")
    shown = m["seeds"] if len(m["seeds"]) <= 2 * SEED_LINES else m["seeds"][:SEED_LINES]
    for e in shown:
        extra = "".join(f"  {k}: {'met' if v else 'NOT met'}" for k, v in e.get("constraints_met", {}).items())
        click.echo(f"  seed {e['seed']}: loss {e['best_loss']:.4g}  known PSNR {e['known_psnr']:.2f} dB{extra}")
    if len(shown) < len(m["seeds"]):
        click.echo(f"  ... and {len(m['seeds']) - len(shown)} more seeds (every one in {out}/metrics.json)")
    if "diversity_hole_lpips" in m:
        click.echo(f"  diversity (mean pairwise LPIPS in the hole): {m['diversity_hole_lpips']:.4f}")


# ---------------------------------------------------------------------------------------------
# Real photos: a face aligned as FFHQ's faces were (jax_inpaint/align/; the optional extra `align`).

@main.command("align")
@click.argument("photo", type=click.Path(dir_okay=False))
@click.option("--size", type=click.IntRange(8, 4096), default=1024, help="Side of the aligned image, in pixels "
              "(the generator's resolution).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="The aligned face (PNG); the transform is written beside it with .json for .png.")
@click.option("--face", type=click.IntRange(min=0), default=0, help="Which face, by size (0 = the largest).")
def align_cmd(photo, size, out, face):
    """Align the face of PHOTO the way FFHQ's faces were: eyes level and where FFHQ puts them, the crop
    scaled to the eye and mouth distances, padded (reflected and blurred) where it leaves the photo.

    Writes --out (PNG, --size pixels a side) and its transform as JSON beside it (aligned.png ->
    aligned.json): 3x3 matrices aligned_to_photo and photo_to_aligned (pixel coordinates, x = column,
    y = row, pixel centres at whole numbers), the landmarks, the crop quad. Needs the extra:
    pip install "jax-inpaint[align]" (mediapipe's face models ship inside it: nothing is downloaded).

    \b
    Example:
      jax-inpaint align photo.jpg --size 1024 --out aligned.png
    """
    from jax_inpaint.align.photo import describe, write_aligned

    al, written = write_aligned(photo, size, out, face=face)
    click.echo(describe(al))
    click.echo(f"wrote {written['image']} and {written['json']}")


# ---------------------------------------------------------------------------------------------
# Masks: the families and hole-ratio buckets used to compare inpainting methods.

from jax_inpaint.masks import FAMILIES as MASK_FAMILIES  # noqa: E402  (numpy only: cheap to import)


class SizeType(click.ParamType):
    """'256' (square) or 'WIDTHxHEIGHT' ('320x256') -> (height, width)."""
    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(value))
        if not m:
            self.fail(f"{value!r} is not a size such as '256' or '320x256' (width x height)", param, ctx)
        w = int(m.group(1))
        return (int(m.group(2) or w), w)


@main.command("masks")
@click.option("--family", "-f", required=True, type=click.Choice(("all",) + MASK_FAMILIES),
              help="Mask family; 'all' writes <family>.png into the folder --out for every family that can "
                   "reach the ratio's bucket.")
@click.option("--ratio", "-r", type=click.FloatRange(0, 1, min_open=True), default=0.3,
              help="Target hole ratio; the mask lands in its CoModGAN bucket ([0,0.2], (0.2,0.4], ...), "
                   "as close to it as the family allows.")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed of the random families.")
@click.option("--size", type=SizeType(), default="256", help="Mask size: '256' or WIDTHxHEIGHT such as '320x256'.")
@click.option("--out", "-o", required=True, type=click.Path(),
              help="PNG to write (white = hole); a folder with --family all.")
def masks_cmd(family, ratio, seed, size, out):
    """Write a hole mask of a benchmark family and print its hole ratio and bucket.

    \b
    Families: center, boxes, half, strokes-thin/-medium/-thick, lines (ratio 0.5 only), sr (0.75,
    0.889, ...), expand, and FFHQ-aligned face regions eyes, nose, mouth (ratio <= 0.2 only).
    Example:
      jax-inpaint masks --family strokes-thick --ratio 0.3 --seed 0 --size 256 --out m.png
      jax-inpaint masks --family all --ratio 0.5 --out masks/
    """
    from jax_inpaint.masks import bucket_label, write_masks

    for e in write_masks(family, ratio, seed=seed, size=size, out=out):
        if "skipped" in e:
            click.echo(f"skipped {e['family']}: it {e['skipped']}")
        else:
            click.echo(f"wrote {e['path']}: {e['family']}, hole ratio {e['ratio']:.4f}, "
                       f"bucket {e['bucket']} {bucket_label(e['bucket'])}")


# ---------------------------------------------------------------------------------------------
# Perception models: CLIP and attribute-classifier conversion, scoring images.

@convert.command("clip")
@click.argument("src", type=click.Path())
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--tokenizer", type=click.Path(file_okay=False), default=None,
              help="Folder with the CLIP tokenizer files (vocab.json + merges.txt, e.g. any Hugging Face CLIP "
                   "checkpoint); needed for an OpenAI-named file, which has none. Its preprocessor_config.json "
                   "is used too when present.")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="For an OpenAI-named file: a Hugging Face CLIP config.json describing it (instead of reading "
                   "the architecture from the tensor shapes).")
@click.option("--vision-heads", type=click.IntRange(min=1), default=None,
              help="For an OpenAI-named file: attention heads of the image tower [default: width / 64].")
@click.option("--text-heads", type=click.IntRange(min=1), default=None,
              help="For an OpenAI-named file: attention heads of the text tower [default: width / 64].")
@click.option("--hidden-act", default=None,
              help="For an OpenAI-named file: MLP activation, quick_gelu (OpenAI) or gelu (most open_clip "
                   "LAION models) [default: quick_gelu].")
@click.option("--overwrite", is_flag=True, help="Replace DEST if it is a model folder written by jax-inpaint "
                   "(never a folder holding anything else, the source, or the current folder).")
def convert_clip_cmd(src, dest, tokenizer, config, vision_heads, text_heads, hidden_act, overwrite):
    """Convert a CLIP checkpoint SRC into the model folder DEST.

    SRC: a Hugging Face CLIPModel folder (config.json + model.safetensors or pytorch_model.bin; its
    tokenizer files go into DEST), or one state-dict file with OpenAI / open_clip names
    (.safetensors, .pt, .bin, .npz) together with --tokenizer DIR.
    """
    from convert_weights.clip import convert_clip

    out = convert_clip(src, dest, tokenizer=tokenizer, config=config, vision_heads=vision_heads,
                       text_heads=text_heads, hidden_act=hidden_act, overwrite=overwrite)
    click.echo(f"wrote {out}")


@convert.command("classifier")
@click.argument("src", type=click.Path())
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace DEST if it is a model folder written by jax-inpaint "
                   "(never a folder holding anything else, the source, or the current folder).")
def convert_classifier_cmd(src, dest, overwrite):
    """Convert a Hugging Face ViTForImageClassification folder SRC into the model folder DEST.

    Labels come from its config.json (id2label), the input mean/std from preprocessor_config.json.
    """
    from convert_weights.vit import convert_classifier

    out = convert_classifier(src, dest, overwrite=overwrite)
    click.echo(f"wrote {out}")


@main.command("score")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--clip", default=None,
              help="CLIP model folder from `convert clip`, or a shipped name (demo-faces) (with --prompt).")
@click.option("--prompt", "prompts", multiple=True, help="Text to compare every image with (CLIP cosine similarity); "
                                                         "repeatable.")
@click.option("--classifier", default=None,
              help="Attribute classifier folder from `convert classifier` (or a shipped name): probabilities.")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="Image of the same size: LPIPS (VGG16) distance of every image to it.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the scores to this JSON file.")
def score_cmd(images, clip, prompts, classifier, reference, json_path):
    """Score IMAGES: CLIP similarity to prompts, attribute probabilities, LPIPS to a reference.

    Images at a model's input size are used as they are; others go through the model's own
    (differentiable) resize and crop.
    """
    from jax_inpaint.files import write_json
    from jax_inpaint.score import format_table, score_images

    scores = score_images(images, clip=clip, prompts=prompts, classifier=classifier, reference=reference)
    click.echo(format_table(scores, reference))
    if json_path:
        write_json(json_path, scores)
        click.echo(f"wrote {json_path}")


# ---------------------------------------------------------------------------------------------
# Evaluation: how robust is the inpainting (mask families x hole ratios x targets, with baselines).

from jax_inpaint.study.plan import DEFAULT_FAMILIES as EVAL_FAMILIES, DEFAULT_RATIOS as EVAL_RATIOS  # noqa: E402


@main.command("evaluate")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="Folder of ground-truth images (centre-cropped and resized to the generator's resolution).")
@click.option("--max-images", type=click.IntRange(min=1), default=None,
              help="Use only the first N images of --images (sorted by name).")
@click.option("--gan-samples", type=click.IntRange(min=1), default=None,
              help="Instead of --images: N images sampled from the generator (seeds 0..N-1, as `generate` "
                   "draws them), whose exact completion is in the search space.")
@click.option("--trunc", "truncation_psi", type=FINITE, default=0.7, help="Truncation psi of the --gan-samples.")
@click.option("--families", default=",".join(EVAL_FAMILIES),
              help=f"Comma-separated mask families, from: {', '.join(MASK_FAMILIES)}.")
@click.option("--ratios", default=",".join(f"{r:g}" for r in EVAL_RATIOS),
              help="Comma-separated target hole ratios (CoModGAN bucket midpoints by default); a family skips "
                   "the ratios it cannot reach, with a note.")
@click.option("--mask-seed", type=click.IntRange(min=0), default=0,
              help="Seed of the random mask layouts (each target gets its own layout from it).")
@click.option("--baselines", default="auto",
              help="Comma-separated classical fills run on the same cases: mean, biharmonic, telea (needs "
                   "OpenCV); 'auto' = every one available here; 'none'.")
@inpaint_inputs
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Output folder; rerunning with the same options resumes there without recomputing "
                   "finished cases.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def evaluate_cmd(images, max_images, gan_samples, truncation_psi, families, ratios, mask_seed, baselines, generator,
                 seeds, config, class_idx, prompts, clip, attributes, classifier, out, quiet, **options):
    """Measure how robust the inpainting is: targets x mask families x hole ratios, K seeds each.

    Scores every completion against the ground truth (hole PSNR, SSIM and LPIPS, best of K and mean;
    known-region PSNR; diversity; constraint success; seconds), runs the classical baselines on the
    same cases, and writes report.html (self-contained), plots/*.png, results.csv/.json and
    summary.csv to --out. Every option of `inpaint` works here too.

    \b
    Example:
      jax-inpaint evaluate --generator ffhq256 --gan-samples 20 --seeds 0-7 --steps 200 --out eval/
      jax-inpaint evaluate --generator ffhq256 --images photos/ --families center,strokes-thick,half \\
          --ratios 0.3,0.5 --out eval-photos/
    """
    from jax_inpaint.inversion.config import parse_prompts
    from jax_inpaint.inversion.inputs import parse_attributes
    from jax_inpaint.study.evaluate import evaluate as run

    result = run(generator, out, images=images, max_images=max_images, gan_samples=gan_samples,
                 truncation_psi=truncation_psi, families=families, ratios=ratios, mask_seed=mask_seed,
                 baselines=baselines, seeds=seeds, config=config, prompts=parse_prompts(prompts),
                 attributes=parse_attributes(attributes), clip=clip, classifier=classifier, class_idx=class_idx,
                 progress=not quiet, **options)
    for n in result.notes:
        click.echo(f"note: {n}", err=True)
    click.echo(f"{len(result.computed) + len(result.reused)} cases: {len(result.computed)} computed, "
               f"{len(result.reused)} reused from an earlier run")
    if result.headline:
        click.echo("compared with the best baseline of the same family and hole ratio (a cell):")
    for line in result.headline:
        click.echo(f"  {line}")
    click.echo(f"report: {result.files['html']}")

# ---------------------------------------------------------------------------------------------
# Batch inpainting (devices, hosts, resume).

@main.command("inpaint-batch")
@click.option("--images", type=click.Path(file_okay=False), default=None, help="Folder of images to inpaint.")
@click.option("--masks", type=click.Path(file_okay=False), default=None,
              help="Folder of masks named like the images (white = hole).")
@click.option("--mask", "-m", default=None, help="One mask file or preset for every image (center, left, rect:...).")
@click.option("--manifest", type=click.Path(dir_okay=False), default=None,
              help="CSV or JSONL with columns image, mask, prompt, attributes (and optionally id).")
@click.option("--align", "align", is_flag=True,
              help="The images are photos, masks drawn on them: as `inpaint --align` (the face aligned as FFHQ's, "
                   "completions pasted back as photo_<seed>.png); a photo without a face fails its item.")
@click.option("--face", type=click.IntRange(min=0), default=None,
              help="With --align: which face, by size (0 = the largest) [default: 0].")
@inpaint_inputs
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Output folder: one sub-folder per image, results.<host>.jsonl, summary.json.")
@click.option("--per-device", type=click.IntRange(min=1), default=None,
              help="(image, seed) pairs per device per compiled step [default: the number of seeds].")
@click.option("--recompute", is_flag=True,
              help="--out holds images done with other options: redo them with these (otherwise such a rerun "
                   "is refused, naming what changed).")
@click.option("--wait", type=click.FloatRange(min=0), default=0.0,
              help="Seconds to wait for another run that holds --out (otherwise that is an error).")
@click.option("--coordinator", default=None, help="HOST:PORT of process 0, for several hosts (jax.distributed).")
@click.option("--num-processes", type=click.IntRange(min=1), default=None,
              help="Number of hosts (with --coordinator).")
@click.option("--process-id", type=click.IntRange(min=0), default=None, help="This host's index (with --coordinator).")
@click.option("--distributed", is_flag=True,
              help="Initialise jax.distributed from the environment (TPU pods, SLURM, ...).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def inpaint_batch(images, masks, mask, manifest, align, face, generator, seeds, config, class_idx, prompts, clip,
                  attributes, classifier, out, per_device, recompute, wait, coordinator, num_processes, process_id,
                  distributed, quiet, **options):
    """Inpaint a folder or manifest of images K ways each, on every local device and host.

    (image, seed) pairs are spread data-parallel over a mesh of this host's devices; each host takes
    every N-th image. Rerunning the same command skips finished images and retries failed ones; a
    rerun with other options is refused unless --recompute. One run at a time works in --out.
    Exit code 1 when any image failed (see summary.json).
    """
    from jax_inpaint import batch as B
    from jax_inpaint.inversion.config import parse_prompts
    from jax_inpaint.inversion.inputs import parse_attributes

    prompts, attributes = parse_prompts(prompts), tuple(parse_attributes(attributes).items())
    if face is not None and not align:
        raise click.UsageError("--face picks a face to align: it needs --align")
    items = B.read_items(images=images, masks=masks, mask=mask, manifest=manifest)
    # --prompt / --attribute apply to the images whose manifest row gives none of their own
    items = [B.dataclasses.replace(it, prompts=it.prompts or prompts, attributes=it.attributes or attributes)
             for it in items]
    B.initialize_distributed(coordinator, num_processes, process_id, auto=distributed)
    summary = B.run_batch(items, generator, out, seeds=seeds, config=config, clip=clip, classifier=classifier,
                          class_idx=class_idx, per_device=per_device, progress=not quiet, recompute=recompute,
                          wait=wait, align=align, face=face, **options)
    for n in summary.notes:
        click.echo(f"note: {n}", err=True)
    click.echo(f"host {B.jax.process_index()}: {summary.ok} done, {summary.failed} failed, {summary.skipped} "
               f"already done, on {summary.devices} device(s), {summary.images_per_second:.3g} images/s")
    B.barrier("jax-inpaint-batch-done")
    failed = summary.failed
    if B.jax.process_index() == 0:
        total = B.write_summary(out, items, [summary], keys=summary.keys)
        failed = len(total["failed"]) + len(total["missing"])
        click.echo(f"{total['ok']}/{total['total']} images done; summary: {out}/summary.json")
        for f in total["failed"]:
            click.echo(f"  failed: {f['item']}: {f['error']}", err=True)
    if failed:
        raise SystemExit(1)


# ---------------------------------------------------------------------------------------------
# The demo: the shipped demo-faces generator and classifier (jax_inpaint/demo/run.py).

@main.command("demo")
@click.option("--out", "-o", default="jax-inpaint-demo", type=click.Path(file_okay=False),
              help="Output folder (grid.png and one result folder per row).")
@click.option("--seeds", type=SEEDS, default="0-3", help="Seeds of the K completions of each row, e.g. '0-3'.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Search steps per completion (default: the demo's own, jax_inpaint.demo.run.DEMO_OPTIONS).")
@click.option("--face", type=click.IntRange(min=0), default=0, help="Which face of the held-out demo set.")
@click.option("--prompt", default=None,
              help="Text prompt of the last row, for the shipped demo CLIP [default: 'a face with an open mouth'; "
                   "'' leaves the row out].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def demo_cmd(out, seeds, steps, face, prompt, quiet):
    """Inpaint the mouth of a face no model has seen, with the demo models that ship with jax-inpaint:
    K completions freely, K asking the classifier for Smiling = 1, K for Smiling = 0, and K asking the
    demo CLIP for a text prompt."""
    from jax_inpaint.demo.run import DEMO_PROMPT, run_demo

    res = run_demo(out, seeds=seeds, steps=steps, face=face, prompt=DEMO_PROMPT if prompt is None else prompt,
                   progress=not quiet)
    for row, probs in res["smiling"].items():
        click.echo(f"{row:12s} Smiling probability per seed: " + " ".join(f"{p:.2f}" for p in probs))
    if res["prompt"]:
        pr = res["prompt"]
        what, values = ((f"{pr['attribute']} probability", pr["probs"]) if pr["attribute"]
                        else ("CLIP similarity", pr["similarity"]))
        click.echo(f"{'prompt':12s} {pr['text']!r}: {what} per seed: " + " ".join(f"{p:.2f}" for p in values))
    click.echo(f"wrote {res['grid']} ({res['seconds']:.0f} s)")


# ---------------------------------------------------------------------------------------------
# The web page: paint the hole in a browser, watch the K completions arrive (jax_inpaint/serve/).

@main.command("serve")
@click.option("--generator", "-g", required=True,
              help="Model folder from `convert stylegan2`, or a shipped model name (demo-faces).")
@click.option("--classifier", default=None,
              help="Attribute classifier folder (or a shipped name, demo-faces): the page offers its labels as targets.")
@click.option("--clip", default=None,
              help="CLIP model folder from `convert clip`, or a shipped name (demo-faces): the page then takes prompts.")
@click.option("--config", "config", default=None,
              help="YAML file or preset name: the page's default preset [default: demo for demo-faces, else default].")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
              help="Class index (conditional generators).")
@click.option("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0: every network interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, help="Port to listen on (0: any free port).")
@click.option("--max-seeds", type=click.IntRange(1, 4096), default=16, help="The largest K a page may ask for.")
@click.option("--align", "align", is_flag=True,
              help="Uploaded images are photos: the page paints the hole on their face, aligned as FFHQ's were "
                   "(needs the extra: pip install \"jax-inpaint[align]\"; the completions are of the aligned face).")
@click.option("--face", type=click.IntRange(min=0), default=None,
              help="With --align: which face, by size (0 = the largest) [default: 0].")
def serve_cmd(generator, classifier, clip, config, class_idx, host, port, max_seeds, align, face):
    """Serve a web page to inpaint with: load or sample a face, paint the hole, choose the options and
    watch the K completions improve; download everything as a zip.

    The models load once; jobs run one at a time, queued (each page sees its place in the queue), and a
    page that is closed stops its job. Open the URL it prints (local only, unless --host says otherwise).

    \b
    Example:
      jax-inpaint serve --generator demo-faces --classifier demo-faces --clip demo-faces
    """
    from jax_inpaint.serve.server import serve

    if face is not None and not align:
        raise click.UsageError("--face picks a face to align: it needs --align")
    serve(generator, classifier=classifier, clip=clip, config=config, class_idx=class_idx, host=host, port=port,
          max_seeds=max_seeds, align=align, face=face, echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
