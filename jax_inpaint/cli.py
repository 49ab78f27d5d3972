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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
