"""The `jax-inpaint` command: thin click wrappers around library functions."""
from __future__ import annotations

import re
import sys

import click

from jax_inpaint.errors import InputError


class _Group(click.Group):
    """A click group that turns library InputErrors into a one-line message and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(2)


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,9-10' -> [0, 1, 2, 3, 7, 9, 10]."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise click.BadParameter(f"{text!r} is not a list of seeds such as '0-7' or '1,5,9'")
        lo = int(m.group(1))
        seeds.extend(range(lo, int(m.group(2) or lo) + 1))
    if not seeds:
        raise click.BadParameter("no seeds given")
    if len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{text!r} repeats a seed")
    return seeds


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="jax-inpaint")
def main():
    """jax-inpaint: fill the missing part of an image with a pretrained StyleGAN2.

    Convert a checkpoint once (`jax-inpaint convert`), then `inpaint`, `generate`, `score`,
    `evaluate` or `inpaint-batch` with the converted folder.
    """


@main.group(cls=_Group)
def convert():
    """Convert a checkpoint (NVIDIA .pkl, rosinality .pt, Hugging Face folder) into a model folder."""


# ---------------------------------------------------------------------------------------------
# Generator: conversion and sampling.

@convert.command("stylegan2")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace DEST if it exists.")
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
@click.option("--trunc", "truncation_psi", type=float, default=1.0, help="Truncation psi (1 = none).")
@click.option("--trunc-cutoff", type=int, default=None, help="Truncate only the first N ws.")
@click.option("--class", "class_idx", type=int, default=None, help="Class index for conditional generators.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const",
              help="Per-layer noise: the checkpoint's fixed noise, fresh noise per seed, or none.")
@click.option("--latents", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Render the ws (and noise) of a latents.npz written by `inpaint` instead of seeds.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
def generate(generator, seeds, truncation_psi, trunc_cutoff, class_idx, noise_mode, latents, out):
    """Generate images: one PNG per seed (seed0000.png ...) and grid.png."""
    from jax_inpaint.generate import generate as run, render_latents
    from jax_inpaint.stylegan2 import load_generator

    G = load_generator(generator)
    if latents:
        res = render_latents(G, latents, out=out)
    else:
        res = run(G, seeds, truncation_psi=truncation_psi, truncation_cutoff=trunc_cutoff, class_idx=class_idx,
                  noise_mode=noise_mode, out=out)
    click.echo(f"wrote {len(res['images'])} images and grid.png to {out}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
