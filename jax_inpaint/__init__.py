"""jax-inpaint: fill the missing part of an image with a pretrained StyleGAN2, in JAX.

The package's names are imported lazily (PEP 562): `import jax_inpaint` and `jax-inpaint --help`
load neither jax nor flax; `jax_inpaint.load_generator` (and the others below) import them on
first use.
"""
from __future__ import annotations

import importlib

from jax_inpaint.errors import InputError

__version__ = "0.1.0"

_LAZY = {
    "Generator": "jax_inpaint.stylegan2",
    "GeneratorConfig": "jax_inpaint.stylegan2",
    "Discriminator": "jax_inpaint.stylegan2",
    "DiscriminatorConfig": "jax_inpaint.stylegan2",
    "load_generator": "jax_inpaint.stylegan2",
    "load_discriminator": "jax_inpaint.stylegan2",
}

__all__ = ["InputError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jax_inpaint' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
